"""An executor that speaks protocol v2 in full, for tests: the ground truth of outcomes.

In a test (same event loop)::

    executor = AsyncExecutor({"1": Behaviour(mode="async", duration_ms=None)}, seed=7)
    async with executor.serve() as template:   # http://127.0.0.1:P/flows/{flow}/...
        ...
        executor.finish("exec-1", "Succeeded")   # end a run the test controls
        await executor.wait_until(lambda: executor.final_count() == 10)

As a process (``GET /_stats`` answers the counters as JSON)::

    python -m tests.async_executor --port P --seed 7 \\
        --behaviours '{"*": {"mode": "async", "duration_ms": 50, "failure_ratio": 0.2}}'

Per version (``Behaviour``, keyed by version, ``"*"`` for the others):

* ``mode``: ``sync`` answers the final status in the start reply; ``v1`` does
  too but, like a v1 executor, leaves ``status`` out when it succeeded;
  ``async`` answers ``Running`` and ends the run ``duration_ms`` later, or
  only when the test calls :meth:`AsyncExecutor.finish` (``duration_ms=None``);
* ``failure_ratio``: the share of runs that end ``Failed``, drawn at start
  from a ``random.Random`` seeded with (seed, version), so a run of the same
  starts gives the same outcomes;
* ``callback_repeats``: how many times an asynchronous run POSTs its final
  body to the start body's ``"callback"`` URL (a repeat must be harmless);
* ``report_stop``: final bodies carry ``stoppedAt``, when the run ended.

Routes, under ``/flows/{flow}/versions/{version}/executions``: ``POST`` starts
(a second start of the same name is 409 and counted in ``duplicates``: the
gateway must never send an execution twice), ``GET /{name}`` describes
(counted per execution in ``polls``), ``POST /{name}/stop`` stops (404
unknown, 409 already final). :meth:`AsyncExecutor.forget` loses the running
ones, as a restart would. Counters: ``started[version]``,
``finals[(version, status)]``, ``stops[version]``, ``polls[name]``,
``callbacks_sent``/``callbacks_failed``, ``callback_answers`` (HTTP statuses),
``duplicates``, ``lost``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp import web

BASE = "/flows/{flow}/versions/{version}/executions"
FINAL = frozenset({"Succeeded", "Failed", "TimedOut", "Aborted"})


@dataclass(frozen=True)
class Behaviour:
    mode: Literal["sync", "async", "v1"] = "sync"
    duration_ms: int | None = 0  # async only; None: the run ends only by finish() or stop
    failure_ratio: float = 0.0
    callback_repeats: int = 1
    # stoppedAt in final bodies: True, the real end (ms); any other value but False
    # is sent as it is (a broken executor)
    report_stop: Any = False


@dataclass
class Run:
    flow: str
    version: str
    alias: str
    name: str
    input: Any
    planned: str  # the final status drawn at start
    callback: str | None
    status: str = "Running"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    report_stop: Any = False
    stopped_at: int | None = None  # ms since the epoch, once final

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "execution": self.name, "input": self.input}
        for name in ("output", "error", "cause"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.stopped_at is not None and self.report_stop is not False:
            body["stoppedAt"] = self.stopped_at if self.report_stop is True else self.report_stop
        return body


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class AsyncExecutor:
    def __init__(self, behaviours: Mapping[str, Behaviour] | None = None, seed: int = 0) -> None:
        self.behaviours = dict(behaviours or {})
        self.seed = seed
        self.runs: dict[tuple[str, str, str], Run] = {}
        self._by_name: dict[str, Run] = {}  # for finish(name): tests use unique names
        self._rngs: dict[str, random.Random] = {}
        self.started: Counter[str] = Counter()
        self.finals: Counter[tuple[str, str]] = Counter()
        self.stops: Counter[str] = Counter()
        self.polls: Counter[str] = Counter()
        self.duplicates = 0
        self.lost = 0  # runs dropped by forget()
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        self.callback_answers: Counter[int] = Counter()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.app = web.Application()
        self.app.router.add_post(BASE, self._start)
        self.app.router.add_get(BASE + "/{name}", self._describe)
        self.app.router.add_post(BASE + "/{name}/stop", self._stop)
        self.app.router.add_get("/_stats", self._stats)
        self.app.cleanup_ctx.append(self._lifetime)

    # -- what tests use --------------------------------------------------------------
    def behaviour(self, version: str) -> Behaviour:
        return self.behaviours.get(version, self.behaviours.get("*", Behaviour()))

    def final_count(self, version: str | None = None) -> int:
        return sum(n for (v, _), n in self.finals.items() if version in (None, v))

    def finish(
        self,
        name: str,
        status: str | None = None,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> bool:
        """End a running run (as planned when ``status`` is None); False if it was final."""
        run = self._by_name[name]
        if status is None:
            return self._complete(run, run.planned)
        return self._complete(run, status, output, error, cause)

    def forget(self) -> int:
        """Lose every run still Running, as a restart without state would: they are
        404 from now on and never end (not counted in ``finals``). Returns how many."""
        lost = [key for key, run in self.runs.items() if run.status not in FINAL]
        for key in lost:
            run = self.runs.pop(key)
            if run.timer is not None:
                run.timer.cancel()
            self._by_name.pop(run.name, None)
        self.lost += len(lost)
        self._changed()
        return len(lost)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; it is checked after every change."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        await future

    @contextlib.asynccontextmanager
    async def serve(self, port: int = 0) -> AsyncIterator[str]:
        """Serve on 127.0.0.1; yields the upstream template for the gateway."""
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{bound}{BASE}"
        finally:
            await runner.cleanup()

    def stats(self) -> dict[str, Any]:
        return {
            "started": dict(self.started),
            "finals": {f"{v}/{s}": n for (v, s), n in self.finals.items()},
            "stops": dict(self.stops),
            "polls": sum(self.polls.values()),
            "duplicates": self.duplicates,
            "lost": self.lost,
            "callbacksSent": self.callbacks_sent,
            "callbacksFailed": self.callbacks_failed,
        }

    # -- protocol ---------------------------------------------------------------------
    async def _start(self, request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json({"message": "body must be JSON"}, 400)
        if not isinstance(payload, dict):
            return _json({"message": "body must be a JSON object"}, 400)
        flow, version = request.match_info["flow"], request.match_info["version"]
        name = str(payload.get("execution") or uuid.uuid4())
        key = (flow, version, name)
        if key in self.runs:
            self.duplicates += 1
            self._changed()
            return _json({"message": f"execution {name} was already started"}, 409)
        behaviour = self.behaviour(version)
        rng = self._rngs.setdefault(version, random.Random(f"{self.seed}:{version}"))
        planned = "Failed" if rng.random() < behaviour.failure_ratio else "Succeeded"
        callback = payload.get("callback")
        run = Run(
            flow, version, str(payload.get("alias", "")), name, payload.get("input"), planned,
            callback if isinstance(callback, str) else None, report_stop=behaviour.report_stop,
        )  # fmt: skip
        self.runs[key] = self._by_name[name] = run
        self.started[version] += 1
        if behaviour.mode != "async":
            self._complete(run, planned, notify=False)
            body = run.body()
            if behaviour.mode == "v1" and run.status == "Succeeded":
                del body["status"]
            self._changed()
            return _json(body)
        if behaviour.duration_ms is not None:
            loop = asyncio.get_running_loop()
            run.timer = loop.call_later(behaviour.duration_ms / 1000, self._complete, run, planned)
        self._changed()
        return _json(run.body())

    async def _describe(self, request: web.Request) -> web.Response:
        run = self._run(request)
        if run is None:
            return _json({"message": "no such execution"}, 404)
        self.polls[run.name] += 1
        return _json(run.body())

    async def _stop(self, request: web.Request) -> web.Response:
        run = self._run(request)
        if run is None:
            return _json({"message": "no such execution"}, 404)
        if run.status in FINAL:
            return _json(run.body(), 409)
        try:
            payload = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return _json({"message": "body must be JSON"}, 400)
        if not isinstance(payload, dict):
            return _json({"message": "body must be a JSON object"}, 400)
        error, cause = payload.get("error"), payload.get("cause")
        self._complete(run, "Aborted", None, error, cause)
        self.stops[run.version] += 1
        self._changed()
        return _json(run.body())

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    # -- internals --------------------------------------------------------------------
    def _run(self, request: web.Request) -> Run | None:
        info = request.match_info
        return self.runs.get((info["flow"], info["version"], info["name"]))

    def _complete(
        self,
        run: Run,
        status: str,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
        notify: bool = True,
    ) -> bool:
        if run.status in FINAL:
            return False
        if status not in FINAL:
            raise ValueError(f"{status} is not a final status")
        if run.timer is not None:
            run.timer.cancel()
        run.status = status
        run.stopped_at = int(time.time() * 1000)
        if status == "Succeeded":
            echo = {"ranOn": run.version, "input": run.input}
            run.output = output if output is not None else echo
        elif status == "Failed" and error is None:
            run.error, run.cause = "Injected.Failure", f"version {run.version} failed on purpose"
        else:
            run.output, run.error, run.cause = output, error, cause
        self.finals[(run.version, status)] += 1
        repeats = self.behaviour(run.version).callback_repeats
        if run.callback and self.behaviour(run.version).mode == "async" and repeats > 0:
            task = asyncio.get_running_loop().create_task(self._call_back(run, repeats))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if notify:
            self._changed()
        return True

    async def _call_back(self, run: Run, repeats: int) -> None:
        assert run.callback is not None and self._session is not None
        body = orjson.dumps(run.body())
        for _ in range(repeats):
            try:
                async with self._session.post(
                    run.callback, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    self.callback_answers[response.status] += 1
                    self.callbacks_sent += 1
            except (aiohttp.ClientError, OSError):
                self.callbacks_failed += 1
            self._changed()

    def _changed(self) -> None:
        waiting = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            else:
                waiting.append((predicate, future))
        self._waiters = waiting

    async def _lifetime(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        for run in self.runs.values():
            if run.timer is not None:
                run.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--behaviours", default="{}", help="JSON: version -> Behaviour fields")
    args = parser.parse_args()
    table = orjson.loads(args.behaviours)
    executor = AsyncExecutor({v: Behaviour(**b) for v, b in table.items()}, seed=args.seed)
    web.run_app(executor.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
