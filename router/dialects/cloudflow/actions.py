"""CloudFlow actions: each parses its parameters, calls the Gateway, shapes the answer.

Validation happens in the model and the service; an action only picks the
parameters out of the ``Call`` and the body out of ``shapes``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from router.dialects.cloudflow import executions
from router.dialects.cloudflow.shapes import (
    API,
    STICKY,
    Call,
    alias_body,
    execution_body,
    flow_body,
    parse_routes,
    version_body,
)
from router.dialects.common import FLOW_VERSION_HEADER
from router.model import AliasUpdate, FlowUpdate

Handler = Callable[[Call], Awaitable[dict[str, Any]]]


async def create_flow(call: Call) -> dict[str, Any]:
    flow = await call.gateway.create_flow(
        API,
        name=call.required("Name"),
        definition=call.required("Definition"),
        description=call.get("Description"),
        role_arn=call.get("RoleArn") or "",
        type=call.get("Type") or "FDL",
        execution_mode=call.get("ExecutionMode") or "Standard",
        environment=call.json("Environment"),
    )
    return flow_body(flow)


async def describe_flow(call: Call) -> dict[str, Any]:
    flow = await call.flow("Name")
    version = call.get("FlowVersion")
    if version is None:
        return flow_body(flow)
    return flow_body(flow, (await call.gateway.version(flow, version)).definition)


async def list_flows(call: Call) -> dict[str, Any]:
    page = await call.gateway.list_flows(*call.page())
    return {"Flows": [flow_body(f) for f in page.items], "NextToken": page.next_token or ""}


async def update_flow(call: Call) -> dict[str, Any]:
    flow = await call.flow("Name")
    update = FlowUpdate(
        definition=call.get("Definition"),
        description=call.params.get("Description"),  # "" clears it
        role_arn=call.get("RoleArn"),
        type=call.get("Type"),
        execution_mode=call.get("ExecutionMode"),
        environment=call.json("Environment"),
    )
    return flow_body(await call.gateway.update_flow(API, flow, update))


async def delete_flow(call: Call) -> dict[str, Any]:
    await call.gateway.delete_flow(await call.flow("Name"), force=True)
    return {}


async def publish_flow_version(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    version = await call.gateway.publish_version(API, flow, call.get("Description"))
    return {"FlowName": flow.name, **version_body(version)}


async def list_flow_versions(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    page = await call.gateway.list_versions(flow, *call.page())
    return {
        "FlowVersions": [version_body(v) for v in page.items],
        "NextToken": page.next_token or "",
    }


async def delete_flow_version(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    await call.gateway.delete_version(flow, call.required("FlowVersion"), force=False)
    return {}


async def create_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    name = call.required("Name")
    routes = parse_routes(call)
    alias = await call.gateway.create_alias(
        API,
        flow,
        name=name,
        routes=routes,
        description=call.get("Description"),
        sticky_execution_name=bool(call.flag(STICKY)),
    )
    return {"FlowName": flow.name, **alias_body(alias)}


async def describe_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    return {"Alias": alias_body(await call.gateway.alias(flow, call.get("Name")))}


async def list_flow_aliases(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    page = await call.gateway.list_aliases(flow, *call.page())
    return {"Aliases": [alias_body(a) for a in page.items], "NextToken": page.next_token or ""}


async def update_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    name = call.required("Name")
    update = AliasUpdate(
        routes=parse_routes(call) if call.get("RoutingConfigurations") is not None else None,
        description=call.params.get("Description"),  # "" clears it
        sticky_execution_name=call.flag(STICKY),
    )
    return {"Alias": alias_body(await call.gateway.update_alias(API, flow, name, update))}


async def delete_flow_alias(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    await call.gateway.delete_alias(flow, call.required("Name"))
    return {}


async def start_execution(call: Call) -> dict[str, Any]:
    gateway = call.gateway
    routes = await gateway.routes_by_name(call.get("FlowName"))
    document = call.json("Input")  # JSON text; the executor gets the parsed document
    execution = await executions.start(call, routes, document)
    definition = await gateway.version_definition(routes.flow, execution.version)
    return {**execution_body(execution, definition), "Input": call.get("Input") or ""}


async def describe_execution(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    execution = await call.gateway.describe_execution(flow, call.get("ExecutionName"))
    call.headers[FLOW_VERSION_HEADER] = execution.version
    definition = await call.gateway.version_definition(flow, execution.version)
    return {**execution_body(execution, definition), "Environment": flow.environment or {}}


ACTIONS: Mapping[str, Handler] = {  # Action -> handler
    "CreateFlow": create_flow,
    "DescribeFlow": describe_flow,
    "ListFlows": list_flows,
    "UpdateFlow": update_flow,
    "DeleteFlow": delete_flow,
    "PublishFlowVersion": publish_flow_version,
    "ListFlowVersions": list_flow_versions,
    "DeleteFlowVersion": delete_flow_version,
    "CreateFlowAlias": create_flow_alias,
    "DescribeFlowAlias": describe_flow_alias,
    "ListFlowAliases": list_flow_aliases,
    "UpdateFlowAlias": update_flow_alias,
    "DeleteFlowAlias": delete_flow_alias,
    "StartExecution": start_execution,
    "DescribeExecution": describe_execution,
    "StopExecution": executions.stop_execution,
    "ListExecutions": executions.list_executions,
    "GetExecutionHistory": executions.get_execution_history,
    "StartSyncExecution": executions.start_sync_execution,
}
