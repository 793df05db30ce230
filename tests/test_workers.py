"""``flow-router serve --workers N``: one port served by N processes, metrics summed.

The supervisor is started as a real subprocess on a private redis-server and
forwards to a RecordingExecutor in this process. Each request is sent on a
new connection, so the kernel's SO_REUSEPORT hashing spreads them over the
workers; ``--access-log`` lines carry the serving worker's pid, which tells
the tests which worker answered.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.harness import RecordingExecutor, free_port
from tests.processes import (
    Connection,
    GatewayProcess,
    Processes,
    alive,
    children,
    execute,
    ok,
    setup_flow,
    worker_pids,
)
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.network  # flow-router serve processes throughout

WORKERS = 2
EXECUTIONS = "flow_router_executions_total"
WEIGHT = "flow_router_alias_weight"
# "… INFO aiohttp.access[<pid>] 127.0.0.1 [date] "POST /?Action=… HTTP/1.1" 200 …"
ACCESS_LINE = re.compile(r'aiohttp\.access\[(\d+)\] .*?"(?:GET|POST) (\S+) HTTP')


def served_by(gateway: GatewayProcess, path_prefix: str) -> Counter[int]:
    """Requests per worker pid whose path starts with ``path_prefix``, from the access log."""
    return Counter(
        int(m[1]) for m in ACCESS_LINE.finditer(gateway.log()) if m[2].startswith(path_prefix)
    )


def start_workers(
    processes: Processes, redis_server: RedisServer, recording_executor: RecordingExecutor
) -> GatewayProcess:
    gateway = processes.start(
        *("--workers", str(WORKERS), "--store", redis_server.url),
        *("--key-prefix", f"wk{uuid.uuid4().hex[:8]}", "--upstream", recording_executor.template),
        "--access-log",
    )
    # /healthz answers as soon as one worker listens; wait until every one has answered
    conn = Connection(gateway.port, fresh=True)
    deadline = time.monotonic() + 30
    for _ in range(3000):
        if len(served_by(gateway, "/healthz")) == WORKERS or time.monotonic() > deadline:
            break
        assert conn.get("/healthz")[0] == 200
        time.sleep(0.01)
    assert len(served_by(gateway, "/healthz")) == WORKERS, gateway.log()[-2000:]
    assert set(served_by(gateway, "/healthz")) == set(worker_pids(gateway.pid))
    return gateway


def scrape(conn: Connection) -> list[Sample]:
    status, body = conn.get("/metrics")
    assert status == 200
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def executions_by_version(scraped: list[Sample], flow: str, alias: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for s in scraped:
        if s.name == EXECUTIONS and s.labels["flow"] == flow and s.labels["alias"] == alias:
            assert s.labels["outcome"] == "success" or s.value == 0, s
            if s.labels["outcome"] == "success":
                found[s.labels["version"]] = s.value
    return found


def test_metrics_are_summed_over_workers(
    processes: Processes, redis_server: RedisServer, recording_executor: RecordingExecutor
) -> None:
    gateway = start_workers(processes, redis_server, recording_executor)
    conn = Connection(gateway.port, fresh=True)  # a new connection (and worker) per request
    setup_flow(conn, "orders", 2, "prod", (1, 30), (2, 70))

    n = 400
    answered = Counter(ok(execute(conn, "orders", "prod")).version for _ in range(n))
    seen = recording_executor.versions()
    assert answered == seen
    assert sum(seen.values()) == n and set(seen) == {"1", "2"}
    per_worker = served_by(gateway, "/?Action=StartExecution")
    print(f"\n{n} executions over {WORKERS} workers: {sorted(per_worker.values())}")
    assert len(per_worker) == WORKERS  # all on one worker: probability ~2**-400

    # every scrape, whichever worker answers it, shows the sum over all workers
    scrapes = 0
    while len(served_by(gateway, "/metrics")) < WORKERS or scrapes < 4:
        assert scrapes < 60, served_by(gateway, "/metrics")
        scraped = scrape(conn)
        scrapes += 1
        assert executions_by_version(scraped, "orders", "prod") == {
            v: float(c) for v, c in seen.items()
        }
        weights = {
            s.labels["version"]: s.value
            for s in scraped
            if s.name == WEIGHT and s.labels["flow"] == "orders" and s.labels["alias"] == "prod"
        }
        assert weights == pytest.approx({"1": 0.3, "2": 0.7})
    print(f"/metrics scrapes per worker: {dict(served_by(gateway, '/metrics'))}")


def test_a_dead_worker_is_replaced_and_its_counts_kept(
    processes: Processes, redis_server: RedisServer, recording_executor: RecordingExecutor
) -> None:
    gateway = start_workers(processes, redis_server, recording_executor)
    conn = Connection(gateway.port, fresh=True)
    setup_flow(conn, "orders", 1, "prod", (1, 1))
    for _ in range(50):
        ok(execute(conn, "orders", "prod"))
    victim = worker_pids(gateway.pid)[0]
    assert served_by(gateway, "/?Action=StartExecution")[victim] > 0  # it has counts to lose
    os.kill(victim, signal.SIGKILL)  # a worker of the gateway this test started

    deadline = time.monotonic() + 15
    while True:
        workers = worker_pids(gateway.pid)
        if len(workers) == WORKERS and victim not in workers:
            break
        assert time.monotonic() < deadline, workers
        time.sleep(0.05)
    assert "restarting" in gateway.log()
    for _ in range(50):
        ok(execute(conn, "orders", "prod"))
    for _ in range(4):
        assert executions_by_version(scrape(conn), "orders", "prod") == {"1": 100.0}


def test_sigterm_stops_the_supervisor_and_every_worker(
    processes: Processes, redis_server: RedisServer, recording_executor: RecordingExecutor
) -> None:
    gateway = start_workers(processes, redis_server, recording_executor)
    workers = worker_pids(gateway.pid)
    family = children(gateway.pid)  # the workers and multiprocessing's resource tracker
    assert len(workers) == WORKERS and set(workers) <= set(family)

    t0 = time.monotonic()
    gateway.signal(signal.SIGTERM)
    code = gateway.wait(timeout=15)
    elapsed = time.monotonic() - t0
    print(f"\nSIGTERM to exit: {elapsed:.2f} s")
    assert code == 0, gateway.log()[-2000:]
    assert elapsed < 10
    deadline = time.monotonic() + 5
    while [pid for pid in family if alive(pid)]:
        assert time.monotonic() < deadline, [(pid, alive(pid)) for pid in family]
        time.sleep(0.05)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", gateway.port), 0.5):
        pass


@pytest.mark.parametrize(
    ("store", "upstream", "message"),
    [
        ("memory://", True, "memory store lives in one process"),
        ("redis", False, "give --upstream"),
    ],
    ids=["memory-store", "no-upstream"],
)
def test_workers_refused_where_processes_cannot_share_state(
    store: str,
    upstream: bool,
    message: str,
    request: pytest.FixtureRequest,
    recording_executor: RecordingExecutor,
) -> None:
    if store == "redis":
        store = request.getfixturevalue("redis_server").url
    port = free_port()
    command = [sys.executable, "-m", "router", "serve", "--workers", "2", "--store", store]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if upstream:
        command += ["--upstream", recording_executor.template]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        pass


def test_redis_without_upstream_serves_with_one_worker_and_says_why(
    processes: Processes, redis_server: RedisServer
) -> None:
    """The plainest Redis trial: no --workers, no --upstream (the built-in executor)."""
    gateway = processes.start("--store", redis_server.url, "--key-prefix", f"w1{uuid.uuid4().hex}")
    assert worker_pids(gateway.pid) == []  # this process serves, no supervisor
    assert "serving with 1 worker: the built-in reference executor" in gateway.log()
    assert "(store redis://127.0.0.1:" in gateway.log() and ", 1 worker)" in gateway.log()
    conn = Connection(gateway.port)
    setup_flow(conn, "orders", 1, "prod", (1, 100))
    assert ok(execute(conn, "orders", "prod")).version == "1"
