"""bedrock-agent-runtime: executions through an alias.

Every execution through an alias samples a version from the alias's compiled
table (``TSTALIASID`` always runs ``DRAFT``), is forwarded to that version's
executor (router/lifecycle/driver.py: recorded and counted in
``flow_router_executions_total`` and, once final, in
``flow_router_execution_results_total`` with the flow and alias *names*, as for
CloudFlow), and carries ``X-Flow-Version``.

``StartFlowExecution`` names the execution (the caller's ``flowExecutionName``
or a fresh UUID) and answers at once, ``Running`` or not; its ``executionArn``
(flow id, alias id, execution id) leads back to the record for
``GetFlowExecution`` (Running until the executor reports the end, then
``endedAt``) and ``StopFlowExecution`` (forwarded to the executor: ``Aborted``;
``ConflictException`` if it had already finished). ``ListFlowExecutions``
lists the records, newest first, InvokeFlow's included.

``InvokeFlow`` records its execution under a generated name (no store round
trip; ``executionId``, when given, only labels the answer) and, with an
asynchronous executor, waits for the final status (callback or polling) up to
``--invoke-timeout``. Everything that can fail before the executor is called
(validation, unknown flow or alias) is an ordinary JSON error; once the stream
has started, a failure is a modeled ``dependencyFailedException`` message in it
(an execution that did not finish in time included).
"""

from __future__ import annotations

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
from router.execution_names import generated
from router.lifecycle.status import Status, bedrock_execution_status, dialect_name
from router.model import Flow
from router.routing import CompiledAlias
from router.service import Execution, ExecutionQuery

log = logging.getLogger("flow_router.bedrock")

EXECUTION_ID_HEADER = "x-amz-bedrock-flow-execution-id"
EVENT_STREAM = "application/vnd.amazon.eventstream"
OUTPUT_NODE = "FlowOutputNode"

execution_status = bedrock_execution_status  # the table this module had before v2


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


async def _execution_id(call: Call) -> tuple[Flow, str, str]:
    flow = await call.flow()
    alias_id = call.arns.alias_id(call.labels["alias"], flow.id, "flowAliasIdentifier")
    execution_id = call.arns.execution_id(call.labels["execution"], flow.id, alias_id)
    return flow, alias_id, execution_id


async def get_flow_execution(call: Call) -> dict[str, Any]:
    flow, alias_id, execution_id = await _execution_id(call)
    execution = await call.gateway.describe_execution(flow, execution_id)
    call.headers[FLOW_VERSION_HEADER] = execution.version
    body: dict[str, Any] = {
        "executionArn": call.arns.execution(flow.id, alias_id, execution_id),
        "flowIdentifier": call.arns.flow(flow.id),
        "flowAliasIdentifier": call.arns.alias(flow.id, alias_id),
        "flowVersion": execution.version,
        "status": dialect_name(execution.status, "bedrock"),
        "startedAt": iso8601(execution.started_at),
    }
    if execution.stopped_at is not None:
        body["endedAt"] = iso8601(execution.stopped_at)
    if execution.status in (Status.FAILED, Status.TIMED_OUT) and (
        execution.error or execution.cause
    ):
        body["errors"] = [
            {
                "nodeName": OUTPUT_NODE,
                "error": _ERROR_TYPE.get(execution.status, execution.error or ""),
                "message": execution.cause or execution.error or "",
            }
        ]
    return body


# FlowExecutionErrorType has one documented value; other errors carry the executor's.
_ERROR_TYPE = {Status.TIMED_OUT: "ExecutionTimedOut"}


async def stop_flow_execution(call: Call) -> dict[str, Any]:
    """Forwards the stop to the executor; the execution ends ``Aborted``. One that had
    already finished is a ``ConflictException`` that names its final status."""
    flow, alias_id, execution_id = await _execution_id(call)
    execution = await call.gateway.stop_execution(flow, execution_id, None, None)
    call.headers[FLOW_VERSION_HEADER] = execution.version
    return {
        "executionArn": call.arns.execution(flow.id, alias_id, execution_id),
        "status": dialect_name(execution.status, "bedrock"),
    }


async def list_flow_executions(call: Call) -> dict[str, Any]:
    """Every execution started through an alias (named or not, InvokeFlow's included),
    newest first, optionally of one alias, from the records (no executor call).

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
    query = ExecutionQuery(alias=wanted)
    page = await call.gateway.list_executions(flow, query, limit, token, fields)
    summaries = []
    for execution in page.items:
        shown = ids.get(execution.alias)
        if shown is None:
            continue
        summary = {
            "executionArn": call.arns.execution(flow.id, shown, execution.name),
            "flowIdentifier": call.arns.flow(flow.id),
            "flowAliasIdentifier": call.arns.alias(flow.id, shown),
            "flowVersion": execution.version,
            "status": dialect_name(execution.status, "bedrock"),
            "createdAt": iso8601(execution.started_at),
        }
        if execution.stopped_at is not None:
            summary["endedAt"] = iso8601(execution.stopped_at)
        summaries.append(summary)
    body: dict[str, Any] = {"flowExecutionSummaries": summaries}
    if page.next_token:
        body["nextToken"] = page.next_token
    return body


# -- InvokeFlow -------------------------------------------------------------------------


async def invoke_flow(call: Call) -> web.StreamResponse:
    document = parsing.validate_flow_inputs(call.member("inputs"))
    execution_id = call.member("executionId")
    if execution_id is not None and not isinstance(execution_id, str):
        raise errors.InvalidArgument("executionId must be a string", "executionId")
    if execution_id:
        model.validate_execution_name(execution_id, "executionId")
    flow, target = await _target(call)
    version = target.pick()
    revision = 0 if target.compiled is None else target.compiled.revision
    # The record and the executor get a generated name (no store round trip, and
    # Bedrock lets a caller reuse executionId across calls); the caller's id, when
    # given, only labels the answer.
    name = generated(version, target.alias_name)
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": EVENT_STREAM,
            EXECUTION_ID_HEADER: execution_id or name,
            FLOW_VERSION_HEADER: version,
            REQUEST_ID_HEADER: call.request_id,  # sent now: the envelope cannot add it later
            **call.headers,
        },
    )
    await response.prepare(call.request)
    # From here on every failure is a message in the stream: the status is sent.
    try:
        execution = await call.gateway.run(
            flow, version, target.alias_name, name, document, revision, unnamed=True
        )
        execution = await call.gateway.final(execution)
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
    status = dialect_name(execution.status, "bedrock")
    if execution.status is not Status.SUCCEEDED:
        error = errors.ExecutorError(
            f"execution on version {execution.version} ended with status {status}",
            execution.version,
        )
        return [eventstream.exception(stream_exception_type(error), error.message)]
    output = {
        "nodeName": OUTPUT_NODE,
        "nodeType": OUTPUT_NODE,
        "content": {"document": execution.output},
    }
    return [
        eventstream.event("flowOutputEvent", output),
        eventstream.event("flowCompletionEvent", {"completionReason": "SUCCESS"}),
    ]
