"""Real servers for tests: a gateway and a recording executor on 127.0.0.1.

The cloud SDKs are synchronous (requests, urllib3), so the servers run on an
event loop in a background thread and tests call the SDKs from the main
thread, exactly as a user's program would talk to a running gateway.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web

from router.app import GATEWAY, make_app
from router.config import Config
from router.service import Gateway
from router.store.base import Store

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BackgroundLoop:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class Behaviour:
    """How the recording executor answers for one version."""

    status: int = 200
    delay_s: float = 0.0
    gate: asyncio.Event | None = None  # hold each execution until it is set (in the loop)
    on_arrival: Callable[[], None] | None = None  # called (in the loop) as each one arrives
    body: bytes | None = None  # raw body to send instead of the JSON answer


@dataclass
class RecordingExecutor:
    """Records every execution it receives; answers like the reference executor."""

    records: list[dict[str, Any]] = field(default_factory=list)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/flows/{{flow}}/versions/{{version}}/executions"

    def reset(self) -> None:
        self.records.clear()
        self.behaviours.clear()

    def versions(self) -> Counter[str]:
        return Counter(r["version"] for r in self.records)

    async def _start_execution(self, request: web.Request) -> web.Response:
        payload = orjson.loads(await request.read())
        version = request.match_info["version"]
        record = {
            "path_flow": request.match_info["flow"],
            "path_version": version,
            **payload,
        }
        self.records.append(record)
        behaviour = self.behaviours.get(version, Behaviour())
        if behaviour.on_arrival is not None:
            behaviour.on_arrival()
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.gate is not None:
            await behaviour.gate.wait()
        if behaviour.body is not None:
            return web.Response(status=behaviour.status, body=behaviour.body)
        answer = {"status": "Succeeded", "output": {"ranOn": version, "input": payload["input"]}}
        return web.json_response(answer, status=behaviour.status)

    async def _describe(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for record in reversed(self.records):
            if (
                record["execution"] == name
                and record["path_version"] == request.match_info["version"]
            ):
                out = {"ranOn": record["version"], "input": record["input"]}
                return web.json_response(
                    {"status": "Succeeded", "output": out, "input": record["input"]}
                )
        return web.json_response({"message": "unknown execution"}, status=404)

    async def start(self) -> None:
        app = web.Application()
        base = "/flows/{flow}/versions/{version}/executions"
        app.router.add_post(base, self._start_execution)
        app.router.add_get(base + "/{name}", self._describe)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class GatewayServer:
    """A real gateway app listening on 127.0.0.1, built by ``make_app``."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.app = make_app(self.config, store=self.store)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def gateway(self) -> Gateway:
        assert self.app is not None, "start() first"
        return self.app[GATEWAY]

    async def flushed(self, rounds: int = 2000) -> None:
        """Wait until the journal has written every execution record appended so far
        (unnamed executions reach the store one flush window after they start)."""
        journal = self.gateway.executions.journal
        for _ in range(rounds):
            if not journal.pending:
                return
            await asyncio.sleep(0.005)
        raise TimeoutError(f"the journal still holds {journal.pending} records")


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class CountingStore:
    """Forwards every call to a real store and counts them by name (it replaces no
    behaviour: tests use it to see how often the code under test reaches the store)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return counted
