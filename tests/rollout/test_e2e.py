"""Rollouts end to end: two gateway processes on one real Redis, an executor process
whose failure ratio is set per version (tests/async_executor.py), traffic through
the CloudFlow SDK, the rollout through the /v1 API and the ``flow-router rollout``
CLI. The gateways' own drivers (one at a time, by the lease) make every decision.

Timers are real but short (``minStepSeconds`` of 1-3 s); the tests wait on the
rollout's phase, polled, never on a sleep of a guessed length.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

from tests.async_executor import BASE
from tests.auth.signing import AKID, SECRET, send
from tests.dialects import cloudflow_client as cf
from tests.harness import free_port
from tests.processes import Connection, GatewayProcess, Processes, execute
from tests.redis_servers import RedisServer
from tests.rollout.v1_helpers import path, signed_call

ROOT = Path(__file__).resolve().parent.parent.parent
FLOW, ALIAS = "orders", "live"
BEFORE = (("1", 70), ("2", 30))  # the alias's routes before every rollout here
WAIT_S = 120.0  # bound of every wait on the rollout (a loaded 2-core machine)


@dataclass
class Deployment:
    gateways: list[GatewayProcess]
    clients: list[Client]
    sent: int = 0

    def api(self, method: str, target: str, body: Any = None, gateway: int = 0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        answer = send(method, self.gateways[gateway].url + target, headers, data)
        assert answer.status in (200, 201), (answer.status, answer.body)
        return json.loads(answer.body)

    def status(self, gateway: int = 0) -> dict[str, Any]:
        status: dict[str, Any] = self.api("GET", path(FLOW, ALIAS), gateway=gateway)
        return status

    def cli(self, action: str, *args: str, gateway: int = 0) -> dict[str, Any]:
        command = [sys.executable, "-m", "router", "rollout", action, FLOW, ALIAS, *args]
        command += ["--endpoint", self.gateways[gateway].url, "--json"]
        done = subprocess.run(command, capture_output=True, timeout=60, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr.decode()
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def routes(self, gateway: int = 0) -> list[tuple[str, int]]:
        request = models.DescribeFlowAliasRequest(flow_name=FLOW, name=ALIAS)
        described = self.clients[gateway].describe_flow_alias(request)
        return cf.routing(described.body.alias.routing_configurations)

    def traffic(self, n: int) -> None:
        """``n`` executions through the alias, spread over the live gateways."""
        live = [c for g, c in zip(self.gateways, self.clients, strict=True) if g.running()]
        for i in range(n):
            cf.start(live[i % len(live)], FLOW, ALIAS, "{}")
            self.sent += 1

    def until(
        self, done: Callable[[dict[str, Any]], bool], per_round: int = 0, gateway: int = 0
    ) -> dict[str, Any]:
        """Send ``per_round`` executions per round until the status satisfies ``done``."""
        deadline = time.monotonic() + WAIT_S
        while True:
            status = self.status(gateway)
            if done(status):
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"rollout stuck: {status}")
            if per_round:
                self.traffic(per_round)
            else:
                time.sleep(0.1)


def _executor(port: int, behaviours: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.async_executor", "--port", str(port)]
    command += ["--seed", "7", "--behaviours", json.dumps(behaviours)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"executor did not start: {log.read_text()}") from None
            time.sleep(0.05)


@pytest.fixture
def deploy(
    processes: Processes, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., Deployment]]:
    """``deploy(baseline failure ratio, canary failure ratio, *serve flags)``: versions 1
    and 2 are the baseline (70/30), version 3 the canary."""
    executors: list[subprocess.Popen[bytes]] = []

    def start(
        baseline: float, canary: float, *extra: str, runs: dict[str, Any] | None = None
    ) -> Deployment:
        """``runs``: version -> more Behaviour fields (an asynchronous run's length)."""
        port = free_port()
        sync = {"mode": "sync"}
        behaviours = {
            "1": {**sync, "failure_ratio": baseline},
            "2": {**sync, "failure_ratio": baseline},
            "3": {**sync, "failure_ratio": canary},
        }
        for version, fields in (runs or {}).items():
            behaviours[version].update(fields)
        executors.append(_executor(port, behaviours, tmp_path / "executor.log"))
        prefix = f"e2e{os.getpid()}x{port}"
        args = ["--store", redis_server.url, "--key-prefix", prefix, "--workers", "1"]
        args += ["--upstream", f"http://127.0.0.1:{port}{BASE}", *extra]
        gateways = processes.start_many([args, args])
        clients = [
            Client(
                SdkConfig(
                    access_key_id="AKIDEXAMPLE",
                    access_key_secret="secret",
                    endpoint=f"127.0.0.1:{g.port}",
                    protocol="http",
                    region_id="cn-hangzhou",
                )
            )
            for g in gateways
        ]
        cf.create_flow(clients[0], FLOW, 3)
        cf.create_alias(clients[0], FLOW, ALIAS, *BEFORE)
        return Deployment(gateways, clients)

    yield start
    for process in executors:
        process.terminate()
        process.wait(10)


def _metrics(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _phase(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status["phase"] in phases


def test_a_bad_canary_is_rolled_back_and_the_alias_is_exactly_as_before(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy(0.01, 0.6)
    started = d.cli(
        "start", "--target-version", "3", "--steps", "50", "--min-step-seconds", "600",
        "--min-samples", "1000",
    )  # fmt: skip
    assert (started["phase"], started["canaryWeight"]) == ("Progressing", 50)
    assert d.routes(1) == [("1", 35), ("2", 15), ("3", 50)]  # 70/30 of the other half
    canary = f'flow_router_alias_weight{{alias="{ALIAS}",flow="{FLOW}",version="3"}}'
    for gateway in d.gateways:  # every replica routes by the rollout's weights
        d.until(lambda _, g=gateway: canary in _metrics(g), per_round=2)
    final = d.until(_phase("RolledBack", "Succeeded", "Paused"), per_round=10)
    assert final["phase"] == "RolledBack", final
    assert final["message"].startswith("rolled back: canary failure ratio"), final["message"]
    assert final["evidence"] >= 100  # 1/alpha, the default alpha 0.01
    assert d.routes(0) == list(BEFORE) and d.routes(1) == list(BEFORE)
    # long before minSamples: the sequential rule, not the guardrail or a timeout
    assert final["counts"]["3"]["executions"] < 1000
    assert final["counts"]["3"]["failed"] > 0
    # in force on every replica: once its route cache has the restored alias (its
    # /metrics shows the weights it routes by), no execution goes to the canary
    for gateway in d.gateways:
        d.until(lambda _, g=gateway: canary not in _metrics(g), per_round=2)
        with Connection(gateway.port) as conn:
            versions = {execute(conn, FLOW, ALIAS).version for _ in range(30)}
        assert versions <= {"1", "2"}, versions


def test_a_slow_canary_is_rolled_back(deploy: Callable[..., Deployment]) -> None:
    # Every execution succeeds; the canary's take 0.6 s, the baseline's 10 ms. The
    # executor runs them asynchronously and says when each ended (stoppedAt), so the
    # gateways' polls (at 0.1, 0.3, 0.7 s ...) do not make the baseline look slow.
    fast = {"mode": "async", "duration_ms": 10, "report_stop": True}
    runs = {"1": fast, "2": fast, "3": {**fast, "duration_ms": 600}}
    d = deploy(0.0, 0.0, runs=runs)
    started = d.cli(
        "start", "--target-version", "3", "--steps", "50", "--min-step-seconds", "600",
        "--min-samples", "1000", "--slow-seconds", "0.3",
    )  # fmt: skip
    assert started["phase"] == "Progressing"
    final = d.until(_phase("RolledBack", "Succeeded", "Paused"), per_round=10)
    assert final["phase"] == "RolledBack", final
    assert final["message"].startswith("rolled back: canary failure ratio"), final["message"]
    assert d.routes(0) == list(BEFORE) and d.routes(1) == list(BEFORE)
    canary, base = final["counts"]["3"], [final["counts"].get(v, {}) for v in ("1", "2")]
    assert canary["slow"] == canary["failed"] > 0  # failed only by being slow
    assert canary["failed"] <= canary["executions"] < 1000
    assert all(c.get("slow", 0) == c.get("failed", 0) == 0 for c in base), final["counts"]


def test_a_healthy_canary_is_promoted(deploy: Callable[..., Deployment]) -> None:
    d = deploy(0.0, 0.0)
    body = {"targetVersion": "3", "stepWeights": [20, 50], "minStepSeconds": 1, "minSamples": 5}
    assert d.api("PUT", path(FLOW, ALIAS), body)["phase"] == "Progressing"
    final = d.until(_phase("Succeeded", "RolledBack", "Paused"), per_round=5, gateway=1)
    assert final["phase"] == "Succeeded", final
    assert d.routes(0) == [("3", 100)] and d.routes(1) == [("3", 100)]
    steps = [(h["phase"], h["step"], h["canaryWeight"]) for h in final["history"]]
    assert steps == [("Progressing", 1, 20), ("Progressing", 2, 50), ("Succeeded", 2, 100)]


def test_abort_restores_the_routes_at_once(deploy: Callable[..., Deployment]) -> None:
    d = deploy(0.0, 0.0)
    d.api("PUT", path(FLOW, ALIAS), {"targetVersion": "3", "stepWeights": [40]})
    assert d.routes(1) == [("1", 42), ("2", 18), ("3", 40)]
    aborted = d.cli("abort", gateway=1)
    assert (aborted["phase"], aborted["canaryWeight"]) == ("Aborted", 0)
    # the answer comes after the one write that restored the routes, read by any replica
    assert d.routes(0) == list(BEFORE) and d.routes(1) == list(BEFORE)
    assert d.status()["phase"] == "Aborted"  # stays readable


def test_require_approval_waits_until_promote(deploy: Callable[..., Deployment]) -> None:
    d = deploy(0.0, 0.0)
    body = {
        "targetVersion": "3", "stepWeights": [50], "minStepSeconds": 0, "minSamples": 5,
        "requireApproval": True,
    }  # fmt: skip
    d.api("PUT", path(FLOW, ALIAS), body)
    waiting = d.until(_phase("WaitingPromotion", "Succeeded", "RolledBack"), per_round=5)
    assert waiting["phase"] == "WaitingPromotion", waiting
    d.traffic(20)  # more passing traffic does not promote it
    assert d.status(1)["phase"] == "WaitingPromotion"
    assert d.routes(0) == [("1", 35), ("2", 15), ("3", 50)]
    promoted = d.cli("promote")
    assert promoted["phase"] == "Succeeded"
    assert d.routes(1) == [("3", 100)]


def test_no_traffic_pauses_and_never_rolls_back(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy(0.0, 1.0)
    body = {"targetVersion": "3", "stepWeights": [10], "minStepSeconds": 1, "maxStepSeconds": 2}
    d.api("PUT", path(FLOW, ALIAS), body)
    paused = d.until(_phase("Paused", "RolledBack", "Succeeded"))
    assert paused["phase"] == "Paused", paused
    assert paused["message"].startswith("paused: inconclusive"), paused["message"]
    assert paused["counts"] == {}
    assert d.routes(1) == [("1", 63), ("2", 27), ("3", 10)]  # still at its weight


def test_sigkill_of_the_driving_replica_mid_step(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy(0.0, 0.0)
    min_step = 3
    body = {
        "targetVersion": "3", "stepWeights": [20, 40, 60], "minStepSeconds": min_step,
        "minSamples": 3,
    }  # fmt: skip
    d.api("PUT", path(FLOW, ALIAS), body)
    d.until(lambda s: s["step"] == 2, per_round=5)  # the driver moved it: it is alive
    driving = [g for g in d.gateways if "lease taken" in g.log()]
    assert len(driving) == 1, [g.log() for g in d.gateways]
    killed = driving[0]
    killed.signal(signal.SIGKILL)
    killed.wait(10)
    survivor = d.gateways.index(next(g for g in d.gateways if g is not killed))
    final = d.until(_phase("Succeeded", "RolledBack", "Paused"), per_round=5, gateway=survivor)
    assert final["phase"] == "Succeeded", final
    assert "lease taken" in d.gateways[survivor].log()
    history = final["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 3]  # no step restarted or skipped
    for before, after in itertools.pairwise(history):
        # every step lasted at least minStepSeconds, by the persisted timestamps
        assert _at(after["at"]) - _at(before["at"]) >= min_step - 0.001, history


def test_unsigned_v1_requests_are_refused_when_credentials_are_set(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({AKID: SECRET}))
    d = deploy(0.0, 0.0, "--credentials", str(credentials))  # the SDK signs with AKID
    target = path(FLOW, ALIAS)
    body = {"targetVersion": "3"}
    for gateway in d.gateways:
        unsigned = send("PUT", gateway.url + target, {"Content-Type": "application/json"},
                        json.dumps(body).encode())  # fmt: skip
        assert unsigned.status == 403, unsigned.body
        assert json.loads(unsigned.body)["code"] == "MissingAuthenticationToken"
        assert send("GET", gateway.url + target, {}, None).status == 403
    assert d.routes(0) == list(BEFORE)  # nothing started
    started = signed_call(d.gateways[1], "PUT", target, body)
    assert started.status == 201, started.body
    aborted = d.cli(
        "abort", "--access-key-id", AKID, "--secret-access-key", SECRET, gateway=0
    )  # the CLI signs with the key it is given
    assert aborted["phase"] == "Aborted"
