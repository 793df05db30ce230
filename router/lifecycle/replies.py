"""What an executor's answer says about an execution's record: its status and, once
final, when it ended (``stoppedAt``, docs/executor-protocol.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from router.forward import ExecutorReply
from router.lifecycle.record import ExecutionRecord, reported_stop, stop_time
from router.model import Flow

log = logging.getLogger("flow_router.executions")


def record_from_reply(
    flow: Flow, record: ExecutionRecord, reply: ExecutorReply, at: int
) -> ExecutionRecord:
    """``record`` (not stored) as the executor's answer describes it (a describe or a
    stop answer, at ``at``)."""
    final = reply.status.is_final
    reported = reported_stop_of(reply.body, record.name) if final else None
    return record._replace(
        flow=flow.name,
        status=reply.status,
        stopped_at=stop_time(reported, record.started_at, at) if final else None,
        input=reply.body.get("input"),
        output=reply.output,
        error=reply.error,
        cause=reply.cause,
    )


def reported_stop_of(body: Mapping[str, Any], name: str) -> int | None:
    """An executor answer's ``stoppedAt``; one that is not valid is logged and left out
    (the gateway's own time is used): the executor is not told, and refusing the
    answer would, for a poll, ask about a finished execution until its retention ends."""
    try:
        return reported_stop(body.get("stoppedAt"))
    except ValueError as e:
        log.warning("execution %s: the executor's answer: %s; ignored", name, e)
        return None
