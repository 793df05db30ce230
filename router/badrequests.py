"""One log line and one count per request aiohttp's HTTP parser rejects.

aiohttp answers malformed framing (a bad request line, header or chunk) with a
400 by itself and logs it on ``aiohttp.server`` as an ERROR with the whole
traceback, 600-850 bytes for every junk request, so junk traffic floods the
log. :class:`ServerLog` is handed to aiohttp as the server's logger instead
(``handler_args={"logger": …}``): a parser rejection becomes one WARNING line
with the peer, a reason and the parser's message, and counts in
``flow_router_bad_requests_total{reason}``; everything else goes on to
``aiohttp.server`` unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import http_exceptions as hx
from prometheus_client import Counter

log = logging.getLogger("flow_router.http")

MAX_MESSAGE = 160  # characters of the parser's message kept in the log line

# Most specific first: the first class the error is an instance of names it.
REASONS: tuple[tuple[type[hx.HttpProcessingError], str], ...] = (
    (hx.BadHttpMethod, "method"),
    (hx.BadStatusLine, "request_line"),
    (hx.InvalidURLError, "url"),
    (hx.LineTooLong, "too_long"),
    (hx.InvalidHeader, "header"),
    (hx.PayloadEncodingError, "body"),
    (hx.BadHttpMessage, "framing"),
    (hx.HttpProcessingError, "other"),
)


def reason(error: hx.HttpProcessingError) -> str:
    """The bounded label for a parser error (one of :data:`REASONS`)."""
    return next(name for kind, name in REASONS if isinstance(error, kind))


def one_line(message: str) -> str:
    """The parser's message on one line, bounded, with control bytes escaped."""
    flat = " ".join(message.split())
    if len(flat) > MAX_MESSAGE:
        flat = flat[:MAX_MESSAGE] + "…"
    return flat.encode("ascii", "backslashreplace").decode("ascii")


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with parser rejections turned into one counted line."""

    def __init__(self, counter: Counter) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._counts = {name: counter.labels(name) for _, name in REASONS}

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if not isinstance(error, hx.HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        name = reason(error)
        self._counts[name].inc()
        peer = args[0] if args else None
        # aiohttp picks DEBUG for a first request with a bad method (TLS or
        # other non-HTTP traffic on the port): kept; anything else is a WARNING.
        log.log(
            min(level, logging.WARNING),
            "bad request from %s (%s): %s",
            peer or "-",
            name,
            one_line(error.message),
        )
