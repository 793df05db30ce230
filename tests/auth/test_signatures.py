"""The pure verifiers of router.auth against vectors the SDKs' own signers computed.

RPC v1 and ACS3 requests are signed by ``alibabacloud_tea_openapi.utils.Utils``
(the code the fnf client runs), SigV4 by ``botocore.auth.SigV4Auth`` and by two
requests of AWS's published SigV4 test suite; requests the real clients send
are captured before they leave the process. Nothing here is signed by the code
under test.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.config
import fakeredis
import pytest
from aiohttp.test_utils import make_mocked_request
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig
from botocore.awsrequest import AWSResponse
from multidict import CIMultiDict

from router import errors
from router.auth import NonceCache, Signed, Verifier, cloudflow, load_credentials, sigv4
from router.auth.base import WINDOW_S
from router.store.base import IdempotencyRecord
from router.store.memory import MemoryStore
from router.store.redis import RedisStore
from tests.auth.signing import (
    AKID,
    CREDENTIALS,
    SECRET,
    acs3_request,
    now_utc,
    query_string,
    rpc_params,
    sigv4_request,
)

HOST = "127.0.0.1:8080"


def epoch(stamp: str, layout: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, layout)))


# -- CloudFlow RPC signature v1.0 ------------------------------------------------------------


def verify_rpc(params: dict[str, str], method: str = "GET", now: float | None = None) -> Signed:
    return cloudflow.verify(
        method,
        "/",
        [],
        CIMultiDict(),
        b"",
        params,
        params.get("Action", ""),
        CREDENTIALS,
        time.time() if now is None else now,
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "business",
    [
        {},
        {"FlowName": "f1", "Limit": "10"},
        {"Name": "my flow", "Description": "slash / tilde ~ star * plus + amp & eq ="},
        {"Input": '{"text": "héllo wörld ✓ 日本"}', "Name": "x"},
        {"Description": ""},
    ],
)
def test_rpc_accepts_what_the_sdk_signed(method: str, business: dict[str, str]) -> None:
    params = rpc_params("CreateFlow", business, method=method)
    signed = verify_rpc(params, method)
    assert signed.access_key_id == AKID
    assert signed.nonce == params["SignatureNonce"]


def test_rpc_signature_matches_the_sdk_bit_for_bit() -> None:
    params = rpc_params("ListFlows", {"Limit": "5", "NextToken": "a b/c~d"})
    assert cloudflow.rpc_signature("GET", params, SECRET) == params["Signature"]


def test_rpc_from_a_request_the_fnf_client_sent() -> None:
    """Capture what the unmodified client puts on the wire and verify that."""
    sent = _capture_fnf(
        lambda c: c.create_flow_alias(
            models.CreateFlowAliasRequest(
                flow_name="f1",
                name="prod",
                description="30/70 split",
                routing_configurations=[
                    models.CreateFlowAliasRequestRoutingConfigurations(version="1", weight=30),
                    models.CreateFlowAliasRequestRoutingConfigurations(version="2", weight=70),
                ],
            )
        )
    )
    assert sent["method"] == "POST"
    params = {**sent["query"], **dict(parse_qsl(sent["body"].decode(), keep_blank_values=True))}
    assert "RoutingConfigurations" in params and "Signature" in params
    assert verify_rpc(params, "POST").access_key_id == AKID


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda p: p.update(FlowName="other"), errors.SignatureMismatch),
        (lambda p: p.update(Extra="1"), errors.SignatureMismatch),
        (lambda p: p.update(Signature=p["Signature"][:-2] + "x="), errors.SignatureMismatch),
        (lambda p: p.update(Signature=""), errors.SignatureMismatch),
        (lambda p: p.update(Signature="ünïcode"), errors.SignatureMismatch),
        (lambda p: p.update(AccessKeyId="AKIDOTHER"), errors.UnknownAccessKey),
        (lambda p: p.pop("SignatureNonce"), errors.IncompleteSignature),
        (lambda p: p.pop("Timestamp"), errors.IncompleteSignature),
        (lambda p: p.update(Timestamp="yesterday"), errors.IncompleteSignature),
        (lambda p: p.update(SignatureMethod="HMAC-SHA256"), errors.IncompleteSignature),
        (lambda p: p.update(SignatureVersion="2.0"), errors.IncompleteSignature),
        (lambda p: p.pop("Signature"), errors.MissingSignature),
    ],
)
def test_rpc_rejects(change: Any, error: type[errors.AuthenticationFailed]) -> None:
    params = rpc_params("DescribeFlow", {"FlowName": "f1"})
    change(params)
    with pytest.raises(error):
        verify_rpc(params)


def test_rpc_with_the_wrong_secret_is_a_mismatch() -> None:
    with pytest.raises(errors.SignatureMismatch):
        verify_rpc(rpc_params("ListFlows", {}, secret="not-the-secret"))


def test_rpc_method_is_signed() -> None:
    with pytest.raises(errors.SignatureMismatch):
        verify_rpc(rpc_params("ListFlows", {}, method="GET"), "POST")


def test_rpc_action_dispatched_on_must_be_the_signed_one() -> None:
    params = rpc_params("DescribeFlow", {"Name": "f1"})
    with pytest.raises(errors.IncompleteSignature, match="Action"):
        cloudflow.verify(
            "GET", "/", [], CIMultiDict(), b"", params, "DeleteFlow", CREDENTIALS, time.time()
        )


@pytest.mark.parametrize("minutes", [-20, -16, 16, 20])
def test_rpc_timestamp_outside_the_window(minutes: int) -> None:
    params = rpc_params("ListFlows", {}, when=now_utc() + timedelta(minutes=minutes))
    with pytest.raises(errors.RequestExpired):
        verify_rpc(params)


@pytest.mark.parametrize("minutes", [-14, 14])
def test_rpc_timestamp_inside_the_window(minutes: int) -> None:
    params = rpc_params("ListFlows", {}, when=now_utc() + timedelta(minutes=minutes))
    assert verify_rpc(params).access_key_id == AKID


def test_the_window_is_fifteen_minutes() -> None:
    assert WINDOW_S == 15 * 60


def test_unsigned_cloudflow_request() -> None:
    with pytest.raises(errors.MissingSignature):
        verify_rpc({"Action": "ListFlows", "Format": "json"})


# -- CloudFlow ACS3-HMAC-SHA256 -------------------------------------------------------------------


def verify_acs3(
    method: str,
    query: dict[str, str],
    headers: dict[str, str] | CIMultiDict[str],
    body: bytes,
    now: float | None = None,
) -> Signed:
    return cloudflow.verify(
        method,
        "/",
        list(query.items()),
        CIMultiDict(headers),
        body,
        {**query},
        "",
        CREDENTIALS,
        time.time() if now is None else now,
    )


def test_acs3_post_with_a_form_body() -> None:
    r = acs3_request(
        "CreateFlowAlias",
        host=HOST,
        form={"FlowName": "f1", "Name": "prod", "RoutingConfigurations": '[{"Version":"1"}]'},
    )
    signed = verify_acs3(r.method, r.query, r.headers, r.body)
    assert (signed.access_key_id, signed.nonce) == (AKID, r.headers["x-acs-signature-nonce"])


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"FlowName": "f1", "Name": "prod"},
        {"Name": "a b/c~d*e+f", "Description": "ünï ✓", "Empty": ""},
    ],
)
def test_acs3_get_with_query_parameters(query: dict[str, str]) -> None:
    r = acs3_request("DescribeFlowAlias", host=HOST, method="GET", query=query)
    assert verify_acs3("GET", r.query, r.headers, r.body).access_key_id == AKID


def test_acs3_from_a_request_the_sdk_sent_on_its_v3_path() -> None:
    sent = _capture_fnf(
        lambda c: c.start_execution(
            models.StartExecutionRequest(flow_name="f1", qualifier="prod", input='{"a": 1}')
        ),
        v3=True,
    )
    headers = CIMultiDict(sent["headers"])
    assert headers["Authorization"].startswith("ACS3-HMAC-SHA256 ")
    assert "Signature" not in sent["query"] and "Action" not in sent["query"]
    verified = verify_acs3(sent["method"], sent["query"], headers, sent["body"])
    assert verified.nonce == headers["x-acs-signature-nonce"]


def _tamper_header(name: str, value: str) -> Any:
    def change(r: Any) -> None:
        r.headers[name] = value

    return change


def _other_body_with_its_hash(r: Any) -> None:
    """The body hash header is right for the new body, but it was signed for the old."""
    r.body = b"FlowName=other"
    r.headers["x-acs-content-sha256"] = hashlib.sha256(r.body).hexdigest()


def _authorization(r: Any, old: str, new: str) -> None:
    r.headers["Authorization"] = r.headers["Authorization"].replace(old, new, 1)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (_tamper_header("x-acs-action", "DeleteFlow"), errors.SignatureMismatch),
        (_tamper_header("host", "evil.example"), errors.SignatureMismatch),
        (_tamper_header("x-acs-signature-nonce", "fresh"), errors.SignatureMismatch),
        (lambda r: r.query.update(FlowName="other"), errors.SignatureMismatch),
        (lambda r: setattr(r, "body", b"FlowName=other"), errors.SignatureMismatch),
        (_other_body_with_its_hash, errors.SignatureMismatch),
        (_tamper_header("x-acs-extra", "1"), errors.IncompleteSignature),
        (lambda r: r.headers.pop("x-acs-signature-nonce"), errors.IncompleteSignature),
        (lambda r: r.headers.pop("x-acs-content-sha256"), errors.IncompleteSignature),
        (lambda r: r.headers.pop("accept"), errors.IncompleteSignature),
        (_tamper_header("x-acs-date", "2026-13-45T99:00:00Z"), errors.IncompleteSignature),
        (
            lambda r: _authorization(r, "ACS3-HMAC-SHA256", "ACS3-HMAC-SM3"),
            errors.IncompleteSignature,
        ),
        (lambda r: _authorization(r, "Signature=", "Signature=0"), errors.SignatureMismatch),
        (lambda r: _authorization(r, f"={AKID},", "=AKIDOTHER,"), errors.UnknownAccessKey),
        (
            lambda r: r.headers.update(Authorization="ACS3-HMAC-SHA256 Credential=AKIDEXAMPLE"),
            errors.IncompleteSignature,
        ),
    ],
)
def test_acs3_rejects(change: Any, error: type[errors.AuthenticationFailed]) -> None:
    r = acs3_request("DescribeFlow", host=HOST, query={"Name": "f1"}, form={"FlowName": "f1"})
    change(r)
    with pytest.raises(error):
        verify_acs3(r.method, r.query, r.headers, r.body)


def test_acs3_wrong_secret_and_expired_date() -> None:
    r = acs3_request("ListFlows", host=HOST, method="GET", secret="not-the-secret")
    with pytest.raises(errors.SignatureMismatch):
        verify_acs3("GET", r.query, r.headers, r.body)
    r = acs3_request("ListFlows", host=HOST, method="GET", when=now_utc() - timedelta(minutes=20))
    with pytest.raises(errors.RequestExpired):
        verify_acs3("GET", r.query, r.headers, r.body)


# -- AWS SigV4 --------------------------------------------------------------------------------

# Two requests of AWS's SigV4 test suite (service "service", us-east-1, 2015-08-30T12:36:00Z).
AWS_SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AWS_SUITE = [
    ("/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    (
        "/?Param2=value2&Param1=value1",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
]


@pytest.mark.parametrize(("raw_path", "signature"), AWS_SUITE)
def test_sigv4_aws_test_suite(raw_path: str, signature: str) -> None:
    headers = CIMultiDict(
        {
            "Host": "example.amazonaws.com",
            "X-Amz-Date": "20150830T123600Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
            f"aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}",
        }
    )
    now = epoch("20150830T123600Z", sigv4.AMZ_DATE)
    credentials = {"AKIDEXAMPLE": AWS_SUITE_SECRET}
    signed = sigv4.verify("GET", raw_path, headers, b"", credentials, now, service="service")
    assert signed.access_key_id == "AKIDEXAMPLE"
    with pytest.raises(errors.SignatureMismatch):
        sigv4.verify("GET", raw_path + "x", headers, b"", credentials, now, service="service")


def verify_aws(
    signed: Any,
    *,
    method: str | None = None,
    raw_path: str | None = None,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
    now: float | None = None,
) -> Signed:
    headers = CIMultiDict(signed.headers)
    headers.setdefault("Host", urlsplit(signed.url).netloc)
    headers.update(extra or {})
    return sigv4.verify(
        method or signed.method,
        signed.raw_path if raw_path is None else raw_path,
        headers,
        signed.body if body is None else body,
        CREDENTIALS,
        time.time() if now is None else now,
    )


INPUTS = [{"nodeName": "In", "nodeOutputName": "document", "content": {"document": {"q": 1}}}]
ARN = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aflow%2FFLOW123456"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/flows/", b""),
        ("GET", "/flows/?maxResults=5&nextToken=a%2Fb%2Bc%3D%3D", b""),
        ("POST", "/flows/", b'{"name": "f", "definition": {"nodes": []}}'),
        ("GET", f"/flows/{ARN}/", b""),
        ("POST", f"/tags/{ARN}", b'{"tags": {"k": "v \\u2713"}}'),
        ("POST", "/flows/F1/aliases/A1", b'{"inputs": []}'),
        ("DELETE", "/flows/F1/versions/2/?skipResourceInUseCheck=true", b""),
    ],
)
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3"])
def test_sigv4_accepts_what_botocore_signed(
    method: str, path: str, body: bytes, region: str
) -> None:
    signed = sigv4_request(method, f"http://{HOST}{path}", body, region=region)
    assert verify_aws(signed).access_key_id == AKID


def test_sigv4_from_requests_boto3_sent() -> None:
    """Capture the unmodified clients' requests, ARNs and paging tokens included."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456"
    calls: list[tuple[str, Any]] = [
        ("bedrock-agent", lambda c: c.list_flows(maxResults=5, nextToken="a/b+c==")),
        ("bedrock-agent", lambda c: c.get_flow(flowIdentifier=arn)),
        ("bedrock-agent", lambda c: c.tag_resource(resourceArn=arn, tags={"k": "ü ✓"})),
        (
            "bedrock-agent-runtime",
            lambda c: c.invoke_flow(flowIdentifier="F1", flowAliasIdentifier="A1", inputs=INPUTS),
        ),
    ]
    for service, call in calls:
        sent = _capture_boto3(service, call)
        headers = CIMultiDict(sent["headers"])
        headers.setdefault("Host", HOST)
        assert "bedrock/aws4_request" in headers["Authorization"]
        assert "x-amz-content-sha256" not in headers
        url = urlsplit(sent["url"])
        raw_path = url.path + (f"?{url.query}" if url.query else "")
        signed = sigv4.verify(
            sent["method"], raw_path, headers, sent["body"], CREDENTIALS, time.time()
        )
        assert signed.access_key_id == AKID


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"method": "DELETE"}, errors.SignatureMismatch),
        ({"raw_path": "/flows/F2/aliases/A1"}, errors.SignatureMismatch),
        ({"body": b'{"inputs": [1]}'}, errors.SignatureMismatch),
        ({"extra": {"Content-Type": "text/plain"}}, errors.SignatureMismatch),
        ({"extra": {"Host": "evil.example"}}, errors.SignatureMismatch),
        ({"extra": {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}}, errors.SignatureMismatch),
        ({"extra": {"X-Amz-Date": "20990101T000000Z"}}, errors.IncompleteSignature),
        ({"minutes": 20}, errors.RequestExpired),
        ({"minutes": -20}, errors.RequestExpired),
    ],
)
def test_sigv4_rejects(kwargs: dict[str, Any], error: type[errors.AuthenticationFailed]) -> None:
    signed = sigv4_request("POST", f"http://{HOST}/flows/F1/aliases/A1", b'{"inputs": []}')
    minutes = kwargs.pop("minutes", None)
    if minutes is not None:  # the server's clock, that far from the signing time
        kwargs["now"] = time.time() + minutes * 60
    with pytest.raises(error):
        verify_aws(signed, **kwargs)


@pytest.mark.parametrize(
    ("signer", "error"),
    [
        ({"secret": "not-the-secret"}, errors.SignatureMismatch),
        ({"akid": "AKIDOTHER"}, errors.UnknownAccessKey),
        ({"service": "bedrock-agent"}, errors.IncompleteSignature),
        ({"when": now_utc() - timedelta(minutes=20)}, errors.RequestExpired),
    ],
)
def test_sigv4_rejects_the_signer(
    signer: dict[str, Any], error: type[errors.AuthenticationFailed]
) -> None:
    signed = sigv4_request("GET", f"http://{HOST}/flows/", **signer)
    with pytest.raises(error):
        verify_aws(signed)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock, "
        "SignedHeaders=host;x-amz-date, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=x-amz-date;host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request",
    ],
)
def test_sigv4_malformed_or_missing(authorization: str | None) -> None:
    headers = CIMultiDict({"Host": HOST, "X-Amz-Date": "20260101T000000Z"})
    if authorization is not None:
        headers["Authorization"] = authorization
    expected = errors.MissingSignature if authorization is None else errors.IncompleteSignature
    with pytest.raises(expected):
        sigv4.verify("GET", "/flows/", headers, b"", CREDENTIALS, time.time())


def test_sigv4_path_normalisation_matches_botocore() -> None:
    from botocore.utils import normalize_url_path

    for path in ["", "/", "/flows/", "//flows//a/./b/../c/", "/a/..", "/%2F/x", "a/b"]:
        assert sigv4.normalize_path(path) == normalize_url_path(path), path


# -- nonces ----------------------------------------------------------------------------------------


def test_nonce_cache_refuses_a_repeat_until_it_expires() -> None:
    cache = NonceCache()
    assert cache.add("k:1", expires_at=100.0, now=0.0)
    assert not cache.add("k:1", expires_at=100.0, now=50.0)
    assert cache.add("k:2", expires_at=100.0, now=50.0)
    assert cache.add("k:1", expires_at=300.0, now=100.0)  # expired, so forgotten
    assert len(cache) == 1 and "k:1" in cache  # k:2 expired too


def test_nonce_cache_is_bounded() -> None:
    cache = NonceCache(max_entries=3)
    for i, expires in enumerate([50.0, 10.0, 30.0, 40.0]):
        assert cache.add(f"n{i}", expires, now=0.0)
    assert len(cache) == 3 and cache.evicted == 1
    assert "n1" not in cache  # the one nearest its expiry went first
    assert not cache.add("n0", 50.0, now=1.0)


def mocked(params: dict[str, str]) -> Any:
    """A real aiohttp request carrying ``params`` in its query, as the SDK sends a GET."""
    return make_mocked_request("GET", "/?" + query_string(params))


@pytest.fixture
def redis_pair() -> Iterator[tuple[RedisStore, RedisStore]]:
    server = fakeredis.FakeServer()
    yield (
        RedisStore(fakeredis.FakeAsyncRedis(server=server), "auth"),
        RedisStore(fakeredis.FakeAsyncRedis(server=server), "auth"),
    )


async def test_verifier_refuses_a_replayed_nonce() -> None:
    verifier = Verifier(CREDENTIALS)
    verifier.share_nonces(MemoryStore())  # one process: nothing stored
    params = rpc_params("ListFlows", {})
    request = mocked(params)
    assert await verifier.cloudflow(request, params, "ListFlows") == AKID
    with pytest.raises(errors.NonceUsed):
        await verifier.cloudflow(request, params, "ListFlows")


async def test_replicas_share_nonces_through_the_store(
    redis_pair: tuple[RedisStore, RedisStore],
) -> None:
    first, second = Verifier(CREDENTIALS), Verifier(CREDENTIALS)
    first.share_nonces(redis_pair[0])
    second.share_nonces(redis_pair[1])
    params = rpc_params("ListFlows", {})
    request = mocked(params)
    await first.cloudflow(request, params, "ListFlows")
    with pytest.raises(errors.NonceUsed):
        await second.cloudflow(request, params, "ListFlows")
    key = f"{AKID}:{params['SignatureNonce']}"
    stored = await redis_pair[0].get_token("nonce", key)
    assert isinstance(stored, IdempotencyRecord)


async def test_an_unreachable_store_leaves_nonces_local() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    verifier = Verifier(CREDENTIALS)
    verifier.share_nonces(store)
    try:
        params = rpc_params("ListFlows", {})
        request = mocked(params)
        assert await verifier.cloudflow(request, params, "ListFlows") == AKID
        with pytest.raises(errors.NonceUsed):  # still caught by this process
            await verifier.cloudflow(request, params, "ListFlows")
    finally:
        await store.close()


# -- credentials file -------------------------------------------------------------------------


def test_load_credentials(tmp_path: Any) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"AKIDEXAMPLE": "secret", "AKID2": "s2"}')
    assert load_credentials(path) == {"AKIDEXAMPLE": "secret", "AKID2": "s2"}
    for bad in ["[]", "{}", '{"a": 1}', '{"a": ""}', "not json"]:
        path.write_text(bad)
        with pytest.raises(ValueError, match="credentials file"):
            load_credentials(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_credentials(tmp_path / "missing.json")


# -- capturing what the real clients send -------------------------------------------------------


def _capture_fnf(call: Any, v3: bool = False) -> dict[str, Any]:
    """The request the fnf client sends for ``call`` (it is answered by a refusal)."""
    import darabonba.core

    captured: dict[str, Any] = {}
    real = darabonba.core.DaraCore.do_action

    class Stop(Exception):
        pass

    def record(request: Any, runtime: Any = None) -> Any:
        body = request.body
        captured.update(
            method=request.method,
            path=request.pathname or "/",
            query={k: str(v) for k, v in request.query.items()},
            headers=dict(request.headers),
            body=body.encode() if isinstance(body, str) else (body or b""),
        )
        raise Stop

    client = Client(
        SdkConfig(
            access_key_id=AKID,
            access_key_secret=SECRET,
            endpoint=HOST,
            protocol="http",
            region_id="cn-hangzhou",
        )
    )
    if v3:  # as docs/wire.md §2.3 did: the same client on its ACS3 path
        client._signature_algorithm = "ACS3-HMAC-SHA256"
    darabonba.core.DaraCore.do_action = staticmethod(record)  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception):  # noqa: B017 - the SDK wraps Stop its own way
            call(client)
    finally:
        darabonba.core.DaraCore.do_action = real  # type: ignore[method-assign]
    assert captured, "the SDK sent nothing"
    return captured


def _capture_boto3(service: str, call: Any) -> dict[str, Any]:
    client = boto3.client(
        service,
        endpoint_url=f"http://{HOST}",
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    captured: dict[str, Any] = {}

    def before_send(request: Any, **_: Any) -> AWSResponse:
        body = request.body
        captured.update(
            method=request.method,
            url=request.url,
            headers={
                k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
            },
            body=body.encode() if isinstance(body, str) else (body or b""),
        )
        return AWSResponse(request.url, 599, {}, None)

    client.meta.events.register("before-send", before_send)
    with pytest.raises(Exception):  # noqa: B017 - 599 is an error of some kind
        call(client)
    assert captured, "boto3 sent nothing"
    return captured
