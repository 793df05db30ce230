"""Executor faults against a real executor process: typed errors, in time, never twice.

The executor is ``tests/fault_executor.py`` in its own process, which logs every
request it receives (the log survives SIGKILL) and misbehaves per version as
told. The gateway is a real app on 127.0.0.1 (memory store) driven over HTTP
with the CloudFlow wire format. Every test checks the executor's log: each
execution the gateway sent arrived exactly once, and the ones the gateway
refused (overloaded, circuit open) never arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router import errors
from router.breaker import VersionLimits
from router.config import Config
from router.dialects import bedrock, cloudflow
from router.forward import Timeouts
from router.store.memory import MemoryStore
from tests.harness import GatewayServer, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 1.0  # the gateway's --timeout in these tests
SLACK_S = 0.75  # scheduling on a loaded CI machine


class FaultExecutor:
    """``python -m tests.fault_executor`` as a process this test can kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "executor.log"
        self.behaviours = directory / "behaviours.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.set({})

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/flows/{{flow}}/versions/{{version}}/executions"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fault_executor", "--port", str(self.port),
             "--log", str(self.log), "--behaviours", str(self.behaviours)],
            cwd=ROOT,
        )  # fmt: skip
        wait_for_port(self.port)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

    def set(self, table: dict[str, str]) -> None:
        staged = self.behaviours.with_suffix(".tmp")
        staged.write_text(json.dumps(table))
        os.replace(staged, self.behaviours)  # the executor never reads half a file

    def seen(self) -> list[tuple[str, str, int]]:
        """(flow/version, execution, in flight for that version) per request received."""
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            key, name, inflight = line.split(" ")
            rows.append((key, name, int(inflight)))
        return rows

    def names(self) -> Counter[str]:
        return Counter(name for _, name, _ in self.seen())

    async def wait_seen(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.seen()) < count:
            assert time.monotonic() < deadline, f"executor saw {len(self.seen())} of {count}"
            await asyncio.sleep(0.02)


@pytest.fixture
def executor_process(tmp_path: Path) -> Iterator[FaultExecutor]:
    process = FaultExecutor(tmp_path)
    process.start()
    yield process
    process.stop()


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    elapsed: float

    @property
    def code(self) -> str:
        return str(self.body.get("Code", ""))


class Gateway:
    def __init__(self, server: GatewayServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def call(self, action: str, **params: Any) -> Answer:
        form = {
            k: json.dumps(v) if isinstance(v, list | dict) else str(v)
            for k, v in params.items()
            if v is not None
        }
        started = time.monotonic()
        async with self.session.post(
            f"{self.server.url}/",
            params={"Action": action, "Format": "json", "Version": "2019-03-15"},
            data=form,
        ) as resp:
            body = await resp.json(content_type=None)
        return Answer(resp.status, body, time.monotonic() - started)

    async def setup(self, flow: str = "f", versions: int = 2) -> None:
        ok(await self.call("CreateFlow", Name=flow, Definition="version: v1", Type="FDL"))
        for _ in range(versions):
            ok(await self.call("PublishFlowVersion", FlowName=flow))
        routing = [{"Version": "1", "Weight": 100}]
        ok(await self.call("CreateFlowAlias", FlowName=flow, Name="prod",
                           RoutingConfigurations=routing))  # fmt: skip

    async def execute(self, qualifier: str, name: str, flow: str = "f") -> Answer:
        return await self.call(
            "StartExecution", FlowName=flow, Qualifier=qualifier, ExecutionName=name, Input="{}"
        )

    async def metric(self, name: str, **labels: str) -> float:
        async with self.session.get(f"{self.server.url}/metrics") as resp:
            text = await resp.text()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


def ok(answer: Answer) -> Answer:
    assert answer.status == 200, answer
    return answer


@contextlib.asynccontextmanager
async def gateway(upstream: str, **config: Any) -> AsyncIterator[Gateway]:
    config.setdefault("timeouts", Timeouts(connect_s=TIMEOUT_S, total_s=TIMEOUT_S))
    server = GatewayServer(Config(port=free_port(), upstream=upstream, **config), MemoryStore())
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            yield Gateway(server, session)
    finally:
        await server.stop()


# -- each fault: a typed error within the timeout, the execution sent once ---------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        ("status 500", 502, "ExecutorFailed"),
        ("status 503", 502, "ExecutorFailed"),
        ("status 302", 502, "ExecutorFailed"),
        ("not-json", 502, "ExecutorFailed"),
        ("garbage", 502, "ExecutorFailed"),
        ("close", 502, "ExecutorFailed"),
        ("reset", 502, "ExecutorFailed"),
        ("hang", 504, "ExecutorTimeout"),
        (f"slow {TIMEOUT_S * 3}", 504, "ExecutorTimeout"),
        (f"slow {TIMEOUT_S / 4}", 200, ""),
    ],
)
async def test_fault_is_typed_in_time_and_sent_once(
    executor_process: FaultExecutor, behaviour: str, status: int, code: str
) -> None:
    executor_process.set({"f/1": behaviour})
    async with gateway(executor_process.template) as gw:
        await gw.setup()
        for i in range(3):  # on fresh and on pooled connections alike
            answer = await gw.execute("prod", f"e{i}")
            assert (answer.status, answer.code) == (status, code), answer
            assert answer.elapsed < TIMEOUT_S + SLACK_S
            if status != 200:
                assert "version 1" in answer.body["Message"]
                assert "Traceback" not in answer.body["Message"]
        ok(await gw.execute("2", "other"))  # the other version is unaffected
    assert executor_process.names() == Counter({"e0": 1, "e1": 1, "e2": 1, "other": 1})


async def test_connection_refused_is_typed_and_fast(tmp_path: Path) -> None:
    dead = FaultExecutor(tmp_path)  # never started: nothing listens on its port
    async with gateway(dead.template) as gw:
        await gw.setup()
        answer = await gw.execute("prod", "e1")
        assert (answer.status, answer.code) == (502, "ExecutorUnavailable")
        assert answer.elapsed < SLACK_S


async def test_executor_killed_mid_request(executor_process: FaultExecutor) -> None:
    """SIGKILL with 20 executions in flight: each fails at once, typed, none is resent;
    then the port refuses; a restarted executor serves again."""
    executor_process.set({"f/1": "slow 30"})
    no_breaker = VersionLimits(breaker_failures=0)  # 20 failures at once would open it
    async with gateway(
        executor_process.template,
        timeouts=Timeouts(connect_s=1, total_s=30),
        version_limits=no_breaker,
    ) as gw:
        await gw.setup()
        inflight = [asyncio.create_task(gw.execute("prod", f"e{i}")) for i in range(20)]
        await executor_process.wait_seen(20)
        killed_at = time.monotonic()
        executor_process.kill()
        answers = await asyncio.gather(*inflight)
        assert time.monotonic() - killed_at < SLACK_S  # not the 30 s timeout
        assert {(a.status, a.code) for a in answers} == {(502, "ExecutorFailed")}
        assert all("closed the connection" in a.body["Message"] for a in answers)

        refused = await gw.execute("prod", "after-kill")
        assert (refused.status, refused.code) == (502, "ExecutorUnavailable")

        executor_process.set({})
        executor_process.start()
        ok(await gw.execute("prod", "restarted"))
    names = executor_process.names()
    assert names == Counter({**{f"e{i}": 1 for i in range(20)}, "restarted": 1})


# -- per-version in-flight limit ---------------------------------------------------------------


async def test_a_slow_version_does_not_starve_the_other(executor_process: FaultExecutor) -> None:
    executor_process.set({"f/1": "hang", "f/2": "ok"})
    limits = VersionLimits(max_inflight=4, breaker_failures=0)
    async with gateway(executor_process.template, version_limits=limits) as gw:
        await gw.setup()
        names = [f"slow{i}" for i in range(12)]
        flood = [asyncio.create_task(gw.execute("1", name)) for name in names]
        await executor_process.wait_seen(4)
        for i in range(20):  # meanwhile the other version answers as fast as ever
            answer = ok(await gw.execute("2", f"fast{i}"))
            assert answer.elapsed < 0.25, answer
        answers = await asyncio.gather(*flood)
        overloaded = [
            name
            for name, a in zip(names, answers, strict=True)
            if "max-inflight-per-version" in a.body["Message"]
        ]
        assert overloaded, "some executions must have waited for a slot until the deadline"
        assert {(a.status, a.code) for a in answers} == {(504, "ExecutorTimeout")}
        assert all(a.elapsed < TIMEOUT_S + SLACK_S for a in answers)
        rejected = await gw.metric(
            "flow_router_executor_rejected_total", flow="f", version="1", reason="overloaded"
        )
        assert rejected == len(overloaded)
    seen = executor_process.seen()
    assert max(inflight for key, _, inflight in seen if key == "f/1") <= 4
    seen_names = executor_process.names()
    assert all(count == 1 for count in seen_names.values())
    assert not set(overloaded) & set(seen_names)  # refused ones were never sent


async def test_no_limit_with_zero(executor_process: FaultExecutor) -> None:
    executor_process.set({"f/1": "slow 0.3"})
    limits = VersionLimits(max_inflight=0, breaker_failures=0)
    async with gateway(executor_process.template, version_limits=limits) as gw:
        await gw.setup()
        answers = await asyncio.gather(*(gw.execute("1", f"e{i}") for i in range(30)))
        assert all(a.status == 200 for a in answers)
    assert max(inflight for _, _, inflight in executor_process.seen()) == 30


# -- circuit breaker ---------------------------------------------------------------------------


async def test_circuit_opens_fails_fast_and_closes_after_a_good_probe(
    executor_process: FaultExecutor,
) -> None:
    executor_process.set({"f/1": "status 500"})
    limits = VersionLimits(breaker_failures=3, breaker_reset_s=0.5)
    async with gateway(executor_process.template, version_limits=limits) as gw:
        await gw.setup()
        for i in range(3):
            answer = await gw.execute("prod", f"fail{i}")
            assert (answer.status, answer.code) == (502, "ExecutorFailed")
        assert await gw.metric("flow_router_circuit_open", flow="f", version="1") == 1

        fast = await gw.execute("prod", "refused")
        assert (fast.status, fast.code) == (502, "ExecutorUnavailable")
        assert "circuit is open" in fast.body["Message"]
        assert fast.elapsed < 0.25
        ok(await gw.execute("2", "other-version"))  # its own circuit, closed

        executor_process.set({"f/1": "slow 0.3"})  # healthy again, a little slow
        # The reset period passing in a real gateway is what is tested here (the
        # breaker's own timing is tested on given times in test_breaker.py).
        await asyncio.sleep(0.6)
        probe = asyncio.create_task(gw.execute("prod", "probe"))
        await executor_process.wait_seen(5)  # fail0-2, other-version, probe
        during = await gw.execute("prod", "during-probe")
        assert (during.status, during.code) == (502, "ExecutorUnavailable")
        ok(await probe)
        assert await gw.metric("flow_router_circuit_open", flow="f", version="1") == 0
        ok(await gw.execute("prod", "closed-again"))
        rejected = await gw.metric(
            "flow_router_executor_rejected_total", flow="f", version="1", reason="circuit_open"
        )
        assert rejected == 2
    assert executor_process.names() == Counter(
        ["fail0", "fail1", "fail2", "other-version", "probe", "closed-again"]
    )


async def test_a_failed_probe_opens_the_circuit_again(executor_process: FaultExecutor) -> None:
    executor_process.set({"f/1": "reset"})
    limits = VersionLimits(breaker_failures=2, breaker_reset_s=0.4)
    async with gateway(executor_process.template, version_limits=limits) as gw:
        await gw.setup()
        for i in range(2):
            assert (await gw.execute("prod", f"fail{i}")).code == "ExecutorFailed"
        assert (await gw.execute("prod", "fast1")).code == "ExecutorUnavailable"
        await asyncio.sleep(0.5)  # the reset period passing is the thing under test
        assert (await gw.execute("prod", "probe")).code == "ExecutorFailed"  # sent, failed
        again = await gw.execute("prod", "fast2")  # open again at once, no new streak needed
        assert (again.code, again.elapsed < 0.25) == ("ExecutorUnavailable", True)
        assert await gw.metric("flow_router_circuit_open", flow="f", version="1") == 1
    assert executor_process.names() == Counter(["fail0", "fail1", "probe"])


async def test_answers_in_4xx_do_not_open_the_circuit(executor_process: FaultExecutor) -> None:
    executor_process.set({"f/1": "status 404"})
    limits = VersionLimits(breaker_failures=2)
    async with gateway(executor_process.template, version_limits=limits) as gw:
        await gw.setup()
        for i in range(5):
            assert (await gw.execute("prod", f"e{i}")).code == "ExecutorFailed"
    assert len(executor_process.names()) == 5


async def test_breaker_off_with_zero(executor_process: FaultExecutor) -> None:
    executor_process.set({"f/1": "status 500"})
    async with gateway(
        executor_process.template, version_limits=VersionLimits(breaker_failures=0)
    ) as gw:
        await gw.setup()
        for i in range(30):
            assert (await gw.execute("prod", f"e{i}")).code == "ExecutorFailed"
    assert len(executor_process.names()) == 30


def test_rejections_map_to_each_dialects_executor_errors() -> None:
    """Overloaded and circuit-open are kinds of the errors both dialects already map."""
    overloaded = errors.ExecutorOverloaded("busy", "1")
    circuit = errors.CircuitOpen("open", "1")
    assert cloudflow.error_response(overloaded, "r").status == 504
    assert cloudflow.error_response(circuit, "r").status == 502
    for error in (overloaded, circuit):
        assert bedrock.exceptions.lookup(error) == (424, "DependencyFailedException")
        assert bedrock.exceptions.lookup(error, runtime=True)[1] == "DependencyFailedException"
