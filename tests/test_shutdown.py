"""SIGTERM under load: stop accepting, finish what is in flight, exit 0, lose nothing.

``flow-router serve`` runs as a real process in front of a slow recording
executor (each execution takes a second). The test starts 50 executions on 50
connections, waits until the executor holds every one of them, sends SIGTERM,
and counts: every execution was answered 200 and reached the executor
exactly once, no connection was reset, the port refuses new connections soon
after the signal, and the process exits 0 within the drain time.
"""

from __future__ import annotations

import signal
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.harness import Behaviour, RecordingExecutor
from tests.processes import (
    Connection,
    GatewayProcess,
    Processes,
    execute,
    setup_flow,
)
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.network  # flow-router serve processes throughout

EXECUTIONS = 50
DELAY_S = 1.0  # how long the executor takes: long enough to be in flight at SIGTERM
DRAIN_S = 10.0


@pytest.fixture
def slow_executor(recording_executor: RecordingExecutor) -> RecordingExecutor:
    """The recording executor, taking DELAY_S over each execution of version 1."""
    recording_executor.behaviours["1"] = Behaviour(delay_s=DELAY_S)
    return recording_executor


def start_one(gateway: GatewayProcess, name: str) -> tuple[int, str]:
    """(HTTP status, Code or "") of one named execution on its own connection, or
    (0, exception name) if the connection failed."""
    try:
        with Connection(gateway.port, fresh=True, timeout=60) as conn:
            answer = execute(conn, "orders", "prod", name=name)
    except OSError as e:
        return 0, type(e).__name__
    return answer.status, "" if answer.status == 200 else str(answer.body.get("Code"))


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def sigterm_under_load(
    gateway: GatewayProcess, slow_executor: RecordingExecutor
) -> tuple[list[tuple[int, str]], float, float]:
    """Run EXECUTIONS executions, SIGTERM while all are at the executor.

    Returns each execution's answer, seconds from SIGTERM until the port refused
    connections, and seconds from SIGTERM until the process exited (code checked)."""
    with Connection(gateway.port) as conn:
        setup_flow(conn, "orders", 1, "prod", (1, 100))
    names = [f"e{i}" for i in range(EXECUTIONS)]
    with ThreadPoolExecutor(EXECUTIONS) as pool:
        running: list[Future[tuple[int, str]]] = [
            pool.submit(start_one, gateway, name) for name in names
        ]
        deadline = time.monotonic() + 30
        while len(slow_executor.records) < EXECUTIONS:
            assert time.monotonic() < deadline, f"{len(slow_executor.records)} reached the executor"
            time.sleep(0.01)
        assert not any(f.done() for f in running), "all must be in flight at SIGTERM"

        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        while not refused(gateway.port):
            assert time.monotonic() - signalled < 5, "still accepting connections"
            time.sleep(0.01)
        refused_after = time.monotonic() - signalled
        assert not any(f.done() for f in running), "the port closed before a single answer"

        answers = [f.result(timeout=60) for f in running]
    code = gateway.wait(timeout=DRAIN_S + 5)
    exited_after = time.monotonic() - signalled
    assert code == 0, gateway.log()[-3000:]
    assert refused(gateway.port)
    return answers, refused_after, exited_after


def test_sigterm_drains_in_flight_executions(
    processes: Processes, slow_executor: RecordingExecutor
) -> None:
    gateway = processes.start(
        *("--store", "memory://", "--workers", "1", "--upstream", slow_executor.template),
        *("--drain-timeout", str(DRAIN_S)),
    )
    answers, refused_after, exited_after = sigterm_under_load(gateway, slow_executor)

    assert Counter(answers) == Counter({(200, ""): EXECUTIONS})  # none reset, none failed
    assert Counter(r["execution"] for r in slow_executor.records) == Counter(
        {f"e{i}": 1 for i in range(EXECUTIONS)}
    )
    assert refused_after < DELAY_S  # the listener closed while executions were in flight
    assert exited_after < DELAY_S + 3
    assert "drained in" in gateway.log()


def test_drain_timeout_bounds_the_exit(
    processes: Processes, slow_executor: RecordingExecutor
) -> None:
    """Executions slower than --drain-timeout are cut off; the process still exits 0, in time."""
    slow_executor.behaviours["1"] = Behaviour(delay_s=4)
    gateway = processes.start(
        *("--store", "memory://", "--workers", "1", "--upstream", slow_executor.template),
        *("--drain-timeout", "1"),
    )
    with Connection(gateway.port) as conn:
        setup_flow(conn, "orders", 1, "prod", (1, 100))
    with ThreadPoolExecutor(5) as pool:
        running = [pool.submit(start_one, gateway, f"e{i}") for i in range(5)]
        deadline = time.monotonic() + 30
        while len(slow_executor.records) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        assert gateway.wait(timeout=15) == 0, gateway.log()[-3000:]
        exited_after = time.monotonic() - signalled
        answers = [f.result(timeout=30) for f in running]
    assert 1 <= exited_after < 5
    assert all(status != 200 for status, _ in answers)  # cut off, the client sees it
    assert Counter(r["execution"] for r in slow_executor.records) == Counter(
        {f"e{i}": 1 for i in range(5)}
    )


def test_sigterm_drains_every_worker(
    processes: Processes, slow_executor: RecordingExecutor, redis_server: RedisServer
) -> None:
    gateway = processes.start(
        *("--store", redis_server.url, "--key-prefix", f"sd{uuid.uuid4().hex[:8]}"),
        *("--workers", "2", "--upstream", slow_executor.template, "--drain-timeout", str(DRAIN_S)),
    )
    answers, _, exited_after = sigterm_under_load(gateway, slow_executor)

    assert Counter(answers) == Counter({(200, ""): EXECUTIONS})
    assert Counter(r["execution"] for r in slow_executor.records) == Counter(
        {f"e{i}": 1 for i in range(EXECUTIONS)}
    )
    assert exited_after < DELAY_S + 5
