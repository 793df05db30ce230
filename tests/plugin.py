"""The fixtures every suite shares, registered once by tests/conftest.py (``pytest_plugins``).

One name per kind of thing, so a test says which one it gets:

``bg_loop``
    An asyncio loop in a daemon thread (session). In-process gateways and the
    recording executor run on it while the test drives them with the (synchronous)
    cloud SDKs from the main thread, as a user's program would.
``recording_executor``
    A :class:`~tests.harness.RecordingExecutor` on ``bg_loop``, emptied for each test;
    ``recording_executor_session`` is the same server without the reset, for
    fixtures wider than one test. (A subprocess executor is another kind: see
    ``executor_process`` in test_executor_faults.py.)
``processes``
    ``flow-router serve`` subprocesses, stopped when the test ends.
``redis_server``, ``redis_sentinel``, ``redis_cluster``
    Real Redis processes on free ports (session). Without ``redis-server`` they
    skip, or fail when ``FLOW_ROUTER_REQUIRE_REDIS`` is set.
``store`` / ``store_backend``
    A fresh, empty store of each kind in :data:`STORE_KINDS`, and a way to open
    more handles on its data. :func:`open_store` is the same factory for one kind,
    for fixtures that build a gateway on it.

Plain functions the fixtures share: :func:`tests.harness.free_port` (the only one),
:func:`open_store` and :func:`make_backend` (the only store factory), and the Redis
process classes in tests/redis_servers.py.

Markers: a test that uses a real Redis or a subprocess gets ``network`` here
(:func:`pytest_collection_modifyitems`); modules mark the rest themselves. The
fast lane is ``python -m pytest -m "not slow and not network"``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from router.store.base import Store
from router.store.memory import MemoryStore
from tests.harness import BackgroundLoop, RecordingExecutor, free_port
from tests.processes import Processes
from tests.redis_servers import (
    SENTINEL_SERVICE,
    RedisClusterNodes,
    RedisSentinel,
    RedisServer,
    SentinelProcess,
    redis_binary,
    start_on_free_port,
    wait_for,
)

STORE_KINDS = ("memory", "fakeredis", "redis", "sentinel", "cluster")
REAL_REDIS = {"redis": "redis_server", "sentinel": "redis_sentinel", "cluster": "redis_cluster"}

# Fixtures that start another process (redis-server, a gateway, an executor) and talk
# to it over a socket: a test using one is a ``network`` test.
NETWORK_FIXTURES = frozenset(
    {*REAL_REDIS.values(), "processes", "executor_process", "durable_redis", "own_redis"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what a test uses, so a new test is marked without thinking of it.

    ``network``: a real Redis or a subprocess, however the test gets one: a fixture
    by name, or a parameter naming a real Redis store kind (``store[redis]``,
    ``gateway[redis]``, ``store_kind=redis``). ``slow``: ``redis_clock`` tests
    except on the memory store, and the wheel installs (``image_install``).
    """
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = list(callspec.params.values()) if callspec is not None else []
        if names & NETWORK_FIXTURES or any(
            isinstance(value, str) and value in REAL_REDIS for value in params
        ):
            item.add_marker(pytest.mark.network)
        if item.get_closest_marker("redis_clock") and "memory" not in params:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("image_install"):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.network)


# -- a loop thread, the recording executor, gateway processes ------------------------------


@pytest.fixture(scope="session")
def bg_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def recording_executor_session(bg_loop: BackgroundLoop) -> Iterator[RecordingExecutor]:
    executor = RecordingExecutor()
    bg_loop.run(executor.start())
    yield executor
    bg_loop.run(executor.stop())


@pytest.fixture
def recording_executor(recording_executor_session: RecordingExecutor) -> RecordingExecutor:
    """The session's recording executor with no records and default behaviours."""
    recording_executor_session.reset()
    return recording_executor_session


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path) as group:
        yield group


# -- real Redis processes ------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    start_on_free_port(server)
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, restart or reconfigure
    without disturbing any other test."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(redis_binary(), tmp_path / "redis")
    start_on_free_port(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    binary = redis_binary(needed_for="the Sentinel tests")
    master = RedisServer(binary, tmp_path_factory.mktemp("sentinel-master"))
    start_on_free_port(master)
    sentinel = SentinelProcess(binary, tmp_path_factory.mktemp("sentinel"), master)
    try:
        start_on_free_port(sentinel)
        client = redis.Redis(port=sentinel.port, socket_timeout=1)
        try:
            wait_for(
                lambda: client.execute_command(
                    "SENTINEL GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE
                ),
                "sentinel to know its master",
            )
        finally:
            client.close()
        yield RedisSentinel(master, sentinel)
    finally:
        sentinel.stop()
        master.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    binary = redis_binary(needed_for="the cluster tests")
    cli = redis_binary("redis-cli", "the cluster tests (redis-cli creates the cluster)")
    nodes = []
    for i in range(3):
        directory = tmp_path_factory.mktemp(f"cluster{i}")
        # The bus port is given explicitly: the default (port + 10000) may not exist.
        args: tuple[str, ...] = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        args += ("--cluster-port", str(free_port()), "--cluster-node-timeout", "2000")
        nodes.append(RedisServer(binary, directory, args))
    try:
        for node in nodes:
            start_on_free_port(node)
        subprocess.run(
            [
                *(cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes)),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for node in nodes:
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                wait_for(
                    lambda c=client: c.cluster("INFO").get("cluster_state") == "ok",
                    f"cluster node {node.port} to be ok",
                )
            finally:
                client.close()
        yield RedisClusterNodes(nodes)
    finally:
        for node in nodes:
            node.stop()


# -- the store factory ---------------------------------------------------------------------


class FakeClock:
    """``time.monotonic`` plus whatever the test skipped forward."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped


@dataclass
class StoreBackend:
    """One store's data, and a way to open more handles on it."""

    kind: str
    prefix: str
    _open: Callable[[], Store]
    _opened: list[Store] = field(default_factory=list)
    clock: FakeClock | None = None  # the memory store's clock; Redis keeps its own time

    def open(self) -> Store:
        """A new handle with its own connections (the same object for memory)."""
        store = self._open()
        self._opened.append(store)
        return store

    async def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store's expiry: at once on the memory store's
        clock; on Redis (real or fake) by waiting, since the server keeps the time."""
        if self.clock is not None:
            self.clock.skipped += seconds
            return
        await asyncio.sleep(seconds)  # the server's own clock is the thing under test

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


def make_backend(
    kind: str, request: pytest.FixtureRequest, prefix: str | None = None
) -> StoreBackend:
    prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
    if kind == "memory":
        clock = FakeClock()
        memory = MemoryStore(clock=clock)
        return StoreBackend(kind, prefix, lambda: memory, clock=clock)
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
    if kind in REAL_REDIS:
        url = request.getfixturevalue(REAL_REDIS[kind]).url
        return StoreBackend(kind, prefix, lambda: RedisStore.from_url(url, prefix))
    raise ValueError(f"unknown store kind {kind!r}")


def open_store(kind: str, request: pytest.FixtureRequest, prefix: str | None = None) -> Store:
    """One new store of ``kind`` (empty: a fresh key prefix on a shared Redis); the caller
    closes it. For fixtures that hand the store to a gateway."""
    return make_backend(kind, request, prefix).open()


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
    backend: StoreBackend = request.node.stash[_BACKEND]
    return backend
