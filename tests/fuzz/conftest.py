"""Fixtures of the fuzz suite: a gateway on 127.0.0.1 over the memory store or real Redis,
forwarding to a healthy recording executor (so any 5xx is the gateway's own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from router.config import Config
from router.store.base import Store
from router.store.memory import MemoryStore
from tests.fuzz.harness import RawClient, Target
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port


@pytest.fixture(scope="session")
def fuzz_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def fuzz_executor(fuzz_loop: BackgroundLoop) -> Iterator[RecordingExecutor]:
    executor = RecordingExecutor()
    fuzz_loop.run(executor.start())
    yield executor
    fuzz_loop.run(executor.stop())


def _serve(
    loop: BackgroundLoop, executor: RecordingExecutor, store: Store, redis_url: str | None
) -> Iterator[Target]:
    executor.reset()
    config = Config(port=free_port(), upstream=executor.template, random_seed=20261123)
    server = GatewayServer(config, store=store)
    loop.run(server.start())
    client = RawClient(server.port)
    try:
        yield Target(loop, server, store, client, redis_url)
    finally:
        client.close()
        loop.run(server.stop())
        loop.run(store.close())
        executor.reset()


@pytest.fixture
def memory_target(fuzz_loop: BackgroundLoop, fuzz_executor: RecordingExecutor) -> Iterator[Target]:
    yield from _serve(fuzz_loop, fuzz_executor, MemoryStore(), None)


@pytest.fixture
def redis_target(
    fuzz_loop: BackgroundLoop, fuzz_executor: RecordingExecutor, request: pytest.FixtureRequest
) -> Iterator[Target]:
    from router.store.redis import RedisStore

    server: Any = request.getfixturevalue("redis_server")
    store = RedisStore.from_url(server.url, f"fz{uuid.uuid4().hex[:8]}")
    yield from _serve(fuzz_loop, fuzz_executor, store, server.url)
