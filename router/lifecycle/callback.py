"""Callback tokens: executors push an execution's final body to any replica.

With ``serve --callback-url URL`` the start body carries
``"callback": "<URL>/_callback/<flowId>/<execution>/<token>"``. The token is
``HMAC-SHA256(secret, flowId, execution)`` in URL-safe base64 without padding
(43 characters): unguessable without the secret, bound to one execution of one
flow, and recomputed by whichever replica receives the POST, so it is never
stored. A token for another execution, or a forged one, fails :meth:`verify`
(compared in constant time with :func:`hmac.compare_digest`) and the handler
answers 403 without touching the store.

:func:`final_body` parses what the executor POSTs there.

**The secret must be the same on every replica**, or a callback that reaches
another replica than the one that started the execution is refused.
:func:`resolve_secret` picks it:

1. ``--callback-secret`` when given (any string of 16 characters or more; it
   is stretched to 32 bytes with HMAC, so its length does not matter beyond
   that);
2. otherwise a random 32-byte value created once per deployment and kept in
   the store under a fixed name, set only if absent, so concurrent replicas
   agree on whichever was written first.

Not derived from the API credentials: rotating a key would then invalidate
the callbacks of every execution in flight, and a deployment without
credentials would have no secret at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from router.errors import InvalidArgument
from router.lifecycle.record import as_text, reported_stop
from router.lifecycle.status import InvalidStatus, Status, parse

ROUTE = "/_callback/{flow_id}/{execution}/{token}"  # aiohttp route of the handler
PREFIX = "/_callback/"
SECRET_BYTES = 32
MIN_FLAG_LENGTH = 16
STORE_NAME = "callback-secret"  # the store's name for the per-deployment secret

_DOMAIN = b"flow-router callback v1"


def _stretch(value: str) -> bytes:
    return hmac.new(_DOMAIN, value.encode(), hashlib.sha256).digest()


def secret_from_flag(value: str) -> bytes:
    """The secret ``--callback-secret`` gives; raises ValueError if it is too short."""
    if len(value) < MIN_FLAG_LENGTH:
        raise ValueError(f"--callback-secret must be at least {MIN_FLAG_LENGTH} characters long")
    return _stretch(value)


async def resolve_secret(
    flag: str | None,
    setdefault: Callable[[str, bytes], Awaitable[bytes]],
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> bytes:
    """The secret every replica shares.

    ``setdefault(name, value)`` is the store's set-if-absent: it stores
    ``value`` unless ``name`` holds one already, and returns what is stored.
    It is not called when ``flag`` is given.
    """
    if flag is not None:
        return secret_from_flag(flag)
    stored = await setdefault(STORE_NAME, random_bytes(SECRET_BYTES))
    if len(stored) < SECRET_BYTES:
        raise ValueError(f"the stored {STORE_NAME} is {len(stored)} bytes, expected 32")
    return stored


class CallbackTokens:
    """Makes and checks tokens under one secret; one instance per app."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"a callback secret must be at least {SECRET_BYTES} bytes")
        self._secret = secret

    def token(self, flow_id: str, execution: str) -> str:
        # Length-prefixed, so no (flow id, execution) pair can spell another's message.
        f, e = flow_id.encode(), execution.encode()
        message = struct.pack(">I", len(f)) + f + e
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def verify(self, flow_id: str, execution: str, token: str) -> bool:
        try:
            given = token.encode("ascii")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(given, self.token(flow_id, execution).encode("ascii"))

    def callback_url(self, base_url: str, flow_id: str, execution: str) -> str:
        return build_url(base_url, flow_id, execution, self.token(flow_id, execution))


@dataclass(frozen=True, slots=True)
class Callbacks:
    """``--callback-url`` and the tokens of the secret the replicas share."""

    base_url: str
    tokens: CallbackTokens

    def url(self, flow_id: str, execution: str) -> str:
        return self.tokens.callback_url(self.base_url, flow_id, execution)


def build_url(base_url: str, flow_id: str, execution: str, token: str) -> str:
    """``<base>/_callback/<flowId>/<execution>/<token>``, each part URL-quoted."""
    return (
        base_url.rstrip("/")
        + PREFIX
        + quote(flow_id, safe="")
        + "/"
        + quote(execution, safe="")
        + "/"
        + token
    )


@dataclass(frozen=True, slots=True)
class FinalBody:
    """What a callback reports: the execution's final status and result."""

    status: Status
    output: Any
    error: str | None
    cause: str | None
    stopped_at: int | None = None  # when the executor says it ended (ms since the epoch)


def final_body(raw: bytes) -> FinalBody:
    """Parse a callback's body, the executor's reply for a finished execution.

    The same body as a reply (an absent status means Succeeded), but it must be
    final: ``Running`` is refused. Raises InvalidArgument (the handler answers
    400 and changes nothing); check the token first, so a forged callback gets
    403 whatever its body.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidArgument("the callback body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the callback body is not a JSON object")
    try:
        status = parse(body.get("status"))
    except InvalidStatus as e:
        raise InvalidArgument(f"the callback body has an {e}", "status") from None
    if not status.is_final:
        raise InvalidArgument(
            f"a callback reports the final status; {status.value} is not final", "status"
        )
    try:
        stopped_at = reported_stop(body.get("stoppedAt"))
    except ValueError as e:
        raise InvalidArgument(f"the callback body's {e}", "stoppedAt") from None
    return FinalBody(
        status,
        body.get("output"),
        as_text(body.get("error")),
        as_text(body.get("cause")),
        stopped_at,
    )
