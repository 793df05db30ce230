"""The Store contract for the statistics buckets (router/store/stats.py), on every store kind.

Starts, outcomes and run-time bins per 10 s bucket, counted by the same writes
that record and finish executions: exactly once each, on every kind, with the
same bins (the Lua bins of the Redis scripts and the Python bins agree). The
last section holds what only Redis has: one round trip per read, the buckets'
TTL and their slot on a cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from router.errors import FlowNotFound
from router.lifecycle.status import Status
from router.model import new_id
from router.store.base import Store
from router.store.memory import MemoryStore
from router.store.redis import RedisStore
from router.store.stats import (
    BUCKET_MS,
    MAX_BUCKETS,
    RUN_BOUNDS_MS,
    STARTED,
    STATS_TTL_S,
    StatKey,
    bucket_of,
    run_bin,
)
from tests.plugin import FakeClock, StoreBackend
from tests.store.test_contract import flow_with_versions
from tests.store.test_executions_contract import a_record, done

TTL = 600
T0 = 1_764_000_000_000  # a bucket boundary (ms since the epoch)
B0 = T0 // BUCKET_MS


def k(what: str, version: str = "1", alias: str = "live", revision: int = 3) -> StatKey:
    return StatKey(alias, revision, version, what)


def h(run_ms: int, version: str = "1") -> StatKey:
    return k(f"h{run_bin(run_ms)}", version)


def test_run_bins_are_log_spaced_integers_from_10ms_to_an_hour() -> None:
    assert RUN_BOUNDS_MS[0] == 10 and RUN_BOUNDS_MS[-1] == 3_600_000
    assert list(RUN_BOUNDS_MS) == sorted(set(RUN_BOUNDS_MS))
    assert [run_bin(ms) for ms in (-5, 0, 10, 11, 18, 19, 3_600_000, 3_600_001)] == [
        0,
        0,
        0,
        1,
        1,
        2,
        len(RUN_BOUNDS_MS) - 1,
        len(RUN_BOUNDS_MS),
    ]


async def test_a_claim_counts_the_start_and_its_finish_the_outcome_once(store: Store) -> None:
    flow = await flow_with_versions(store)
    await store.claim_execution(a_record(flow.id, "run-1", T0 + 1_000), TTL)
    assert await store.execution_stats(flow.id, T0, T0 + 60_000) == {B0: {k(STARTED): 1}}
    at = T0 + 25_000  # 24 s later: two buckets on, in bin <= 31623 ms
    assert await store.finish_execution(flow.id, "run-1", Status.FAILED, None, "E", "c", at)
    assert (
        await store.finish_execution(flow.id, "run-1", Status.SUCCEEDED, 1, None, None, at) is None
    )
    assert await store.execution_stats(flow.id, T0, T0 + 60_000) == {
        B0: {k(STARTED): 1},
        B0 + 2: {k("Failed"): 1, h(24_000): 1},
    }


async def test_a_flush_counts_starts_and_final_records_once(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    running = a_record(flow.id, "g1", T0 + 500, version="2")
    quick = done(a_record(flow.id, "g2", T0 + 9_990), Status.SUCCEEDED, at=T0 + 10_000)
    slow = done(a_record(flow.id, "g3", T0), Status.TIMED_OUT, at=T0 + 3 * 3_600_000)
    batch = [running, quick, slow]
    await store.put_executions(batch, TTL)
    await store.put_executions(batch, TTL)  # the journal's retry: nothing counted twice
    late = bucket_of(T0 + 3 * 3_600_000)
    assert await store.execution_stats(flow.id, T0, T0 + 20_000) == {
        B0: {k(STARTED, "2"): 1, k(STARTED): 2},
        B0 + 1: {k("Succeeded"): 1, h(10): 1},  # quick ended in the next bucket
    }
    assert await store.execution_stats(flow.id, T0 + 3 * 3_600_000, T0 + 3 * 3_600_000) == {
        late: {k("TimedOut"): 1, k(f"h{len(RUN_BOUNDS_MS)}"): 1}  # beyond the last bound
    }


async def test_every_bin_is_the_same_on_every_store(store: Store) -> None:
    """A run time at, and one past, each bound: the scripts' bins are Python's."""
    flow = await flow_with_versions(store)
    runs = sorted({0, *RUN_BOUNDS_MS, *(b + 1 for b in RUN_BOUNDS_MS)})
    for i, run_ms in enumerate(runs):
        await store.claim_execution(a_record(flow.id, f"s{i}", T0), TTL)
        at = T0 + run_ms
        await store.finish_execution(flow.id, f"s{i}", Status.SUCCEEDED, None, None, None, at)
    stats = await store.execution_stats(flow.id, T0, T0 + runs[-1])
    bins: dict[int, int] = {}
    for counts in stats.values():
        for key, n in counts.items():
            if key.run_bin is not None:
                bins[key.run_bin] = bins.get(key.run_bin, 0) + n
    expected: dict[int, int] = {}
    for run_ms in runs:
        expected[run_bin(run_ms)] = expected.get(run_bin(run_ms), 0) + 1
    assert bins == expected


async def test_stats_per_alias_revision_and_version(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    records = [
        a_record(flow.id, "a", T0, alias="live", revision=3),
        a_record(flow.id, "b", T0, alias="live", revision=4, version="2"),
        a_record(flow.id, "c", T0, alias="", revision=0),
    ]
    await store.put_executions(records, TTL)
    assert await store.execution_stats(flow.id, T0, T0) == {
        B0: {k(STARTED): 1, k(STARTED, "2", revision=4): 1, k(STARTED, alias="", revision=0): 1}
    }


async def test_the_range_is_bounded_and_empty_buckets_left_out(store: Store) -> None:
    flow = await flow_with_versions(store)
    await store.put_executions(
        [a_record(flow.id, f"g{i}", T0 + i * BUCKET_MS) for i in (0, 2, 5)], TTL
    )
    assert set(await store.execution_stats(flow.id, T0, T0 + 5 * BUCKET_MS)) == {
        B0,
        B0 + 2,
        B0 + 5,
    }
    assert set(await store.execution_stats(flow.id, T0 + 1, T0 + 4 * BUCKET_MS)) == {B0, B0 + 2}
    assert await store.execution_stats(flow.id, T0 + 6 * BUCKET_MS, T0 + 9 * BUCKET_MS) == {}
    # a range longer than the buckets live is cut to its newest MAX_BUCKETS
    far = T0 + (MAX_BUCKETS + 4) * BUCKET_MS  # its newest MAX_BUCKETS start at B0 + 5
    assert set(await store.execution_stats(flow.id, T0, far)) == {B0 + 5}


async def test_stats_of_an_unknown_or_deleted_flow(store: Store) -> None:
    with pytest.raises(FlowNotFound):
        await store.execution_stats("NOPE", T0, T0)
    flow = await flow_with_versions(store)
    assert await store.execution_stats(flow.id, T0, T0) == {}
    await store.put_executions([a_record(flow.id, "g", T0)], TTL)
    await store.delete_flow(flow.id, force=True)
    with pytest.raises(FlowNotFound):
        await store.execution_stats(flow.id, T0, T0)


async def test_concurrent_finishers_count_one_outcome(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(4)]
    flow = await flow_with_versions(stores[0])
    await stores[0].put_executions([a_record(flow.id, "run", T0)], TTL)
    await asyncio.gather(
        *(
            s.finish_execution(flow.id, "run", status, None, None, None, T0 + 50)
            for s, status in zip(stores, [Status.SUCCEEDED, Status.FAILED] * 2, strict=True)
        )
    )
    (counts,) = (await stores[1].execution_stats(flow.id, T0, T0)).values()
    finals = {key.what: n for key, n in counts.items() if key.what not in (STARTED, h(50).what)}
    assert sum(finals.values()) == 1
    assert counts[k(STARTED)] == 1 and counts[h(50)] == 1


# -- Redis only ------------------------------------------------------------------------


def _counting_store(port: int, prefix: str, sent: list[int]) -> RedisStore:
    class Counting(redis.asyncio.Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent.append(1)
            await super().send_packed_command(command, check_health)

    pool = redis.asyncio.ConnectionPool(connection_class=Counting, host="127.0.0.1", port=port)
    return RedisStore(redis.asyncio.Redis(connection_pool=pool), prefix)


async def test_a_read_is_one_round_trip_and_buckets_expire(redis_server: Any) -> None:
    sent: list[int] = []
    prefix = f"st{new_id()}"
    store = _counting_store(redis_server.port, prefix, sent)
    admin = redis.Redis(port=redis_server.port)
    try:
        flow = await flow_with_versions(store)
        await store.put_executions(
            [a_record(flow.id, f"g{i}", T0 + i * 1000) for i in range(60)], TTL
        )
        await store.claim_execution(a_record(flow.id, "named", T0), TTL)
        await store.finish_execution(flow.id, "named", Status.SUCCEEDED, None, None, None, T0 + 5)
        sent.clear()
        stats = await store.execution_stats(flow.id, T0, T0 + 5 * 60_000)  # 31 buckets
        assert len(sent) == 1
        assert sum(c.get(k(STARTED), 0) for c in stats.values()) == 61
        keys = sorted(admin.keys(f"{prefix}:x:{{{flow.id}}}:stats:*"))
        assert len(keys) == 6
        assert all(0 < admin.ttl(key) <= STATS_TTL_S for key in keys)
    finally:
        admin.close()
        await store.close()


async def test_on_a_cluster_the_buckets_are_in_the_flows_slot(redis_cluster: Any) -> None:
    prefix = f"cs{new_id()}"
    store = RedisStore.from_url(redis_cluster.url, prefix)
    try:
        flow = await flow_with_versions(store)
        await store.claim_execution(a_record(flow.id, "run", T0), TTL)
        await store.finish_execution(
            flow.id, "run", Status.SUCCEEDED, None, None, None, T0 + 20_000
        )
        assert await store.execution_stats(flow.id, T0, T0 + 20_000) == {
            B0: {k(STARTED): 1},
            B0 + 2: {k("Succeeded"): 1, h(20_000): 1},
        }
    finally:
        await store.close()


async def test_memory_buckets_expire_an_hour_after_their_last_write() -> None:
    """As a Redis bucket's TTL: on the memory store's own clock."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    flow = await flow_with_versions(store)
    await store.put_executions([a_record(flow.id, "old", T0)], TTL)
    clock.skipped += STATS_TTL_S - 1
    await store.put_executions([a_record(flow.id, "new", T0 + BUCKET_MS)], TTL)
    clock.skipped += 2
    assert await store.execution_stats(flow.id, T0, T0 + BUCKET_MS) == {B0 + 1: {k(STARTED): 1}}


# -- flow names (the console's search reads them without the flows) --------------------


async def test_flow_names_page_like_the_flows(store: Store) -> None:
    flows = [await flow_with_versions(store, 0, name=f"f{i:02}") for i in range(7)]
    await store.delete_flow(flows[3].id, force=True)
    names, token = [], None
    while True:
        page = await store.list_flow_names(2, token)
        assert len(page.items) <= 2
        names += page.items
        token = page.next_token
        if token is None:
            break
    expected = [(f.name, f.id) for i, f in enumerate(flows) if i != 3]
    assert names == expected
    assert [(f.name, f.id) for f in (await store.list_flows(100)).items] == expected
