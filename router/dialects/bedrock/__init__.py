"""Amazon Bedrock Flows (restJson1): bedrock-agent and bedrock-agent-runtime.

Both clients share the ``/flows`` path space (method + path shape pick the
operation, docs/wire.md §3.1); tagging lives under ``/tags/{resourceArn}``. ARNs
arrive percent-encoded with ``%2F`` inside one path label, and aiohttp's
decoded ``request.path`` would split them, so requests are routed on
``request.raw_path``: split on ``/``, then each segment unquoted. Trailing
slashes are significant and matched exactly.

Modules: ``agent`` (control plane), ``runtime`` (executions), ``eventstream``
(InvokeFlow framing), ``shapes`` (ARNs, settings, ``Call``, bodies), ``parsing``
(Bedrock's wire structures), ``exceptions`` (the one error table of this
dialect). The request envelope itself is ``router.dialects.envelope``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson
from aiohttp import web

from router import errors
from router.auth import Verifier
from router.dialects import envelope
from router.dialects.bedrock import agent, exceptions, runtime
from router.dialects.bedrock.shapes import REQUEST_ID_HEADER, SETTINGS, BedrockSettings, Call
from router.metrics import Metrics
from router.service import Gateway

__all__ = ["ROUTES", "SETTINGS", "BedrockSettings", "add_routes"]

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


class Matched(NamedTuple):
    operation: Operation
    labels: dict[str, str]

    @property
    def name(self) -> str:
        return self.operation.name


def match(method: str, parts: Sequence[str]) -> Matched:
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
            return Matched(operation, labels)
    raise errors.UnknownAction(f"no operation for {method} /{'/'.join(parts)}")


class Bedrock:
    """This dialect as the envelope sees it (:class:`router.dialects.envelope.Dialect`)."""

    name = DIALECT
    request_id_header = REQUEST_ID_HEADER
    log = log

    def __init__(self, gateway_key: web.AppKey[Gateway]) -> None:
        self.gateway_key = gateway_key

    def route(self, request: web.Request) -> Matched:
        return match(request.method, segments(request.raw_path))

    async def dispatch(
        self, request: web.Request, routed: Matched, rid: str, verifier: Verifier | None
    ) -> web.StreamResponse:
        if verifier is not None:
            await verifier.bedrock(request)  # before anything is dispatched
        arns = request.app[SETTINGS].arns
        call = Call(request, request.app[self.gateway_key], arns, routed.labels, request_id=rid)
        if request.method in ("POST", "PUT"):
            await call.read_body()
        operation = routed.operation
        answer = await operation.handler(call)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.Response(
            status=operation.status,
            body=orjson.dumps(answer),
            content_type="application/json",
            headers=call.headers,
        )

    def lookup(self, error: errors.RouterError, routed: Matched | None) -> tuple[int, str]:
        return exceptions.lookup(error, routed is not None and routed.operation.runtime)

    def error_response(
        self, error: errors.RouterError, status: int, code: str, rid: str
    ) -> web.Response:
        return exceptions.render(error, status, code)


def add_routes(app: web.Application, gateway_key: web.AppKey[Gateway], metrics: Metrics) -> None:
    """Serve the dialect; ``app[SETTINGS]`` must be set before the app starts."""
    handle = envelope.handler(Bedrock(gateway_key), metrics)
    # [\s\S]: a percent-encoded newline in a label must reach our router too.
    app.router.add_route("*", r"/flows{tail:[\s\S]*}", handle)
    app.router.add_route("*", r"/tags/{tail:[\s\S]*}", handle)
