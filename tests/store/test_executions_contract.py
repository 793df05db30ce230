"""The Store contract for executions (protocol v2), run on every store kind.

Records for every execution, the one Running -> final transition and its
outcome counter, newest-first listing, expiry, the shared polling schedule and
shared secrets. The last section holds what only Redis has: round trips per
journal flush, where a cluster puts the execution keys, and their TTL.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from router.errors import ExecutionAlreadyExists, ExecutionNotFound, FlowNotFound, InvalidToken
from router.lifecycle.record import ExecutionRecord, finish
from router.lifecycle.status import Status
from router.store.base import OutcomeKey, Store
from tests.plugin import StoreBackend
from tests.store.test_contract import a_flow, all_pages, flow_with_versions

TTL = 600


def a_record(
    flow_id: str,
    name: str,
    started_at: int = 1_000,
    *,
    version: str = "1",
    alias: str = "live",
    revision: int = 3,
    **fields: Any,
) -> ExecutionRecord:
    return ExecutionRecord(
        flow_id=flow_id,
        flow="orders",
        name=name,
        version=version,
        alias=alias,
        started_at=started_at,
        input={"n": name},
        revision=revision,
        **fields,
    )


def done(
    record: ExecutionRecord, status: Status, at: int = 2_000, **fields: Any
) -> ExecutionRecord:
    finished = finish(record, status, at=at, **fields)
    assert finished is not None
    return finished


def key(status: str, version: str = "1", alias: str = "live", revision: int = 3) -> OutcomeKey:
    return OutcomeKey(alias, revision, version, status)


async def _race(calls: list[Any]) -> tuple[list[Any], list[BaseException]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return [r for r in results if not isinstance(r, BaseException)], errors


# -- claim: caller-named executions ------------------------------------------------------


async def test_claim_writes_once_and_counts_started(store: Store) -> None:
    flow = await flow_with_versions(store)
    record = a_record(flow.id, "run-1")
    await store.claim_execution(record, TTL)
    assert await store.get_execution(flow.id, "run-1") == record
    with pytest.raises(ExecutionAlreadyExists) as e:
        await store.claim_execution(a_record(flow.id, "run-1", version="2"), TTL)
    assert e.value.name == "run-1"
    assert await store.get_execution(flow.id, "run-1") == record
    # a record that is already final (a synchronous executor) counts both
    sync = done(a_record(flow.id, "run-2", version="2"), Status.SUCCEEDED, output={"ok": 1})
    await store.claim_execution(sync, TTL)
    assert await store.get_execution(flow.id, "run-2") == sync
    assert await store.outcome_counts(flow.id) == {
        key("Started"): 1,
        key("Started", "2"): 1,
        key("Succeeded", "2"): 1,
    }
    with pytest.raises(FlowNotFound):
        await store.claim_execution(a_record("NOPE", "run-1"), TTL)
    with pytest.raises(ExecutionNotFound) as e2:
        await store.get_execution(flow.id, "run-3")
    assert e2.value.name == "run-3"
    with pytest.raises(FlowNotFound):
        await store.get_execution("NOPE", "run-1")
    with pytest.raises(FlowNotFound):
        await store.outcome_counts("NOPE")


async def test_concurrent_claims_have_one_winner(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0])
    records = [a_record(flow.id, "run-1", version=str(i)) for i in range(20)]
    wins, errors = await _race(
        [s.claim_execution(r, TTL) for s, r in zip(stores, records, strict=True)]
    )
    assert (len(wins), len(errors)) == (1, 19)
    assert all(isinstance(e, ExecutionAlreadyExists) for e in errors)
    stored = await stores[0].get_execution(flow.id, "run-1")
    assert stored in records
    assert await stores[0].outcome_counts(flow.id) == {key("Started", stored.version): 1}


# -- put: the journal's batches ----------------------------------------------------------


async def test_put_executions_is_idempotent_and_skips_taken_names(store: Store) -> None:
    flow = await flow_with_versions(store)
    other = await flow_with_versions(store, name="other")
    claimed = a_record(flow.id, "taken", version="9")
    await store.claim_execution(claimed, TTL)
    batch = [a_record(flow.id, f"g{i}", 1_000 + i, generated=True) for i in range(5)]
    batch.append(done(a_record(other.id, "g0", version="2", generated=True), Status.FAILED))
    batch.append(a_record(flow.id, "taken", version="1"))  # loses to the claimed one
    batch.append(a_record(flow.id, "g0", version="7"))  # twice in one batch: the first wins
    await store.put_executions(batch, TTL)
    await store.put_executions(batch, TTL)  # the journal's retry of a batch
    await store.put_executions([], TTL)
    assert await store.get_execution(flow.id, "taken") == claimed
    assert await store.get_execution(flow.id, "g0") == batch[0]
    assert await store.get_execution(other.id, "g0") == batch[5]
    assert await store.outcome_counts(flow.id) == {key("Started"): 5, key("Started", "9"): 1}
    assert await store.outcome_counts(other.id) == {
        key("Started", "2"): 1,
        key("Failed", "2"): 1,
    }


async def test_records_of_a_deleted_flow_are_dropped(store: Store) -> None:
    flow = await flow_with_versions(store)
    await store.put_executions([a_record(flow.id, "g1")], TTL)
    await store.delete_flow(flow.id, force=True)
    # a journal flush that arrives after the delete writes nothing
    await store.put_executions([a_record(flow.id, "g2")], TTL)
    with pytest.raises(ExecutionNotFound):
        await store.finish_execution(flow.id, "g1", Status.SUCCEEDED, None, None, None, 5)
    for read in (
        store.get_execution(flow.id, "g1"),
        store.get_execution(flow.id, "g2"),
        store.list_executions(flow.id, 10),
        store.outcome_counts(flow.id),
    ):
        with pytest.raises(FlowNotFound):
            await read
    with pytest.raises(FlowNotFound):
        await store.claim_execution(a_record(flow.id, "named"), TTL)
    recreated = a_flow("orders")
    await store.create_flow(recreated)
    assert list((await store.list_executions(recreated.id, 10)).items) == []
    assert await store.outcome_counts(recreated.id) == {}


# -- finish: the one transition -----------------------------------------------------------


async def test_finish_transitions_once(store: Store) -> None:
    flow = await flow_with_versions(store)
    record = a_record(flow.id, "run-1", 1_000)
    await store.put_executions([record], TTL)
    first = await store.finish_execution(
        flow.id, "run-1", Status.FAILED, {"partial": [1, 2]}, "Boom", "it broke", 1_500
    )
    assert first == done(
        record, Status.FAILED, at=1_500, output={"partial": [1, 2]}, error="Boom", cause="it broke"
    )
    assert await store.get_execution(flow.id, "run-1") == first
    again = await store.finish_execution(flow.id, "run-1", Status.SUCCEEDED, "x", None, None, 9)
    assert again is None
    assert await store.get_execution(flow.id, "run-1") == first
    # stopped_at is never before started_at (another replica's clock may be behind)
    await store.put_executions([a_record(flow.id, "run-2", 5_000)], TTL)
    early = await store.finish_execution(flow.id, "run-2", Status.ABORTED, None, None, None, 10)
    assert early is not None and early.stopped_at == 5_000
    assert await store.get_execution(flow.id, "run-2") == early
    with pytest.raises(ExecutionNotFound):
        await store.finish_execution(flow.id, "nope", Status.FAILED, None, None, None, 1)
    with pytest.raises(ValueError, match="not a final status"):
        await store.finish_execution(flow.id, "run-2", Status.RUNNING, None, None, None, 1)
    assert await store.outcome_counts(flow.id) == {
        key("Started"): 2,
        key("Failed"): 1,
        key("Aborted"): 1,
    }


async def test_concurrent_finishers_count_once(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0])
    await stores[0].put_executions([a_record(flow.id, "run-1")], TTL)
    finals = [Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED]
    calls = [
        s.finish_execution(flow.id, "run-1", status, {"by": i}, None, None, 2_000 + i)
        for i, (s, status) in enumerate(zip(stores, itertools.cycle(finals)))
    ]
    results, errors = await _race(calls)
    assert errors == []
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    (winner,) = winners
    assert await stores[0].get_execution(flow.id, "run-1") == winner
    counts = await stores[0].outcome_counts(flow.id)
    assert counts == {key("Started"): 1, key(winner.status.value): 1}


# -- listing: newest first ------------------------------------------------------------------


async def test_list_executions_newest_first_in_pages(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    started = {"a": 10, "b": 30, "c": 20, "d": 30, "e": 5, "f": 30, "g": 20}
    records = [a_record(flow.id, f"run-{n}", t) for n, t in started.items()]
    await store.put_executions(records[:4], TTL)
    for record in records[4:]:
        await store.claim_execution(record, TTL)
    await store.finish_execution(flow.id, "run-c", Status.SUCCEEDED, 1, None, None, 40)
    expected = sorted(records, key=lambda r: (-r.started_at, r.name))
    expected = [await store.get_execution(flow.id, r.name) for r in expected]
    assert [r.name for r in expected] == [f"run-{n}" for n in "bdfcgae"]
    for size in (1, 2, 3, 7):
        items, tokens = await all_pages(lambda n, t: store.list_executions(flow.id, n, t), size)
        assert items == expected
        assert len(tokens) == -(-len(expected) // size) and tokens[-1] is None
    whole = await store.list_executions(flow.id, 10)
    assert (list(whole.items), whole.next_token) == (expected, None)
    other = await flow_with_versions(store, 1, "other")
    assert list((await store.list_executions(other.id, 10)).items) == []
    with pytest.raises(FlowNotFound):
        await store.list_executions("NOPE", 10)
    for token in ("garbage", "x:run-a", ":run-a", "12:"):
        with pytest.raises(InvalidToken):
            await store.list_executions(flow.id, 2, token)


@pytest.mark.redis_clock
async def test_executions_expire_but_counters_stay(
    store: Store, store_backend: StoreBackend
) -> None:
    flow = await flow_with_versions(store)
    await store.put_executions([a_record(flow.id, "run-a", 3), a_record(flow.id, "run-b", 2)], 1)
    await store.claim_execution(a_record(flow.id, "run-c", 1), 60)
    await store.claim_execution(a_record(flow.id, "run-d", 0), 1)
    listed = await store.list_executions(flow.id, 10)
    assert [r.name for r in listed.items] == ["run-a", "run-b", "run-c", "run-d"]
    await store_backend.pass_time(1.2)
    # expired ones are left out, even across a page boundary
    first = await store.list_executions(flow.id, 1)
    assert ([r.name for r in first.items], first.next_token) == (["run-c"], None)
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(flow.id, "run-a")
    with pytest.raises(ExecutionNotFound):
        await store.finish_execution(flow.id, "run-a", Status.SUCCEEDED, None, None, None, 9)
    # an expired name is free again, and the counters outlive the records
    again = a_record(flow.id, "run-a", 4)
    await store.claim_execution(again, 60)
    assert [r.name for r in (await store.list_executions(flow.id, 10)).items] == [
        "run-a",
        "run-c",
    ]
    assert await store.outcome_counts(flow.id) == {key("Started"): 5}


@pytest.mark.redis_clock
async def test_a_finished_record_keeps_its_expiry(
    store: Store, store_backend: StoreBackend
) -> None:
    flow = await flow_with_versions(store)
    await store.put_executions([a_record(flow.id, "run-1")], 1)
    await store.finish_execution(flow.id, "run-1", Status.SUCCEEDED, None, None, None, 5)
    await store_backend.pass_time(1.2)
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(flow.id, "run-1")


async def test_outcome_counts_per_alias_revision_version_status(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    plan = [
        ("live", 1, "1", Status.SUCCEEDED),
        ("live", 1, "1", Status.FAILED),
        ("live", 2, "1", Status.SUCCEEDED),
        ("live", 2, "2", Status.SUCCEEDED),
        ("live", 2, "2", None),
        ("", 0, "2", Status.TIMED_OUT),
        ("a|b", 7, "DRAFT", Status.ABORTED),  # a separator in an alias name stays in it
    ]
    records = [
        a_record(flow.id, f"r{i}", alias=alias, revision=rev, version=version)
        for i, (alias, rev, version, _) in enumerate(plan)
    ]
    await store.put_executions(records, TTL)
    for record, (_, _, _, status) in zip(records, plan, strict=True):
        if status is not None:
            await store.finish_execution(flow.id, record.name, status, None, None, None, 5_000)
    assert await store.outcome_counts(flow.id) == {
        key("Started", "1", "live", 1): 2,
        key("Succeeded", "1", "live", 1): 1,
        key("Failed", "1", "live", 1): 1,
        key("Started", "1", "live", 2): 1,
        key("Succeeded", "1", "live", 2): 1,
        key("Started", "2", "live", 2): 2,
        key("Succeeded", "2", "live", 2): 1,
        key("Started", "2", "", 0): 1,
        key("TimedOut", "2", "", 0): 1,
        key("Started", "DRAFT", "a|b", 7): 1,
        key("Aborted", "DRAFT", "a|b", 7): 1,
    }


# -- the shared polling schedule -------------------------------------------------------------


async def test_polls_are_claimed_when_due_and_leased(store: Store) -> None:
    await store.schedule_poll("F1", "run-1", 1_000, 0)
    await store.schedule_poll("F1", "run-2", 2_000, 3)
    await store.schedule_poll("F2", "run/x.1.live", 1_500, 1)
    assert await store.claim_polls(999, 10, 100) == []
    assert await store.claim_polls(1_000, 10, 100) == [("F1", "run-1", 0)]
    # leased until 1_100: nobody gets it before, anybody after (its claimer died)
    assert sorted(await store.claim_polls(1_099, 10, 100)) == []
    assert sorted(await store.claim_polls(1_600, 10, 1_000)) == [
        ("F1", "run-1", 0),
        ("F2", "run/x.1.live", 1),
    ]
    # rescheduling moves the entry and keeps its new attempt
    await store.schedule_poll("F1", "run-1", 1_700, 1)
    await store.cancel_poll("F2", "run/x.1.live")
    await store.cancel_poll("F2", "never-scheduled")
    assert sorted(await store.claim_polls(2_000, 10, 100)) == [
        ("F1", "run-1", 1),
        ("F1", "run-2", 3),
    ]
    assert await store.claim_polls(50_000, 0, 100) == []
    await store.cancel_poll("F1", "run-1")
    await store.cancel_poll("F1", "run-2")
    assert await store.claim_polls(50_000, 10, 100) == []


async def test_polls_are_scheduled_in_batches(store: Store) -> None:
    # the journal's flush: many flows (so many shards), one call
    entries = [(f"F{i % 7}", f"run-{i}", 100 + i, i % 3) for i in range(60)]
    await store.schedule_polls(entries)
    await store.schedule_polls([])
    # a batch moves entries already scheduled, like one at a time
    await store.schedule_polls([("F0", "run-0", 5_000, 9), ("F1", "run-1", 5_000, 8)])
    claimed = await store.claim_polls(1_000, 100, 10_000)
    assert sorted(claimed) == sorted((f, n, a) for f, n, _, a in entries[2:])
    assert sorted(await store.claim_polls(5_000, 100, 10_000)) == [
        ("F0", "run-0", 9),
        ("F1", "run-1", 8),
    ]


async def test_claims_respect_the_limit(store: Store) -> None:
    for i in range(30):
        await store.schedule_poll("F1", f"run-{i}", 100 + i, i)
    first = await store.claim_polls(1_000, 12, 10_000)
    second = await store.claim_polls(1_000, 12, 10_000)
    third = await store.claim_polls(1_000, 12, 10_000)
    assert [len(first), len(second), len(third)] == [12, 12, 6]
    claimed = first + second + third
    assert sorted(claimed) == sorted(("F1", f"run-{i}", i) for i in range(30))


async def test_concurrent_claimers_get_disjoint_entries(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    for i in range(100):
        await stores[0].schedule_poll(f"F{i % 7}", f"run-{i}", i, 0)
    results, errors = await _race([s.claim_polls(1_000, 10, 60_000) for s in stores])
    assert errors == []
    assert all(len(result) <= 10 for result in results)
    claimed = [entry for result in results for entry in result]
    # A claimer may get fewer than it asked for while others drain the same
    # shards; what is left is claimed by the next rounds. Never one entry twice.
    for _ in range(10):
        more = await stores[0].claim_polls(1_000, 10, 60_000)
        if not more:
            break
        claimed += more
    assert len(claimed) == len(set(claimed)) == 100


async def test_shared_secret_is_set_once(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    candidates = [bytes([i]) * 32 for i in range(20)]
    results, errors = await _race(
        [s.shared_secret("callback", c) for s, c in zip(stores, candidates, strict=True)]
    )
    assert errors == []
    assert len(set(results)) == 1 and results[0] in candidates
    assert await stores[0].shared_secret("callback", b"\0" * 32) == results[0]
    assert await stores[0].shared_secret("other", b"\xff\x00") == b"\xff\x00"
