"""The route cache over a real store: warm routing reads nothing, writes are seen.

The store is the real MemoryStore wrapped in a proxy that only counts calls,
so the test observes how often routing touches the store without replacing
any behaviour.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from router.errors import AliasNotFound, FlowNotFound
from router.metrics import Metrics
from router.model import Alias, AliasUpdate, Flow, Route
from router.routing import RouteCache
from router.store.memory import MemoryStore
from tests.harness import CountingStore


async def _flow_with_alias(store: MemoryStore, weights: tuple[int, int] = (30, 70)) -> Flow:
    flow = Flow(id="FLOW000001", name="orders", definition="")
    await store.create_flow(flow)
    await store.publish_version(flow.id, "", 1)
    await store.publish_version(flow.id, "", 2)
    routes = (Route(1, weights[0]), Route(2, weights[1]))
    await store.create_alias(Alias(flow_id=flow.id, id="ALIAS00001", name="prod", routes=routes))
    return flow


@pytest.fixture
async def cache_and_store() -> Any:
    inner = MemoryStore()
    store = CountingStore(inner)
    cache = RouteCache(store, Metrics(), check_interval_s=3600)  # type: ignore[arg-type]
    follower = asyncio.create_task(cache.run())
    await asyncio.sleep(0)
    yield cache, store, inner
    follower.cancel()


async def test_warm_routing_reads_nothing(cache_and_store: Any) -> None:
    cache, store, inner = cache_and_store
    await _flow_with_alias(inner)
    routes = await cache.by_name("orders")
    store.calls.clear()
    seen = Counter()
    for i in range(10_000):
        compiled = (await cache.by_name("orders")).alias("prod")
        seen[compiled.pick(i / 10_000)] += 1
        assert (await cache.by_id(routes.flow.id)).alias_by_id("ALIAS00001") is compiled
    assert sum(store.calls.values()) == 0
    assert seen == {"1": 3000, "2": 7000}  # evenly spaced u: exactly the weights


async def test_concurrent_cold_loads_share_one_snapshot(cache_and_store: Any) -> None:
    cache, store, inner = cache_and_store
    await _flow_with_alias(inner)
    results = await asyncio.gather(*(cache.by_name("orders") for _ in range(50)))
    assert store.calls["snapshot"] == 1
    assert all(r is results[0] for r in results)


async def test_update_is_routed_on_after_the_announcement(cache_and_store: Any) -> None:
    cache, _, inner = cache_and_store
    flow = await _flow_with_alias(inner)
    before = await cache.by_name("orders")
    await inner.update_alias(flow.id, "prod", AliasUpdate(routes=(Route(1, 100), Route(2, 0))), 5)
    after = await cache.by_name("orders")
    assert after is not before
    assert {after.alias("prod").pick(i / 100) for i in range(100)} == {"1"}


async def test_deleted_alias_and_flow_stop_routing(cache_and_store: Any) -> None:
    cache, _, inner = cache_and_store
    flow = await _flow_with_alias(inner)
    await cache.by_name("orders")
    await inner.delete_alias(flow.id, "prod")
    with pytest.raises(AliasNotFound):
        (await cache.by_name("orders")).alias("prod")
    await inner.delete_flow(flow.id, force=True)
    with pytest.raises(FlowNotFound):
        await cache.by_name("orders")


async def test_periodic_check_repairs_a_lost_announcement() -> None:
    inner = MemoryStore()
    cache = RouteCache(inner, Metrics(), check_interval_s=3600)  # not following the feed
    flow = await _flow_with_alias(inner)
    stale = await cache.by_name("orders")
    await inner.update_alias(flow.id, "prod", AliasUpdate(routes=(Route(2, 1),)), 5)
    assert await cache.by_name("orders") is stale  # nobody told this cache
    assert await cache.check() == 1
    fresh = await cache.by_name("orders")
    assert fresh.alias("prod").versions == ("2",)


async def test_a_load_racing_an_update_is_not_installed_stale() -> None:
    inner = MemoryStore()
    flow = await _flow_with_alias(inner)
    cache = RouteCache(inner, Metrics())
    release = asyncio.Event()
    original = inner.snapshot

    async def slow_snapshot(ref: str, *, by_id: bool) -> Any:
        taken = await original(ref, by_id=by_id)
        await release.wait()
        return taken

    inner.snapshot = slow_snapshot  # type: ignore[method-assign]
    loading = asyncio.create_task(cache.by_name("orders"))
    await asyncio.sleep(0)
    await inner.update_alias(flow.id, "prod", AliasUpdate(routes=(Route(2, 1),)), 5)
    cache.invalidate(flow.id)  # the announcement arrives while the load is in flight
    release.set()
    routes = await loading
    assert routes.alias("prod").versions == ("2",)


async def test_weights_gauge_follows_the_cache(cache_and_store: Any) -> None:
    cache, _, inner = cache_and_store
    metrics = cache._metrics
    flow = await _flow_with_alias(inner, (1, 3))
    await cache.by_name("orders")

    def gauge(version: str) -> float | None:
        return metrics.registry.get_sample_value(
            "flow_router_alias_weight", {"flow": "orders", "alias": "prod", "version": version}
        )

    assert (gauge("1"), gauge("2")) == (0.25, 0.75)
    await inner.delete_alias(flow.id, "prod")
    await cache.by_name("orders")
    assert (gauge("1"), gauge("2")) == (None, None)


async def test_memory_store_forgets_expired_tokens_and_executions() -> None:
    from router.store.base import ExecutionRecord, IdempotencyRecord
    from router.store.memory import PRUNE_EVERY

    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    flow = await _flow_with_alias(store)
    for i in range(100):
        await store.claim_execution(ExecutionRecord(flow.id, "", f"e{i}", "1", "", 0), 10)
    for i in range(PRUNE_EVERY - 101):
        await store.put_token("s", f"t{i}", IdempotencyRecord("f", "r"), 10)
    assert len(store._tokens) == PRUNE_EVERY - 101
    now[0] = 11.0  # all of them expired; the next write is the PRUNE_EVERY-th: it sweeps
    await store.put_token("s", "fresh", IdempotencyRecord("f", "r"), 10)
    assert await store.get_token("s", "fresh") is not None
    assert len(store._tokens) <= 1  # only what was written after the sweep
    assert not any(s.executions for s in store._flows.values())
