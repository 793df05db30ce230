"""What every signature scheme shares: the result, the clock window, the comparisons."""

from __future__ import annotations

import calendar
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from router import errors

# A signed timestamp may be this far from the server's clock, either way.
WINDOW_S = 15 * 60


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose signature checked out."""

    access_key_id: str
    timestamp: float  # seconds since the epoch, as signed
    nonce: str | None = None  # CloudFlow's SignatureNonce; SigV4 has none


def wire(text: str) -> bytes:
    """``text`` as the bytes the client sent, which is what it signed.

    aiohttp decodes the request head as UTF-8 with ``surrogateescape``, so a
    byte that is not UTF-8 (``Host: \\xff``) arrives as a lone surrogate that
    a plain ``encode()`` refuses; this gives the byte back instead, and a
    signature over it is checked like any other. Text no request could have
    carried (another lone surrogate) fails as an unsigned request would.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise errors.IncompleteSignature("the request holds text that is not UTF-8") from None


def percent_encode(text: str) -> str:
    """RFC 3986: all but ``A-Z a-z 0-9 - _ . ~`` as ``%XX`` of UTF-8 (a space is ``%20``)."""
    return quote(wire(text), safe="-_.~")


def parse_time(value: str, layout: str, name: str) -> float:
    """A UTC timestamp in ``layout`` (``strptime``) as epoch seconds."""
    try:
        parsed = time.strptime(value, layout)
    except ValueError:
        raise errors.IncompleteSignature(f"{name} {value!r} is not a UTC time") from None
    return float(calendar.timegm(parsed))


def check_window(timestamp: float, now: float, name: str) -> None:
    if abs(now - timestamp) > WINDOW_S:
        raise errors.RequestExpired(
            f"{name} is more than {WINDOW_S // 60} minutes from the server's time"
        )


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of an expected signature with the one sent."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def secret_of(credentials: Mapping[str, str], access_key_id: str) -> str:
    secret = credentials.get(access_key_id)
    if secret is None:
        raise errors.UnknownAccessKey(access_key_id)
    return secret


def authorization_parts(value: str, scheme: str) -> tuple[str, str, str]:
    """``<scheme> Credential=…,SignedHeaders=…,Signature=…`` → those three values.

    ACS3-HMAC-SHA256 and AWS4-HMAC-SHA256 share this layout; each verifier
    then checks what its own Credential and SignedHeaders must look like.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != scheme:
        raise errors.IncompleteSignature(
            f"Authorization scheme {algorithm!r} is not supported; use {scheme}"
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    try:
        return fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as missing:
        raise errors.IncompleteSignature(f"the Authorization header has no {missing}") from None
