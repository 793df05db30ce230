"""A gateway in front of the protocol-v2 test executor, for CloudFlow's lifecycle suites.

:class:`Lifecycle` holds a real gateway (memory store or a real redis-server),
a real :class:`~tests.async_executor.AsyncExecutor` (asynchronous runs, stops,
callbacks, ground-truth counters) and the real fnf SDK client aimed at the
gateway. Both servers run on the session's background loop; the SDK blocks the
test's thread, so everything that touches the executor goes through
:meth:`Lifecycle.on_loop` (it is not thread-safe).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client

from router.config import Config
from tests.async_executor import AsyncExecutor, Behaviour
from tests.dialects.cloudflow_client import client_for
from tests.harness import BackgroundLoop, GatewayServer, free_port
from tests.plugin import make_backend

T = TypeVar("T")


@dataclass
class Lifecycle:
    gateway: GatewayServer
    executor: AsyncExecutor
    client: Client
    bg_loop: BackgroundLoop

    def on_loop(self, action: Callable[[], T]) -> T:
        """Run ``action`` on the loop that serves the executor and the gateway."""

        async def call() -> T:
            return action()

        return self.bg_loop.run(call())

    def behave(self, version: str, **fields: Any) -> None:
        """How the executor runs ``version`` ("*": the others) from now on."""
        self.on_loop(lambda: self.executor.behaviours.__setitem__(version, Behaviour(**fields)))

    def finish(self, name: str, status: str | None = None, **fields: Any) -> bool:
        """End a run at the executor, as its own work would (the gateway is not told)."""
        return self.on_loop(lambda: self.executor.finish(name, status, **fields))

    def settle(self) -> None:
        """Return once the gateway's journal has written every record it was handed:
        executions started without a name reach the store in its next batch."""
        self.bg_loop.run(self.gateway.flushed())

    def wait(self, predicate: Callable[[], bool]) -> None:
        """Block until ``predicate`` (checked on the loop after every executor change) holds."""
        self.bg_loop.run(self.executor.wait_until(predicate))


@contextlib.contextmanager
def lifecycle(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    store_kind: str,
    callbacks: bool = False,
    **config: Any,
) -> Iterator[Lifecycle]:
    """A gateway (``Config`` overrides in ``config``) on a fresh store of ``store_kind``
    in front of a new AsyncExecutor; ``callbacks`` gives the gateway a callback URL."""
    executor = AsyncExecutor(seed=11)
    serving = executor.serve()
    template = bg_loop.run(serving.__aenter__())
    backend = make_backend(store_kind, request)
    port = free_port()
    config.setdefault("random_seed", 20261201)
    if callbacks:
        config.setdefault("callback_url", f"http://127.0.0.1:{port}")
    server = GatewayServer(Config(port=port, upstream=template, **config), store=backend.open())
    try:
        bg_loop.run(server.start())
        yield Lifecycle(server, executor, client_for(server), bg_loop)
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(backend.close())
        bg_loop.run(serving.__aexit__(None, None, None))


# -- requests ---------------------------------------------------------------------------


def stop(
    client: Client, flow: str, name: str | None, error: str | None = None, cause: str | None = None
) -> models.StopExecutionResponse:
    return client.stop_execution(
        models.StopExecutionRequest(flow_name=flow, execution_name=name, error=error, cause=cause)
    )


def describe(client: Client, flow: str, name: str) -> models.DescribeExecutionResponseBody:
    request = models.DescribeExecutionRequest(flow_name=flow, execution_name=name)
    return client.describe_execution(request).body


def list_page(client: Client, flow: str, **filters: Any) -> models.ListExecutionsResponseBody:
    return client.list_executions(models.ListExecutionsRequest(flow_name=flow, **filters)).body


def list_all(client: Client, flow: str, **filters: Any) -> list[Any]:
    """Every execution through NextToken (bounded: the suites start far fewer)."""
    found: list[Any] = []
    token = None
    for _ in range(100):
        body = list_page(client, flow, next_token=token, **filters)
        found.extend(body.executions)
        token = body.next_token
        if not token:
            return found
    raise AssertionError("ListExecutions did not reach its last page in 100 pages")


def history(client: Client, flow: str, name: str, **paging: Any) -> Any:
    request = models.GetExecutionHistoryRequest(flow_name=flow, execution_name=name, **paging)
    return client.get_execution_history(request).body


def start_sync(
    client: Client,
    flow: str,
    qualifier: str | None = None,
    input: str | None = None,
    name: str | None = None,
) -> models.StartSyncExecutionResponse:
    return client.start_sync_execution(
        models.StartSyncExecutionRequest(
            flow_name=flow, qualifier=qualifier, input=input, execution_name=name
        )
    )
