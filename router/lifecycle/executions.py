"""Execution use cases over records: what both dialects see of an execution.

:class:`Execution` is an execution as the dialects show it: its flow and its
record (:class:`~router.lifecycle.record.ExecutionRecord`). :class:`ExecutionQuery`
filters a listing (:func:`scan`: bounded work per call), :class:`HistoryEvent`
is one event of an execution's history (:func:`history`, derived from the record).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.lifecycle.record import ExecutionRecord
from router.lifecycle.status import Status
from router.model import Flow
from router.paging import PAGE_BYTES, encoded_size
from router.store.base import Page, Store, execution_token

SCAN_PAGE = 100  # records read from the store at a time while filtering
MAX_SCAN = 1000  # records one listing call reads at most; then it answers a next token


@dataclass(frozen=True, slots=True)
class ExecutionQuery:
    """What ``list_executions`` keeps; every field given must match (None: any)."""

    status: Status | None = None
    alias: str | None = None  # CloudFlow Qualifier that is an alias name
    version: str | None = None  # CloudFlow Qualifier that is a version number
    name_prefix: str | None = None
    started_from_ms: int | None = None  # inclusive
    started_to_ms: int | None = None  # inclusive

    def matches(self, record: ExecutionRecord) -> bool:
        return (
            (self.status is None or record.status is self.status)
            and (self.alias is None or record.alias == self.alias)
            and (self.version is None or record.version == self.version)
            and (self.name_prefix is None or record.name.startswith(self.name_prefix))
            and (self.started_from_ms is None or record.started_at >= self.started_from_ms)
            and (self.started_to_ms is None or record.started_at <= self.started_to_ms)
        )


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event of an execution's history, numbered from 1 in order."""

    id: int
    type: str  # ExecutionStarted, StopRequested, ExecutionSucceeded/Failed/TimedOut/Stopped
    at_ms: int
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution of ``flow`` as its record says."""

    flow: Flow
    record: ExecutionRecord

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> str:
        return self.record.version

    @property
    def alias(self) -> str:
        return self.record.alias

    @property
    def started_at(self) -> int:
        return self.record.started_at

    @property
    def stopped_at(self) -> int | None:
        """When it reached its final status (ms); None while Running."""
        return self.record.stopped_at

    @property
    def input(self) -> Any:
        return self.record.input

    @property
    def status(self) -> Status:
        return self.record.status

    @property
    def output(self) -> Any:
        return self.record.output

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def cause(self) -> str | None:
        return self.record.cause


_FINAL_EVENTS = {
    Status.SUCCEEDED: "ExecutionSucceeded",
    Status.FAILED: "ExecutionFailed",
    Status.TIMED_OUT: "ExecutionTimedOut",
    Status.ABORTED: "ExecutionStopped",
}


def history(record: ExecutionRecord) -> list[HistoryEvent]:
    """ExecutionStarted (with the version the gateway chose), then the final event."""
    started = {"version": record.version, "alias": record.alias, "input": record.input}
    events = [HistoryEvent(1, "ExecutionStarted", record.started_at, started)]
    if record.stopped_at is not None:
        detail = {
            key: value
            for key, value in (
                ("output", record.output), ("error", record.error), ("cause", record.cause)
            )
            if value is not None
        }  # fmt: skip
        events.append(HistoryEvent(2, _FINAL_EVENTS[record.status], record.stopped_at, detail))
    return events


async def scan(
    store: Store,
    flow_id: str,
    query: ExecutionQuery,
    limit: int,
    token: str | None,
    *,
    max_scan: int = MAX_SCAN,
    budget: int = PAGE_BYTES,
) -> Page[ExecutionRecord]:
    """Up to ``limit`` records matching ``query``, newest first.

    Bounded work: after reading ``max_scan`` records it answers what it found with
    a next token (a page may then be short, even empty, with more to come); a page
    also stops before the item that takes it past ``budget`` encoded bytes. Raises
    InvalidToken for a token the store did not issue.
    """
    items: list[ExecutionRecord] = []
    size = scanned = 0
    while True:
        page = await store.list_executions(flow_id, SCAN_PAGE, token)
        records = page.items
        for i, record in enumerate(records):
            if query.started_from_ms is not None and record.started_at < query.started_from_ms:
                return Page(items)  # newest first: nothing older can match
            if not query.matches(record):
                continue
            size += encoded_size(record)
            if items and size > budget:
                return Page(items, execution_token(record))
            items.append(record)
            if len(items) == limit:
                following = execution_token(records[i + 1]) if i + 1 < len(records) else None
                return Page(items, following or page.next_token)
        scanned += len(records)
        token = page.next_token
        if token is None:
            return Page(items)
        if scanned >= max_scan:
            return Page(items, token)
