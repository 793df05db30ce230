"""The CLI's SigV4 signer (router.auth.sigv4.sign) against botocore's, byte for byte.

botocore is a test dependency only, so the CLI signs with our own code; it must
produce exactly the Authorization botocore's ``SigV4Auth`` computes for the same
request, time, key and scope, and the gateway's verifier must accept it.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from router import errors
from router.auth import sigv4
from router.rollout.client import Client, Keys, label
from tests.auth.signing import AKID, CREDENTIALS, SECRET

WHEN = datetime(2026, 12, 1, 9, 30, 15, tzinfo=UTC)
NOW = float(calendar.timegm(WHEN.timetuple()))
HOST = "127.0.0.1:8080"

NAMES = [
    ("orders", "live"),
    ("my flow", "a/b"),  # a space, and a slash inside one label (%2F)
    ("flö~w.1_2-3", "日本"),  # UTF-8 and the unreserved characters
    ("p%20q", "+&=?#"),  # characters that mean something in a URL
]


def botocore_authorization(method: str, raw_path: str, body: bytes, region: str) -> str:
    request = AWSRequest(method=method, url=f"http://{HOST}{raw_path}", data=body)
    stamp = WHEN.strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    request.headers["X-Amz-Date"] = stamp
    auth = SigV4Auth(Credentials(AKID, SECRET), "flow-router", region)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    signed = auth.signed_headers(auth.headers_to_sign(request))
    return (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


@pytest.mark.parametrize(("flow", "alias"), NAMES)
@pytest.mark.parametrize(
    ("method", "action", "body"),
    [
        ("GET", "", b""),
        ("PUT", "", b'{"targetVersion": "3", "stepWeights": [5, 25, 50]}'),
        ("POST", "promote", b'{"full": true}'),
        ("POST", "abort", b""),
    ],
)
def test_the_signer_is_botocores(
    flow: str, alias: str, method: str, action: str, body: bytes
) -> None:
    raw_path = Client(f"http://{HOST}").path(flow, alias, action)
    ours = sigv4.sign(method, HOST, raw_path, body, AKID, SECRET, NOW, region="eu-west-1")
    assert ours["Host"] == HOST
    assert ours["X-Amz-Date"] == "20261201T093015Z"
    assert ours["Authorization"] == botocore_authorization(method, raw_path, body, "eu-west-1")
    # and the gateway's verifier takes it, for this service only
    headers = CIMultiDict(ours)
    signed = sigv4.verify(method, raw_path, headers, body, CREDENTIALS, NOW, "flow-router")
    assert signed.access_key_id == AKID
    with pytest.raises(errors.IncompleteSignature, match="service 'bedrock'"):
        sigv4.verify(method, raw_path, headers, body, CREDENTIALS, NOW)
    with pytest.raises(errors.SignatureMismatch):
        sigv4.verify(method, raw_path, headers, body + b" ", CREDENTIALS, NOW, "flow-router")


def test_labels_keep_a_slash_inside_its_label() -> None:
    assert label("a/b c") == "a%2Fb%20c"
    assert Client("http://h:1/prefix/").path("f", "a", "pause") == (
        "/prefix/v1/flows/f/aliases/a/rollout/pause"
    )


def test_the_secret_is_never_shown() -> None:
    assert "s3cr3t-value" not in repr(Keys(AKID, "s3cr3t-value"))


@pytest.mark.parametrize(
    "endpoint", ["ftp://h", "127.0.0.1:8080", "http://", "http://h/?q=1", "http://h/#x"]
)
def test_endpoints_that_are_no_http_url_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="--endpoint"):
        Client(endpoint)
