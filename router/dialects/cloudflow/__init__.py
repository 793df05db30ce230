"""Alibaba Cloud CloudFlow (fnf 2019-03-15, RPC style) on ``GET /`` and ``POST /``.

Translation only: parse the merged query + form parameters, call the
:class:`~router.service.Gateway`, shape the JSON answer exactly as the SDK's
models read it (docs/wire.md §2.4), and map domain errors to ``{Code, Message,
RequestId}`` through :data:`ERRORS`, the one table for this dialect.

Modules: this one (dispatch on ``Action``), ``actions`` (one handler per
action), ``shapes`` (``Call`` and the answer bodies), ``exceptions`` (the error
table and envelope). The request envelope itself is ``router.dialects.envelope``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from router import errors
from router.auth import Verifier
from router.dialects import envelope
from router.dialects.cloudflow import exceptions
from router.dialects.cloudflow.actions import ACTIONS, Handler
from router.dialects.cloudflow.exceptions import ERRORS, error_response
from router.dialects.cloudflow.shapes import Call
from router.dialects.common import ROUTING_KEY_HEADER
from router.limits import form_fields, read_body
from router.metrics import Metrics
from router.service import Gateway

__all__ = ["ACTIONS", "ERRORS", "add_routes", "error_response"]

log = logging.getLogger("flow_router.cloudflow")
DIALECT = "cloudflow"
REQUEST_ID_HEADER = "x-acs-request-id"
METHODS = ("GET", "POST")


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    handler: Handler


OPERATIONS: Mapping[str, Operation] = {name: Operation(name, h) for name, h in ACTIONS.items()}


async def read_params(request: web.Request) -> dict[str, str]:
    """Query and form body merged; the form wins on a clash (docs/wire.md §2.1)."""
    params = dict(request.query)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        raw = await read_body(request)  # bounded in size and time (router/limits)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidArgument("the form body is not UTF-8") from None
        params.update(form_fields(text))
    return params


def _check_method(request: web.Request) -> None:
    if request.method not in METHODS:
        raise errors.MethodNotAllowed(f"{request.method} is not supported; use GET or POST")


class CloudFlow:
    """This dialect as the envelope sees it (:class:`router.dialects.envelope.Dialect`)."""

    name = DIALECT
    request_id_header = REQUEST_ID_HEADER
    log = log

    def __init__(self, gateway_key: web.AppKey[Gateway]) -> None:
        self.gateway_key = gateway_key

    def route(self, request: web.Request) -> Operation:
        action = request.query.get("Action") or request.headers.get("x-acs-action") or ""
        operation = OPERATIONS.get(action)
        if operation is None:
            _check_method(request)  # a wrong method is named first, as for a known action
            if not action:
                raise errors.MissingParameter("Action")
            raise errors.UnknownAction(f"action {action!r} is not supported", "Action")
        return operation

    async def dispatch(
        self, request: web.Request, operation: Operation, rid: str, verifier: Verifier | None
    ) -> web.StreamResponse:
        _check_method(request)
        params = await read_params(request)
        if verifier is not None:
            await verifier.cloudflow(request, params, operation.name)  # before dispatching
        key = request.headers.get(ROUTING_KEY_HEADER)
        call = Call(params, request.app[self.gateway_key], key.encode() if key else None)
        body = await operation.handler(call)
        body["RequestId"] = rid
        return web.Response(
            body=orjson.dumps(body), content_type="application/json", headers=call.headers
        )

    def lookup(self, error: errors.RouterError, routed: Operation | None) -> tuple[int, str]:
        return exceptions.lookup(error)

    def error_response(
        self, error: errors.RouterError, status: int, code: str, rid: str
    ) -> web.Response:
        return exceptions.render(error, status, code, rid)


def add_routes(app: web.Application, gateway_key: web.AppKey[Gateway], metrics: Metrics) -> None:
    handle = envelope.handler(CloudFlow(gateway_key), metrics)
    app.router.add_route("*", "/", handle)  # other methods: our envelope, not aiohttp's 405
