"""router/lifecycle/status.py: the v2 status vocabulary and its dialect names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.dialects.bedrock.runtime import execution_status
from router.lifecycle.status import (
    FINAL,
    Dialect,
    InvalidStatus,
    Status,
    bedrock_execution_status,
    dialect_name,
    from_dialect,
    is_final,
    parse,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Running", Status.RUNNING),
        ("RUNNING", Status.RUNNING),
        ("succeeded", Status.SUCCEEDED),
        ("Success", Status.SUCCEEDED),
        ("Failed", Status.FAILED),
        ("TimedOut", Status.TIMED_OUT),
        ("timed_out", Status.TIMED_OUT),
        ("TIMEDOUT", Status.TIMED_OUT),
        ("Aborted", Status.ABORTED),
        ("stopped", Status.ABORTED),
        ("Stopped", Status.ABORTED),
        (None, Status.SUCCEEDED),  # a v1 executor that says nothing succeeded
        (Status.FAILED, Status.FAILED),
    ],
)
def test_parse_accepts_every_spelling(raw: object, expected: Status) -> None:
    assert parse(raw) is expected


@pytest.mark.parametrize("raw", ["", "Done", "Pending", "Succeeded ", 1, True, ["Running"], {}])
def test_parse_refuses_what_it_cannot_classify(raw: object) -> None:
    with pytest.raises(InvalidStatus) as caught:
        parse(raw)
    assert caught.value.raw == raw
    assert "Running, Succeeded, Failed, TimedOut, Aborted" in str(caught.value)


def test_final_statuses() -> None:
    final = {Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED}
    assert final == FINAL
    assert not is_final(Status.RUNNING)
    assert all(is_final(s) for s in FINAL)


def test_a_status_is_the_string_it_replaces() -> None:
    assert str.__eq__(Status.SUCCEEDED, "Succeeded")
    assert f"{Status.TIMED_OUT}" == "TimedOut"
    assert isinstance(Status.RUNNING, str)


def test_dialect_names() -> None:
    assert [dialect_name(s, "cloudflow") for s in Status] == [
        "Running", "Succeeded", "Failed", "TimedOut", "Stopped",
    ]  # fmt: skip
    assert [dialect_name(s, "bedrock") for s in Status] == [
        "Running", "Succeeded", "Failed", "TimedOut", "Aborted",
    ]  # fmt: skip


def test_from_dialect_is_strict_and_inverts_dialect_name() -> None:
    dialects: tuple[Dialect, ...] = ("cloudflow", "bedrock")
    for dialect in dialects:
        for status in Status:
            assert from_dialect(dialect_name(status, dialect), dialect) is status
    assert from_dialect("Starting", "cloudflow") is None  # documented, never reported
    with pytest.raises(InvalidStatus):
        from_dialect("Starting", "bedrock")
    with pytest.raises(InvalidStatus):
        from_dialect("Aborted", "cloudflow")  # CloudFlow's filter says Stopped
    with pytest.raises(InvalidStatus):
        from_dialect("Stopped", "bedrock")
    with pytest.raises(InvalidStatus):
        from_dialect("running", "bedrock")


KNOWN = ["running", "Succeeded", "SUCCESS", "failed", "Timed_Out", "ABORTED", "stopped", ""]


@given(st.one_of(st.sampled_from(KNOWN), st.text(max_size=12)))
def test_bedrock_execution_status_can_replace_the_dialects_table(raw: str) -> None:
    assert bedrock_execution_status(raw) == execution_status(raw)
