"""CloudFlow wire values of the execution lifecycle actions (issue 11).

Parameters of ListExecutions and GetExecutionHistory, parsed into the
Gateway's terms with a 400 naming the field for every bad value, and the
answer bodies shaped as the ``alibabacloud_fnf20190315`` models read them:
``ListExecutionsResponseBodyExecutions``, ``GetExecutionHistoryResponseBodyEvents``,
``StopExecutionResponseBody`` and ``StartSyncExecutionResponseBody``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from router import errors, model
from router.dialects.cloudflow.shapes import API, Call
from router.dialects.common import iso8601
from router.lifecycle.executions import ExecutionQuery, HistoryEvent
from router.lifecycle.status import InvalidStatus, Status, dialect_name, from_dialect
from router.service import Execution

# Limits as the fnf 2019-03-15 API documents them (ListExecutions: Limit 1-100,
# GetExecutionHistory: Limit 1-1000; both default to 60; StopExecution: Error
# 1-128 and Cause 1-4096 characters).
LIST_LIMIT = 100
HISTORY_LIMIT = 1000
DEFAULT_LIMIT = 60
MAX_ERROR = 128
MAX_CAUSE = 4096
MAX_PREFIX = 128  # an execution name is at most 128 characters
STATUSES = ("Starting", "Running", "Stopped", "Succeeded", "Failed", "TimedOut")

# RFC 3339 as the API asks for it ("UTC RFC3339"): a full date and time with
# seconds, optional fraction, and a zone (Z or an offset). Python's fromisoformat
# alone also takes dates without times and the basic format, which the API does not.
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.(\d{1,9}))?(?:[Zz]|[+-]\d\d:\d\d)", re.ASCII
)


def text(value: Any) -> str:
    """Inputs, outputs and definitions are strings on this API; JSON documents are dumped."""
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def status_name(status: Status) -> str:
    return dialect_name(status, "cloudflow")


def limit(call: Call, maximum: int) -> int:
    value = call.integer("Limit", DEFAULT_LIMIT)
    if not 1 <= value <= maximum:
        raise errors.InvalidArgument(f"Limit must be between 1 and {maximum}", "Limit")
    return value


def optional_text(call: Call, name: str, maximum: int) -> str | None:
    value = call.get(name)
    if value is not None and len(value) > maximum:
        raise errors.InvalidArgument(f"{name} must be 1 to {maximum} characters long", name)
    return value


def time_ms(call: Call, name: str) -> int | None:
    """An RFC 3339 time parameter as ms since the epoch, or ``None`` when absent."""
    value = call.get(name)
    return None if value is None else parse_time(value, name)


def parse_time(value: str, name: str) -> int:
    """``2020-12-02T02:39:20.402Z`` (or with an offset) as ms since the epoch; a
    fraction finer than milliseconds is cut, as the API keeps milliseconds."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise errors.InvalidArgument(
            f"{name} must be an RFC 3339 time such as 2020-12-02T02:39:20.402Z", name
        )
    fraction = match[1] or ""
    iso = value.replace("z", "Z").replace("t", "T")
    if len(fraction) > 6:  # fromisoformat takes at most 6 fractional digits
        iso = iso.replace("." + fraction, "." + fraction[:6], 1)
    try:
        moment = datetime.fromisoformat(iso)
        whole = int(moment.replace(microsecond=0).timestamp())  # exact, unlike a float
    except (ValueError, OverflowError):  # a month 13, a 25th hour, a February 30th
        raise errors.InvalidArgument(f"{name} {value!r} is not a valid time", name) from None
    return whole * 1000 + moment.microsecond // 1000


def status_filter(call: Call) -> tuple[Status | None, bool]:
    """(status, matches_nothing): ``Starting`` is a status CloudFlow documents and
    the gateway never reports (a record is Running from its start)."""
    value = call.get("Status")
    if value is None:
        return None, False
    try:
        status = from_dialect(value, "cloudflow")
    except InvalidStatus:
        raise errors.InvalidArgument(
            f"Status {value!r} is not one of {', '.join(STATUSES)}", "Status"
        ) from None
    return status, status is None


def qualifier_filter(call: Call) -> tuple[str | None, str | None]:
    """(alias, version) the ``Qualifier`` names: digits are a version, else an alias."""
    qualifier = call.get("Qualifier")
    if qualifier is None:
        return None, None
    if qualifier.isascii() and qualifier.isdigit():
        return None, str(model.parse_version(qualifier, "Qualifier"))
    return model.validate_alias_name(qualifier, API, "Qualifier"), None


@dataclass(frozen=True, slots=True)
class ListRequest:
    query: ExecutionQuery
    limit: int
    token: str | None
    metadata_only: bool
    matches_nothing: bool


def list_request(call: Call) -> ListRequest:
    """Every ListExecutions parameter checked, before anything is read."""
    status, nothing = status_filter(call)
    alias, version = qualifier_filter(call)
    begin = time_ms(call, "StartedTimeBegin")
    end = time_ms(call, "StartedTimeEnd")
    if begin is not None and end is not None and begin > end:
        raise errors.InvalidArgument(
            "StartedTimeBegin must not be after StartedTimeEnd", "StartedTimeBegin"
        )
    query = ExecutionQuery(
        status=status,
        alias=alias,
        version=version,
        name_prefix=optional_text(call, "ExecutionNamePrefix", MAX_PREFIX),
        started_from_ms=begin,
        started_to_ms=end,
    )
    return ListRequest(
        query=query,
        limit=limit(call, LIST_LIMIT),
        token=call.get("NextToken"),
        metadata_only=bool(call.flag("MetadataOnly")),
        matches_nothing=nothing,
    )


def history_token(call: Call) -> int:
    """GetExecutionHistory's ``NextToken``: the ``EventId`` to continue from."""
    value = call.get("NextToken")
    if value is None:
        return 0
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise errors.InvalidArgument("NextToken: the pagination token is not valid", "NextToken")
    return int(value)


# -- bodies ------------------------------------------------------------------------


def execution_item(execution: Execution, definition: Any, metadata_only: bool) -> dict[str, Any]:
    """One execution as DescribeExecution shows it; ``MetadataOnly`` leaves out the
    documents (Input, Output, FlowDefinition), which are most of its size."""
    stopped = execution.stopped_at
    body: dict[str, Any] = {
        "Name": execution.name,
        "FlowName": execution.flow.name,
        "Status": status_name(execution.status),
        "StartedTime": iso8601(execution.started_at),
        "StoppedTime": iso8601(stopped) if stopped is not None else "",
    }
    if not metadata_only:
        body["Input"] = text(execution.input)
        body["Output"] = text(execution.output)
        body["FlowDefinition"] = text(definition)
        body["Environment"] = execution.flow.environment or {}  # as DescribeExecution
    return body


def stop_body(execution: Execution, definition: Any) -> dict[str, Any]:
    body = execution_item(execution, definition, metadata_only=False)
    del body["Environment"]  # StopExecution's answer has none
    if execution.flow.role_arn:  # the API leaves RoleArn out when the flow has none
        body["RoleArn"] = execution.flow.role_arn
    return body


def sync_body(execution: Execution) -> dict[str, Any]:
    """StartSyncExecution: the final status; a failed run's error and cause as
    ``ErrorCode`` and ``ErrorMessage`` (a 200, like the API: the call worked)."""
    body = execution_item(execution, None, metadata_only=True)
    body["Output"] = text(execution.output)
    body["Environment"] = execution.flow.environment or {}
    if execution.error is not None:
        body["ErrorCode"] = execution.error
    if execution.cause is not None:
        body["ErrorMessage"] = execution.cause
    return body


def history_body(
    events: Sequence[HistoryEvent], start: int, count: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Events from ``EventId`` ``start`` on, at most ``count``, and the next token.

    ``ScheduleEventId`` is the id of the event before (0 for the first): each of
    the gateway's events follows from the one before it.
    """
    page: list[dict[str, Any]] = []
    previous = 0
    for event in events:
        if event.id >= start:
            if len(page) == count:
                return page, str(event.id)
            page.append(
                {
                    "StepName": "",
                    "Type": event.type,
                    "EventId": event.id,
                    "ScheduleEventId": previous,
                    "Time": iso8601(event.at_ms),
                    "EventDetail": orjson.dumps(dict(event.detail), default=str).decode(),
                }
            )
        previous = event.id
    return page, None
