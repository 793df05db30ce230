"""bedrock-agent-runtime through the real boto3 client: executions through aliases.

StartFlowExecution and InvokeFlow through an alias, checked at the recording
executor and through ``X-Flow-Version``; the test alias; executor failures; and
the execution metrics shared with CloudFlow. Memory store and real Redis.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import boto3
import botocore.config
import pytest
from alibabacloud_fnf20190315 import models
from botocore.exceptions import EventStreamError

from tests.dialects import cloudflow_client as cf
from tests.dialects.bedrock_client import (
    REGION,
    agent_client,
    alias_arn,
    bedrock_error,
    create_alias,
    create_flow,
    flow_arn,
    inputs,
    invoke,
    runtime_client,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop, Behaviour, GatewayServer, RecordingExecutor, free_port

EXECUTIONS = "flow_router_executions_total"
API_REQUESTS = "flow_router_api_requests_total"


def _start(runtime: Any, flow: str, alias: str, document: Any = None, **extra: Any) -> Any:
    return runtime.start_flow_execution(
        flowIdentifier=flow, flowAliasIdentifier=alias, inputs=inputs(document or {}), **extra
    )


def _version(resp: Any) -> str:
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-flow-version"])


# -- through an alias, before and after UpdateFlowAlias ------------------------------------


def test_invoke_flow_follows_update_flow_alias(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    flow_id = create_flow(agent, "f1", versions=2)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    for i in range(3):
        invoked = invoke(runtime, flow_id, alias_id, {"i": i})
        assert invoked.version == "1"
        assert invoked.events == [
            {
                "flowOutputEvent": {
                    "nodeName": "FlowOutputNode",
                    "nodeType": "FlowOutputNode",
                    "content": {"document": {"ranOn": "1", "input": {"i": i}}},
                }
            },
            {"flowCompletionEvent": {"completionReason": "SUCCESS"}},
        ]
        assert invoked.execution_id
    record = recording_executor.records[-1]
    assert {k: record[k] for k in ("flow", "flowId", "version", "path_version", "alias")} == {
        "flow": "f1",
        "flowId": flow_id,
        "version": "1",
        "path_version": "1",
        "alias": "prod",
    }
    assert record["input"] == {"i": 2}

    agent.update_flow_alias(
        flowIdentifier=flow_id,
        aliasIdentifier=alias_id,
        name="prod",
        routingConfiguration=[{"flowVersion": "2"}],
    )
    recording_executor.reset()
    for _ in range(3):
        assert invoke(runtime, flow_arn(flow_id), alias_arn(flow_id, alias_id)).version == "2"
    assert recording_executor.versions() == Counter({"2": 3})


def test_start_flow_execution_follows_update_flow_alias(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    flow_id = create_flow(agent, "f1", versions=2)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    started = _start(runtime, flow_id, alias_id, {"q": "hi"})
    assert _version(started) == "1"
    arn = started["executionArn"]
    assert re.fullmatch(
        rf"arn:aws:bedrock:{REGION}:123456789012:flow/{flow_id}/alias/{alias_id}"
        r"/execution/[a-zA-Z0-9-]{1,36}",
        arn,
    )
    record = recording_executor.records[-1]
    assert (record["version"], record["alias"], record["input"]) == ("1", "prod", {"q": "hi"})
    assert record["execution"] == arn.rsplit("/", 1)[1]

    agent.update_flow_alias(
        flowIdentifier=flow_id,
        aliasIdentifier=alias_id,
        name="prod",
        routingConfiguration=[{"flowVersion": "2"}],
    )
    after = _start(runtime, flow_id, alias_arn(flow_id, alias_id), {"q": "again"})
    assert _version(after) == "2"
    assert [r["version"] for r in recording_executor.records] == ["1", "2"]

    # The ARN leads back to flow, alias and the version that ran it, even after the switch.
    for execution, version, document in [
        (arn, "1", {"q": "hi"}),
        (after["executionArn"], "2", None),
    ]:
        got = runtime.get_flow_execution(
            flowIdentifier=flow_id, flowAliasIdentifier=alias_id, executionIdentifier=execution
        )
        assert _version(got) == version
        assert (got["executionArn"], got["flowVersion"], got["status"]) == (
            execution,
            version,
            "Succeeded",
        )
        assert got["flowIdentifier"] == flow_arn(flow_id)
        assert got["flowAliasIdentifier"] == alias_arn(flow_id, alias_id)
        assert got["startedAt"]
        if document is not None:
            by_id = runtime.get_flow_execution(
                flowIdentifier=flow_arn(flow_id),
                flowAliasIdentifier=alias_arn(flow_id, alias_id),
                executionIdentifier=execution.rsplit("/", 1)[1],
            )
            assert by_id["flowVersion"] == version


def test_caller_named_execution(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    started = _start(runtime, flow_id, alias_id, flowExecutionName="nightly-run-1")
    assert started["executionArn"].endswith("/execution/nightly-run-1")
    assert recording_executor.records[-1]["execution"] == "nightly-run-1"
    with bedrock_error(runtime, "ConflictException", 409):
        _start(runtime, flow_id, alias_id, flowExecutionName="nightly-run-1")
    assert len(recording_executor.records) == 1
    # It finished inside its start call: stopping it is a conflict (issue 11).
    with bedrock_error(runtime, "ConflictException", 409):
        runtime.stop_flow_execution(
            flowIdentifier=flow_id,
            flowAliasIdentifier=alias_id,
            executionIdentifier="nightly-run-1",
        )
    with bedrock_error(runtime, "ResourceNotFoundException", 404):
        runtime.get_flow_execution(
            flowIdentifier=flow_id, flowAliasIdentifier=alias_id, executionIdentifier="never-ran"
        )


def test_list_flow_executions(
    gateway: GatewayServer,
    agent: Any,
    runtime: Any,
    recording_executor: RecordingExecutor,
    bg_loop: BackgroundLoop,
) -> None:
    flow_id = create_flow(agent, "f1", versions=2)
    prod = create_alias(agent, flow_id, "prod", "1")
    beta = create_alias(agent, flow_id, "beta", "2")
    started = {}
    for alias, n in ((prod, 3), (beta, 2), ("TSTALIASID", 1)):
        for _ in range(n):
            arn = _start(runtime, flow_id, alias)["executionArn"]
            started[arn] = (alias, recording_executor.records[-1]["version"])
    invoked = invoke(runtime, flow_id, prod)  # recorded too (issue 11)
    started[f"{alias_arn(flow_id, prod)}/execution/{invoked.execution_id}"] = (prod, "1")
    cf.start(cf.client_for(gateway), "f1", "1", "{}", name="by-version")  # no alias: not listed
    bg_loop.run(gateway.flushed())

    pages = runtime.get_paginator("list_flow_executions").paginate(
        flowIdentifier=flow_id, PaginationConfig={"PageSize": 2}
    )
    summaries = [s for page in pages for s in page["flowExecutionSummaries"]]
    assert {s["executionArn"] for s in summaries} == set(started)
    for s in summaries:
        alias, version = started[s["executionArn"]]
        assert s["flowAliasIdentifier"] == alias_arn(flow_id, alias)
        assert s["flowIdentifier"] == flow_arn(flow_id)
        assert (s["flowVersion"], s["status"]) == (version, "Succeeded")
        assert s["createdAt"]
    created = [s["createdAt"] for s in summaries]
    assert created == sorted(created, reverse=True)  # newest first (issue 11)

    only_beta = runtime.list_flow_executions(
        flowIdentifier=flow_arn(flow_id), flowAliasIdentifier=alias_arn(flow_id, beta)
    )["flowExecutionSummaries"]
    assert sorted(s["executionArn"] for s in only_beta) == sorted(
        arn for arn, (alias, _) in started.items() if alias == beta
    )
    with bedrock_error(runtime, "ResourceNotFoundException", 404):
        runtime.list_flow_executions(flowIdentifier=flow_id, flowAliasIdentifier="ZZZZZZZZZ1")
    with bedrock_error(runtime, "ResourceNotFoundException", 404):
        runtime.list_flow_executions(flowIdentifier="ZZZZZZZZZ0")


def test_test_alias_runs_draft(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    assert invoke(runtime, flow_id, "TSTALIASID").version == "DRAFT"
    started = _start(runtime, flow_id, "TSTALIASID")
    assert _version(started) == "DRAFT"
    assert started["executionArn"].startswith(alias_arn(flow_id, "TSTALIASID") + "/execution/")
    got = runtime.get_flow_execution(
        flowIdentifier=flow_id,
        flowAliasIdentifier="TSTALIASID",
        executionIdentifier=started["executionArn"],
    )
    assert got["flowVersion"] == "DRAFT"
    assert [(r["version"], r["alias"]) for r in recording_executor.records] == [
        ("DRAFT", "TSTALIASID"),
        ("DRAFT", "TSTALIASID"),
    ]


def test_executions_through_both_dialects_honour_one_alias(
    gateway: GatewayServer, agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    alibaba = cf.client_for(gateway)
    flow_id = create_flow(agent, "f1", versions=2)
    create_alias(agent, flow_id, "prod", "2")
    assert cf.start(alibaba, "f1", "prod", "{}").headers["x-flow-version"] == "2"
    (summary,) = agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]
    assert invoke(runtime, flow_id, summary["id"]).version == "2"
    # A switch made through CloudFlow is seen by Bedrock executions.
    alibaba.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="f1", name="prod", routing_configurations=cf.update_routes(("1", 1))
        )
    )
    assert invoke(runtime, flow_id, summary["id"]).version == "1"
    assert [r["version"] for r in recording_executor.records] == ["2", "2", "1"]


# -- executor failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour(status=500), Behaviour(body=b"not json"), Behaviour(body=b'{"status": "Failed"}')],
    ids=["http-500", "body-not-json", "status-failed"],
)
def test_executor_failure_mid_stream_is_a_modeled_event(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor, behaviour: Behaviour
) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    recording_executor.behaviours["1"] = behaviour
    resp = runtime.invoke_flow(
        flowIdentifier=flow_id, flowAliasIdentifier=alias_id, inputs=inputs({})
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert _version(resp) == "1"
    with pytest.raises(EventStreamError) as info:
        list(resp["responseStream"])
    assert info.value.response["Error"]["Code"] == "dependencyFailedException"
    assert info.value.response["Error"]["Message"]  # which version failed: X-Flow-Version
    assert len(recording_executor.records) == 1


def test_failures_before_the_stream_are_json_errors(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    with bedrock_error(runtime, "ResourceNotFoundException", 404):
        runtime.invoke_flow(
            flowIdentifier=flow_id, flowAliasIdentifier="ZZZZZZZZZ0", inputs=inputs({})
        )
    with bedrock_error(runtime, "ResourceNotFoundException", 404):
        runtime.invoke_flow(
            flowIdentifier="ZZZZZZZZZ0", flowAliasIdentifier="TSTALIASID", inputs=inputs({})
        )
    two = inputs({}) * 2
    with bedrock_error(runtime, "ValidationException", 400) as raised:
        runtime.invoke_flow(flowIdentifier=flow_id, flowAliasIdentifier="TSTALIASID", inputs=two)
    assert "inputs" in raised.message
    assert recording_executor.records == []


@pytest.mark.parametrize("behaviour", [Behaviour(status=500), Behaviour(status=503)])
def test_start_flow_execution_executor_failure_is_424_and_not_retried(
    gateway: GatewayServer, agent: Any, recording_executor: RecordingExecutor, behaviour: Behaviour
) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    recording_executor.behaviours["1"] = behaviour
    # boto3's default retry policy: 5xx would be sent again, 424 is not.
    retrying = _client_with_default_retries(gateway)
    with bedrock_error(retrying, "DependencyFailedException", 424) as raised:
        _start(retrying, flow_id, alias_id)
    assert "version 1" in raised.message
    assert len(recording_executor.records) == 1


def _client_with_default_retries(gateway: GatewayServer) -> Any:
    return boto3.client(
        "bedrock-agent-runtime",
        endpoint_url=gateway.url,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"mode": "standard"}),
    )


@pytest.mark.parametrize("store_kind", GATEWAY_STORES)
def test_unreachable_executor(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
) -> None:
    upstream = f"http://127.0.0.1:{free_port()}/flows/{{flow}}/versions/{{version}}/executions"
    with cf.custom_gateway(
        request, bg_loop, recording_executor, store_kind, upstream=upstream
    ) as gateway:
        agent, runtime = agent_client(gateway), _client_with_default_retries(gateway)
        flow_id = create_flow(agent, "f1", versions=1)
        alias_id = create_alias(agent, flow_id, "prod", "1")
        with bedrock_error(runtime, "DependencyFailedException", 424):
            _start(runtime, flow_id, alias_id)
        resp = runtime.invoke_flow(
            flowIdentifier=flow_id, flowAliasIdentifier=alias_id, inputs=inputs({})
        )
        with pytest.raises(EventStreamError) as info:
            list(resp["responseStream"])
        assert info.value.response["Error"]["Code"] == "dependencyFailedException"


# -- metrics --------------------------------------------------------------------------------------


def test_bedrock_executions_share_the_cloudflow_metrics(
    gateway: GatewayServer, agent: Any, runtime: Any, recording_executor: RecordingExecutor
) -> None:
    alibaba = cf.client_for(gateway)
    flow_id = create_flow(agent, "f1", versions=1)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    for _ in range(4):
        invoke(runtime, flow_id, alias_id)
    for _ in range(2):
        _start(runtime, flow_id, alias_id)
    for _ in range(3):
        cf.start(alibaba, "f1", "prod", "{}")
    invoke(runtime, flow_id, "TSTALIASID")
    recording_executor.behaviours["1"] = Behaviour(status=500)
    with pytest.raises(EventStreamError):
        list(
            runtime.invoke_flow(
                flowIdentifier=flow_id, flowAliasIdentifier=alias_id, inputs=inputs({})
            )["responseStream"]
        )

    scraped = cf.scrape(gateway)
    labels = {"flow": "f1", "alias": "prod", "version": "1"}
    # One series per (flow name, alias name, version), whichever API started the execution.
    assert cf.value(scraped, EXECUTIONS, outcome="success", **labels) == 9
    assert cf.value(scraped, EXECUTIONS, outcome="error", **labels) == 1
    draft = {"flow": "f1", "alias": "TSTALIASID", "version": "DRAFT"}
    assert cf.value(scraped, EXECUTIONS, outcome="success", **draft) == 1
    assert len(recording_executor.records) == 11
    assert cf.value(scraped, API_REQUESTS, dialect="bedrock", action="InvokeFlow", code="200") == 6
    assert (
        cf.value(scraped, API_REQUESTS, dialect="bedrock", action="StartFlowExecution", code="200")
        == 2
    )
    assert cf.value(scraped, API_REQUESTS, dialect="bedrock", action="CreateFlowAlias", code="201")


def test_sticky_routing_key(
    agent: Any, gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    """flow-router extension, as for CloudFlow: X-Routing-Key picks the version stably."""
    alibaba = cf.client_for(gateway)
    cf.create_flow(alibaba, "f1", versions=2)
    cf.create_alias(alibaba, "f1", "prod", ("1", 50), ("2", 50))
    flow_id = alibaba.describe_flow(models.DescribeFlowRequest(name="f1")).body.id
    (summary,) = agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]
    runtime = runtime_client(gateway)

    def add_key(request: Any, **_: Any) -> None:
        request.headers["X-Routing-Key"] = "customer-42"

    runtime.meta.events.register("before-sign.bedrock-agent-runtime.*", add_key)
    seen = {invoke(runtime, flow_id, summary["id"]).version for _ in range(20)}
    assert len(seen) == 1
