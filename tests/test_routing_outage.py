"""The route cache while the store is unreachable: no cached flow is dropped for good.

Every path that invalidates a cached flow (a change-feed announcement, the
periodic revision check, which the resync on reconnect also runs, and a local
write) is driven into a reload that cannot reach the store. The store is a
real one (MemoryStore, or RedisStore on a real redis-server) behind a fault
injector that raises ``Unavailable`` on the methods it is told to, as
redis-py's refused connections do; nothing of the cache is replaced.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from router.errors import FlowNotFound, Unavailable
from router.forward import Forwarder, Timeouts, UpstreamTemplate
from router.metrics import Metrics
from router.model import Alias, AliasUpdate, Api, Flow, Route
from router.routing import RouteCache
from router.service import Gateway
from router.store.base import Store
from tests.conftest import StoreBackend, make_backend

KINDS = ("memory", "redis")
WAIT_S = 10.0  # bound on waiting for an event that the code under test must set


class FlakyStore:
    """Delegates to a real store; the methods named in ``down`` raise ``Unavailable``."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down: set[str] = set()
        self.refusals: Counter[str] = Counter()
        self.refused = asyncio.Event()  # set on every refusal
        self.subscribed = asyncio.Event()  # set when the change feed (re)subscribes
        # If set, a refused call first waits for it, as a call waits out a socket
        # timeout; ``stalled`` counts the calls waiting.
        self.gate: asyncio.Event | None = None
        self.stalled = 0
        self.two_stalled = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.down:
                if self.gate is not None:
                    self.stalled += 1
                    if self.stalled >= 2:
                        self.two_stalled.set()
                    await self.gate.wait()
                self.refusals[name] += 1
                self.refused.set()
                raise Unavailable("store unreachable (injected)")
            return await target(*args, **kwargs)

        return call

    async def listen(self, on_change: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        def resynced() -> None:
            on_resync()
            self.subscribed.set()

        await self.inner.listen(on_change, resynced)


@pytest.fixture(params=KINDS, ids=KINDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StoreBackend]:
    found = make_backend(request.param, request)
    try:
        yield found
    finally:
        await found.close()


async def _flow_with_alias(store: Store) -> Flow:
    flow = Flow(id="FLOW000001", name="orders", definition="")
    await store.create_flow(flow)
    await store.publish_version(flow.id, "", 1)
    await store.publish_version(flow.id, "", 2)
    routes = (Route(1, 30), Route(2, 70))
    await store.create_alias(Alias(flow_id=flow.id, id="ALIAS00001", name="prod", routes=routes))
    return flow


ONLY_2 = AliasUpdate(routes=(Route(2, 1),))


async def test_an_announcement_during_an_outage_keeps_the_flow_routing(
    backend: StoreBackend,
) -> None:
    writer = backend.open()
    flow = await _flow_with_alias(writer)
    flaky = FlakyStore(backend.open())
    cache = RouteCache(flaky, Metrics(), check_interval_s=3600)  # type: ignore[arg-type]
    follower = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(flaky.subscribed.wait(), WAIT_S)
        before = await cache.by_name("orders")
        # Another gateway writes; the store goes away before this one reloads.
        flaky.down = {"snapshot", "revisions"}
        await writer.update_alias(flow.id, "prod", ONLY_2, 5)
        await asyncio.wait_for(flaky.refused.wait(), WAIT_S)
        for _ in range(3):  # the reload failed: still routing on the last snapshot
            assert await cache.by_name("orders") is before
            assert await cache.by_id(flow.id) is before
        # The store answers again: the next check sees the newer revision.
        flaky.down = set()
        assert await cache.check() == 1
        assert (await cache.by_name("orders")).alias("prod").versions == ("2",)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_a_check_whose_reload_fails_keeps_the_flow_routing(backend: StoreBackend) -> None:
    """The periodic check, and the resync on reconnect, which runs the same check."""
    writer = backend.open()
    flow = await _flow_with_alias(writer)
    flaky = FlakyStore(backend.open())
    cache = RouteCache(flaky, Metrics(), check_interval_s=3600)  # type: ignore[arg-type]
    before = await cache.by_name("orders")
    await writer.update_alias(flow.id, "prod", ONLY_2, 5)  # an announcement it missed
    flaky.down = {"snapshot"}  # the revisions answered, then the store went away
    assert await cache.check() == 1
    assert await cache.by_name("orders") is before
    await cache.reload(flow.id)  # the background reload, awaited here: refused too
    assert await cache.by_name("orders") is before
    assert flaky.refusals["snapshot"] >= 1
    # Nothing was dropped: checks retry until the store answers, then install the new one.
    flaky.down = {"revisions", "snapshot"}
    with pytest.raises(Unavailable):
        await cache.check()
    assert await cache.by_name("orders") is before
    flaky.down = set()
    assert await cache.check() == 1
    assert (await cache.by_name("orders")).alias("prod").versions == ("2",)
    assert await cache.check() == 0


async def test_a_local_write_whose_reload_fails_keeps_the_flow_routing(
    backend: StoreBackend,
) -> None:
    flaky = FlakyStore(backend.open())
    metrics = Metrics()
    gateway = Gateway(
        flaky,  # type: ignore[arg-type]
        Forwarder(Timeouts(), 1, None, metrics),  # never started: nothing is executed here
        metrics,
        UpstreamTemplate("http://127.0.0.1:9/{flow}"),
    )
    flow = await _flow_with_alias(backend.open())
    before = await gateway.routes_by_name("orders")
    # The write is acknowledged; the reload that follows it finds the store gone.
    flaky.down = {"snapshot"}
    updated = await gateway.update_alias(Api.CLOUDFLOW, flow, "prod", ONLY_2)
    assert updated.routes == (Route(2, 1),)
    assert await gateway.routes_by_name("orders") is before
    flaky.down = set()
    assert await gateway.cache.check() == 1
    assert (await gateway.routes_by_name("orders")).alias("prod").versions == ("2",)


async def test_what_was_never_cached_still_fails_and_deletes_still_apply(
    backend: StoreBackend,
) -> None:
    writer = backend.open()
    flow = await _flow_with_alias(writer)
    flaky = FlakyStore(backend.open())
    cache = RouteCache(flaky, Metrics(), check_interval_s=3600)  # type: ignore[arg-type]
    flaky.down = {"snapshot"}
    with pytest.raises(Unavailable):  # nothing to route on: the caller gets the retryable error
        await cache.by_name("orders")
    flaky.down = set()
    before = await cache.by_name("orders")
    await writer.delete_flow(flow.id, force=True)
    flaky.down = {"snapshot"}
    assert await cache.check() == 1
    assert await cache.by_name("orders") is before  # unreachable: nothing newer to know
    flaky.down = set()
    assert await cache.check() == 1
    with pytest.raises(FlowNotFound):
        await cache.by_name("orders")
    await cache.reload(flow.id)  # the background reload, awaited here
    assert cache._last == {}  # nothing kept for a flow that is gone


async def test_a_reload_and_a_request_failing_together_both_keep_routing(
    backend: StoreBackend,
) -> None:
    """The background reload (by id) and a request's load (by name) both time out."""
    flow = await _flow_with_alias(backend.open())
    flaky = FlakyStore(backend.open())
    cache = RouteCache(flaky, Metrics(), check_interval_s=3600)  # type: ignore[arg-type]
    before = await cache.by_name("orders")
    flaky.down = {"snapshot"}
    flaky.gate = asyncio.Event()
    cache.invalidate(flow.id)  # starts the reload by id
    request = asyncio.create_task(cache.by_name("orders"))  # a load by name
    await asyncio.wait_for(flaky.two_stalled.wait(), WAIT_S)
    flaky.gate.set()
    assert await request is before
    assert await cache.by_id(flow.id) is before
    assert await cache.by_name("orders") is before
