"""Amazon Bedrock Flows (restJson1): bedrock-agent and bedrock-agent-runtime.

Both clients share the ``/flows`` path space (method + path shape pick the
operation, WIRE.md 3.1); tagging lives under ``/tags/{resourceArn}``. ARNs
arrive percent-encoded with ``%2F`` inside one path label, and aiohttp's
decoded ``request.path`` would split them, so requests are routed on
``request.raw_path``: split on ``/``, then each segment unquoted. Trailing
slashes are significant and matched exactly.

Modules: ``agent`` (control plane), ``runtime`` (executions), ``eventstream``
(InvokeFlow framing), ``shapes`` (ARNs, ``Call``, bodies), ``exceptions`` (the one
error table of this dialect).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from router import errors
from router.auth import VERIFIER
from router.config import Config
from router.dialects.bedrock import agent, runtime
from router.dialects.bedrock.exceptions import error_response
from router.dialects.bedrock.shapes import Arns, Call
from router.dialects.common import request_id
from router.idempotency import Idempotency
from router.metrics import Metrics
from router.service import Gateway

log = logging.getLogger("flow_router.bedrock")
DIALECT = "bedrock"

Handler = Callable[[Call], Awaitable[Any]]  # a JSON body (dict) or a streamed response


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    handler: Handler
    status: int = 200
    runtime: bool = False  # bedrock-agent-runtime: its error statuses differ a little


def _op(name: str, handler: Handler, status: int = 200, runtime: bool = False) -> Operation:
    return Operation(name, handler, status, runtime)


F, A, V, E = "{flow}", "{alias}", "{version}", "{execution}"
# (method, path segments after the leading "/"); "{label}" matches one non-empty segment.
ROUTES: Sequence[tuple[str, tuple[str, ...], Operation]] = [
    ("POST", ("flows", ""), _op("CreateFlow", agent.create_flow, 201)),
    ("GET", ("flows", ""), _op("ListFlows", agent.list_flows)),
    ("GET", ("flows", F, ""), _op("GetFlow", agent.get_flow)),
    ("PUT", ("flows", F, ""), _op("UpdateFlow", agent.update_flow)),
    ("DELETE", ("flows", F, ""), _op("DeleteFlow", agent.delete_flow)),
    ("POST", ("flows", F, ""), _op("PrepareFlow", agent.prepare_flow, 202)),
    ("POST", ("flows", F, "versions"), _op("CreateFlowVersion", agent.create_flow_version, 201)),
    ("GET", ("flows", F, "versions"), _op("ListFlowVersions", agent.list_flow_versions)),
    ("GET", ("flows", F, "versions", V, ""), _op("GetFlowVersion", agent.get_flow_version)),
    (
        "DELETE",
        ("flows", F, "versions", V, ""),
        _op("DeleteFlowVersion", agent.delete_flow_version),
    ),
    ("POST", ("flows", F, "aliases"), _op("CreateFlowAlias", agent.create_flow_alias, 201)),
    ("GET", ("flows", F, "aliases"), _op("ListFlowAliases", agent.list_flow_aliases)),
    ("GET", ("flows", F, "aliases", A), _op("GetFlowAlias", agent.get_flow_alias)),
    ("PUT", ("flows", F, "aliases", A), _op("UpdateFlowAlias", agent.update_flow_alias)),
    ("DELETE", ("flows", F, "aliases", A), _op("DeleteFlowAlias", agent.delete_flow_alias)),
    ("POST", ("tags", "{arn}"), _op("TagResource", agent.tag_resource)),
    ("DELETE", ("tags", "{arn}"), _op("UntagResource", agent.untag_resource)),
    ("GET", ("tags", "{arn}"), _op("ListTagsForResource", agent.list_tags_for_resource)),
    # bedrock-agent-runtime
    ("POST", ("flows", F, "aliases", A), _op("InvokeFlow", runtime.invoke_flow, runtime=True)),
    (
        "POST",
        ("flows", F, "aliases", A, "executions"),
        _op("StartFlowExecution", runtime.start_flow_execution, runtime=True),
    ),
    (
        "GET",
        ("flows", F, "executions"),
        _op("ListFlowExecutions", runtime.list_flow_executions, runtime=True),
    ),
    (
        "GET",
        ("flows", F, "aliases", A, "executions", E),
        _op("GetFlowExecution", runtime.get_flow_execution, runtime=True),
    ),
    (
        "POST",
        ("flows", F, "aliases", A, "executions", E, "stop"),
        _op("StopFlowExecution", runtime.stop_flow_execution, runtime=True),
    ),
]

_BY_SHAPE: dict[tuple[str, int], list[tuple[tuple[str, ...], Operation]]] = {}
for _method, _pattern, _operation in ROUTES:
    _BY_SHAPE.setdefault((_method, len(_pattern)), []).append((_pattern, _operation))


def segments(raw_path: str) -> list[str]:
    """Path labels of the raw request target, each unquoted on its own (``%2F`` stays
    inside its label)."""
    path = raw_path.split("?", 1)[0]
    return [unquote(s) for s in path.split("/")[1:]]


def match(method: str, parts: Sequence[str]) -> tuple[Operation, dict[str, str]]:
    for pattern, operation in _BY_SHAPE.get((method, len(parts)), ()):
        labels: dict[str, str] = {}
        for want, got in zip(pattern, parts, strict=True):
            if want.startswith("{"):
                if not got:
                    break
                labels[want[1:-1]] = got
            elif want != got:
                break
        else:
            return operation, labels
    raise errors.UnknownAction(f"no operation for {method} /{'/'.join(parts)}")


def add_routes(
    app: web.Application,
    gateway_key: web.AppKey[Gateway],
    config_key: web.AppKey[Config],
    metrics: Metrics,
) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        rid = request_id()
        label, is_runtime = "unknown", False
        try:
            operation, labels = match(request.method, segments(request.raw_path))
            label, is_runtime = operation.name, operation.runtime
            if (verifier := request.app.get(VERIFIER)) is not None:
                await verifier.bedrock(request)  # before anything is dispatched
            config = request.app[config_key]
            gateway = request.app[gateway_key]
            call = Call(
                request,
                gateway,
                Arns(config.region, config.account_id),
                Idempotency(gateway.store, config.idempotency_ttl_s),
                labels,
            )
            call.headers["x-amzn-RequestId"] = rid
            if request.method in ("POST", "PUT"):
                await call.read_body()
            answer = await operation.handler(call)
            response: web.StreamResponse = (
                answer
                if isinstance(answer, web.StreamResponse)
                else _json(answer, operation.status, call.headers)
            )
        except errors.RouterError as e:
            metrics.count_error(DIALECT, e)
            response = error_response(e, rid, is_runtime)
        except Exception:  # a bug: log it whole, answer without internals
            log.exception("unexpected error in %s (request %s)", label, rid)
            response = error_response(errors.RouterError("internal error"), rid, is_runtime)
        metrics.api_requests.labels(DIALECT, label, str(response.status)).inc()
        return response

    # [\s\S]: a percent-encoded newline in a label must reach our router too.
    app.router.add_route("*", r"/flows{tail:[\s\S]*}", handle)
    app.router.add_route("*", r"/tags/{tail:[\s\S]*}", handle)


def _json(body: Mapping[str, Any], status: int, headers: Mapping[str, str]) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
