"""A gateway in front of the protocol-v2 test executor (tests/async_executor.py).

:func:`rig` starts an :class:`~tests.async_executor.AsyncExecutor` and a
:class:`~tests.harness.GatewayServer` forwarding to it on ``bg_loop``, with
callbacks on or off, and stops both. The SDK suites of both dialects use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from router.app import GATEWAY
from router.config import Config
from router.lifecycle.record import ExecutionRecord
from router.service import Gateway, Settings
from router.store.base import OutcomeKey, Store
from tests.async_executor import AsyncExecutor, Behaviour
from tests.harness import BackgroundLoop, GatewayServer, free_port


@dataclasses.dataclass
class Rig:
    bg_loop: BackgroundLoop
    executor: AsyncExecutor
    server: GatewayServer
    store: Store

    @property
    def gateway(self) -> Gateway:
        assert self.server.app is not None
        return self.server.app[GATEWAY]

    def run(self, coro: Any) -> Any:
        return self.bg_loop.run(coro)

    def finish(self, name: str, status: str | None = None, **fields: Any) -> bool:
        """End the executor's run ``name`` (on its loop: it may start a callback)."""

        async def end() -> bool:
            return self.executor.finish(name, status, **fields)

        done: bool = self.run(end())
        return done

    def wait_final(self, flow_name: str, name: str, timeout_s: float = 20) -> ExecutionRecord:
        """The execution's record once final, through the gateway's own waiter."""

        async def wait() -> ExecutionRecord:
            await self.server.flushed()  # an unnamed execution's record is in the store
            flow = await self.gateway.flow(flow_name)
            record = await self.gateway.store.get_execution(flow.id, name)
            done = await self.gateway.executions.wait_final(flow, name, record.version, timeout_s)
            return done.record

        result: ExecutionRecord = self.run(wait())
        return result

    def finals(self, flow_name: str) -> dict[tuple[str, str], int]:
        """The store's final-outcome counters of the flow as (version, status) -> count."""

        async def counts() -> dict[OutcomeKey, int]:
            flow = await self.gateway.flow(flow_name)
            return await self.gateway.store.outcome_counts(flow.id)

        found: dict[tuple[str, str], int] = {}
        for key, n in self.run(counts()).items():
            if key.status != "Started":
                found[(key.version, key.status)] = found.get((key.version, key.status), 0) + n
        return found


@contextlib.contextmanager
def rig(
    bg_loop: BackgroundLoop,
    store: Store,
    behaviours: Mapping[str, Behaviour],
    *,
    callbacks: bool = False,
    seed: int = 7,
    settings: Settings | None = None,
    **config: Any,
) -> Iterator[Rig]:
    executor = AsyncExecutor(behaviours, seed=seed)
    stack = contextlib.AsyncExitStack()
    template = bg_loop.run(stack.enter_async_context(executor.serve()))
    port = free_port()
    if callbacks:
        config["callback_url"] = f"http://127.0.0.1:{port}"
    server = GatewayServer(
        Config(
            port=port,
            upstream=template,
            random_seed=20261201,
            settings=settings or Settings(),
            **config,
        ),
        store=store,
    )
    bg_loop.run(server.start())
    try:
        yield Rig(bg_loop, executor, server, store)
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(stack.aclose())
