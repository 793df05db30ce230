"""The execution statuses of executor protocol v2, and how each dialect names them.

An executor answers ``{"status": ...}`` with one of ``Running``, ``Succeeded``,
``Failed``, ``TimedOut`` or ``Aborted``. Parsing is lenient about spelling and
strict about meaning:

* case and ``_`` are ignored (``RUNNING``, ``timed_out``, ``succeeded``);
* the synonyms executors commonly send are accepted: ``success`` means
  Succeeded, ``stopped`` means Aborted (the table Bedrock used before v2);
* an absent status (``None``) means Succeeded, so a v1 executor, which
  finishes inside the start call and may say nothing, keeps working;
* anything else, a non-string included, raises :class:`InvalidStatus`. The
  caller turns it into an ``ExecutorError`` naming the version: a status the
  gateway cannot classify must not be counted as an outcome, and passing it
  through (as v1 did) would leave the execution neither running nor final.

:class:`Status` is a ``str`` enum whose value is the canonical (Bedrock) name,
so it can stand wherever a status string stood before. Each dialect shows it
with :func:`dialect_name`: CloudFlow calls Aborted ``Stopped``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Literal

Dialect = Literal["cloudflow", "bedrock"]


class Status(enum.StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    ABORTED = "Aborted"

    @property
    def is_final(self) -> bool:
        return self is not Status.RUNNING


FINAL: frozenset[Status] = frozenset(s for s in Status if s.is_final)


class InvalidStatus(ValueError):
    """The executor answered a status that is not one of protocol v2's."""

    def __init__(self, raw: object) -> None:
        super().__init__(
            f"unknown execution status {raw!r} (expected one of "
            f"{', '.join(s.value for s in Status)})"
        )
        self.raw = raw


_SPELLINGS: Mapping[str, Status] = {
    **{s.value.lower(): s for s in Status},
    "success": Status.SUCCEEDED,
    "stopped": Status.ABORTED,
}


def parse(raw: object) -> Status:
    """The status an executor's ``status`` field means; raises InvalidStatus."""
    if raw is None:
        return Status.SUCCEEDED
    if isinstance(raw, Status):
        return raw
    if not isinstance(raw, str):
        raise InvalidStatus(raw)
    found = _SPELLINGS.get(raw.replace("_", "").lower())
    if found is None:
        raise InvalidStatus(raw)
    return found


def is_final(status: Status) -> bool:
    return status.is_final


_CLOUDFLOW: Mapping[Status, str] = {**{s: s.value for s in Status}, Status.ABORTED: "Stopped"}
_BEDROCK: Mapping[Status, str] = {s: s.value for s in Status}
_NAMES: Mapping[str, Mapping[Status, str]] = {"cloudflow": _CLOUDFLOW, "bedrock": _BEDROCK}
# Statuses a dialect documents that the gateway never reports: a record is Running
# from its start, so CloudFlow's Starting matches no execution.
_NEVER_SHOWN: Mapping[str, frozenset[str]] = {
    "cloudflow": frozenset({"Starting"}),
    "bedrock": frozenset(),
}


def dialect_name(status: Status, dialect: Dialect) -> str:
    """What ``dialect`` calls ``status`` on the wire (CloudFlow: Aborted is Stopped)."""
    return _NAMES[dialect][status]


def from_dialect(name: str, dialect: Dialect) -> Status | None:
    """The status a dialect's filter value names (``ListExecutions`` ``Status=Stopped``).

    Strict: only the dialect's own spelling, as its API documents it; raises
    InvalidStatus so the dialect can answer its invalid-parameter error.
    ``None`` for a documented status the gateway never reports (CloudFlow's
    ``Starting``): a filter on it is valid and matches nothing.
    """
    if name in _NEVER_SHOWN[dialect]:
        return None
    for status, shown in _NAMES[dialect].items():
        if shown == name:
            return status
    raise InvalidStatus(name)


def bedrock_execution_status(raw: str) -> str:
    """Drop-in for ``router.dialects.bedrock.runtime.execution_status``.

    Same results for every status that table knew; what it passed through
    unchanged (an unknown status) is passed through here too, because a v1
    record can still hold one. New code should call :func:`parse`.
    """
    try:
        return dialect_name(parse(raw), "bedrock")
    except InvalidStatus:
        return raw
