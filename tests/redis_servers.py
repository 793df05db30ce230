"""Real Redis processes for tests: a server, a sentinel, a cluster, on free 127.0.0.1 ports.

The fixtures that start them are in tests/plugin.py; the classes are here so a test
module can start a server of its own (one it may stop, or one with other options).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.harness import free_port

REQUIRE_REDIS_ENV = "FLOW_ROUTER_REQUIRE_REDIS"
SENTINEL_SERVICE = "mymaster"


class RedisServer:
    """A redis-server process on 127.0.0.1 that tests may stop and start again.

    ``args`` come after the defaults and so override them (for example
    ``--appendonly yes`` for a server whose data survives a restart).
    """

    def __init__(self, binary: str, directory: Path, args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.args = args
        self.port = free_port()
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


def redis_binary(name: str = "redis-server", needed_for: str = "real-Redis tests") -> str:
    """The path of a Redis program, or skip; fail instead when FLOW_ROUTER_REQUIRE_REDIS is set.

    Every fixture that starts a Redis process gets its binary here, so setting the
    variable (as CI does) turns a missing Redis into a failure, never a silent skip.
    """
    binary = shutil.which(name)
    if binary is None:
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{name} not installed, and {REQUIRE_REDIS_ENV} is set")
        pytest.skip(
            f"{name} not installed: {needed_for} skipped; "
            f"set {REQUIRE_REDIS_ENV}=1 to make this a failure"
        )
    return binary


def start_on_free_port(server: RedisServer) -> None:
    for _ in range(3):  # the free port may be taken before redis-server binds it
        try:
            server.start()
            return
        except RuntimeError:
            server.port = free_port()
    server.start()


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
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
