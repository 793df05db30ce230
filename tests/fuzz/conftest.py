"""Fixtures of the fuzz suite: a gateway on 127.0.0.1 over the memory store or real Redis,
forwarding to a healthy recording executor (so any 5xx is the gateway's own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from router.config import Config
from router.store.base import Store
from tests.fuzz.harness import RawClient, Target
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port
from tests.plugin import open_store
from tests.redis_servers import RedisServer


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
def memory_target(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor, request: pytest.FixtureRequest
) -> Iterator[Target]:
    yield from _serve(bg_loop, recording_executor, open_store("memory", request), None)


@pytest.fixture
def redis_target(
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    redis_server: RedisServer,
    request: pytest.FixtureRequest,
) -> Iterator[Target]:
    store = open_store("redis", request, prefix=f"fz{uuid.uuid4().hex[:8]}")
    yield from _serve(bg_loop, recording_executor, store, redis_server.url)
