"""The execution record of protocol v2, and its one transition.

Every execution, named by the caller or not, gets a record when it starts
(``Running``, or already final when the executor finished inside the start
call) and exactly one transition to a final status, however many ways the
news arrives (the start reply, a poll, a callback, a stop, from any replica).
:func:`finish` is that transition as a pure function: it answers ``None`` for
a record that is already final, and a store applies it inside one atomic write
(a Lua script, a WATCH/MULTI, a lock in memory), so only the writer whose
write made the transition counts the outcome.

Encoding (:func:`encode`, :func:`decode`): one orjson object whose keys are
the field names; fields that are ``None``, ``generated`` when false and
``revision`` when 0 are left out (absent, they decode as false and 0). The v1
record (what a v1 gateway wrote: ``flow_id``, ``name``,
``version``, ``alias``, ``started_at``) is a subset, so a record written by a
v1 gateway decodes too: as ``Running``, because v1 did not keep the outcome,
and the executor, asked with a describe, knows it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from router.lifecycle.status import InvalidStatus, Status, parse


class ExecutionRecord(NamedTuple):
    """One execution. A NamedTuple rather than a frozen dataclass: one is built on
    every routed execution, and building a 13-field frozen dataclass measured about
    3x the cost of a NamedTuple (object.__setattr__ per field). Compare records
    with records only: as a tuple it also equals a plain tuple of its fields.

    Invariant (checked by :func:`decode`, kept by :func:`finish`): ``stopped_at``
    is set exactly when the status is final.
    """

    flow_id: str
    flow: str  # the flow's name when it started (names can change; ids cannot)
    name: str
    version: str
    alias: str  # "" when started with a version qualifier or none
    started_at: int  # ms since the epoch
    status: Status = Status.RUNNING
    stopped_at: int | None = None  # ms since the epoch; None while Running
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    generated: bool = False  # the gateway made the name up (the caller gave none)
    # The compiled alias's revision when the version was picked (0 without an alias):
    # outcomes are counted per alias revision, so an execution counts in the
    # rollout step (one revision) in which it started.
    revision: int = 0

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def run_seconds(self) -> float | None:
        """Start to final status, for ``flow_router_execution_run_seconds``."""
        if self.stopped_at is None:
            return None
        return (self.stopped_at - self.started_at) / 1000

    @property
    def outcome(self) -> tuple[str, str, str, str]:
        """(flow id, alias, version, status): the key of the per-version outcome counters."""
        return (self.flow_id, self.alias, self.version, self.status.value)


def finish(
    record: ExecutionRecord,
    status: Status,
    output: Any = None,
    error: str | None = None,
    cause: str | None = None,
    at: int = 0,
) -> ExecutionRecord | None:
    """The record after its transition to ``status`` at ``at`` (ms), or ``None`` if it
    was already final: then nothing changes and the caller must not count it again.

    ``stopped_at`` is never before ``started_at`` (clocks of replicas differ).
    Raises ValueError for a status that is not final: Running is no transition.
    """
    if record.status.is_final:
        return None
    if not status.is_final:
        raise ValueError(f"execution {record.name}: {status.value} is not a final status")
    return record._replace(
        status=status,
        stopped_at=max(at, record.started_at),
        output=output,
        error=error,
        cause=cause,
    )


MAX_MS = 2**53  # beyond any date an executor means (and exact in a JSON double)


def reported_stop(value: object) -> int | None:
    """An executor's ``stoppedAt``: when the execution ended, in ms since the epoch, by
    the executor's clock (absent: ``None``). Raises ValueError for anything but a
    whole number in [0, 2**53)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_MS:
        raise ValueError("stoppedAt must be a whole number of milliseconds since the epoch")
    return value


def stop_time(reported: int | None, started_at: int, now: int) -> int:
    """The final time the record keeps: what the executor reported, kept between the
    start and ``now`` (clocks differ between hosts), or ``now`` if it reported none
    (never before the start: another replica's clock may be behind).

    Without it, an execution learnt of by polling ends when the poll found it,
    which may be up to one poll interval late (docs/executor-protocol.md)."""
    if reported is None:
        return max(now, started_at)
    return max(min(reported, now), started_at)


def as_text(value: Any) -> str | None:
    """An executor's ``error`` or ``cause`` as the record keeps it: text, or JSON text."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# -- encoding ---------------------------------------------------------------------------

_FIELDS = ExecutionRecord._fields
_REQUIRED = ("flow_id", "name", "version", "started_at")
_STRINGS = ("flow_id", "flow", "name", "version", "alias")
_OPTIONAL_STRINGS = ("error", "cause")


class CorruptRecord(ValueError):
    """Bytes that do not decode to an execution record."""


def encode(record: ExecutionRecord) -> bytes:
    body = {name: value for name, value in zip(_FIELDS, record, strict=True) if value is not None}
    if not record.generated:
        del body["generated"]
    if not record.revision:
        del body["revision"]
    return orjson.dumps(body)


def decode(raw: bytes | str) -> ExecutionRecord:
    """The record :func:`encode` wrote (or a v1 gateway did); raises CorruptRecord."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CorruptRecord(f"execution record is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise CorruptRecord("execution record is not a JSON object")
    missing = [name for name in _REQUIRED if name not in body]
    if missing:
        raise CorruptRecord(f"execution record lacks {', '.join(missing)}")
    for name in _STRINGS:
        if not isinstance(body.get(name, ""), str):
            raise CorruptRecord(f"execution record field {name} is not a string")
    for name in _OPTIONAL_STRINGS:
        if not isinstance(body.get(name), str | None):
            raise CorruptRecord(f"execution record field {name} is not a string")
    for name in ("started_at", "stopped_at", "revision"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise CorruptRecord(f"execution record field {name} is not an integer")
    if not isinstance(body.get("generated", False), bool):
        raise CorruptRecord("execution record field generated is not a boolean")
    try:
        status = parse(body.get("status", Status.RUNNING.value))
    except InvalidStatus as e:
        raise CorruptRecord(f"execution record status: {e}") from None
    stopped_at = body.get("stopped_at")
    if (stopped_at is None) != (status is Status.RUNNING):
        raise CorruptRecord(
            f"execution record {body['name']}: stopped_at must be set exactly when the "
            f"status is final (status {status.value}, stopped_at {stopped_at})"
        )
    return ExecutionRecord(
        flow_id=body["flow_id"],
        flow=body.get("flow", ""),
        name=body["name"],
        version=body["version"],
        alias=body.get("alias", ""),
        started_at=body["started_at"],
        status=status,
        stopped_at=stopped_at,
        input=body.get("input"),
        output=body.get("output"),
        error=body.get("error"),
        cause=body.get("cause"),
        generated=body.get("generated", False),
        revision=body.get("revision") or 0,
    )
