"""``stoppedAt``: an executor may say when an execution ended, in a describe answer or a
callback body; the record keeps that time rather than when the gateway learnt of
it (what a rollout's ``slowSeconds`` and the dialects' stop times read)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from router.errors import InvalidArgument
from router.forward import ExecutorReply
from router.lifecycle.callback import FinalBody, final_body
from router.lifecycle.poll import after_reply
from router.lifecycle.record import ExecutionRecord, reported_stop, stop_time
from router.lifecycle.replies import record_from_reply
from router.lifecycle.status import Status
from router.model import Flow
from tests.async_executor import Behaviour, Run
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop
from tests.lifecycle_rig import Rig, rig
from tests.plugin import open_store

RECORD = ExecutionRecord("F1", "orders", "e1", "2", "live", started_at=1_000_000)


@pytest.mark.parametrize("value", [0, 1_000_500, 2**53 - 1])
def test_a_reported_stop_is_whole_milliseconds(value: int) -> None:
    assert reported_stop(value) == value
    assert reported_stop(None) is None


@pytest.mark.parametrize("value", [-1, 2**53, 1.5, "1000", True, [1]])
def test_anything_else_is_not_a_stop_time(value: Any) -> None:
    with pytest.raises(ValueError, match="stoppedAt must be a whole number"):
        reported_stop(value)


def test_the_record_keeps_a_reported_stop_between_its_start_and_now() -> None:
    assert stop_time(None, 1_000, 5_000) == 5_000
    assert stop_time(None, 1_000, 900) == 1_000  # this replica's clock is behind
    assert stop_time(3_000, 1_000, 5_000) == 3_000
    assert stop_time(500, 1_000, 5_000) == 1_000  # the executor's clock is behind
    assert stop_time(9_000, 1_000, 5_000) == 5_000  # ... or ahead


def test_a_poll_that_finds_it_ended_keeps_the_reported_time() -> None:
    step = after_reply(
        RECORD, Status.SUCCEEDED, None, None, None,
        attempt=5, now_ms=1_003_100, retention_ms=86_400_000, stopped_at=1_000_250,
    )  # fmt: skip
    assert step.finished is not None and step.finished.stopped_at == 1_000_250


def test_callback_bodies_carry_it_and_a_bad_one_is_refused() -> None:
    assert final_body(b'{"status": "Failed", "stoppedAt": 1700000000123}') == FinalBody(
        Status.FAILED, None, None, None, 1_700_000_000_123
    )
    with pytest.raises(InvalidArgument, match="stoppedAt must be a whole number") as e:
        final_body(b'{"status": "Failed", "stoppedAt": "yesterday"}')
    assert e.value.field == "stoppedAt"


# -- through a gateway, from the SDK to the record ---------------------------------------

DURATION_MS = 150


@pytest.fixture(params=GATEWAY_STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_rig(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, store_kind: str
) -> Iterator[Any]:
    opened: list[Any] = []

    def make(report_stop: Any, callbacks: bool) -> Any:
        store = open_store(store_kind, request)
        opened.append(store)
        behaviour = Behaviour(mode="async", duration_ms=DURATION_MS, report_stop=report_stop)
        return rig(bg_loop, store, {"*": behaviour}, callbacks=callbacks)

    yield make
    for store in opened:
        bg_loop.run(store.close())


def _run_one(r: Rig, name: str) -> tuple[ExecutionRecord, Run]:
    client = cf.client_for(r.server)
    cf.create_flow(client, "f1", versions=1)
    cf.create_alias(client, "f1", "prod", ("1", 100))
    cf.start(client, "f1", "prod", "{}", name=name)
    record = r.wait_final("f1", name)
    (run,) = [run for run in r.executor.runs.values() if run.name == name]
    return record, run


@pytest.mark.parametrize("callbacks", [False, True], ids=["polled", "callback"])
def test_the_record_ends_when_the_executor_says(make_rig: Any, callbacks: bool) -> None:
    with make_rig(True, callbacks) as r:
        record, run = _run_one(r, "told")
    assert record.status is Status.SUCCEEDED
    assert run.stopped_at is not None and record.stopped_at == run.stopped_at


def test_without_it_a_polled_record_ends_when_a_poll_saw_it(make_rig: Any) -> None:
    with make_rig(False, False) as r:
        record, run = _run_one(r, "untold")
    assert run.stopped_at is not None and record.stopped_at is not None
    # polls at 0.1 s, 0.3 s, 0.7 s, ... after the start: the one after the end saw it
    assert record.stopped_at >= run.stopped_at


def test_a_broken_stop_time_in_a_describe_answer_is_ignored(make_rig: Any) -> None:
    with make_rig("soon", False) as r:
        record, run = _run_one(r, "broken")
    assert record.status is Status.SUCCEEDED  # finished, not polled until retention ends
    assert run.stopped_at is not None and record.stopped_at is not None
    assert record.stopped_at >= run.stopped_at


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"stoppedAt": 1_000_250}, Status.SUCCEEDED, 1_000_250),
        ({}, Status.FAILED, 1_009_000),  # none reported: the time of the answer
        ({"stoppedAt": "late"}, Status.ABORTED, 1_009_000),  # not valid: ignored, logged
        ({"stoppedAt": 1_000_250}, Status.RUNNING, None),  # not final: no end
    ],
)
def test_a_describe_or_stop_answer_ends_the_record_when_the_executor_says(
    body: dict[str, Any], status: Status, expected: int | None
) -> None:
    # what DescribeExecution and StopExecution build from the executor's answer
    flow = Flow(id="F1", name="orders", definition="d")
    reply = ExecutorReply(status, None, {"status": status.value, **body})
    assert record_from_reply(flow, RECORD, reply, 1_009_000).stopped_at == expected
