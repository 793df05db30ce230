"""router/lifecycle/poll.py: the poller's decisions, and the schedule they walk."""

from __future__ import annotations

import random

import pytest

from router.lifecycle.backoff import Backoff, polls_for
from router.lifecycle.poll import LOST_ERROR, after_failure, after_reply, first_poll
from router.lifecycle.record import ExecutionRecord, finish
from router.lifecycle.status import Status

DAY_MS = 86_400_000
RECORD = ExecutionRecord("F1", "orders", "e1", "2", "live", started_at=1_000_000)


def test_first_poll_is_100ms_after_the_start() -> None:
    step = first_poll(RECORD, 1_000_000)
    assert (step.finished, step.next_due_ms, step.attempt) == (None, 1_000_100, 0)


def test_a_final_status_is_the_transition_and_polling_stops() -> None:
    step = after_reply(
        RECORD, Status.SUCCEEDED, {"ok": 1}, None, None,
        attempt=3, now_ms=1_002_000, retention_ms=DAY_MS,
    )  # fmt: skip
    assert step.finished == finish(RECORD, Status.SUCCEEDED, {"ok": 1}, at=1_002_000)
    assert step.next_due_ms is None and step.reason == "execution e1 ended Succeeded"


def test_running_polls_again_later_and_later() -> None:
    dues = []
    for attempt in range(12):
        step = after_reply(
            RECORD, Status.RUNNING, None, None, None,
            attempt=attempt, now_ms=2_000_000, retention_ms=DAY_MS,
        )  # fmt: skip
        assert step.finished is None and step.attempt == attempt + 1
        assert step.next_due_ms is not None
        dues.append(step.next_due_ms - 2_000_000)
    assert dues == [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000, 30000]


def test_an_already_final_record_is_left_alone() -> None:
    done = finish(RECORD, Status.ABORTED, at=1_000_500)
    assert done is not None
    for step in (
        after_reply(done, Status.SUCCEEDED, 1, None, None, attempt=0, now_ms=2, retention_ms=9),
        after_failure(done, "lost", "404", attempt=0, now_ms=2, retention_ms=9),
    ):
        assert (step.finished, step.next_due_ms) == (None, None)


def test_an_unreachable_executor_delays_but_never_finishes() -> None:
    step = after_failure(
        RECORD, "unreachable", "connection refused",
        attempt=0, now_ms=1_000_100, retention_ms=DAY_MS,
    )  # fmt: skip
    assert (step.finished, step.next_due_ms, step.attempt) == (None, 1_000_300, 1)
    assert "connection refused" in step.reason


def test_an_executor_that_lost_the_execution_fails_it() -> None:
    step = after_failure(
        RECORD, "lost", "executor of version 2 has no e1",
        attempt=4, now_ms=1_009_000, retention_ms=DAY_MS,
    )  # fmt: skip
    assert step.finished is not None and step.next_due_ms is None
    assert (step.finished.status, step.finished.error) == (Status.FAILED, LOST_ERROR)
    assert step.finished.cause == "executor of version 2 has no e1"


def test_polling_stops_at_the_end_of_retention_without_a_write() -> None:
    retention_ms = 60_000
    step = after_reply(
        RECORD, Status.RUNNING, None, None, None,
        attempt=20, now_ms=RECORD.started_at + 45_000, retention_ms=retention_ms,
    )  # fmt: skip
    assert (step.finished, step.next_due_ms) == (None, None)
    assert "retention" in step.reason


def walk(duration_ms: int, backoff: Backoff, rng: random.Random | None = None) -> int:
    """Drive the decisions like a poller would, against an execution of that duration."""
    step, polls = first_poll(RECORD, RECORD.started_at, backoff, rng), 0
    while step.next_due_ms is not None and polls < 10_000:
        now = step.next_due_ms
        polls += 1
        ended = now >= RECORD.started_at + duration_ms
        status = Status.SUCCEEDED if ended else Status.RUNNING
        step = after_reply(
            RECORD, status, None, None, None, attempt=step.attempt, now_ms=now,
            retention_ms=DAY_MS, backoff=backoff, rng=rng,
        )  # fmt: skip
    assert step.finished is not None
    return polls


@pytest.mark.parametrize("duration_ms", [1, 100, 101, 999, 1_000, 60_000, 3_600_000])
def test_the_decisions_walk_the_schedule_polls_for_counts(duration_ms: int) -> None:
    assert walk(duration_ms, Backoff()) == polls_for(duration_ms / 1000)


def test_jitter_only_adds_polls() -> None:
    rng = random.Random(5)
    for duration_ms in (150, 5_000, 120_000):
        assert walk(duration_ms, Backoff(jitter=0.2), rng) >= polls_for(duration_ms / 1000)
