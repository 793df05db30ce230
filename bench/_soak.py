"""The soak's parts: its processes, the ledger of writes, the load, the final check.

See :mod:`bench.soak` for what the soak does and how to run it.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
DEFINITION = "version: v1\ntype: flow\nsteps:\n  - type: pass\n    name: soak\n"
QUERY = {"Format": "json", "Version": "2019-03-15"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# -- processes ------------------------------------------------------------------------------


class Processes:
    """Everything the soak started, each in its own session; stopped by pid at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.redis_port = free_port()

    def spawn(self, name: str, command: Sequence[str]) -> subprocess.Popen[bytes]:
        with open(self.directory / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO, start_new_session=True,
            )  # fmt: skip
        self.started[name] = process
        return process

    def start_redis(self) -> None:
        self.spawn("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "",
        ])  # fmt: skip
        wait_port(self.redis_port, 20)

    def stop(self, name: str, signum: int = signal.SIGTERM, timeout: float = 15) -> None:
        process = self.started.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.started):
            self.stop(name)


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


# -- bookkeeping ------------------------------------------------------------------------------


@dataclass
class Value:
    """A field written over time: the last acknowledged value and later maybe-values."""

    acked: Any = None
    maybe: list[Any] = field(default_factory=list)

    def attempt_failed(self, value: Any, definite: bool) -> None:
        if not definite:
            self.maybe.append(value)

    def ack(self, value: Any) -> None:
        self.acked, self.maybe = value, []

    def accepts(self, found: Any) -> bool:
        return found == self.acked or found in self.maybe


@dataclass
class FlowRecord:
    owner: int
    versions: set[str] = field(default_factory=set)
    description: Value = field(default_factory=lambda: Value(""))
    routes: Value | None = None  # set once CreateFlowAlias was acknowledged


@dataclass
class Soak:
    gateways: list[str]
    session: aiohttp.ClientSession
    started: float = field(default_factory=time.monotonic)
    stopping: bool = False
    redis_down: bool = False
    recovering_until: float = 0.0
    flows: dict[str, FlowRecord] = field(default_factory=dict)
    ready: list[str] = field(default_factory=list)  # flows with an acknowledged alias
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_phase: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    acked: Counter[str] = field(default_factory=Counter)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    restart: asyncio.Future[None] | None = None  # the Redis restart under way, if any
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def phase(self) -> str:
        if self.redis_down:
            return "redis down"
        return "redis restarted <5s ago" if time.monotonic() < self.recovering_until else "normal"

    async def call(self, op: str, action: str, **params: Any) -> tuple[str, dict[str, Any]]:
        """One CloudFlow action on a random gateway: (kind, body); kind is "ok",
        "<status> <Code>" or "conn <exception>"."""
        phase = self.phase()
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        url = random.choice(self.gateways) + "/"
        try:
            async with self.session.post(url, params={"Action": action, **QUERY}, data=form) as r:
                body = await r.json(content_type=None)
                kind = "ok" if r.status == 200 else f"{r.status} {body.get('Code')}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            kind, body = f"conn {type(e).__name__}", {}
        self.outcomes[op][kind] += 1
        if op != "verify":
            self.by_phase[phase][kind] += 1
        return kind, body if isinstance(body, dict) else {}


def definite(kind: str) -> bool:
    """A 4xx answer means nothing was written; a 5xx or no answer may have written."""
    return kind[:1] == "4"


# -- load ---------------------------------------------------------------------------------------


async def paced(soak: Soak, rate: float) -> None:
    """Sleep so that a loop calling this runs ``rate`` times a second."""
    await asyncio.sleep(random.expovariate(rate) if rate > 0 else 1)


async def writer(soak: Soak, me: int, rate: float, max_flows: int) -> None:
    serial = 0
    while not soak.stopping:
        await paced(soak, rate)
        mine = [n for n in soak.ready if soak.flows[n].owner == me]
        if not mine or (len(mine) < max_flows and random.random() < 0.3):
            serial += 1
            await create_flow(soak, me, f"soak-{me}-{serial}")
            continue
        name = random.choice(mine)
        record = soak.flows[name]
        pick = random.random()
        if pick < 0.7:
            w = random.randint(1, 99)
            routes = [{"Version": "1", "Weight": w}, {"Version": "2", "Weight": 100 - w}]
            assert record.routes is not None
            kind, _ = await soak.call(
                "update-alias", "UpdateFlowAlias", FlowName=name, Name="prod",
                RoutingConfigurations=routes,
            )  # fmt: skip
            if kind == "ok":
                record.routes.ack(routes)
                soak.acked["UpdateFlowAlias"] += 1
            else:
                record.routes.attempt_failed(routes, definite(kind))
        elif pick < 0.9:
            text = f"rev {random.randint(0, 10**6)}"
            kind, _ = await soak.call("update-flow", "UpdateFlow", Name=name, Description=text)
            if kind == "ok":
                record.description.ack(text)
                soak.acked["UpdateFlow"] += 1
            else:
                record.description.attempt_failed(text, definite(kind))
        elif len(record.versions) < 5:
            kind, body = await soak.call("publish", "PublishFlowVersion", FlowName=name)
            if kind == "ok":
                record.versions.add(str(body["Version"]))
                soak.acked["PublishFlowVersion"] += 1


async def create_flow(soak: Soak, me: int, name: str) -> None:
    kind, _ = await soak.call(
        "create-flow", "CreateFlow", Name=name, Definition=DEFINITION, Type="FDL"
    )
    if kind != "ok":
        return
    record = soak.flows[name] = FlowRecord(owner=me)
    soak.acked["CreateFlow"] += 1
    for _ in range(2):
        kind, body = await soak.call("publish", "PublishFlowVersion", FlowName=name)
        if kind != "ok":
            return
        record.versions.add(str(body["Version"]))
        soak.acked["PublishFlowVersion"] += 1
    routes = [{"Version": "1", "Weight": 50}, {"Version": "2", "Weight": 50}]
    kind, _ = await soak.call(
        "create-alias", "CreateFlowAlias", FlowName=name, Name="prod",
        RoutingConfigurations=routes,
    )  # fmt: skip
    if kind == "ok":
        record.routes = Value(routes)
        soak.acked["CreateFlowAlias"] += 1
        soak.ready.append(name)


async def executions(soak: Soak, rate: float) -> None:
    while not soak.stopping:
        await paced(soak, rate)
        if soak.ready:
            name = random.choice(soak.ready)
            await soak.call("execute", "StartExecution", FlowName=name, Qualifier="prod",
                            Input='{"soak": true}')  # fmt: skip


# -- the end: check every acknowledged write through the API ----------------------------------


async def checked_call(soak: Soak, action: str, **params: Any) -> tuple[str, dict[str, Any]]:
    for _ in range(20):  # the store may still be reconnecting: retry 5xx, not 4xx
        kind, body = await soak.call("verify", action, **params)
        if kind == "ok" or definite(kind):
            return kind, body
        await asyncio.sleep(0.5)
    return kind, body


async def verify(soak: Soak) -> tuple[int, list[str]]:
    checks, lost = 0, []
    for name, record in soak.flows.items():
        checks += 1
        kind, flow = await checked_call(soak, "DescribeFlow", Name=name)
        if kind != "ok":
            lost.append(f"flow {name}: DescribeFlow -> {kind}")
            continue
        checks += 1
        if not record.description.accepts(flow.get("Description")):
            lost.append(f"flow {name}: description {flow.get('Description')!r}")
        kind, listed = await checked_call(soak, "ListFlowVersions", FlowName=name, Limit="100")
        found = {str(v["Version"]) for v in listed.get("FlowVersions", [])}
        for version in sorted(record.versions):
            checks += 1
            if version not in found:
                lost.append(f"flow {name}: version {version} missing ({kind})")
        if record.routes is not None:
            checks += 1
            kind, alias = await checked_call(soak, "DescribeFlowAlias", FlowName=name, Name="prod")
            routes = alias.get("Alias", {}).get("RoutingConfigurations")
            routes = [{"Version": str(r["Version"]), "Weight": r["Weight"]} for r in routes or []]
            if not record.routes.accepts(routes):
                lost.append(f"flow {name}: alias routes {routes} ({kind})")
    return checks, lost
