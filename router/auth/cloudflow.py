"""CloudFlow request signatures, verified without HTTP.

Two schemes reach ``/``:

* **RPC signature v1.0** (docs/wire.md §2.2), what the fnf SDK sends: ``Signature`` in the
  query, HMAC-SHA1 over the sorted, percent-encoded parameters (query plus form
  body, minus ``Signature``), keyed with ``AccessKeySecret + "&"``.
* **ACS3-HMAC-SHA256** (docs/wire.md §2.3, Alibaba's "V3" signature), what most other
  Alibaba clients send: an ``Authorization`` header over a canonical request::

      METHOD \\n CanonicalURI \\n CanonicalQueryString \\n CanonicalHeaders \\n
      SignedHeaders \\n hex(sha256(body))

  ``StringToSign = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest))`` and the
  signature is ``hex(HMAC-SHA256(AccessKeySecret, StringToSign))``, as
  ``alibabacloud_tea_openapi.utils.Utils.get_authorization`` computes it.

Both carry a timestamp (``Timestamp`` / ``x-acs-date``) and a nonce
(``SignatureNonce`` / ``x-acs-signature-nonce``); the caller checks the nonce
against what it has seen (:class:`router.auth.Verifier`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from multidict import MultiMapping

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

ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
ACS3 = "ACS3-HMAC-SHA256"
_RPC_REQUIRED = ("AccessKeyId", "Timestamp", "SignatureNonce")


def verify(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: MultiMapping[str],
    body: bytes,
    params: Mapping[str, str],
    action: str,
    credentials: Mapping[str, str],
    now: float,
) -> Signed:
    """Whichever scheme the request uses.

    ``params`` are query and form merged and ``action`` the action dispatched on
    (query ``Action``, else the ``x-acs-action`` header), both as the dialect
    uses them. ``headers`` must be case-insensitive (aiohttp's
    ``request.headers``, a ``CIMultiDict``). Raises an
    :class:`~router.errors.AuthenticationFailed`.
    """
    authorization = headers.get("Authorization")
    if authorization is not None:
        # ACS3 signs the whole query, the x-acs-* headers and the body's hash:
        # everything the dialect reads the action and the parameters from.
        return verify_acs3(method, raw_path, query, headers, body, credentials, now)
    if "Signature" in params:
        signed = verify_rpc(method, params, credentials, now)
        # The RPC signature covers the parameters, not the headers: the action
        # dispatched on must be the signed one.
        if params.get("Action") != action:
            raise errors.IncompleteSignature("Action must be a signed parameter")
        return signed
    raise errors.MissingSignature(
        "the request is not signed: give Signature (RPC) or an ACS3-HMAC-SHA256 Authorization"
    )


# -- RPC signature v1.0 -----------------------------------------------------------


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    return f"{method.upper()}&%2F&{percent_encode(canonical)}"


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """The ``Signature`` the key's ``secret`` gives these parameters (docs/wire.md §2.2)."""
    digest = hmac.new(
        f"{secret}&".encode(), wire(rpc_string_to_sign(method, params)), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def verify_rpc(
    method: str, params: Mapping[str, str], credentials: Mapping[str, str], now: float
) -> Signed:
    if params.get("SignatureMethod") != "HMAC-SHA1":
        raise errors.IncompleteSignature("SignatureMethod must be HMAC-SHA1")
    if params.get("SignatureVersion") != "1.0":
        raise errors.IncompleteSignature("SignatureVersion must be 1.0")
    for name in _RPC_REQUIRED:
        if not params.get(name):
            raise errors.IncompleteSignature(f"the signed request has no {name}")
    timestamp = parse_time(params["Timestamp"], ISO_SECONDS, "Timestamp")
    secret = secret_of(credentials, params["AccessKeyId"])
    check_window(timestamp, now, "Timestamp")
    if not same(rpc_signature(method, params, secret), params.get("Signature", "")):
        raise errors.SignatureMismatch("the Signature does not match the request")
    return Signed(params["AccessKeyId"], timestamp, params["SignatureNonce"])


# -- ACS3-HMAC-SHA256 ------------------------------------------------------------------


def acs3_canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: MultiMapping[str],
    signed_headers: Iterable[str],
    payload_hash: str,
) -> str:
    path = raw_path.split("?", 1)[0] or "/"
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((percent_encode(k), percent_encode(v)) for k, v in query)
    )
    names = sorted({name.lower() for name in signed_headers})
    canonical_headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers.getall(name, [])))}\n"
        for name in names
    )
    return "\n".join(
        (method.upper(), path, canonical_query, canonical_headers, ";".join(names), payload_hash)
    )


def acs3_signature(canonical_request: str, secret: str) -> str:
    digest = hashlib.sha256(wire(canonical_request)).hexdigest()
    return hmac.new(secret.encode(), f"{ACS3}\n{digest}".encode(), hashlib.sha256).hexdigest()


def parse_acs3_authorization(value: str) -> tuple[str, list[str], str]:
    """``ACS3-HMAC-SHA256 Credential=…,SignedHeaders=a;b,Signature=…`` → its three parts."""
    credential, signed, signature = authorization_parts(value, ACS3)
    if not (credential and signed and signature):
        raise errors.IncompleteSignature("the Authorization header has an empty part")
    return credential, signed.split(";"), signature


def verify_acs3(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: MultiMapping[str],
    body: bytes,
    credentials: Mapping[str, str],
    now: float,
) -> Signed:
    access_key_id, signed_headers, signature = parse_acs3_authorization(
        headers.get("Authorization", "")
    )
    signed = {name.lower() for name in signed_headers}
    # Every common header present must be signed (Alibaba's V3 rule): the action,
    # version, date, nonce and body hash cannot be swapped under a valid signature.
    for name in headers:
        lowered = name.lower()
        if (lowered == "host" or lowered.startswith("x-acs-")) and lowered not in signed:
            raise errors.IncompleteSignature(f"header {lowered} must be signed")
    for name in ("host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"):
        if not headers.get(name):
            raise errors.IncompleteSignature(f"the signed request has no {name} header")
    for name in signed:
        if name not in headers:
            raise errors.IncompleteSignature(f"signed header {name} is not in the request")
    timestamp = parse_time(headers["x-acs-date"], ISO_SECONDS, "x-acs-date")
    secret = secret_of(credentials, access_key_id)
    check_window(timestamp, now, "x-acs-date")
    payload_hash = hashlib.sha256(body).hexdigest()
    if not same(payload_hash, headers["x-acs-content-sha256"].strip().lower()):
        raise errors.SignatureMismatch("x-acs-content-sha256 is not the hash of the body")
    canonical = acs3_canonical_request(method, raw_path, query, headers, signed, payload_hash)
    if not same(acs3_signature(canonical, secret), signature.lower()):
        raise errors.SignatureMismatch("the ACS3-HMAC-SHA256 signature does not match")
    return Signed(access_key_id, timestamp, headers["x-acs-signature-nonce"])
