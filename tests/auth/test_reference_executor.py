"""The built-in reference executor: a demo aid, kept off a signed API's port and bounded.

With credentials the gateway's API is signed and the reference executor is
not, so it must not answer on the API port: an unsigned POST there used to
overwrite the record a signed DescribeExecution then returned. What it keeps
is bounded in bytes as well as in count, through real sockets.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from aiohttp import web
from alibabacloud_fnf20190315 import models

from router.executor import RunLog, make_executor_app
from router.store.memory import MemoryStore
from tests.auth.signing import CREDENTIALS, send
from tests.auth.test_auth_sdk import cloudflow_client
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port


@pytest.fixture
def signed_builtin(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    """A signed gateway without --upstream: it forwards to its reference executor."""
    store = MemoryStore()
    server = start_gateway(
        bg_loop, store, recording_executor, upstream=None, credentials=CREDENTIALS
    )
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


def test_a_signed_api_port_does_not_serve_the_reference_executor(
    signed_builtin: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    client = cloudflow_client(signed_builtin)
    cf.create_flow(client, "orders", versions=1)
    assert cf.start(client, "orders", "1", '{"real": 1}', name="run-1").body.status == "Succeeded"
    assert recording_executor.records == []  # the built-in one ran it

    forged = json.dumps({"execution": "run-1", "input": {"forged": True}}).encode()
    path = "/_executor/flows/orders/versions/1/executions"
    headers = {"Content-Type": "application/json"}
    assert send("POST", signed_builtin.url + path, headers, forged).status == 404
    assert send("GET", signed_builtin.url + path + "/run-1").status == 404

    described = client.describe_execution(
        models.DescribeExecutionRequest(flow_name="orders", execution_name="run-1")
    )
    assert json.loads(described.body.input) == {"real": 1}
    assert json.loads(described.body.output) == {"real": 1}


# -- what it remembers is bounded -------------------------------------------------------------


def test_the_run_log_is_bounded_in_bytes_and_in_count() -> None:
    runs = RunLog(max_records=3, max_bytes=100)
    for i in range(3):
        runs.put(("f", "1", f"r{i}"), b"x" * 40)  # the third goes over 100 bytes
    assert (runs.get(("f", "1", "r0")), len(runs), runs.bytes) == (None, 2, 80)
    runs.put(("f", "1", "r1"), b"y" * 10)  # replaced: its old size is given back
    assert runs.bytes == 50
    runs.put(("f", "1", "r3"), b"z")
    runs.put(("f", "1", "r4"), b"z")
    assert len(runs) == 3 and runs.get(("f", "1", "r2")) is None  # the count bound
    runs.put(("f", "1", "big"), b"b" * 101)  # alone over the budget: answered, not kept
    assert runs.get(("f", "1", "big")) is None and runs.bytes <= 100


@pytest.fixture
def standalone(bg_loop: BackgroundLoop) -> Iterator[tuple[str, RunLog]]:
    """``flow-router executor``'s app on a real port, with a small byte budget."""
    runs = RunLog(max_bytes=450_000)
    runner = web.AppRunner(make_executor_app(runs, max_request_bytes=200_000))
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    bg_loop.run(start())
    yield f"http://127.0.0.1:{port}/flows/f/versions/1/executions", runs
    bg_loop.run(runner.cleanup())


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_the_stand_alone_executor_keeps_to_its_byte_budget(
    standalone: tuple[str, RunLog],
) -> None:
    url, runs = standalone
    for i in range(10):  # about 180 kB kept per run (input and output): 2 fit
        body = json.dumps({"execution": f"r{i}", "input": "x" * 90_000}).encode()
        assert _post(url, body) == 200
        assert runs.bytes <= 450_000
    assert len(runs) == 2
    assert send("GET", f"{url}/r0").status == 404
    kept = send("GET", f"{url}/r9")
    assert kept.status == 200 and json.loads(kept.body)["input"] == "x" * 90_000
    assert _post(url, json.dumps({"input": "y" * 200_001}).encode()) == 413  # one body's cap
