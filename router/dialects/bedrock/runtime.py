"""bedrock-agent-runtime: executions through an alias.

Every execution through an alias samples a version from the alias's compiled
table (``TSTALIASID`` always runs ``DRAFT``), is forwarded to that version's
executor by :meth:`~router.service.Gateway.run` (which counts it in
``flow_router_executions_total`` with the flow and alias *names*, as for
CloudFlow), and carries ``X-Flow-Version``.

``StartFlowExecution`` names the execution (the caller's ``flowExecutionName``
or a fresh UUID) and the gateway records it with its version, so its
``executionArn`` (flow id, alias id, execution id) leads back to flow, alias
and version for ``GetFlowExecution`` and ``StopFlowExecution``, and
``ListFlowExecutions`` lists it. ``InvokeFlow`` records nothing (no store
write on the hot path); its ``executionId`` only labels the answer.

``InvokeFlow`` answers with an event stream. Everything that can fail before
the executor is called (validation, unknown flow or alias) is an ordinary JSON
error; once the stream has started, an executor failure is a modeled
``dependencyFailedException`` message in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from aiohttp import web

from router import errors, model
from router.dialects.bedrock import eventstream, parsing
from router.dialects.bedrock.exceptions import stream_exception_type
from router.dialects.bedrock.shapes import REQUEST_ID_HEADER, TEST_ALIAS, Call
from router.dialects.common import FLOW_VERSION_HEADER, iso8601, routing_key
from router.lifecycle.record import ExecutionRecord
from router.model import Flow
from router.routing import CompiledAlias
from router.service import Execution

log = logging.getLogger("flow_router.bedrock")

EXECUTION_ID_HEADER = "x-amz-bedrock-flow-execution-id"
EVENT_STREAM = "application/vnd.amazon.eventstream"
OUTPUT_NODE = "FlowOutputNode"
# Executor statuses as Bedrock's FlowExecutionStatus; others pass through.
_STATUSES = {
    "running": "Running",
    "succeeded": "Succeeded",
    "success": "Succeeded",
    "failed": "Failed",
    "timedout": "TimedOut",
    "aborted": "Aborted",
    "stopped": "Aborted",
}
_FINISHED = frozenset({"Succeeded", "Failed", "TimedOut", "Aborted"})


def execution_status(status: str) -> str:
    return _STATUSES.get(status.replace("_", "").lower(), status)


class Target:
    """The flow and alias an execution request names, resolved from the route cache."""

    def __init__(
        self, call: Call, flow_id: str, alias_id: str, compiled: CompiledAlias | None
    ) -> None:
        self.call = call
        self.flow_id = flow_id
        self.alias_id = alias_id
        self.compiled = compiled  # None for the test alias

    @property
    def alias_name(self) -> str:
        return TEST_ALIAS if self.compiled is None else self.compiled.alias.name

    @property
    def routing_key(self) -> bytes | None:
        return routing_key(self.call.request.headers)

    def pick(self) -> str:
        if self.compiled is None:
            return model.DRAFT
        return self.call.gateway.pick(self.compiled, self.routing_key)


async def _target(call: Call, field_name: str = "flowAliasIdentifier") -> tuple[Flow, Target]:
    routes = await call.gateway.routes_by_id(call.flow_id())
    flow = routes.flow
    alias_id = call.arns.alias_id(call.labels["alias"], flow.id, field_name)
    compiled = None if alias_id == TEST_ALIAS else routes.alias_by_id(alias_id)
    return flow, Target(call, flow.id, alias_id, compiled)


# -- StartFlowExecution / GetFlowExecution / StopFlowExecution ----------------------------


async def start_flow_execution(call: Call) -> dict[str, Any]:
    document = parsing.validate_flow_inputs(call.member("inputs"))
    name = model.validate_flow_execution_name(call.member("flowExecutionName"))
    name = name or str(uuid.uuid4())
    flow, target = await _target(call)
    if target.compiled is None:
        execution = await call.gateway.run(flow, model.DRAFT, TEST_ALIAS, name, document)
    else:
        execution = await call.gateway.start_execution(
            flow, alias=target.compiled, name=name, input=document, routing_key=target.routing_key
        )
    call.headers[FLOW_VERSION_HEADER] = execution.version
    return {"executionArn": call.arns.execution(flow.id, target.alias_id, name)}


async def _described(call: Call) -> tuple[Execution, str, str]:
    flow = await call.flow()
    alias_id = call.arns.alias_id(call.labels["alias"], flow.id, "flowAliasIdentifier")
    execution_id = call.arns.execution_id(call.labels["execution"], flow.id, alias_id)
    execution = await call.gateway.describe_execution(flow, execution_id)
    call.headers[FLOW_VERSION_HEADER] = execution.version
    return execution, alias_id, call.arns.execution(flow.id, alias_id, execution_id)


async def get_flow_execution(call: Call) -> dict[str, Any]:
    execution, alias_id, arn = await _described(call)
    flow_id = execution.flow.id
    return {
        "executionArn": arn,
        "flowIdentifier": call.arns.flow(flow_id),
        "flowAliasIdentifier": call.arns.alias(flow_id, alias_id),
        "flowVersion": execution.version,
        "status": execution_status(execution.reply.status),
        "startedAt": iso8601(execution.started_at),
    }


async def stop_flow_execution(call: Call) -> dict[str, Any]:
    """Executions here run to completion within the forwarding call, and the executor
    protocol has no stop: stopping a finished execution answers its final status; a
    still-running one (an asynchronous executor) is a conflict."""
    execution, _, arn = await _described(call)
    status = execution_status(execution.reply.status)
    if status not in _FINISHED:
        raise errors.Conflict(f"execution {arn} is {status} and its executor cannot stop it")
    return {"executionArn": arn, "status": status}


async def list_flow_executions(call: Call) -> dict[str, Any]:
    """The executions started through an alias (StartFlowExecution records them), in
    name order, optionally of one alias; each one's status is asked of its executor.

    Records whose alias no longer exists, and CloudFlow executions started with a
    version qualifier, have no alias ARN to report and are left out, so a page may
    hold fewer than ``maxResults`` items and still have a ``nextToken``.
    """
    limit, token, fields = call.page()
    routes = await call.gateway.routes_by_id(call.flow_id())
    flow = routes.flow
    ids = {name: compiled.alias.id for name, compiled in routes.by_name.items()}
    ids[TEST_ALIAS] = TEST_ALIAS
    wanted: str | None = None
    requested = call.query("flowAliasIdentifier")
    if requested:
        alias_id = call.arns.alias_id(requested, flow.id, "flowAliasIdentifier")
        wanted = TEST_ALIAS if alias_id == TEST_ALIAS else routes.alias_by_id(alias_id).alias.name
    page = await call.gateway.list_executions(flow, limit, token, fields)
    records = [r for r in page.items if r.alias in ids and wanted in (None, r.alias)]
    limiter = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)

    async def summary(record: ExecutionRecord) -> dict[str, Any]:
        async with limiter:
            status = await _status(call, flow, record.name)
        alias_id = ids[record.alias]
        return {
            "executionArn": call.arns.execution(flow.id, alias_id, record.name),
            "flowIdentifier": call.arns.flow(flow.id),
            "flowAliasIdentifier": call.arns.alias(flow.id, alias_id),
            "flowVersion": record.version,
            "status": status,
            "createdAt": iso8601(record.started_at),
        }

    body: dict[str, Any] = {
        "flowExecutionSummaries": list(await asyncio.gather(*map(summary, records)))
    }
    if page.next_token:
        body["nextToken"] = page.next_token
    return body


_DESCRIBE_CONCURRENCY = 16


async def _status(call: Call, flow: Flow, name: str) -> str:
    """The executor's status of one execution; one it cannot describe counts as failed."""
    try:
        execution = await call.gateway.describe_execution(flow, name)
    except (errors.ExecutorError, errors.NotFound):
        return "Failed"
    return execution_status(execution.reply.status)


# -- InvokeFlow -------------------------------------------------------------------------


async def invoke_flow(call: Call) -> web.StreamResponse:
    document = parsing.validate_flow_inputs(call.member("inputs"))
    execution_id = call.member("executionId")
    if execution_id is not None and not isinstance(execution_id, str):
        raise errors.InvalidArgument("executionId must be a string", "executionId")
    flow, target = await _target(call)
    version = target.pick()
    # The executor gets the same id the caller sees; InvokeFlow executions are not
    # recorded (nothing can describe them later), so they cost no store write.
    execution_id = execution_id or str(uuid.uuid4())
    model.validate_execution_name(execution_id, "executionId")
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": EVENT_STREAM,
            EXECUTION_ID_HEADER: execution_id,
            FLOW_VERSION_HEADER: version,
            REQUEST_ID_HEADER: call.request_id,  # sent now: the envelope cannot add it later
            **call.headers,
        },
    )
    await response.prepare(call.request)
    # From here on every failure is a message in the stream: the status is sent.
    try:
        execution = await call.gateway.run(
            flow, version, target.alias_name, execution_id, document, record=False
        )
    except errors.RouterError as e:
        messages = [eventstream.exception(stream_exception_type(e), e.message)]
    except Exception:  # a bug: log it whole, end the stream without internals
        log.exception("unexpected error in InvokeFlow after the stream started")
        messages = [eventstream.exception("internalServerException", "internal error")]
    else:
        messages = _result(execution)
    # The client may be gone by now; the execution ran and was counted either way.
    with contextlib.suppress(ConnectionError):
        for message in messages:
            await response.write(message)
        await response.write_eof()
    return response


def _result(execution: Execution) -> list[bytes]:
    status = execution_status(execution.reply.status)
    if status != "Succeeded":
        error = errors.ExecutorError(
            f"execution on version {execution.version} ended with status {status}",
            execution.version,
        )
        return [eventstream.exception(stream_exception_type(error), error.message)]
    output = {
        "nodeName": OUTPUT_NODE,
        "nodeType": OUTPUT_NODE,
        "content": {"document": execution.reply.output},
    }
    return [
        eventstream.event("flowOutputEvent", output),
        eventstream.event("flowCompletionEvent", {"completionReason": "SUCCESS"}),
    ]
