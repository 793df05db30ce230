"""Hostile bytes before authentication, through real sockets to a gateway that has credentials.

Each request is written byte for byte (no HTTP client would send a header
that is not UTF-8) and must be answered with the dialect's own error, never
a 500: a non-UTF-8 byte in a signed header or in the credential scope, with
an Authorization that names a known access key id; and a form body with more
fields than any action takes. A nonce holding such a byte, once its signature
checked out, is shared through real Redis like any other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from router import errors
from router.auth import Signed, Verifier
from router.store.memory import MemoryStore
from router.store.redis import RedisStore
from tests.auth.signing import AKID, CREDENTIALS, Answer, raw_exchange
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor


@pytest.fixture
def signed(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    store = MemoryStore()
    server = start_gateway(bg_loop, store, recording_executor, credentials=dict(CREDENTIALS))
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


def _stamps() -> tuple[bytes, bytes]:
    """(yyyymmddThhmmssZ, yyyy-mm-ddThh:mm:ssZ) now, as SigV4 and ACS3 spell them."""
    now = time.gmtime()
    return (
        time.strftime("%Y%m%dT%H%M%SZ", now).encode(),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", now).encode(),
    )


def assert_bedrock_denied(answer: Answer) -> None:
    assert answer.status == 403, answer
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "Traceback" not in json.loads(answer.body)["message"]


def assert_cloudflow_code(answer: Answer, status: int, *codes: str) -> None:
    body = json.loads(answer.body)
    assert (answer.status, body["Code"]) in {(status, c) for c in codes}, answer
    assert body["RequestId"] and "Traceback" not in body["Message"]


# -- a byte outside UTF-8 in what is signed ---------------------------------------------------


def _sigv4(host: bytes, region: bytes = b"us-east-1", extra: bytes = b"") -> bytes:
    amz, _ = _stamps()
    signed = b"host;x-amz-date" + (b";x-custom" if extra else b"")
    return (
        b"GET /flows/ HTTP/1.1\r\nHost: " + host + b"\r\nX-Amz-Date: " + amz + b"\r\n"
        + (b"X-Custom: " + extra + b"\r\n" if extra else b"")
        + b"Authorization: AWS4-HMAC-SHA256 Credential=" + AKID.encode() + b"/" + amz[:8]
        + b"/" + region + b"/bedrock/aws4_request, SignedHeaders=" + signed
        + b", Signature=00\r\nConnection: close\r\n\r\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(_sigv4(b"\xff"), id="host"),
        pytest.param(_sigv4(b"127.0.0.1", extra=b"caf\xe9"), id="other-signed-header"),
        pytest.param(_sigv4(b"127.0.0.1", region=b"us-\xff"), id="credential-scope"),
    ],
)
def test_sigv4_non_utf8_is_access_denied(signed: GatewayServer, request_bytes: bytes) -> None:
    assert_bedrock_denied(raw_exchange(signed.port, request_bytes))


def _acs3(host: bytes, nonce: bytes = b"n-1") -> bytes:
    _, iso = _stamps()
    empty = b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    signed = b"host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce"
    signed += b";x-acs-version"
    return (
        b"POST / HTTP/1.1\r\nHost: " + host + b"\r\nx-acs-action: ListFlows\r\n"
        b"x-acs-version: 2019-03-15\r\nx-acs-date: " + iso + b"\r\n"
        b"x-acs-signature-nonce: " + nonce + b"\r\nx-acs-content-sha256: " + empty + b"\r\n"
        b"Authorization: ACS3-HMAC-SHA256 Credential=" + AKID.encode() + b",SignedHeaders="
        + signed + b",Signature=00\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(_acs3(b"\xff"), id="host"),
        pytest.param(_acs3(b"127.0.0.1", nonce=b"\xfe\xff"), id="nonce"),
    ],
)
def test_acs3_non_utf8_is_a_cloudflow_403(signed: GatewayServer, request_bytes: bytes) -> None:
    assert_cloudflow_code(raw_exchange(signed.port, request_bytes), 403, "SignatureDoesNotMatch")


# -- a form body with more fields than any action takes ----------------------------------------


def _form_post(fields: int) -> bytes:
    body = b"&".join(b"f%d=" % i for i in range(fields))
    return (
        b"POST /?Action=ListFlows&Format=json&Version=2019-03-15 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        (1000, 403, "MissingSignature"),  # the cap: parsed, then refused as unsigned
        (1001, 400, "InvalidArgument"),
        (120_000, 400, "InvalidArgument"),  # refused before any of it is parsed
    ],
)
def test_form_field_count_is_capped(
    signed: GatewayServer, fields: int, status: int, code: str
) -> None:
    answer = raw_exchange(signed.port, _form_post(fields))
    assert_cloudflow_code(answer, status, code)
    if status == 400:
        assert "more than 1000 fields" in json.loads(answer.body)["Message"]


# -- a signed nonce byte outside UTF-8 reaches Redis -------------------------------------------


async def test_a_nonce_outside_utf8_is_shared_through_redis(
    request: pytest.FixtureRequest,
) -> None:
    """A nonce that checked out (its signature covers the raw byte) is stored, not a 500."""
    url = request.getfixturevalue("redis_server").url
    prefix = f"t{uuid.uuid4().hex[:8]}"
    stores = [RedisStore.from_url(url, prefix) for _ in range(2)]
    first, second = Verifier(CREDENTIALS), Verifier(CREDENTIALS)
    first.share_nonces(stores[0])
    second.share_nonces(stores[1])
    now = time.time()
    signed = Signed(AKID, now, "n-\udcff")  # how aiohttp hands over the byte 0xff
    try:
        await first._remember_nonce(signed, now)
        with pytest.raises(errors.NonceUsed):  # a replay to another replica
            await second._remember_nonce(signed, now)
        await second._remember_nonce(Signed(AKID, now, "n-\udcfe"), now)  # another byte
    finally:
        for store in stores:
            await store.close()
