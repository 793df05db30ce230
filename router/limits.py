"""Limits on what a client may send: body size and how long the body may take.

What is bounded, and by what (the server side of aiohttp 3.14 has no separate
header-read timeout; its keep-alive timer covers that case):

* **Request head** (request line and headers): aiohttp's keep-alive timer
  runs from the moment a connection opens and again after every response,
  and closes the connection if no complete request head has arrived when it
  fires, however slowly bytes trickle in. So ``--idle-timeout`` bounds both an
  idle keep-alive connection and a slowloris sending its headers byte by
  byte. The head is also capped in size by aiohttp (8190 bytes per line and
  per header, 128 headers); beyond that aiohttp answers its own plain 400.
* **Request body**: :func:`read_body` reads it within ``--body-timeout``
  (counted from when the handler starts reading) and at most
  ``--max-body-bytes``; either failure is the dialect's own 400
  (:class:`~router.errors.BodyTimeout`, :class:`~router.errors.BodyTooLarge`).
  aiohttp then keeps reading and discarding the rest of the body for at most
  its lingering time (10 s) before closing, so the client can see the answer.
* **Form fields**: :func:`form_fields` parses a form body of at most
  :data:`MAX_FORM_FIELDS` fields and refuses a longer one with the dialect's
  400 (:class:`~router.errors.InvalidArgument`) after counting its ``&``s,
  before parsing any of it: no action takes more than a few dozen, and a
  1 MiB body of 350,000 empty fields would otherwise cost a few tenths of a
  second of CPU before its signature is even looked at.
* **Response**: an answer over 256 KiB is sent in 64 KiB pieces as the client
  reads (router/respond); a client that reads nothing for ``--send-timeout`` is
  disconnected. Smaller answers go out whole, so a non-reader holds at most that.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from aiohttp import web

from router.errors import BodyTimeout, BodyTooLarge, InvalidArgument

DEFAULT_MAX_BODY_BYTES = 1024**2
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_IDLE_TIMEOUT_S = 75.0
MAX_FORM_FIELDS = 1000

BODY_TIMEOUT = web.AppKey("body_timeout_s", float)


async def read_body(request: web.Request) -> bytes:
    """The whole request body, within the app's body timeout and size limit."""
    timeout = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)
    try:
        if request.content.is_eof():  # all of it arrived with the head: no timer needed
            return await request.read()
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(
            f"the request body is larger than {request.client_max_size} bytes"
        ) from None
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g}s") from None


def form_fields(text: str, max_fields: int = MAX_FORM_FIELDS) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a form body, refused beyond ``max_fields`` unparsed."""
    if text.count("&") >= max_fields:  # fields = 1 + separators; nothing parsed yet
        raise InvalidArgument(f"the form body has more than {max_fields} fields")
    return parse_qsl(text, keep_blank_values=True)
