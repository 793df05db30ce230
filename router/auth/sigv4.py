"""AWS Signature Version 4 for the Bedrock dialect and the ``/v1`` API, verified without HTTP.

The canonical request is rebuilt the way ``botocore.auth.SigV4Auth`` builds it
(docs/wire.md §3.2): the raw path with dot segments and repeated slashes removed, then
percent-encoded once more (``quote(path, safe="/~")``); the query pairs sorted;
each signed header lower-cased with its values' runs of spaces collapsed; and
the hex SHA-256 of the body (botocore sends no ``x-amz-content-sha256`` for
these services; when a client does send one it must be the body's hash). The
credential scope must name the service ``bedrock``; any region is accepted
(botocore signs ``bedrock-agent`` and ``bedrock-agent-runtime`` alike).

SigV4 has no nonce: a captured request can be replayed until its timestamp
leaves the window, exactly as against AWS itself.

:func:`sign` is the client side (``flow-router rollout``), built on the same
canonical request as :func:`verify`, so the two cannot disagree about it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from multidict import CIMultiDict, MultiMapping

from router import errors
from router.auth.base import (
    Signed,
    authorization_parts,
    check_window,
    parse_time,
    percent_encode,
    same,
    secret_of,
    wire,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "bedrock"
FLOW_ROUTER_SERVICE = "flow-router"  # the service the ``/v1`` API's signatures name
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_TERMINATOR = "aws4_request"


def normalize_path(path: str) -> str:
    """RFC 3986 remove-dot-segments, and empty segments dropped, as botocore does."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs = []
    for pair in raw_query.split("&"):
        key, _, value = pair.partition("=")
        # Identity for what botocore sends (already encoded this way); other
        # clients' spellings of the same query end up the same.
        pairs.append((percent_encode(unquote(key)), percent_encode(unquote(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    raw_path: str,
    headers: MultiMapping[str],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    path, _, raw_query = raw_path.partition("?")
    canonical_headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in headers.getall(name, []))}\n"
        for name in signed_headers
    )
    return "\n".join(
        (
            method.upper(),
            quote(wire(normalize_path(path)), safe="/~"),
            canonical_query(raw_query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        )
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, _TERMINATOR):
        key = hmac.new(key, wire(part), hashlib.sha256).digest()
    return key


def signature(canonical: str, amz_date: str, scope: str, key: bytes) -> str:
    digest = hashlib.sha256(wire(canonical)).hexdigest()
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    return hmac.new(key, wire(to_sign), hashlib.sha256).hexdigest()


def parse_authorization(value: str) -> tuple[list[str], list[str], str]:
    """``AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request,
    SignedHeaders=a;b, Signature=hex`` → (credential parts, signed headers, signature)."""
    credential, signed, given = authorization_parts(value, ALGORITHM)
    scope = credential.split("/")
    if len(scope) != 5 or not all(scope) or scope[4] != _TERMINATOR:
        raise errors.IncompleteSignature(
            "Credential must be AccessKeyId/yyyymmdd/region/service/aws4_request"
        )
    names = signed.split(";")
    if not all(names) or names != sorted(n.lower() for n in names):
        raise errors.IncompleteSignature("SignedHeaders must be lower case, sorted, ';'-separated")
    return scope, names, given


def _amz_date(headers: MultiMapping[str]) -> tuple[str, float]:
    """The signed time as SigV4 spells it (``X-Amz-Date``, else ``Date``) and in seconds."""
    amz = headers.get("X-Amz-Date")
    if amz is not None:
        return amz, parse_time(amz, AMZ_DATE, "X-Amz-Date")
    date = headers.get("Date")
    if date is None:
        raise errors.IncompleteSignature("the signed request has no X-Amz-Date header")
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise errors.IncompleteSignature(f"Date {date!r} is not an HTTP date") from None
    return parsed.strftime(AMZ_DATE), parsed.timestamp()


def verify(
    method: str,
    raw_path: str,
    headers: MultiMapping[str],
    body: bytes,
    credentials: Mapping[str, str],
    now: float,
    service: str = SERVICE,
) -> Signed:
    """Check a SigV4-signed request; ``headers`` must be case-insensitive.

    Raises an :class:`~router.errors.AuthenticationFailed`.
    """
    authorization = headers.get("Authorization")
    if authorization is None:
        raise errors.MissingSignature("the request is not signed with AWS Signature Version 4")
    scope, signed_headers, given = parse_authorization(authorization)
    access_key_id, date, region, scope_service, _ = scope
    if "host" not in signed_headers:
        raise errors.IncompleteSignature("the host header must be signed")
    amz_date, timestamp = _amz_date(headers)
    date_header = "x-amz-date" if "X-Amz-Date" in headers else "date"
    if date_header not in signed_headers:
        raise errors.IncompleteSignature(f"the {date_header} header must be signed")
    if scope_service != service:
        raise errors.IncompleteSignature(f"the credential scope must name service {service!r}")
    if date != amz_date[:8]:
        raise errors.IncompleteSignature("the credential scope date is not the signed date")
    for name in signed_headers:
        if name not in headers:
            raise errors.IncompleteSignature(f"signed header {name} is not in the request")
    secret = secret_of(credentials, access_key_id)
    check_window(timestamp, now, "the signed date")
    payload_hash = hashlib.sha256(body).hexdigest()
    content_sha = headers.get("X-Amz-Content-SHA256")
    if content_sha is not None and not same(payload_hash, content_sha.strip().lower()):
        raise errors.SignatureMismatch("x-amz-content-sha256 is not the hash of the body")
    canonical = canonical_request(method, raw_path, headers, signed_headers, payload_hash)
    expected = signature(
        canonical,
        amz_date,
        f"{date}/{region}/{scope_service}/{_TERMINATOR}",
        signing_key(secret, date, region, scope_service),
    )
    if not same(expected, given.lower()):
        raise errors.SignatureMismatch(
            "the request signature we calculated does not match the signature you provided"
        )
    return Signed(access_key_id, timestamp)


def sign(
    method: str,
    host: str,
    raw_path: str,
    body: bytes,
    access_key_id: str,
    secret: str,
    now: float,
    *,
    region: str = "us-east-1",
    service: str = FLOW_ROUTER_SERVICE,
) -> dict[str, str]:
    """The headers that sign a request (``Host``, ``X-Amz-Date``, ``Authorization``):
    the request must be sent with exactly this ``Host`` and ``raw_path`` (path and query
    as they go on the wire) and ``body``."""
    amz_date = time.strftime(AMZ_DATE, time.gmtime(now))
    headers = {"Host": host, "X-Amz-Date": amz_date}
    signed_headers = ["host", "x-amz-date"]
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical = canonical_request(
        method, raw_path, CIMultiDict(headers), signed_headers, payload_hash
    )
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/{_TERMINATOR}"
    signed = signature(canonical, amz_date, scope, signing_key(secret, date, region, service))
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(signed_headers)}, Signature={signed}"
    )
    return headers
