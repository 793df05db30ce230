"""Fixtures shared by every suite. Each section belongs to one area; add yours below."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from router.store.base import Store
from router.store.memory import MemoryStore

# -- real redis-server and the store fixtures ------------------------------------
#
# ``redis_server`` starts one redis-server per session on a free 127.0.0.1
# port (never the system Redis on 6379). ``store`` gives each test a fresh,
# empty store of each kind in STORE_KINDS; ``store_backend`` opens more
# handles, each with its own connections, on that same store's data.

STORE_KINDS = ("memory", "fakeredis", "redis")
REQUIRE_REDIS_ENV = "FLOW_ROUTER_REQUIRE_REDIS"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process on 127.0.0.1 that tests may stop and start again."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(
            port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}; "
                            f"see {self.directory / 'redis.log'}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"redis-server not installed, and {REQUIRE_REDIS_ENV} is set")
        pytest.skip("redis-server not installed: real-Redis tests skipped")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    for _ in range(3):  # the free port may be taken before redis-server binds it
        try:
            server.start()
            break
        except RuntimeError:
            server.port = _free_port()
    else:
        server.start()
    yield server
    server.stop()


@dataclass
class StoreBackend:
    """One store's data, and a way to open more handles on it."""

    kind: str
    prefix: str
    _open: Callable[[], Store]
    _opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        """A new handle with its own connections (the same object for memory)."""
        store = self._open()
        self._opened.append(store)
        return store

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


def make_backend(kind: str, request: pytest.FixtureRequest) -> StoreBackend:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if kind == "memory":
        memory = MemoryStore()
        return StoreBackend(kind, prefix, lambda: memory)
    from router.store.redis import RedisStore

    if kind == "fakeredis":
        import fakeredis

        try:
            import lupa  # noqa: F401 - fakeredis runs the store's Lua scripts with it
        except ImportError:
            pytest.fail("fakeredis needs lupa to run Lua scripts: pip install 'fakeredis[lua]'")
        server = fakeredis.FakeServer()
        return StoreBackend(
            kind, prefix, lambda: RedisStore(fakeredis.FakeAsyncRedis(server=server), prefix)
        )
    if kind == "redis":
        url = request.getfixturevalue("redis_server").url
        return StoreBackend(kind, prefix, lambda: RedisStore.from_url(url, prefix))
    raise ValueError(f"unknown store kind {kind!r}")


_BACKEND = pytest.StashKey[StoreBackend]()


@pytest.fixture(params=STORE_KINDS, ids=STORE_KINDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh, empty store of each kind (a unique key prefix on shared Redis)."""
    backend = make_backend(request.param, request)
    request.node.stash[_BACKEND] = backend
    try:
        yield backend.open()
    finally:
        await backend.close()


@pytest.fixture
def store_backend(store: Store, request: pytest.FixtureRequest) -> StoreBackend:
    """The backend behind this test's ``store``."""
    return request.node.stash[_BACKEND]
