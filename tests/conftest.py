"""Fixtures shared by every suite. Each section belongs to one area; add yours below."""

from __future__ import annotations

import os
import shutil
import signal
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
# port (never the system Redis on 6379); ``redis_sentinel`` a master and one
# sentinel watching it; ``redis_cluster`` a 3-master cluster. ``store`` gives
# each test a fresh, empty store of each kind in STORE_KINDS; ``store_backend``
# opens more handles, each with its own connections, on that same store's data.

STORE_KINDS = ("memory", "fakeredis", "redis", "sentinel", "cluster")
REQUIRE_REDIS_ENV = "FLOW_ROUTER_REQUIRE_REDIS"
SENTINEL_SERVICE = "mymaster"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process on 127.0.0.1 that tests may stop and start again.

    ``args`` come after the defaults and so override them (for example
    ``--appendonly yes`` for a server whose data survives a restart).
    """

    def __init__(self, binary: str, directory: Path, args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.args = args
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        return [
            *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            *self.args,
        ]

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(
            port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        try:
            while True:
                try:
                    # Another process's server may answer on this port (it was
                    # free when chosen): only our own process will do.
                    if client.info("server")["process_id"] == self._process.pid:
                        return
                    raise redis.exceptions.ConnectionError("another server has this port")
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

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SentinelProcess(RedisServer):
    """``redis-server --sentinel`` watching ``master`` as SENTINEL_SERVICE."""

    def __init__(self, binary: str, directory: Path, master: RedisServer) -> None:
        super().__init__(binary, directory)
        self.master = master

    def command(self) -> list[str]:
        # Sentinel rewrites its configuration file, so each start writes it anew.
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
        )
        return [self.binary, str(config), "--sentinel"]


@dataclass
class RedisSentinel:
    master: RedisServer
    sentinel: SentinelProcess

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SENTINEL_SERVICE}/0"


@dataclass
class RedisClusterNodes:
    """Three masters on 127.0.0.1 sharing the 16384 slots, no replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


def redis_binary() -> str:
    """redis-server's path, or skip (fail when FLOW_ROUTER_REQUIRE_REDIS is set)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"redis-server not installed, and {REQUIRE_REDIS_ENV} is set")
        pytest.skip("redis-server not installed: real-Redis tests skipped")
    return binary


def start_on_free_port(server: RedisServer) -> None:
    for _ in range(3):  # the free port may be taken before redis-server binds it
        try:
            server.start()
            return
        except RuntimeError:
            server.port = _free_port()
    server.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    start_on_free_port(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    binary = redis_binary()
    master = RedisServer(binary, tmp_path_factory.mktemp("sentinel-master"))
    start_on_free_port(master)
    sentinel = SentinelProcess(binary, tmp_path_factory.mktemp("sentinel"), master)
    try:
        start_on_free_port(sentinel)
        client = redis.Redis(port=sentinel.port, socket_timeout=1)
        try:
            _wait_for(
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
    binary = redis_binary()
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli not installed: the cluster tests need it to create the cluster")
    nodes = []
    for i in range(3):
        directory = tmp_path_factory.mktemp(f"cluster{i}")
        # The bus port is given explicitly: the default (port + 10000) may not exist.
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        args += ("--cluster-port", str(_free_port()), "--cluster-node-timeout", "2000")
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
                _wait_for(
                    lambda c=client: c.cluster("INFO").get("cluster_state") == "ok",
                    f"cluster node {node.port} to be ok",
                )
            finally:
                client.close()
        yield RedisClusterNodes(nodes)
    finally:
        for node in nodes:
            node.stop()


def _wait_for(condition: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except redis.exceptions.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


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
    if kind in ("redis", "sentinel", "cluster"):
        fixture = {
            "redis": "redis_server",
            "sentinel": "redis_sentinel",
            "cluster": "redis_cluster",
        }
        url = request.getfixturevalue(fixture[kind]).url
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


# -- subprocess suites (test_replicas, test_workers, test_shutdown) -------------------------
# Defined in tests/processes.py; registered here so those modules share one copy.
# A module or directory that defines its own ``executor`` overrides this one.
from tests.processes import executor, executor_session, processes  # noqa: E402, F401
