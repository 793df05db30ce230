"""Authentication end to end: the real SDKs against a gateway that has credentials.

A gateway started with ``credentials={"AKIDEXAMPLE": "secret"}`` must serve the
unmodified fnf client (RPC signature v1, and its ACS3 path), boto3's
bedrock-agent and bedrock-agent-runtime, and refuse with each dialect's own 403
whatever is unsigned, signed by an unknown key or the wrong secret, too old or
too new, or replayed. Requests built by hand are signed by the SDKs' own signing
code (tests/auth/signing.py). The CLI's refusal to serve unauthenticated on a
non-loopback address runs as a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

from router import cli
from router.store.memory import MemoryStore
from router.store.redis import RedisStore
from tests.auth.signing import (
    AKID,
    CREDENTIALS,
    SECRET,
    Answer,
    acs3_request,
    now_utc,
    query_string,
    rpc_params,
    send,
    sigv4_request,
)
from tests.dialects import bedrock_client as bedrock
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signed(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    """A gateway on the memory store that requires signatures."""
    store = MemoryStore()
    server = start_gateway(bg_loop, store, recording_executor, credentials=dict(CREDENTIALS))
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


@pytest.fixture
def unsigned(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    """A gateway without credentials."""
    store = MemoryStore()
    server = start_gateway(bg_loop, store, recording_executor)
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


# -- clients -------------------------------------------------------------------------------


class _AcsV3Client(Client):
    """The fnf client on its ACS3-HMAC-SHA256 path, as docs/wire.md §2.3 captured it."""

    def __init__(self, config: SdkConfig) -> None:
        super().__init__(config)
        self._signature_algorithm = "ACS3-HMAC-SHA256"


def cloudflow_client(
    gateway: GatewayServer, akid: str = AKID, secret: str = SECRET, v3: bool = False
) -> Client:
    config = SdkConfig(
        access_key_id=akid,
        access_key_secret=secret,
        endpoint=f"127.0.0.1:{gateway.port}",
        protocol="http",
        region_id="cn-hangzhou",
    )
    return _AcsV3Client(config) if v3 else Client(config)


def boto(service: str, gateway: GatewayServer, akid: str = AKID, secret: str = SECRET) -> Any:
    return boto3.client(
        service,
        endpoint_url=gateway.url,
        region_name="us-west-2",  # any region: only the service name is fixed
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


def rpc_get(gateway: GatewayServer, params: dict[str, str]) -> Answer:
    return send("GET", f"{gateway.url}/?{query_string(params)}")


def rpc_post(gateway: GatewayServer, params: dict[str, str], business: set[str]) -> Answer:
    """Common parameters in the query, ``business`` ones in a form body (docs/wire.md §2.1)."""
    query = {k: v for k, v in params.items() if k not in business}
    form = {k: v for k, v in params.items() if k in business}
    return send(
        "POST",
        f"{gateway.url}/?{query_string(query)}",
        {"Content-Type": "application/x-www-form-urlencoded"},
        query_string(form).encode(),
    )


def code_of(answer: Answer) -> tuple[int, str]:
    body = json.loads(answer.body)
    assert body["Message"] and body["RequestId"], body
    assert "Traceback" not in body["Message"]
    return answer.status, body["Code"]


def assert_access_denied(answer: Answer) -> None:
    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert json.loads(answer.body)["message"]


# -- CloudFlow ----------------------------------------------------------------------------------


@pytest.mark.parametrize("v3", [False, True], ids=["rpc-v1", "acs3"])
def test_cloudflow_sdk_with_the_right_key(
    signed: GatewayServer, recording_executor: RecordingExecutor, v3: bool
) -> None:
    client = cloudflow_client(signed, v3=v3)
    cf.create_flow(client, "orders", versions=2)
    cf.create_alias(client, "orders", "prod", ("1", 1), ("2", 3))
    flows = client.list_flows(models.ListFlowsRequest(limit=10)).body.flows
    assert [f.name for f in flows] == ["orders"]
    alias = client.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="orders", name="prod")
    ).body.alias
    assert cf.routing(alias.routing_configurations) == [("1", 1), ("2", 3)]
    started = cf.start(client, "orders", "prod", '{"text": "héllo / wörld ~ *"}', "run-1")
    assert started.body.status == "Succeeded"
    described = client.describe_execution(
        models.DescribeExecutionRequest(flow_name="orders", execution_name="run-1")
    )
    assert described.body.name == "run-1"
    assert len(recording_executor.records) == 1


@pytest.mark.parametrize("v3", [False, True], ids=["rpc-v1", "acs3"])
def test_cloudflow_wrong_secret(signed: GatewayServer, v3: bool) -> None:
    client = cloudflow_client(signed, secret="not-the-secret", v3=v3)
    with cf.cloudflow_error(403, "SignatureDoesNotMatch"):
        client.list_flows(models.ListFlowsRequest())
    with cf.cloudflow_error(403, "SignatureDoesNotMatch"):
        cf.create_flow(client, "never")
    assert not cloudflow_client(signed).list_flows(models.ListFlowsRequest()).body.flows


@pytest.mark.parametrize("v3", [False, True], ids=["rpc-v1", "acs3"])
def test_cloudflow_unknown_key(signed: GatewayServer, v3: bool) -> None:
    client = cloudflow_client(signed, akid="AKIDUNKNOWN", v3=v3)
    with cf.cloudflow_error(403, "InvalidAccessKeyId.NotFound"):
        client.list_flows(models.ListFlowsRequest())


def test_cloudflow_unsigned_raw_requests(
    signed: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    cf.assert_raw_error(cf.raw_call(signed, "ListFlows", {}, "GET"), 403, "MissingSignature")
    created = cf.raw_call(signed, "CreateFlow", {"Name": "f", "Definition": cf.DEFINITION})
    cf.assert_raw_error(created, 403, "MissingSignature")
    started = cf.raw_call(signed, "StartExecution", {"FlowName": "f"})
    cf.assert_raw_error(started, 403, "MissingSignature")
    assert not cloudflow_client(signed).list_flows(models.ListFlowsRequest()).body.flows
    assert recording_executor.records == []


def test_cloudflow_replayed_request_is_refused(
    signed: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    cf.create_flow(cloudflow_client(signed), "orders", versions=1)
    # One signed StartExecution, sent twice byte for byte.
    business = {"FlowName": "orders", "Qualifier": "1", "Input": '{"n": 1}'}
    params = rpc_params("StartExecution", business, method="POST")
    first = rpc_post(signed, params, set(business))
    assert first.status == 200, first.body
    assert code_of(rpc_post(signed, params, set(business))) == (403, "SignatureNonceUsed")
    assert len(recording_executor.records) == 1  # the replay ran nothing

    params = rpc_params("ListFlows", {"Limit": "10"})
    assert rpc_get(signed, params).status == 200
    assert code_of(rpc_get(signed, params)) == (403, "SignatureNonceUsed")


def test_cloudflow_acs3_replay_is_refused(signed: GatewayServer) -> None:
    request = acs3_request("ListFlows", host=f"127.0.0.1:{signed.port}", method="GET")
    assert send("GET", signed.url + "/", request.headers).status == 200
    assert code_of(send("GET", signed.url + "/", request.headers)) == (403, "SignatureNonceUsed")


@pytest.mark.parametrize("minutes", [-20, 20])
def test_cloudflow_timestamp_outside_fifteen_minutes(signed: GatewayServer, minutes: int) -> None:
    when = now_utc() + timedelta(minutes=minutes)
    answer = rpc_get(signed, rpc_params("ListFlows", {}, when=when))
    assert code_of(answer) == (403, "InvalidTimeStamp.Expired")
    acs3 = acs3_request("ListFlows", host=f"127.0.0.1:{signed.port}", method="GET", when=when)
    assert code_of(send("GET", signed.url + "/", acs3.headers)) == (403, "InvalidTimeStamp.Expired")
    # Still inside the window: accepted.
    when = now_utc() - timedelta(minutes=10)
    assert rpc_get(signed, rpc_params("ListFlows", {}, when=when)).status == 200


def test_cloudflow_tampered_request(signed: GatewayServer) -> None:
    params = rpc_params("DescribeFlow", {"Name": "orders"})
    params["Name"] = "other"
    assert code_of(rpc_get(signed, params)) == (403, "SignatureDoesNotMatch")
    params = rpc_params("ListFlows", {})
    del params["SignatureNonce"]
    assert code_of(rpc_get(signed, params)) == (403, "IncompleteSignature")


# -- Bedrock -----------------------------------------------------------------------------------


def test_bedrock_sdk_with_the_right_key(
    signed: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    agent = boto("bedrock-agent", signed)
    runtime = boto("bedrock-agent-runtime", signed)
    flow_id = bedrock.create_flow(agent, "orders", versions=1)
    alias_id = bedrock.create_alias(agent, flow_id, "prod", "1")
    assert agent.get_flow(flowIdentifier=bedrock.flow_arn(flow_id))["name"] == "orders"
    assert [f["id"] for f in agent.list_flows(maxResults=5)["flowSummaries"]] == [flow_id]
    agent.tag_resource(resourceArn=bedrock.flow_arn(flow_id), tags={"team": "a b/c=d+e@f:g"})
    invoked = bedrock.invoke(runtime, flow_id, alias_id, {"q": "a/b ~ c"})
    assert invoked.version == "1" and invoked.events
    started = runtime.start_flow_execution(
        flowIdentifier=flow_id, flowAliasIdentifier=alias_id, inputs=bedrock.inputs({"q": 2})
    )
    assert started["executionArn"]
    assert len(recording_executor.records) == 2


@pytest.mark.parametrize(
    ("akid", "secret"), [(AKID, "not-the-secret"), ("AKIDUNKNOWN", SECRET)], ids=["secret", "key"]
)
def test_bedrock_wrong_credentials(
    signed: GatewayServer, recording_executor: RecordingExecutor, akid: str, secret: str
) -> None:
    flow_id = bedrock.create_flow(boto("bedrock-agent", signed), "orders", versions=1)
    agent = boto("bedrock-agent", signed, akid, secret)
    runtime = boto("bedrock-agent-runtime", signed, akid, secret)
    with bedrock.bedrock_error(agent, "AccessDeniedException", 403):
        agent.list_flows()
    with bedrock.bedrock_error(agent, "AccessDeniedException", 403):
        agent.delete_flow(flowIdentifier=flow_id)
    with bedrock.bedrock_error(runtime, "AccessDeniedException", 403):
        runtime.invoke_flow(
            flowIdentifier=flow_id, flowAliasIdentifier="TSTALIASID", inputs=bedrock.inputs({})
        )
    with bedrock.bedrock_error(runtime, "AccessDeniedException", 403):
        runtime.start_flow_execution(
            flowIdentifier=flow_id, flowAliasIdentifier="TSTALIASID", inputs=bedrock.inputs({})
        )
    assert boto("bedrock-agent", signed).get_flow(flowIdentifier=flow_id)["id"] == flow_id
    assert recording_executor.records == []


def test_bedrock_unsigned_and_expired(signed: GatewayServer) -> None:
    assert_access_denied(send("GET", signed.url + "/flows/"))
    body = json.dumps({"name": "f", "executionRoleArn": bedrock.ROLE}).encode()
    assert_access_denied(
        send("POST", signed.url + "/flows/", {"Content-Type": "application/json"}, body)
    )
    assert_access_denied(
        send("GET", signed.url + "/tags/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aflow%2FF")
    )
    for minutes in (-20, 20):
        old = sigv4_request(
            "GET", signed.url + "/flows/", when=now_utc() + timedelta(minutes=minutes)
        )
        assert_access_denied(send("GET", old.url, old.headers))
    fresh = sigv4_request("POST", signed.url + "/flows/", body)
    assert send("POST", fresh.url, fresh.headers, body).status == 201
    tampered = body.replace(b'"f"', b'"g"')
    assert_access_denied(send("POST", fresh.url, fresh.headers, tampered))


# -- what stays open -------------------------------------------------------------------------------


def test_operations_endpoints_stay_open(signed: GatewayServer) -> None:
    for path in ("/metrics", "/healthz", "/readyz"):
        status, _ = cf.http_get(signed, path)
        assert status == 200, path


def test_reference_executor_works_behind_a_signed_gateway(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    """The gateway calls its built-in executor (``/_executor``) unsigned: still open."""
    store = MemoryStore()
    server = start_gateway(
        bg_loop, store, recording_executor, upstream=None, credentials=CREDENTIALS
    )
    try:
        client = cloudflow_client(server)
        cf.create_flow(client, "local", versions=1)
        assert cf.start(client, "local", "1", '{"a": 1}').body.status == "Succeeded"
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(store.close())


def test_without_credentials_unsigned_requests_are_served(unsigned: GatewayServer) -> None:
    assert cf.raw_call(unsigned, "ListFlows", {}, "GET").status == 200
    assert send("GET", unsigned.url + "/flows/").status == 200
    # Signatures are not checked at all: a wrong secret goes through too.
    cf.create_flow(cloudflow_client(unsigned, secret="whatever"), "open")
    agent = boto("bedrock-agent", unsigned, "AKIDANY", "whatever")
    assert bedrock.create_flow(agent, "open-too")


# -- several replicas on one Redis ----------------------------------------------------------------


def test_a_replay_to_another_replica_is_refused(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    url = request.getfixturevalue("redis_server").url
    prefix = f"t{uuid.uuid4().hex[:8]}"
    stores = [RedisStore.from_url(url, prefix), RedisStore.from_url(url, prefix)]
    gateways = [
        start_gateway(bg_loop, s, recording_executor, credentials=CREDENTIALS) for s in stores
    ]
    try:
        params = rpc_params("ListFlows", {})
        assert rpc_get(gateways[0], params).status == 200
        assert code_of(rpc_get(gateways[1], params)) == (403, "SignatureNonceUsed")
    finally:
        for gateway, store in zip(gateways, stores, strict=True):
            bg_loop.run(gateway.stop())
            bg_loop.run(store.close())


# -- the command line ------------------------------------------------------------------------


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ROUTER_")}
    return subprocess.run(
        # --workers 2 on the memory store is refused too, before anything listens: were the
        # check under test missing, the process would still exit, with another message.
        [
            sys.executable,
            "-m",
            "router",
            "serve",
            "--port",
            str(free_port()),
            "--workers",
            "2",
            *args,
        ],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.network  # a flow-router serve process
@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--host", "0.0.0.0"), {}),
        (("--host", "::"), {}),
        ((), {"FLOW_ROUTER_HOST": "0.0.0.0"}),
        (("--host", "0.0.0.0"), {"FLOW_ROUTER_INSECURE": "0"}),
    ],
)
def test_cli_refuses_a_public_address_without_credentials(
    args: tuple[str, ...], env: dict[str, str]
) -> None:
    result = _serve(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert "refusing to listen on" in result.stderr
    assert "--credentials" in result.stderr and "--insecure" in result.stderr


@pytest.mark.network  # a flow-router serve process
def test_cli_refuses_a_bad_credentials_file(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text('["not", "an", "object"]')
    result = _serve("--credentials", str(bad))
    assert result.returncode == 2
    assert "credentials file" in result.stderr
    result = _serve(env={"FLOW_ROUTER_CREDENTIALS": str(tmp_path / "missing.json")})
    assert result.returncode == 2
    assert "cannot read the credentials file" in result.stderr


def test_exposure_check() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        cli.check_exposure(host, None, insecure=False)
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "gateway.example.com"):
        with pytest.raises(ValueError, match="refusing to listen"):
            cli.check_exposure(host, None, insecure=False)
        cli.check_exposure(host, None, insecure=True)  # the operator said so
        cli.check_exposure(host, CREDENTIALS, insecure=False)  # requests are signed


def test_config_from_the_command_line_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"AKIDEXAMPLE": "secret", "AKID2": "s2"}))
    args = cli._parser().parse_args(["serve", "--host", "0.0.0.0", "--credentials", str(keys)])
    config = cli.config_from_args(args)
    assert config.credentials == {"AKIDEXAMPLE": "secret", "AKID2": "s2"}
    assert "secret" not in repr(config)

    monkeypatch.setenv("FLOW_ROUTER_CREDENTIALS", str(keys))
    config = cli.config_from_args(cli._parser().parse_args(["serve", "--host", "0.0.0.0"]))
    assert config.credentials == {"AKIDEXAMPLE": "secret", "AKID2": "s2"}

    monkeypatch.delenv("FLOW_ROUTER_CREDENTIALS")
    monkeypatch.setenv("FLOW_ROUTER_INSECURE", "1")
    config = cli.config_from_args(cli._parser().parse_args(["serve", "--host", "0.0.0.0"]))
    assert config.credentials is None and config.insecure
