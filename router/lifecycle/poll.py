"""What a poller does after asking an executor about one execution: a pure decision.

The driver (a replica that claimed a due execution from the store's shared
schedule) describes the execution and hands the result here, together with
the record, the number of that poll (``Step.attempt`` of the step that
scheduled it; :func:`first_poll` schedules number 0) and the time; it gets
back a :class:`Step`:
the transition to write, if any, and when to poll next, if ever, with a
sentence saying why. The driver stays thin: it writes ``step.finished``
atomically (counting the outcome only if its write made the transition) and
puts the execution back in the schedule at ``step.next_due_ms``.

Decisions:

* a final status is the transition (:func:`~router.lifecycle.record.finish`),
  and polling stops; a record that is already final stops polling too;
* ``Running``, or a failure to reach the executor (timeout, refused, 5xx, a
  body that is not a reply), polls again on the backoff schedule
  (:mod:`router.lifecycle.backoff`): a broken executor does not finish
  executions, it delays them;
* the executor answering 404 means it lost the execution (restarted without
  its state): the execution is Failed with ``error`` ``ExecutionLost``, since
  nothing will ever report its end;
* polling stops without a write once the next poll would come after the
  record's retention (``started_at + retention_ms``): the record expires
  unfinished and the outcome is never counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from router.lifecycle.backoff import DEFAULT, Backoff
from router.lifecycle.record import ExecutionRecord, finish, stop_time
from router.lifecycle.status import Status

LOST_ERROR = "ExecutionLost"

Failure = Literal["unreachable", "lost"]


@dataclass(frozen=True, slots=True)
class Step:
    finished: ExecutionRecord | None  # the transition to write; None: nothing to write
    next_due_ms: int | None  # when to poll again; None: never
    attempt: int  # the number of that next poll (stored with its due time)
    reason: str


def first_poll(
    record: ExecutionRecord,
    now_ms: int,
    backoff: Backoff = DEFAULT,
    rng: random.Random | None = None,
) -> Step:
    """The schedule of an execution whose start answered Running: poll number 0."""
    return Step(
        None, now_ms + round(backoff.delay(0, rng) * 1000), 0,
        f"execution {record.name} started Running",
    )  # fmt: skip


def _again(
    record: ExecutionRecord,
    attempt: int,
    now_ms: int,
    retention_ms: int,
    backoff: Backoff,
    rng: random.Random | None,
    why: str,
) -> Step:
    due = now_ms + round(backoff.delay(attempt + 1, rng) * 1000)
    if due >= record.started_at + retention_ms:
        return Step(
            None, None, attempt + 1,
            f"execution {record.name} is still unfinished at the end of its retention; "
            "polling stops and the record expires",
        )  # fmt: skip
    return Step(None, due, attempt + 1, why)


def after_reply(
    record: ExecutionRecord,
    status: Status,
    output: Any,
    error: str | None,
    cause: str | None,
    *,
    attempt: int,
    now_ms: int,
    retention_ms: int,
    backoff: Backoff = DEFAULT,
    rng: random.Random | None = None,
    stopped_at: int | None = None,
) -> Step:
    """The step after poll number ``attempt`` found the execution in ``status``
    (``stopped_at``: when the executor says it ended, if it said)."""
    if record.is_final:
        return Step(None, None, attempt, f"execution {record.name} was already final")
    if status.is_final:
        at = stop_time(stopped_at, record.started_at, now_ms)
        done = finish(record, status, output, error, cause, at)
        return Step(done, None, attempt, f"execution {record.name} ended {status.value}")
    return _again(
        record, attempt, now_ms, retention_ms, backoff, rng,
        f"execution {record.name} is still Running",
    )  # fmt: skip


def after_failure(
    record: ExecutionRecord,
    failure: Failure,
    message: str,
    *,
    attempt: int,
    now_ms: int,
    retention_ms: int,
    backoff: Backoff = DEFAULT,
    rng: random.Random | None = None,
) -> Step:
    """The step after describing failed: ``lost`` (the executor answered 404) or
    ``unreachable`` (anything else); ``message`` says what happened."""
    if record.is_final:
        return Step(None, None, attempt, f"execution {record.name} was already final")
    if failure == "lost":
        done = finish(record, Status.FAILED, None, LOST_ERROR, message, now_ms)
        return Step(
            done, None, attempt,
            f"execution {record.name} failed: its executor no longer knows it ({message})",
        )  # fmt: skip
    return _again(
        record, attempt, now_ms, retention_ms, backoff, rng,
        f"execution {record.name} could not be described ({message}); polling again",
    )  # fmt: skip
