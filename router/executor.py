"""The reference executor: echoes its input, remembers what it ran. A demo aid.

It is what ``flow-router serve`` forwards to when no ``--upstream`` is given
(mounted under ``/_executor`` in the gateway's own app) and what
``flow-router executor`` serves alone. It implements the executor protocol in
``router/forward.py`` and is the model for a real one.

Modes (``flow-router executor --mode``): ``sync`` (the default, and the only
mode of the one built into ``serve``) answers the final status in the start
reply; ``async`` answers ``Running`` and finishes the run ``--duration-ms``
later. ``--fail VERSION=RATIO`` makes that share of a version's runs end
``Failed`` (drawn from a generator seeded with ``--seed`` and the version).
A run's end is POSTed to the start body's ``"callback"`` URL when it has one
(retried a few times). ``POST .../{name}/stop`` stops a Running run
(``Aborted``; 404 unknown, 409 already final). Bodies carry ``startedAt`` and,
once final, ``stoppedAt``, in milliseconds since the epoch: with ``stoppedAt`` a
polled run ends in the gateway's record when it really ended.

It authenticates nobody: anyone who reaches it can run "executions" and
rewrite the records a DescribeExecution reads. So when the API requires
signatures (``--credentials``) the gateway does not mount it on the API port
but serves it apart on an ephemeral port of 127.0.0.1 (:class:`Apart`), which
only this machine can reach. What it remembers is bounded: at most
:data:`MAX_RECORDS` executions and :data:`MAX_BYTES` bytes of them, the oldest
forgotten first; each request body is capped like the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp import web

log = logging.getLogger("flow_router.executor")

PREFIX = "/_executor"
TEMPLATE_PATH = PREFIX + "/flows/{flow}/versions/{version}/executions"
MAX_RECORDS = 10_000
MAX_BYTES = 64 * 1024**2
MAX_REQUEST_BYTES = 1024**2  # of the stand-alone executor (the gateway's: --max-body-bytes)

RunKey = tuple[str, str, str]  # flow, version, execution name


class RunLog:
    """The executions run, newest last, each kept as the JSON it was answered with.

    Bounded in count and in bytes: past either bound the oldest are forgotten,
    and a DescribeExecution of one is then a 404, as for a name never run. A
    record alone larger than ``max_bytes`` is answered but not kept.
    """

    def __init__(self, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES) -> None:
        if max_records < 1 or max_bytes < 1:
            raise ValueError("a run log keeps at least one record and one byte")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.bytes = 0
        self._runs: OrderedDict[RunKey, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, key: RunKey) -> bytes | None:
        return self._runs.get(key)

    def put(self, key: RunKey, record: bytes) -> None:
        replaced = self._runs.pop(key, None)
        if replaced is not None:
            self.bytes -= len(replaced)
        if len(record) > self.max_bytes:
            return
        self._runs[key] = record
        self.bytes += len(record)
        while len(self._runs) > self.max_records or self.bytes > self.max_bytes:
            self.bytes -= len(self._runs.popitem(last=False)[1])


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the executor runs executions (``flow-router executor`` options)."""

    mode: Literal["sync", "async"] = "sync"
    duration_ms: int = 1000  # async: a run ends this long after its start
    failures: Mapping[str, float] = field(default_factory=dict)  # version -> share Failed
    seed: int = 0


CALLBACK_ATTEMPTS = 4  # a callback refused or unreachable is sent again after 0.2, 0.4, 0.8 s


class Runner:
    """What ``async`` mode needs beyond the run log: timers, draws, callbacks."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self._rngs: dict[str, random.Random] = {}
        self.timers: dict[RunKey, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None

    def outcome(self, version: str) -> str:
        ratio = self.behaviour.failures.get(version, 0.0)
        rng = self._rngs.get(version)
        if rng is None:
            rng = self._rngs[version] = random.Random(f"{self.behaviour.seed}:{version}")
        return "Failed" if rng.random() < ratio else "Succeeded"

    def call_back(self, url: str, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._post(url, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, url: str, body: bytes) -> None:
        delay = 0.2
        for _ in range(CALLBACK_ATTEMPTS):
            if self.session is None:
                return
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as answer:
                    if answer.status < 300 or answer.status in (400, 403):
                        return  # accepted, or refused for good
            await asyncio.sleep(delay)
            delay *= 2

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        for timer in self.timers.values():
            timer.cancel()
        for task in list(self.tasks):
            task.cancel()
        await self.session.close()
        self.session = None


RUNS = web.AppKey("runs", RunLog)
RUNNER = web.AppKey("runner", Runner)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _final(run: dict[str, Any], status: str, at: int, **extra: Any) -> bytes:
    """The run's final body; ``stoppedAt`` (ms since the epoch) is when it ended."""
    run.update(status=status, stoppedAt=at, **extra)
    if status == "Succeeded":
        run["output"] = run["input"]
    return orjson.dumps(run)


async def _start(request: web.Request) -> web.Response:
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.json_response({"message": "body must be JSON"}, status=400)
    if not isinstance(payload, dict):
        return web.json_response({"message": "body must be a JSON object"}, status=400)
    flow = request.match_info["flow"]
    version = request.match_info["version"]
    name = str(payload.get("execution") or uuid.uuid4())
    runner = request.app[RUNNER]
    now = _now_ms()
    run = {
        "status": "Running",
        "input": payload.get("input"),
        "flow": flow,
        "version": version,
        "alias": payload.get("alias", ""),
        "execution": name,
        "startedAt": now,
    }
    outcome = runner.outcome(version)
    key = (flow, version, name)
    callback = payload.get("callback")
    if runner.behaviour.mode == "sync":
        record = _final(run, outcome, now, **_failure(outcome, version))
    elif len(runner.timers) >= MAX_RECORDS:  # bounded like the run log
        return web.json_response({"message": "too many runs in flight"}, status=503)
    else:
        record = orjson.dumps(run)

        def end() -> None:
            runner.timers.pop(key, None)
            if request.app[RUNS].get(key) is None:
                return  # forgotten (the run log is bounded)
            done = _final(run, outcome, _now_ms(), **_failure(outcome, version))
            request.app[RUNS].put(key, done)
            if isinstance(callback, str):
                runner.call_back(callback, done)

        delay = runner.behaviour.duration_ms / 1000
        runner.timers[key] = asyncio.get_running_loop().call_later(delay, end)
    request.app[RUNS].put(key, record)
    return web.Response(body=record, content_type="application/json")


def _failure(outcome: str, version: str) -> dict[str, str]:
    if outcome != "Failed":
        return {}
    return {"error": "Injected.Failure", "cause": f"version {version} fails on purpose (--fail)"}


async def _stop(request: web.Request) -> web.Response:
    info = request.match_info
    key = (info["flow"], info["version"], info["name"])
    raw = request.app[RUNS].get(key)
    if raw is None:
        return web.json_response({"message": "no such execution"}, status=404)
    run = orjson.loads(raw)
    if run.get("status") != "Running":
        return web.Response(body=raw, status=409, content_type="application/json")
    try:
        asked = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return web.json_response({"message": "body must be JSON"}, status=400)
    timer = request.app[RUNNER].timers.pop(key, None)
    if timer is not None:
        timer.cancel()
    extra = {k: v for k, v in asked.items() if k in ("error", "cause") and isinstance(v, str)}
    record = _final(run, "Aborted", _now_ms(), **extra)
    request.app[RUNS].put(key, record)
    return web.Response(body=record, content_type="application/json")


async def _describe(request: web.Request) -> web.Response:
    key = (request.match_info["flow"], request.match_info["version"], request.match_info["name"])
    record = request.app[RUNS].get(key)
    if record is None:
        return web.json_response({"message": "no such execution"}, status=404)
    return web.Response(body=record, content_type="application/json")


def add_routes(
    app: web.Application,
    prefix: str = PREFIX,
    runs: RunLog | None = None,
    behaviour: Behaviour | None = None,
) -> None:
    """Serve the executor under ``prefix``; request bodies are capped by the app's
    ``client_max_size`` (a 413 beyond it)."""
    app[RUNS] = runs if runs is not None else RunLog()
    runner = app[RUNNER] = Runner(behaviour or Behaviour())
    app.cleanup_ctx.append(runner.lifetime)
    base = prefix + "/flows/{flow}/versions/{version}/executions"
    app.router.add_post(base, _start)
    app.router.add_get(base + "/{name}", _describe)
    app.router.add_post(base + "/{name}/stop", _stop)


def upstream_for(host: str, port: int) -> str:
    """The ``--upstream`` template that reaches ``flow-router executor`` on host:port."""
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: this machine reaches it here
        host = "127.0.0.1"
    address = f"[{host}]" if ":" in host else host
    return f"http://{address}:{port}{TEMPLATE_PATH.removeprefix(PREFIX)}"


def make_executor_app(
    runs: RunLog | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    behaviour: Behaviour | None = None,
) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes)
    add_routes(app, prefix="", runs=runs, behaviour=behaviour)
    return app


class Apart:
    """The reference executor on its own 127.0.0.1 port, for a gateway whose API is signed.

    The port is bound at once, so :attr:`template` (the upstream the gateway
    forwards to) is known before the app starts; :meth:`serve` is the app's
    ``cleanup_ctx`` that serves it while the gateway runs.
    """

    def __init__(self, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.max_request_bytes = max_request_bytes
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/flows/{{flow}}/versions/{{version}}/executions"

    async def serve(self, app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(make_executor_app(max_request_bytes=self.max_request_bytes))
        await runner.setup()
        try:
            await web.SockSite(runner, self._sock).start()
            log.info(
                "the API is signed, the reference executor is not: it listens apart, "
                "on 127.0.0.1:%d only",
                self.port,
            )
            yield
        finally:
            await runner.cleanup()
            self._sock.close()
