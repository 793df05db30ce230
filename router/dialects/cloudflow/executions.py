"""CloudFlow's execution lifecycle actions: StopExecution, ListExecutions,
GetExecutionHistory and StartSyncExecution (issue 11).

Translation only, like ``actions``: every parameter is checked first (a 400
naming the field, before anything is read or sent), then one Gateway call,
then the body from ``execution_shapes``. Errors map through the dialect's one
table (``exceptions.ERRORS``): a stop of a finished execution is 400
``ExecutionAlreadyCompleted`` as the API documents it, and a StartSyncExecution
still running after ``--invoke-timeout`` is 504 ``ExecutionWaitTimeout``.
"""

from __future__ import annotations

from typing import Any

from router import errors
from router.dialects.cloudflow import execution_shapes as shapes
from router.dialects.cloudflow.shapes import PAGE_FIELDS, Call
from router.dialects.common import FLOW_VERSION_HEADER
from router.model import Flow
from router.routing import FlowRoutes
from router.service import Execution


async def _definitions(call: Call, flow: Flow, executions: list[Execution]) -> dict[str, Any]:
    """The definition of each version the page ran on, read once per version (None
    for a version deleted since: ``Definitions.of`` never fails a listing)."""
    return {
        v: await call.gateway.version_definition(flow, v) for v in {e.version for e in executions}
    }


async def stop_execution(call: Call) -> dict[str, Any]:
    error = shapes.optional_text(call, "Error", shapes.MAX_ERROR)
    cause = shapes.optional_text(call, "Cause", shapes.MAX_CAUSE)
    flow = await call.flow()
    try:
        execution = await call.gateway.stop_execution(flow, call.get("ExecutionName"), error, cause)
    except errors.ExecutionFinished as e:  # in the API's words (and not Bedrock's "Aborted")
        message = f"Execution '{e.execution}' for flow '{flow.name}' has already completed."
        raise errors.ExecutionFinished(e.execution, message) from None
    call.headers[FLOW_VERSION_HEADER] = execution.version
    definitions = await _definitions(call, flow, [execution])
    return shapes.stop_body(execution, definitions[execution.version])


async def list_executions(call: Call) -> dict[str, Any]:
    request = shapes.list_request(call)
    flow = await call.flow()
    if request.matches_nothing:  # Status=Starting: valid, and never the gateway's
        return {"Executions": []}
    page = await call.gateway.list_executions(
        flow, request.query, request.limit, request.token, PAGE_FIELDS
    )
    executions = list(page.items)
    definitions = {} if request.metadata_only else await _definitions(call, flow, executions)
    body: dict[str, Any] = {
        "Executions": [
            shapes.execution_item(e, definitions.get(e.version), request.metadata_only)
            for e in executions
        ]
    }
    if page.next_token:  # the API leaves NextToken out on the last page
        body["NextToken"] = page.next_token
    return body


async def get_execution_history(call: Call) -> dict[str, Any]:
    count = shapes.limit(call, shapes.HISTORY_LIMIT)
    start = shapes.history_token(call)
    flow = await call.flow()
    events = await call.gateway.execution_history(flow, call.get("ExecutionName"))
    page, next_token = shapes.history_body(events, start, count)
    body: dict[str, Any] = {"Events": page}
    if next_token is not None:
        body["NextToken"] = next_token
    return body


async def start_sync_execution(call: Call) -> dict[str, Any]:
    document = call.json("Input")  # JSON text; the executor gets the parsed document
    routes = await call.gateway.routes_by_name(call.get("FlowName"))
    return shapes.sync_body(await start(call, routes, document, sync=True))


async def start(call: Call, routes: FlowRoutes, document: Any, sync: bool = False) -> Execution:
    """StartExecution's and StartSyncExecution's choice: a Qualifier of digits (or none)
    names a version, anything else an alias, picked by weight or the caller's routing
    key; the answer says which version ran (``X-Flow-Version``)."""
    gateway = call.gateway
    run = gateway.start_sync if sync else gateway.start_execution
    qualifier = call.get("Qualifier")
    name = call.get("ExecutionName")
    if qualifier is None or (qualifier.isascii() and qualifier.isdigit()):
        execution = await run(routes.flow, version=qualifier, name=name, input=document)
    else:
        execution = await run(
            routes.flow,
            alias=routes.alias(qualifier),
            name=name,
            input=document,
            routing_key=call.routing_key,
        )
    call.headers[FLOW_VERSION_HEADER] = execution.version
    return execution
