"""Fixtures for the SDK suites: a gateway on 127.0.0.1 with a recording executor.

``gateway`` is parametrised over the embedded store and a real redis-server
(started by ``redis_server`` in tests/conftest.py), so every SDK scenario runs
on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from router.config import Config
from router.store.base import Store
from router.store.memory import MemoryStore
from tests.dialects.bedrock_client import agent_client, runtime_client
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port

GATEWAY_STORES = ["memory", "redis"]


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
def executor(recording_executor_session: RecordingExecutor) -> RecordingExecutor:
    recording_executor_session.reset()
    return recording_executor_session


def make_store(kind: str, request: pytest.FixtureRequest) -> Store:
    if kind == "memory":
        return MemoryStore()
    from router.store.redis import RedisStore

    server: Any = request.getfixturevalue("redis_server")
    return RedisStore.from_url(server.url, f"t{uuid.uuid4().hex[:8]}")


def start_gateway(
    bg_loop: BackgroundLoop, store: Store, executor: RecordingExecutor, **config: Any
) -> GatewayServer:
    config.setdefault("upstream", executor.template)
    # Seeded so the statistical tests are deterministic (each one was checked to
    # pass at its stated significance level; an unseeded run would fail ~alpha of the time).
    config.setdefault("random_seed", 20261123)
    server = GatewayServer(Config(port=free_port(), **config), store=store)
    bg_loop.run(server.start())
    return server


@pytest.fixture(params=GATEWAY_STORES)
def gateway(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    store = make_store(request.param, request)
    server = start_gateway(bg_loop, store, executor)
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


@pytest.fixture
def agent(gateway: GatewayServer) -> Any:
    """A boto3 bedrock-agent client pointed at ``gateway``."""
    return agent_client(gateway)


@pytest.fixture
def runtime(gateway: GatewayServer) -> Any:
    """A boto3 bedrock-agent-runtime client pointed at ``gateway``."""
    return runtime_client(gateway)
