"""Regression tests from the adversarial pass (issue 10, bugs 2-4 and the integer concern).

Each goes through a real socket to a real gateway, on the memory store and on a
real redis-server, with raw bytes where a client library would refuse to send them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

from alibabacloud_fnf20190315 import models

from tests.dialects.bedrock_client import agent_client
from tests.dialects.cloudflow_client import (
    assert_raw_error,
    client_for,
    create_alias,
    create_flow,
    raw_call,
    start,
)
from tests.harness import BackgroundLoop, Behaviour, GatewayServer, RecordingExecutor


def raw_request(gateway: GatewayServer, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send ``head`` (request line and headers, CRLF separated, no blank line) and
    ``body``; answer (status, header block, body). A dropped connection fails here."""
    request = head + b"\r\nContent-Length: " + str(len(body)).encode()
    request += b"\r\nConnection: close\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    assert raw, "the gateway closed the connection without answering"
    headers, _, payload = raw.partition(b"\r\n\r\n")
    return int(headers.split()[1]), headers, payload


def cloudflow_start(gateway: GatewayServer, routing_key: bytes) -> tuple[int, bytes, bytes]:
    query = urlencode({"Action": "StartExecution", "FlowName": "hostile", "Qualifier": "prod"})
    head = b"POST /?" + query.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1"
    head += b"\r\nContent-Type: application/x-www-form-urlencoded"
    return raw_request(gateway, head + b"\r\nX-Routing-Key: " + routing_key)


def version_of(headers: bytes) -> str:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-flow-version":
            return value.strip().decode()
    raise AssertionError(f"no X-Flow-Version in {headers!r}")


def test_a_routing_key_outside_utf8_is_hashed_as_bytes(gateway: GatewayServer) -> None:
    """Was a 500 (``key.encode()`` on a lone surrogate); now the raw bytes are the key."""
    client = client_for(gateway)
    create_flow(client, "hostile", versions=2)
    create_alias(client, "hostile", "prod", ("1", 50), ("2", 50))
    seen = set()
    for key in (b"\xff", b"\xfe\xff caf\xe9", b"\xc3\x28"):
        answers = [cloudflow_start(gateway, key) for _ in range(5)]
        assert [status for status, _, _ in answers] == [200] * 5, answers[0]
        versions = {version_of(headers) for _, headers, _ in answers}
        assert len(versions) == 1, f"key {key!r} moved between versions: {versions}"
        seen |= versions
    # Bedrock InvokeFlow reads the same header the same way.
    agent = agent_client(gateway)
    flow = next(f for f in agent.list_flows()["flowSummaries"] if f["name"] == "hostile")
    alias = next(
        a
        for a in agent.list_flow_aliases(flowIdentifier=flow["id"])["flowAliasSummaries"]
        if a["name"] == "prod"
    )
    body = json.dumps(
        {
            "inputs": [
                {
                    "nodeName": "FlowInputNode",
                    "nodeOutputName": "document",
                    "content": {"document": {"n": 1}},
                }
            ]
        }
    ).encode()
    head = f"POST /flows/{flow['id']}/aliases/{alias['id']} HTTP/1.1\r\nHost: 127.0.0.1"
    head += "\r\nContent-Type: application/json"
    status, headers, _ = raw_request(gateway, head.encode() + b"\r\nX-Routing-Key: \xff", body)
    assert status == 200
    assert version_of(headers) == version_of(cloudflow_start(gateway, b"\xff")[1])


FORGED = "0" * 32 + ".1\r\nX-Evil: yes.x"


def test_a_forged_generated_name_is_not_found_not_a_dropped_connection(
    gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    """Its 'version' went into X-Flow-Version; aiohttp refused the header and the
    connection was dropped with no answer at all. It takes an executor that answers
    for that name: the reference executor did, after an unsigned POST to /_executor
    under that 'version'; the recording executor is given the same record here."""
    client = client_for(gateway)
    create_flow(client, "hostile", versions=1)
    forged_version = FORGED.split(".")[1]
    recording_executor.records.append(
        {"execution": FORGED, "path_version": forged_version, "version": forged_version, "input": 1}
    )
    for name in (FORGED, "0" * 32 + ".1/../2.prod", "A" * 32 + ".1.prod", "0" * 32 + ".1.a b"):
        answer = raw_call(
            gateway, "DescribeExecution", {"FlowName": "hostile", "ExecutionName": name}
        )
        assert_raw_error(answer, 404, "ExecutionNotExists")
        assert "X-Evil" not in answer.headers
    # The same bytes through Bedrock's GetFlowExecution path.
    agent = agent_client(gateway)
    flow = next(f for f in agent.list_flows()["flowSummaries"] if f["name"] == "hostile")
    path = f"/flows/{flow['id']}/aliases/TSTALIASID/executions/{quote(FORGED, safe='')}"
    status, headers, _ = raw_request(gateway, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1".encode())
    assert status in (400, 404) and b"x-evil" not in headers.lower()


def test_an_execution_that_ran_is_answered_even_if_its_flow_was_deleted_meanwhile(
    gateway: GatewayServer, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    """All 20 callers got 404 FlowNotExists although the executor ran each one: the
    definition was read after the executor answered and its FlowNotFound got through."""
    client = client_for(gateway)
    create_flow(client, "doomed", versions=1)
    create_alias(client, "doomed", "prod", ("1", 100))
    gate, arrived = asyncio.Event(), asyncio.Event()

    def on_arrival() -> None:
        if len(recording_executor.records) == 20:
            arrived.set()

    recording_executor.behaviours["1"] = Behaviour(gate=gate, on_arrival=on_arrival)
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(start, client, "doomed", "prod", f'{{"i": {i}}}') for i in range(20)]
        bg_loop.run(arrived.wait(), timeout=20)  # all 20 are in flight at the executor
        client.delete_flow(models.DeleteFlowRequest(name="doomed"))
        bg_loop.loop.call_soon_threadsafe(gate.set)
        answers = [f.result(timeout=20) for f in futures]
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.headers["x-flow-version"] for a in answers} == {"1"}
    assert sorted(json.loads(a.body.input)["i"] for a in answers) == list(range(20))


def test_integers_outside_64_bits_are_refused_not_rounded(
    gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    """orjson reads them as floats: 2**64 reached the executor as 1.8446744073709552e19."""
    client = client_for(gateway)
    create_flow(client, "numbers", versions=1)
    create_alias(client, "numbers", "prod", ("1", 100))
    for text in ('{"n": 18446744073709551616}', "[-9223372036854775809]", "1" + "0" * 30):
        answer = raw_call(
            gateway, "StartExecution", {"FlowName": "numbers", "Qualifier": "prod", "Input": text}
        )
        assert_raw_error(answer, 400, "InvalidArgument")
        assert "Input" in answer.body["Message"]
    assert recording_executor.records == []
    # The edges of the exact range, and floats and digits in strings, pass unchanged.
    text = '{"max": 18446744073709551615, "min": -9223372036854775808, "f": 1e300, "s": "1%s"}'
    text %= "0" * 30
    answer = raw_call(
        gateway, "StartExecution", {"FlowName": "numbers", "Qualifier": "prod", "Input": text}
    )
    assert answer.status == 200, answer.body
    assert recording_executor.records[-1]["input"] == json.loads(text)
