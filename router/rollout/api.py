"""flow-router's own HTTP API, ``/v1``: the progressive rollout of an alias.

========  ===============================================  ==============  ======
method    path                                             operation       status
========  ===============================================  ==============  ======
PUT       ``/v1/flows/{flow}/aliases/{alias}/rollout``     StartRollout    201
GET       ``/v1/flows/{flow}/aliases/{alias}/rollout``     GetRollout      200
POST      ``…/rollout/promote`` (``{"full": true}``)       PromoteRollout  200
POST      ``…/rollout/pause``                              PauseRollout    200
POST      ``…/rollout/resume``                             ResumeRollout   200
POST      ``…/rollout/abort``                              AbortRollout    200
========  ===============================================  ==============  ======

``{flow}`` is the flow's name and ``{alias}`` the alias's, each one path label
(percent-encoded as needed: a ``%2F`` stays inside its label). Every answer is
JSON: the rollout's status (router/rollout/controller) or an error
``{"code", "message"}`` (:mod:`router.rollout.api_errors`). docs/rollout-api.md
is the reference.

This is a thin translation, like a dialect, and answers through the same request
envelope (router/dialects/envelope): a request id in ``X-Request-Id``, domain
errors rendered and counted under their code, a bug answered as a bare
``InternalError`` without internals, and every answer counted in
``flow_router_api_requests{dialect="v1", action=<operation>}``. With
``--credentials`` each request must carry an AWS SigV4 signature for the service
``flow-router`` (checked before the body is parsed or anything is read from the
store); without them the serve command's loopback rule covers ``/v1`` as it covers
the dialects.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from router import errors
from router.auth import Verifier
from router.auth.sigv4 import FLOW_ROUTER_SERVICE
from router.dialects import envelope
from router.limits import read_body
from router.metrics import Metrics
from router.rollout import api_errors
from router.rollout.controller import ROLLOUTS, Rollouts

__all__ = ["DIALECT", "OPERATIONS", "REQUEST_ID_HEADER", "add_routes"]

log = logging.getLogger("flow_router.v1")
DIALECT = "v1"  # the ``dialect`` label of this API's requests in the metrics
REQUEST_ID_HEADER = "X-Request-Id"

Status = dict[str, Any]
Handler = Callable[[Rollouts, str, str, Mapping[str, Any]], Awaitable[Status]]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    handler: Handler
    fields: frozenset[str] | None  # the body fields it takes; None: the controller checks
    status: int = 200


async def _start(rollouts: Rollouts, flow: str, alias: str, body: Mapping[str, Any]) -> Status:
    return await rollouts.start(flow, alias, body)


async def _status(rollouts: Rollouts, flow: str, alias: str, body: Mapping[str, Any]) -> Status:
    return await rollouts.status(flow, alias)


async def _promote(rollouts: Rollouts, flow: str, alias: str, body: Mapping[str, Any]) -> Status:
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise errors.InvalidArgument("full must be true or false", "full")
    return await rollouts.promote(flow, alias, full)


async def _pause(rollouts: Rollouts, flow: str, alias: str, body: Mapping[str, Any]) -> Status:
    return await rollouts.pause(flow, alias)


async def _resume(rollouts: Rollouts, flow: str, alias: str, body: Mapping[str, Any]) -> Status:
    return await rollouts.resume(flow, alias)


async def _abort(rollouts: Rollouts, flow: str, alias: str, body: Mapping[str, Any]) -> Status:
    return await rollouts.abort(flow, alias)


_NONE: frozenset[str] = frozenset()
# the path from "rollout" on -> method -> operation
OPERATIONS: Mapping[str, Mapping[str, Operation]] = {
    "rollout": {
        "PUT": Operation("StartRollout", _start, None, 201),
        "GET": Operation("GetRollout", _status, _NONE),
    },
    "rollout/promote": {"POST": Operation("PromoteRollout", _promote, frozenset({"full"}))},
    "rollout/pause": {"POST": Operation("PauseRollout", _pause, _NONE)},
    "rollout/resume": {"POST": Operation("ResumeRollout", _resume, _NONE)},
    "rollout/abort": {"POST": Operation("AbortRollout", _abort, _NONE)},
}
_PREFIX = ("v1", "flows", "{flow}", "aliases", "{alias}")


@dataclass(frozen=True, slots=True)
class Routed:
    operation: Operation
    flow: str
    alias: str

    @property
    def name(self) -> str:
        return self.operation.name


def route(method: str, raw_path: str) -> Routed:
    """The operation ``method raw_path`` names; ``UnknownAction`` (404) for a path this
    API does not have, ``api_errors.WrongMethod`` (405) for a method its path does not
    take."""
    path = raw_path.split("?", 1)[0]
    raw = path.split("/")[1:]
    head = [unquote(s) for s in raw[: len(_PREFIX)]]  # labels unquoted one by one
    rest = "/".join(raw[len(_PREFIX) :])  # as sent: "rollout%2Fpromote" is no operation
    methods = OPERATIONS.get(rest)
    shaped = len(head) == len(_PREFIX) and all(
        want == got or (want[0] == "{" and got) for want, got in zip(_PREFIX, head, strict=True)
    )
    if methods is None or not shaped:
        raise errors.UnknownAction(f"no operation at {path}")
    operation = methods.get(method)
    if operation is None:
        raise api_errors.WrongMethod(method, path, tuple(methods))
    return Routed(operation, head[2], head[4])


async def read_object(request: web.Request, fields: frozenset[str] | None) -> dict[str, Any]:
    """The JSON object of the body (``{}`` when there is none), with only ``fields``
    (any when ``None``)."""
    raw = await read_body(request)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.InvalidArgument("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.InvalidArgument("the request body must be a JSON object")
    if fields is not None:
        for name in body:
            if name not in fields:
                raise errors.InvalidArgument(f"unknown field {name!r}", name)
    return body


class V1:
    """This API as the request envelope sees it (router/dialects/envelope.Dialect)."""

    name = DIALECT
    request_id_header = REQUEST_ID_HEADER
    log = log

    def route(self, request: web.Request) -> Routed:
        return route(request.method, request.raw_path)

    async def dispatch(
        self, request: web.Request, routed: Routed, rid: str, verifier: Verifier | None
    ) -> web.StreamResponse:
        if verifier is not None:
            await verifier.aws(request, FLOW_ROUTER_SERVICE)  # before anything is parsed
        operation = routed.operation
        body = await read_object(request, operation.fields)
        rollouts = request.app[ROLLOUTS]
        status = await operation.handler(rollouts, routed.flow, routed.alias, body)
        return web.Response(
            status=operation.status, body=orjson.dumps(status), content_type="application/json"
        )

    def lookup(self, error: errors.RouterError, routed: Routed | None) -> tuple[int, str]:
        return api_errors.lookup(error)

    def error_response(
        self, error: errors.RouterError, status: int, code: str, rid: str
    ) -> web.Response:
        return api_errors.render(error, status, code)


def add_routes(app: web.Application, metrics: Metrics) -> None:
    """Serve ``/v1/…``; the app must hold a :class:`Rollouts` under ``ROLLOUTS`` while
    it runs."""
    handle = envelope.handler(V1(), metrics)
    # [\s\S]: a percent-encoded newline in a label must reach our router too.
    app.router.add_route("*", r"/v1/{tail:[\s\S]*}", handle)
