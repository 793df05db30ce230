"""router/lifecycle/executions.py and poller.py over the real memory store: listing with
filters in bounded steps, history from the record, and the poller's edge cases."""

from __future__ import annotations

import pytest

from router.errors import InvalidToken
from router.forward import Forwarder, Timeouts, UpstreamTemplate
from router.lifecycle import poller as poller_module
from router.lifecycle.backoff import DEFAULT, cap_attempt
from router.lifecycle.driver import Executions
from router.lifecycle.executions import ExecutionQuery, history, scan
from router.lifecycle.poller import Poller
from router.lifecycle.record import ExecutionRecord, finish
from router.lifecycle.status import Status
from router.metrics import Metrics
from router.model import Flow
from router.store.memory import MemoryStore
from tests.harness import CountingStore


def _flow() -> Flow:
    return Flow(
        id="F1", name="orders", definition="d", description="", role_arn="", type="FDL",
        execution_mode="Standard", environment=None, encryption_key_arn="", tags={},
        created_at=1, updated_at=1,
    )  # fmt: skip


def _record(i: int) -> ExecutionRecord:
    record = ExecutionRecord(
        "F1", "orders", f"run-{i:03d}", str(1 + i % 2), "prod" if i % 3 else "", 1_000 + i,
        input={"i": i},
    )  # fmt: skip
    if i % 4 == 0:
        done = finish(record, Status.FAILED if i % 8 else Status.SUCCEEDED, None, None, None, 5_000)
        assert done is not None
        return done
    return record


async def _store(n: int) -> MemoryStore:
    store = MemoryStore()
    await store.create_flow(_flow())
    await store.put_executions([_record(i) for i in range(n)], 3600)
    return store


@pytest.mark.parametrize(
    "query",
    [
        ExecutionQuery(),
        ExecutionQuery(status=Status.RUNNING),
        ExecutionQuery(status=Status.SUCCEEDED, version="1"),
        ExecutionQuery(alias="prod", name_prefix="run-01"),
        ExecutionQuery(started_from_ms=1_020, started_to_ms=1_070),
        ExecutionQuery(alias="nope"),
    ],
    ids=["all", "running", "succeeded-v1", "alias-prefix", "started-range", "none"],
)
async def test_scan_pages_through_the_matches_newest_first_in_bounded_steps(
    query: ExecutionQuery,
) -> None:
    store = await _store(100)
    expected = sorted(
        (r for r in (_record(i) for i in range(100)) if query.matches(r)),
        key=lambda r: -r.started_at,
    )
    found: list[ExecutionRecord] = []
    token = None
    calls = 0
    for _ in range(200):
        calls += 1
        page = await scan(store, "F1", query, 7, token, max_scan=10)
        assert len(page.items) <= 7
        found += page.items
        token = page.next_token
        if token is None:
            break
    assert [r.name for r in found] == [r.name for r in expected]
    assert calls <= 100 // 10 + len(expected) // 7 + 2  # bounded work per call


async def test_scan_refuses_a_token_the_store_did_not_issue() -> None:
    store = await _store(3)
    with pytest.raises(InvalidToken):
        await scan(store, "F1", ExecutionQuery(), 10, "not-a-token")


def test_history_is_derived_from_the_record() -> None:
    running = _record(1)
    (started,) = history(running)
    assert (started.id, started.type, started.at_ms) == (1, "ExecutionStarted", 1_001)
    assert started.detail == {"version": "2", "alias": "prod", "input": {"i": 1}}
    stopped = finish(running, Status.ABORTED, None, "Halt", "by hand", 9_000)
    assert stopped is not None
    events = history(stopped)
    assert [(e.id, e.type, e.at_ms) for e in events] == [
        (1, "ExecutionStarted", 1_001),
        (2, "ExecutionStopped", 9_000),
    ]
    assert events[1].detail == {"error": "Halt", "cause": "by hand"}


def test_the_callback_safety_poll_is_at_the_cap() -> None:
    attempt = cap_attempt(DEFAULT)
    assert DEFAULT.delay(attempt) == DEFAULT.cap_s > DEFAULT.delay(attempt - 1)


async def test_a_poll_whose_record_never_arrives_is_dropped_after_a_few_tries() -> None:
    # A journal flush schedules the first poll before it writes the record; a crash
    # in between leaves a poll without a record.
    store = MemoryStore()
    await store.create_flow(_flow())
    clock = [1_000_000]
    executions = Executions(
        store, Forwarder(Timeouts()), Metrics(), UpstreamTemplate("http://127.0.0.1:9/{flow}"),
        retention_s=3600, clock=lambda: clock[0],
    )  # fmt: skip
    poller = Poller(executions)
    await store.schedule_poll("F1", "lost-with-a-crash", clock[0], 0)
    for attempt in range(poller_module.MISSING_RETRIES + 1):
        clock[0] += 60_000
        claimed = await store.claim_polls(clock[0], 10, 1_000)
        assert claimed == [("F1", "lost-with-a-crash", attempt)]
        await poller.poll_one(*claimed[0])
    clock[0] += 60_000
    assert await store.claim_polls(clock[0], 10, 1_000) == []
    assert poller.polls == 0  # no executor was asked about it


async def test_a_flush_schedules_its_running_records_in_one_store_call() -> None:
    store = CountingStore(MemoryStore())
    await store.create_flow(_flow())
    executions = Executions(
        store, Forwarder(Timeouts()), Metrics(), UpstreamTemplate("http://127.0.0.1:9/{flow}"),
        retention_s=3600, clock=lambda: 1_000_000,
    )  # type: ignore[arg-type]  # fmt: skip
    records = [_record(i) for i in range(100)]
    for record in records:
        executions.journal.append(record)
    await executions.journal.close()  # flushes what it holds: one batch
    assert store.calls["put_executions"] == 1
    # every Running record's first poll, in one call (one round trip on Redis)
    assert (store.calls["schedule_polls"], store.calls["schedule_poll"]) == (1, 0)
    claimed = await store.claim_polls(2_000_000, 1_000, 1_000)
    assert sorted(name for _, name, _ in claimed) == [r.name for r in records if not r.is_final]
