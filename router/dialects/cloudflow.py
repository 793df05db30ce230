"""Alibaba Cloud CloudFlow (fnf 2019-03-15, RPC style) on ``GET /`` and ``POST /``.

Translation only: parse the merged query + form parameters, call the
:class:`~router.service.Gateway`, shape the JSON answer exactly as the SDK's
models read it (WIRE.md 2.4), and map domain errors to ``{Code, Message,
RequestId}`` through :data:`ERRORS`, the one table for this dialect.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from router import errors, model
from router.auth import VERIFIER
from router.dialects.common import iso8601, lookup_error, request_id
from router.limits import form_fields, read_body
from router.metrics import Metrics
from router.model import Alias, AliasUpdate, Api, Flow, FlowUpdate, FlowVersion, Route
from router.service import Execution, Gateway

log = logging.getLogger("flow_router.cloudflow")
API = Api.CLOUDFLOW
DIALECT = "cloudflow"
DEFAULT_LIMIT = 100
ROUTING_KEY_HEADER = "X-Routing-Key"
# flow-router extension: the alias routes an execution by its ExecutionName (sticky).
STICKY = "StickyExecutionName"

# status, Code -- WIRE.md 2.5; the most specific class of an error wins.
ERRORS: Mapping[type[errors.RouterError], tuple[int, str]] = {
    errors.MissingParameter: (400, "MissingRequiredParams"),
    errors.UnknownAction: (400, "InvalidAction.NotFound"),
    errors.MethodNotAllowed: (405, "MethodNotAllowed"),
    errors.InvalidArgument: (400, "InvalidArgument"),
    errors.FlowNotFound: (404, "FlowNotExists"),
    errors.VersionNotFound: (404, "FlowVersionNotExists"),
    errors.AliasNotFound: (404, "FlowAliasNotExists"),
    errors.ExecutionNotFound: (404, "ExecutionNotExists"),
    errors.NotFound: (404, "ResourceNotExists"),
    errors.FlowAlreadyExists: (409, "FlowAlreadyExists"),
    errors.AliasAlreadyExists: (409, "FlowAliasAlreadyExists"),
    errors.ExecutionAlreadyExists: (409, "ExecutionAlreadyExists"),
    errors.AlreadyExists: (409, "ResourceAlreadyExists"),
    errors.ResourceInUse: (409, "ResourceInUse"),
    errors.Conflict: (409, "Conflict"),
    errors.QuotaExceeded: (400, "QuotaExceeded"),
    errors.Throttled: (429, "Throttling"),
    # authentication (router/auth): every failure is a 403
    errors.MissingSignature: (403, "MissingSignature"),
    errors.IncompleteSignature: (403, "IncompleteSignature"),
    errors.UnknownAccessKey: (403, "InvalidAccessKeyId.NotFound"),
    errors.SignatureMismatch: (403, "SignatureDoesNotMatch"),
    errors.RequestExpired: (403, "InvalidTimeStamp.Expired"),
    errors.NonceUsed: (403, "SignatureNonceUsed"),
    errors.AuthenticationFailed: (403, "IncompleteSignature"),
    errors.Unavailable: (503, "ServiceUnavailable"),
    errors.ExecutorTimeout: (504, "ExecutorTimeout"),
    errors.ExecutorUnreachable: (502, "ExecutorUnavailable"),
    errors.ExecutorError: (502, "ExecutorFailed"),
    errors.RouterError: (500, "InternalError"),
}


@dataclass
class Call:
    """One request: its parameters, the gateway, and headers to add to the answer."""

    params: Mapping[str, str]
    gateway: Gateway
    routing_key: bytes | None = None  # X-Routing-Key: sticky version choice
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value != "" else None

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise errors.MissingParameter(name)
        return value

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise errors.InvalidArgument(f"{name} must be an integer", name) from None

    def flag(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise errors.InvalidArgument(f"{name} must be true or false", name)
        return value.lower() == "true"

    def json(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            return None
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise errors.InvalidArgument(f"{name} must be valid JSON", name) from None
        return model.validate_json_depth(document, name)

    async def flow(self, name: str = "FlowName") -> Flow:
        return await self.gateway.flow(self.required(name), name)


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


# -- shapes ----------------------------------------------------------------------


def _text(value: Any) -> str:
    """Definitions and outputs are strings on this API; JSON documents are dumped."""
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def flow_body(flow: Flow, definition: Any = None) -> dict[str, Any]:
    body = {
        "Name": flow.name,
        "Id": flow.id,
        "Definition": _text(definition if definition is not None else flow.definition),
        "Description": flow.description,
        "Type": flow.type,
        "RoleArn": flow.role_arn,
        "ExecutionMode": flow.execution_mode,
        "CreatedTime": iso8601(flow.created_at),
        "LastModifiedTime": iso8601(flow.updated_at),
        "ResourceGroupId": "",
    }
    if flow.environment is not None:
        body["Environment"] = flow.environment
    return body


def version_body(version: FlowVersion) -> dict[str, Any]:
    return {
        "Version": str(version.version),
        "Description": version.description,
        "CreatedTime": iso8601(version.created_at),
    }


def alias_body(alias: Alias) -> dict[str, Any]:
    return {
        "Name": alias.name,
        "Description": alias.description,
        "RoutingConfigurations": [
            {"Version": str(r.version), "Weight": r.weight} for r in alias.routes
        ],
        "CreatedTime": iso8601(alias.created_at),
        "LastModifiedTime": iso8601(alias.updated_at),
        STICKY: alias.sticky_execution_name,
    }


def execution_body(execution: Execution, definition: Any) -> dict[str, Any]:
    reply = execution.reply
    return {
        "Name": execution.name,
        "FlowName": execution.flow.name,
        "Status": reply.status,
        "StartedTime": iso8601(execution.started_at),
        "StoppedTime": iso8601(execution.stopped_at),
        "Input": _text(execution.input),
        "Output": _text(reply.output),
        "FlowDefinition": _text(definition),
    }


def parse_routes(call: Call, name: str = "RoutingConfigurations") -> tuple[Route, ...]:
    raw = call.json(name)
    if raw is None:
        raise errors.MissingParameter(name)
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise errors.InvalidArgument(f"{name} must be a JSON array of {{Version, Weight}}", name)
    for entry in raw:
        for key in ("Version", "Weight"):
            if key not in entry:
                raise errors.InvalidArgument(f"every entry of {name} needs {key}", name)
    return call.gateway.routes(API, [(e["Version"], e["Weight"]) for e in raw], name)


# -- actions -----------------------------------------------------------------------


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
    page = await call.gateway.list_flows(
        call.integer("Limit", DEFAULT_LIMIT), call.get("NextToken")
    )
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
    page = await call.gateway.list_versions(
        flow, call.integer("Limit", DEFAULT_LIMIT), call.get("NextToken")
    )
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
    page = await call.gateway.list_aliases(
        flow, call.integer("Limit", DEFAULT_LIMIT), call.get("NextToken")
    )
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
    flow = routes.flow
    qualifier = call.get("Qualifier")
    document = call.json("Input")  # JSON text; the executor gets the parsed document
    name = call.get("ExecutionName")
    if qualifier is None or (qualifier.isascii() and qualifier.isdigit()):
        execution = await gateway.start_execution(
            flow, version=qualifier, name=name, input=document
        )
    else:
        execution = await gateway.start_execution(
            flow,
            alias=routes.alias(qualifier),
            name=name,
            input=document,
            routing_key=call.routing_key,
        )
    call.headers["X-Flow-Version"] = execution.version
    definition = await gateway.version_definition(flow, execution.version)
    return {**execution_body(execution, definition), "Input": call.get("Input") or ""}


async def describe_execution(call: Call) -> dict[str, Any]:
    flow = await call.flow()
    execution = await call.gateway.describe_execution(flow, call.get("ExecutionName"))
    call.headers["X-Flow-Version"] = execution.version
    definition = await call.gateway.version_definition(flow, execution.version)
    return {**execution_body(execution, definition), "Environment": flow.environment or {}}


ACTIONS: Mapping[str, Handler] = {
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
}


# -- HTTP --------------------------------------------------------------------------


async def read_params(request: web.Request) -> dict[str, str]:
    """Query and form body merged; the form wins on a clash (WIRE.md 2.1)."""
    params = dict(request.query)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        raw = await read_body(request)  # bounded in size and time (router/limits)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidArgument("the form body is not UTF-8") from None
        params.update(form_fields(text))
    return params


def error_response(error: errors.RouterError, rid: str) -> web.Response:
    status, code = lookup_error(ERRORS, error)
    body = {"Code": code, "Message": error.message, "RequestId": rid}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if isinstance(error, errors.Throttled):  # the SDK raises ThrottlingException on it
        response.headers["x-acs-retry-after"] = str(max(1, math.ceil(error.retry_after_s)))
    return response


def add_routes(app: web.Application, gateway_key: web.AppKey[Gateway], metrics: Metrics) -> None:
    async def handle(request: web.Request) -> web.Response:
        rid = request_id()
        action = request.query.get("Action") or request.headers.get("x-acs-action") or ""
        handler = ACTIONS.get(action)
        label = action if handler is not None else "unknown"
        try:
            if request.method not in ("GET", "POST"):
                raise errors.MethodNotAllowed(f"{request.method} is not supported; use GET or POST")
            if handler is None:
                if not action:
                    raise errors.MissingParameter("Action")
                raise errors.UnknownAction(f"action {action!r} is not supported", "Action")
            params = await read_params(request)
            if (verifier := request.app.get(VERIFIER)) is not None:
                await verifier.cloudflow(request, params, action)  # before anything is dispatched
            key = request.headers.get(ROUTING_KEY_HEADER)
            call = Call(
                params,
                request.app[gateway_key],
                key.encode() if key else None,
            )
            body = await handler(call)
            body["RequestId"] = rid
            response = web.Response(
                body=orjson.dumps(body), content_type="application/json", headers=call.headers
            )
        except errors.RouterError as e:
            metrics.count_error(DIALECT, e)
            response = error_response(e, rid)
        except Exception:  # a bug: log it whole, answer without internals
            log.exception("unexpected error in %s (request %s)", action, rid)
            response = error_response(errors.RouterError("internal error"), rid)
        response.headers["x-acs-request-id"] = rid
        metrics.api_requests.labels(DIALECT, label, str(response.status)).inc()
        return response

    app.router.add_route("*", "/", handle)  # other methods: our envelope, not aiohttp's 405
