"""The one request envelope both dialects answer through.

Every API request gets a request id; the dialect routes it to an operation and
runs it (calling the request verifier, when one is configured, at the point its
signature scheme needs); a :class:`~router.errors.RouterError` becomes the
dialect's own error answer and is counted under the code the caller saw; any
other exception is a bug, logged whole and answered as an internal error without
internals; and every answer is counted by dialect, operation and status.

A dialect supplies only what differs: how it routes and dispatches, how it maps
and renders an error, and the header that carries the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from aiohttp import web

from router import respond
from router.auth import VERIFIER, Verifier
from router.dialects.common import request_id
from router.errors import RouterError
from router.metrics import Metrics

UNKNOWN = "unknown"  # the operation label of a request that names none


class Routed(Protocol):
    """What a dialect's router found: at least the operation's name."""

    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=Routed)


class Dialect(Protocol[R]):
    name: str  # the ``dialect`` metric label
    request_id_header: str
    log: logging.Logger

    def route(self, request: web.Request) -> R:
        """The operation the request names; raises a RouterError when it names none."""
        ...

    async def dispatch(
        self, request: web.Request, routed: R, rid: str, verifier: Verifier | None
    ) -> web.StreamResponse:
        """Verify (when ``verifier`` is set), run the operation and shape its answer."""
        ...

    def lookup(self, error: RouterError, routed: R | None) -> tuple[int, str]:
        """The status and the dialect's error code for ``error``."""
        ...

    def error_response(
        self, error: RouterError, status: int, code: str, rid: str
    ) -> web.Response: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handler(dialect: Dialect[R], metrics: Metrics) -> Handler:
    """The aiohttp handler serving every request of ``dialect``."""
    counts = metrics.dialect(dialect.name)  # label children cached, not looked up per request
    rid_header = dialect.request_id_header
    log = dialect.log

    async def handle(request: web.Request) -> web.StreamResponse:
        rid = request_id()
        routed: R | None = None
        try:
            routed = dialect.route(request)
            response = await dialect.dispatch(request, routed, rid, request.app.get(VERIFIER))
        except RouterError as e:
            response = _error(dialect, e, routed, rid, counts.error)
        except Exception:  # a bug: log it whole, answer without internals
            operation = UNKNOWN if routed is None else routed.name
            log.exception("unexpected error in %s (request %s)", operation, rid)
            response = _error(dialect, RouterError("internal error"), routed, rid, None)
        if not response.prepared:  # a started stream carries it already
            response.headers[rid_header] = rid
        counts.request(UNKNOWN if routed is None else routed.name, response.status).inc()
        return await respond.finish(request, response)  # a large answer: flow-controlled

    return handle


def _error(
    dialect: Dialect[R],
    error: RouterError,
    routed: R | None,
    rid: str,
    count: Callable[[str], object] | None,
) -> web.Response:
    status, code = dialect.lookup(error, routed)
    if count is not None:  # domain errors only; a bug shows in the log and api_requests
        count(code)
    return dialect.error_response(error, status, code, rid)
