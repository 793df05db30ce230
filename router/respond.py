"""Bounded sending: what one slow reader can make this process hold.

aiohttp writes a :class:`~aiohttp.web.Response` body to the transport in one
piece; if the client does not read, the whole body then sits in the
transport's buffer (and the handler's copy in the response) until the client
reads or goes away. Twenty clients that never read a 31 MB answer held 1.2 GB.

:func:`send_bounded` sends a body above :data:`STREAM_ABOVE` bytes in
:data:`CHUNK`-byte pieces instead, each written only once the transport has
drained below its high-water mark (``StreamResponse.write`` waits on the
protocol's flow control), so at most about one chunk plus the high-water mark
of it is buffered per connection. A client that accepts nothing for
``send_timeout_s`` seconds has its connection aborted (the buffered bytes are
dropped) and counts in ``flow_router_send_timeouts_total``. Answers up to
:data:`STREAM_ABOVE` go out as before: a client can hold at most that much.

The bound is on what is buffered for the client; the body itself is held
until it is sent, which paging by bytes (:mod:`router.paging`) keeps small.
:func:`finish` applies it with the settings the app put under :data:`SENDING`;
the request envelope (router/dialects/envelope) and ``/metrics`` end with it.
It is not an app-wide middleware: a middleware costs every request of the hot
path a layer of its own (measured: a few percent of the gateway's throughput).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from prometheus_client import Counter

log = logging.getLogger("flow_router.http")

STREAM_ABOVE = 256 * 1024  # bytes: larger bodies are sent chunk by chunk
CHUNK = 64 * 1024  # bytes per write; aiohttp drains once its buffer passes 64 KiB
DEFAULT_SEND_TIMEOUT_S = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Sending:
    """How large answers are sent: ``--send-timeout``, and the counter of timeouts."""

    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    timeouts: Counter | None = None


SENDING = web.AppKey("sending", Sending)


async def finish(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """``response``, or it sent under flow control when its body is large."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or len(body) <= STREAM_ABOVE:  # the usual case: no await
        return response
    sending = request.app.get(SENDING) or Sending()
    return await send_bounded(request, response, sending.send_timeout_s, sending.timeouts)


async def send_bounded(
    request: web.Request,
    response: web.StreamResponse,
    send_timeout_s: float,
    timeouts: Counter | None = None,
) -> web.StreamResponse:
    """Send ``response`` if its body is large (chunked by flow control); else return it.

    The returned response is what the handler should return: aiohttp finishes
    an already-sent one without writing it again.
    """
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes | bytearray) or len(body) <= STREAM_ABOVE:
        return response
    if response.prepared or response.compression or request.method == hdrs.METH_HEAD:
        return response
    streamed = web.StreamResponse(status=response.status, reason=response.reason)
    for name, value in response.headers.items():
        if name not in (hdrs.CONTENT_LENGTH, hdrs.TRANSFER_ENCODING):
            streamed.headers.add(name, value)
    for cookie in response.cookies.values():
        streamed.cookies[cookie.key] = cookie
    streamed.content_length = len(body)
    view = memoryview(body)
    try:
        async with asyncio.timeout(send_timeout_s):
            await streamed.prepare(request)
        for start in range(0, len(view), CHUNK):
            async with asyncio.timeout(send_timeout_s):
                await streamed.write(view[start : start + CHUNK])
    except TimeoutError:
        if timeouts is not None:
            timeouts.inc()
        log.warning(
            "send timeout: %s read nothing for %gs of a %d-byte answer; connection closed",
            request.remote,
            send_timeout_s,
            len(body),
        )
        if request.transport is not None:
            request.transport.abort()  # drops what is buffered for it
    except ConnectionError:
        pass  # the client went away; aiohttp finishes the request as usual
    return streamed
