"""Requests signed by the SDKs' own signing code, never by ``router.auth``.

Each helper drives the signer the real client uses (alibabacloud_tea_openapi's
``Utils``, botocore's ``SigV4Auth``) at a time the test picks, so the vectors
the gateway checks are computed independently of the code under test.
"""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from alibabacloud_tea_openapi.utils import Utils
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from darabonba.request import DaraRequest
from multidict import CIMultiDict

AKID = "AKIDEXAMPLE"
SECRET = "secret"
CREDENTIALS = {AKID: SECRET}


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- CloudFlow RPC v1 ------------------------------------------------------------------


def rpc_params(
    action: str,
    business: Mapping[str, str],
    *,
    method: str = "GET",
    when: datetime | None = None,
    nonce: str | None = None,
    akid: str = AKID,
    secret: str = SECRET,
) -> dict[str, str]:
    """Common + business parameters with the SDK's own ``Signature`` (docs/wire.md §2.1, 2.2)."""
    params = {
        "Action": action,
        "Format": "json",
        "Version": "2019-03-15",
        "Timestamp": iso(when or now_utc()),
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": akid,
        **business,
    }
    params["Signature"] = Utils.get_rpcsignature(params, method, secret)
    return params


# -- CloudFlow ACS3 ---------------------------------------------------------------------


@dataclass
class Acs3Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def acs3_request(
    action: str,
    *,
    host: str,
    method: str = "POST",
    query: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    when: datetime | None = None,
    nonce: str | None = None,
    akid: str = AKID,
    secret: str = SECRET,
) -> Acs3Request:
    """A request as ``OpenApiClient.do_request`` builds and signs it (the V3 path)."""
    body = Utils.to_form(dict(form)).encode() if form else b""
    request = DaraRequest()
    request.method = method
    request.pathname = "/"
    request.query = dict(query or {})
    request.headers = {
        "host": host,
        "x-acs-version": "2019-03-15",
        "x-acs-action": action,
        "user-agent": "tests",
        "x-acs-date": iso(when or now_utc()),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if form:
        request.headers["content-type"] = "application/x-www-form-urlencoded"
    request.headers["Authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", request.headers["x-acs-content-sha256"], akid, secret
    )
    return Acs3Request(method, "/", request.query, dict(request.headers), body)


# -- AWS SigV4 --------------------------------------------------------------------------------


@dataclass
class SignedAws:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""
    raw_path: str = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.raw_path = parts.path + (f"?{parts.query}" if parts.query else "")


def sigv4_request(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    when: datetime | None = None,
    region: str = "us-east-1",
    service: str = "bedrock",
    akid: str = AKID,
    secret: str = SECRET,
) -> SignedAws:
    """Signed by botocore's ``SigV4Auth`` as of ``when`` (its ``add_auth`` always uses
    the current time, so this runs the same steps with the timestamp given)."""
    headers = {"Content-Type": "application/json"} if body else {}
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    stamp = (when or now_utc()).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    request.headers["X-Amz-Date"] = stamp
    auth = SigV4Auth(Credentials(akid, secret), service, region)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    headers_to_sign = auth.headers_to_sign(request)
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, "
        f"SignedHeaders={auth.signed_headers(headers_to_sign)}, Signature={signature}"
    )
    return SignedAws(method, url, {k: v for k, v in request.headers.items()}, body)


# -- raw HTTP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]


def send(
    method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> Answer:
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return Answer(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.read(), dict(e.headers))


def query_string(params: Mapping[str, Any]) -> str:
    return urlencode(params, quote_via=quote)


def raw_exchange(port: int, request: bytes) -> Answer:
    """Send ``request`` as it is (bytes no HTTP client would send) and read one answer.

    The answer must carry a Content-Length; the connection is closed afterwards.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = CIMultiDict(
            (k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:])
        )
        length = int(headers["Content-Length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed inside the body"
            body += chunk
    return Answer(int(lines[0].split(" ")[1]), body[:length], headers)
