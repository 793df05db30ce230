"""Fuzzing what reaches the request head and the response head (issue 10).

* Header values with bytes outside UTF-8, on every header the gateway reads
  (``X-Routing-Key``, ``Host``, ``Authorization``, the signing headers), unsigned
  and against a gateway with ``--credentials``: the answer is the dialect's 4xx (or a
  2xx for a routing key, which is hashed as bytes), never a 5xx or a dropped
  connection.
* CR/LF (and other control characters), percent-encoded so they reach the gateway,
  in every value that could end up in a response header: execution names (CloudFlow
  ``ExecutionName``, Bedrock ``executionId`` / ``flowExecutionName``, path labels),
  ``Qualifier``, flow names. No answer may carry a header the request injected.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.config import Config
from tests.auth.signing import AKID, CREDENTIALS
from tests.fuzz.harness import Answer, RawClient, Seed, Target, check_common, fuzz_settings
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port
from tests.plugin import open_store

pytestmark = pytest.mark.slow

INJECTED = "X-Injected"
# Bytes a header value may carry on the wire (no CR, LF or NUL: those end or break the
# head before any handler runs), with the high half that is not UTF-8 on its own.
_HEADER_BYTES = st.binary(min_size=1, max_size=40).map(
    lambda b: bytes(c for c in b if c not in (0, 10, 13)) or b"\xff"
)
_NON_UTF8 = st.tuples(_HEADER_BYTES, st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])).map(
    lambda t: t[0] + t[1]
)
_INJECTION = st.sampled_from(["\r\n", "\n", "\r", "\x00", "\x0b", "\x7f"]).map(
    lambda sep: f"1{sep}{INJECTED}: yes"
)
_NAME_TAILS = st.one_of(_INJECTION, st.text(min_size=1, max_size=30))


@pytest.fixture
def signed_target(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor, request: pytest.FixtureRequest
) -> Iterator[Target]:
    recording_executor.reset()
    config = Config(
        port=free_port(),
        upstream=recording_executor.template,
        random_seed=20261201,
        credentials=dict(CREDENTIALS),
    )
    store = open_store("memory", request)
    server = GatewayServer(config, store=store)
    bg_loop.run(server.start())
    client = RawClient(server.port)
    try:
        yield Target(bg_loop, server, store, client)
    finally:
        client.close()
        bg_loop.run(server.stop())
        bg_loop.run(store.close())


def _assert_clean(answer: Answer) -> None:
    check_common(answer)
    assert answer.header(INJECTED) is None, f"a request injected a response header: {answer}"
    for value in answer.headers.values():
        assert "\r" not in value and "\n" not in value, answer


def _start_target() -> str:
    return "/?Action=StartExecution&FlowName=f1&Qualifier=prod"


@given(value=_NON_UTF8, header=st.sampled_from(["X-Routing-Key", "X-Other", "User-Agent"]))
@fuzz_settings(60)
def test_non_utf8_header_values_unsigned(memory_target: Target, value: bytes, header: str) -> None:
    target = memory_target
    if target.seed is None:
        Seed(target).ensure()
    answer = target.client.send("POST", _start_target(), b"", [(header, value)])
    _assert_clean(answer)
    if not answer.malformed:
        assert answer.status == 200, answer  # any bytes are a routing key
    b1 = target.seed.ids("b1", None) if target.seed else ""
    path = f"/flows/{b1}/aliases/TSTALIASID/executions/e1"
    _assert_clean(target.client.send("GET", path, b"", [(header, value)]))


@given(
    value=_NON_UTF8,
    header=st.sampled_from(
        ["Host", "X-Amz-Date", "X-Amz-Content-Sha256", "x-acs-date", "x-acs-signature-nonce"]
    ),
    scheme=st.sampled_from(["AWS4-HMAC-SHA256", "ACS3-HMAC-SHA256"]),
)
@fuzz_settings(60)
def test_non_utf8_signed_header_values(
    signed_target: Target, value: bytes, header: str, scheme: str
) -> None:
    """Before the fix a known key id plus such a byte in a signed header was a 500."""
    day = time.strftime("%Y%m%d", time.gmtime())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    signed = ["host", "x-amz-date", header.lower()]
    if scheme.startswith("AWS4"):
        auth = (
            f"{scheme} Credential={AKID}/{day}/us-east-1/bedrock/aws4_request, "
            f"SignedHeaders={';'.join(sorted(set(signed)))}, Signature={'0' * 64}"
        )
        method, path = "GET", "/flows/"
    else:
        auth = (
            f"{scheme} Credential={AKID},SignedHeaders=host;x-acs-date;{header.lower()},"
            f"Signature={'0' * 64}"
        )
        method, path = "POST", "/?Action=ListFlows"
    headers: list[tuple[str | bytes, str | bytes]] = [
        ("Authorization", auth),
        ("X-Amz-Date", stamp),
        ("x-acs-date", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        ("x-acs-action", "ListFlows"),
    ]
    if header == "Host":
        answer = signed_target.client.send(method, path, b"", [*headers, ("X-Host-Too", value)])
        _assert_clean(answer)
    headers = [(k, v) for k, v in headers if str(k).lower() != header.lower()]
    answer = signed_target.client.send(method, path, b"", [*headers, (header, value)])
    _assert_clean(answer)
    if not answer.malformed:
        assert 400 <= answer.status < 500, answer


@given(tail=_NAME_TAILS, where=st.sampled_from(["describe", "start", "qualifier", "flow"]))
@fuzz_settings(60)
def test_control_characters_never_reach_a_cloudflow_response_header(
    memory_target: Target, recording_executor: RecordingExecutor, tail: str, where: str
) -> None:
    target = memory_target
    if target.seed is None:
        Seed(target).ensure()
    forged = "0" * 32 + "." + tail + ".prod"
    # An executor that answers for the forged name (the reference executor could be
    # made to, with an unsigned POST under that 'version'), so a decoded 'version'
    # would reach X-Flow-Version if the gateway let it.
    recording_executor.records.append(
        {"execution": forged, "path_version": tail, "version": tail, "input": 1}
    )
    if where == "describe":
        answer = target.cloudflow("DescribeExecution", FlowName="f1", ExecutionName=forged)
    elif where == "start":
        answer = target.cloudflow("StartExecution", FlowName="f1", ExecutionName=tail)
    elif where == "qualifier":
        answer = target.cloudflow("StartExecution", FlowName="f1", Qualifier=tail)
    else:
        answer = target.cloudflow("StartExecution", FlowName=tail, Qualifier="prod")
    _assert_clean(answer)


@given(tail=_NAME_TAILS, where=st.sampled_from(["invoke", "start", "get", "stop"]))
@fuzz_settings(60)
def test_control_characters_never_reach_a_bedrock_response_header(
    memory_target: Target, tail: str, where: str
) -> None:
    target = memory_target
    seed = target.seed or Seed(target)
    seed.ensure()
    flow, alias = seed.ids("b1", None), seed.ids("b1", "live")
    inputs = [
        {
            "nodeName": "FlowInputNode",
            "nodeOutputName": "document",
            "content": {"document": {"q": 1}},
        }
    ]
    if where == "invoke":
        answer = target.bedrock(
            "POST", f"/flows/{flow}/aliases/{alias}", {"inputs": inputs, "executionId": tail}
        )
    elif where == "start":
        body = {"inputs": inputs, "flowExecutionName": tail}
        answer = target.bedrock("POST", f"/flows/{flow}/aliases/{alias}/executions", body)
    else:
        name = quote("0" * 32 + "." + tail + ".live", safe="")
        path = f"/flows/{flow}/aliases/{alias}/executions/{name}"
        answer = (
            target.bedrock("GET", path)
            if where == "get"
            else target.bedrock("POST", path + "/stop")
        )
    _assert_clean(answer)


def test_the_signed_target_refuses_unsigned_requests(signed_target: Target) -> None:
    """The signed fixture really checks signatures (else the fuzz above proves nothing)."""
    answer = signed_target.client.send("GET", "/flows/")
    assert answer.status == 403, answer
