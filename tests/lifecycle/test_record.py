"""router/lifecycle/record.py: the v2 record, its one transition, and its encoding."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.lifecycle.record import CorruptRecord, ExecutionRecord, decode, encode, finish
from router.lifecycle.status import FINAL, Status

RUNNING = ExecutionRecord(
    flow_id="F1", flow="orders", name="exec-1", version="2", alias="live",
    started_at=1_000, input={"n": 1},
)  # fmt: skip


def test_finish_makes_the_one_transition() -> None:
    done = finish(RUNNING, Status.FAILED, output=None, error="E", cause="why", at=1_500)
    assert done == RUNNING._replace(status=Status.FAILED, stopped_at=1_500, error="E", cause="why")
    assert done is not None and done.run_seconds == 0.5
    assert done.outcome == ("F1", "live", "2", "Failed")
    assert RUNNING.run_seconds is None and not RUNNING.is_final


@pytest.mark.parametrize("status", sorted(FINAL))
def test_a_final_record_never_transitions_again(status: Status) -> None:
    done = finish(RUNNING, status, output={"x": 1}, at=2_000)
    assert done is not None and done.is_final
    for again in FINAL:
        assert finish(done, again, output="other", at=3_000) is None


def test_running_is_no_transition() -> None:
    with pytest.raises(ValueError, match="not a final status"):
        finish(RUNNING, Status.RUNNING, at=2_000)


def test_stopped_at_is_never_before_started_at() -> None:
    done = finish(RUNNING, Status.SUCCEEDED, at=10)  # another replica's clock is behind
    assert done is not None and done.stopped_at == RUNNING.started_at


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def records(draw: st.DrawFn) -> ExecutionRecord:
    started = draw(st.integers(0, 2**45))
    record = ExecutionRecord(
        flow_id=draw(st.text(min_size=1, max_size=10)),
        flow=draw(st.text(max_size=10)),
        name=draw(st.text(min_size=1, max_size=10)),
        version=draw(st.sampled_from(["1", "2", "DRAFT"])),
        alias=draw(st.text(max_size=6)),
        started_at=started,
        input=draw(json_values),
        generated=draw(st.booleans()),
        revision=draw(st.integers(0, 2**31)),
    )
    status = draw(st.sampled_from(list(Status)))
    if status is Status.RUNNING:
        return record
    done = finish(
        record, status, draw(json_values), draw(st.none() | st.text(max_size=6)),
        draw(st.none() | st.text(max_size=6)), started + draw(st.integers(0, 10**9)),
    )  # fmt: skip
    assert done is not None
    return done


@given(records())
def test_encoding_round_trips(record: ExecutionRecord) -> None:
    assert decode(encode(record)) == record


def test_encoding_leaves_out_what_is_empty_but_keeps_false_outputs() -> None:
    done = finish(RUNNING, Status.SUCCEEDED, output=False, at=1_200)
    assert done is not None
    body = orjson.loads(encode(done))
    assert body == {
        "flow_id": "F1", "flow": "orders", "name": "exec-1", "version": "2", "alias": "live",
        "started_at": 1_000, "status": "Succeeded", "stopped_at": 1_200, "input": {"n": 1},
        "output": False,
    }  # fmt: skip
    assert decode(encode(done)).output is False


def test_a_v1_record_decodes_as_running() -> None:
    # what a v1 gateway wrote: flow_id, name, version, alias, started_at
    v1 = {"flow_id": "F1", "name": "exec-1", "version": "2", "alias": "live", "started_at": 1_000}
    raw = orjson.dumps(v1)
    assert decode(raw) == ExecutionRecord("F1", "", "exec-1", "2", "live", 1_000)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"flow_id": "F", "name": "n", "version": "1"}', "lacks started_at"),
        (b'{"flow_id": 1, "name": "n", "version": "1", "started_at": 1}', "flow_id"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": "1"}', "started_at"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": true}', "started_at"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": 1, "error": 5}', "error"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": 1, "status": "Done"}',
         "status"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": 1, "generated": 1}',
         "generated"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": 1, "status": "Failed"}',
         "stopped_at must be set"),
        (b'{"flow_id": "F", "name": "n", "version": "1", "started_at": 1, "stopped_at": 2}',
         "stopped_at must be set"),
    ],
)  # fmt: skip
def test_corrupt_records_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(CorruptRecord, match=why):
        decode(raw)


def test_revision_is_encoded_only_when_set() -> None:
    assert "revision" not in orjson.loads(encode(RUNNING))
    assert decode(encode(RUNNING)).revision == 0
    at_revision = RUNNING._replace(revision=7)
    assert orjson.loads(encode(at_revision))["revision"] == 7
    assert decode(encode(at_revision)) == at_revision
    bad = b'{"flow_id": "F", "name": "n", "version": "1", "started_at": 1, "revision": "7"}'
    with pytest.raises(CorruptRecord, match="revision"):
        decode(bad)
