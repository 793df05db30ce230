"""Fixtures for the SDK suites: a gateway on 127.0.0.1 with a recording executor.

``gateway`` is parametrised over the embedded store and a real redis-server
(started by ``redis_server`` in tests/plugin.py), so every SDK scenario runs
on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from router.config import Config
from router.store.base import Store
from tests.dialects.bedrock_client import agent_client, runtime_client
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port
from tests.plugin import open_store

GATEWAY_STORES = ["memory", "redis"]
make_store = open_store  # the older name of the one store factory (tests/plugin.py)


def start_gateway(
    bg_loop: BackgroundLoop, store: Store, recording_executor: RecordingExecutor, **config: Any
) -> GatewayServer:
    config.setdefault("upstream", recording_executor.template)
    # Seeded so the statistical tests are deterministic (each one was checked to
    # pass at its stated significance level; an unseeded run would fail ~alpha of the time).
    config.setdefault("random_seed", 20261123)
    server = GatewayServer(Config(port=free_port(), **config), store=store)
    bg_loop.run(server.start())
    return server


@pytest.fixture(params=GATEWAY_STORES)
def gateway(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    store = open_store(request.param, request)
    server = start_gateway(bg_loop, store, recording_executor)
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
