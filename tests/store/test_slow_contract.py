"""The Store contract for slow thresholds (``Store.set_slow_threshold``), on every store kind.

While an alias has a threshold, an execution through it that ran longer counts
``Slow`` (and ``SlowSucceeded`` when it succeeded) in the same write that counts
its final status: for a record written final (a synchronous executor) and for
the one transition of a Running record alike. A rollout's ``slowSeconds`` is
read from these counters (router.rollout.traffic).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from router.lifecycle.status import Status
from router.model import new_id
from router.store.base import SLOW, SLOW_SUCCEEDED, Store
from router.store.redis import RedisStore
from router.store.redis_codec import ExecutionKeys
from tests.store.test_contract import flow_with_versions
from tests.store.test_executions_contract import TTL, a_record, done, key

START = 10_000


async def _run(
    store: Store,
    flow_id: str,
    name: str,
    run_ms: int,
    status: Status,
    *,
    alias: str = "live",
    sync: bool = False,
) -> None:
    """One execution that ends ``status`` ``run_ms`` after it started."""
    record = a_record(flow_id, name, START, alias=alias)
    if sync:  # the executor finished inside the start call: written final
        await store.put_executions([done(record, status, at=START + run_ms)], TTL)
    else:
        await store.put_executions([record], TTL)
        await store.finish_execution(flow_id, name, status, None, None, None, START + run_ms)


async def test_runs_longer_than_the_threshold_count_slow(store: Store) -> None:
    flow = await flow_with_versions(store)
    await store.set_slow_threshold(flow.id, "live", 1_000)
    await store.set_slow_threshold(flow.id, "a|b", 50)  # a separator stays in the alias
    for sync in (True, False):
        p = "s" if sync else "a"
        await _run(store, flow.id, f"{p}-at", 1_000, Status.SUCCEEDED, sync=sync)  # not longer
        await _run(store, flow.id, f"{p}-over", 1_001, Status.SUCCEEDED, sync=sync)
        await _run(store, flow.id, f"{p}-failed", 5_000, Status.FAILED, sync=sync)
        await _run(store, flow.id, f"{p}-quick", 10, Status.TIMED_OUT, sync=sync)
        await _run(store, flow.id, f"{p}-other", 9_000, Status.SUCCEEDED, alias="b", sync=sync)
        await _run(store, flow.id, f"{p}-sep", 51, Status.SUCCEEDED, alias="a|b", sync=sync)
    assert await store.outcome_counts(flow.id) == {
        key("Started"): 8,
        key("Succeeded"): 4,
        key("Failed"): 2,
        key("TimedOut"): 2,
        key(SLOW): 4,
        key(SLOW_SUCCEEDED): 2,
        key("Started", alias="b"): 2,
        key("Succeeded", alias="b"): 2,
        key("Started", alias="a|b"): 2,
        key("Succeeded", alias="a|b"): 2,
        key(SLOW, alias="a|b"): 2,
        key(SLOW_SUCCEEDED, alias="a|b"): 2,
    }


async def test_a_cleared_threshold_counts_nothing_more(store: Store) -> None:
    flow = await flow_with_versions(store)
    await store.set_slow_threshold(flow.id, "live", 100)
    await _run(store, flow.id, "before", 500, Status.SUCCEEDED, sync=True)
    await store.put_executions([a_record(flow.id, "running", START)], TTL)
    await store.set_slow_threshold(flow.id, "live", None)
    await store.set_slow_threshold(flow.id, "live", None)  # clearing twice is harmless
    await _run(store, flow.id, "after", 500, Status.SUCCEEDED, sync=True)
    # judged when it ends, against the threshold then: none
    await store.finish_execution(flow.id, "running", Status.FAILED, None, None, None, START + 900)
    counts = await store.outcome_counts(flow.id)
    assert counts[key(SLOW)] == 1
    assert counts[key(SLOW_SUCCEEDED)] == 1
    assert counts[key("Succeeded")] == 2
    assert counts[key("Failed")] == 1
    # a new threshold replaces the old one
    await store.set_slow_threshold(flow.id, "live", 1_000)
    await store.set_slow_threshold(flow.id, "live", 10)
    await _run(store, flow.id, "again", 20, Status.ABORTED)
    counts = await store.outcome_counts(flow.id)
    assert (counts[key(SLOW)], counts[key(SLOW_SUCCEEDED)]) == (2, 1)


async def test_a_finished_record_is_judged_once(store: Store) -> None:
    flow = await flow_with_versions(store)
    await store.set_slow_threshold(flow.id, "live", 100)
    await _run(store, flow.id, "run", 300, Status.SUCCEEDED)
    # a second report of the end (a poll after the callback) and a repeated flush
    again = await store.finish_execution(flow.id, "run", Status.FAILED, None, None, None, 50_000)
    assert again is None
    sync = done(a_record(flow.id, "sync", START), Status.SUCCEEDED, at=START + 300)
    await store.put_executions([sync], TTL)
    await store.put_executions([sync], TTL)
    counts = await store.outcome_counts(flow.id)
    assert (counts[key(SLOW)], counts[key(SLOW_SUCCEEDED)]) == (2, 2)


async def test_a_missing_flow_is_a_no_op(store: Store) -> None:
    await store.set_slow_threshold("NOPE", "live", 100)
    await store.set_slow_threshold("NOPE", "live", None)


async def test_redis_deletes_the_thresholds_with_the_flow(redis_server: Any) -> None:
    client = redis.asyncio.Redis(port=redis_server.port)
    store = RedisStore(client, f"slow{new_id()}")
    try:
        flow = await flow_with_versions(store)
        await store.set_slow_threshold(flow.id, "live", 100)
        slow_key = ExecutionKeys(store.raw_prefix, flow.id).slow
        assert await client.hgetall(slow_key) == {b"live": b"100"}
        await store.delete_flow(flow.id, force=True)
        assert not await client.exists(slow_key)
        await store.set_slow_threshold(flow.id, "live", 100)  # the flow is gone: nothing
        assert not await client.exists(slow_key)
    finally:
        await store.close()
