"""/v1 under ``--credentials``: AWS SigV4 for the service ``flow-router``, else 403.

Requests are signed by botocore's ``SigV4Auth`` (tests/auth/signing.py), never by
the code under test. A refused request changes nothing, and its 403 is this API's
own ``{"code", "message"}``. Without credentials the same requests go through
unsigned, as the dialects' do (the serve command's loopback rule covers both).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from router.store.memory import MemoryStore
from tests.auth.signing import CREDENTIALS, now_utc, send, sigv4_request
from tests.dialects import cloudflow_client as cf
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.rollout.v1_helpers import (
    TARGET,
    assert_error,
    assert_status_shape,
    call,
    gateway_for,
    make_signed_flow,
    path,
    signed_call,
)

START = {"targetVersion": TARGET, "minStepSeconds": 3600}


@pytest.fixture
def signed(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    """A gateway that requires signatures, with the flow to roll out (signed SDK calls)."""
    store = MemoryStore()
    for server in gateway_for(bg_loop, store, recording_executor, credentials=dict(CREDENTIALS)):
        make_signed_flow(server)
        yield server


def test_unsigned_requests_are_refused_and_change_nothing(signed: GatewayServer) -> None:
    for method, action, body in [
        ("PUT", "", START),
        ("GET", "", None),
        ("POST", "promote", {"full": True}),
        ("POST", "pause", None),
        ("POST", "resume", None),
        ("POST", "abort", None),
    ]:
        assert_error(
            call(signed, method, path(action=action), body), 403, "MissingAuthenticationToken"
        )
    assert_error(signed_call(signed, "GET", path()), 404, "RolloutNotFound")


def test_signed_requests_run(signed: GatewayServer) -> None:
    started = signed_call(signed, "PUT", path(), START, region="eu-central-1")
    assert started.status == 201, started.body
    assert_status_shape(started.body)
    assert signed_call(signed, "GET", path()).body["phase"] == "Progressing"
    assert signed_call(signed, "POST", path(action="pause")).body["phase"] == "Paused"
    assert signed_call(signed, "POST", path(action="abort")).body["phase"] == "Aborted"


def test_every_failed_check_is_a_403_with_its_code(signed: GatewayServer) -> None:
    target = path()
    url = signed.url + target

    def refused(reply_code: str, **sign: Any) -> None:
        request = sigv4_request("GET", url, **{"service": "flow-router", **sign})
        assert_error(call(signed, "GET", target, headers=request.headers), 403, reply_code)

    refused("IncompleteSignature", service="bedrock")  # another service's signature
    refused("InvalidAccessKeyId", akid="AKIDUNKNOWN")
    refused("SignatureDoesNotMatch", secret="not-the-secret")
    refused("RequestExpired", when=now_utc() - timedelta(minutes=20))
    refused("RequestExpired", when=now_utc() + timedelta(minutes=20))


def test_a_tampered_body_is_refused_before_it_is_read(signed: GatewayServer) -> None:
    body = b'{"targetVersion": "3", "minStepSeconds": 3600}'
    request = sigv4_request("PUT", signed.url + path(), body, service="flow-router")
    tampered = body.replace(b'"3"', b'"2"')
    reply = call(signed, "PUT", path(), raw=tampered, headers=request.headers)
    assert_error(reply, 403, "SignatureDoesNotMatch")
    assert_error(signed_call(signed, "GET", path()), 404, "RolloutNotFound")


def test_a_flow_router_signature_does_not_open_the_bedrock_api(signed: GatewayServer) -> None:
    request = sigv4_request("GET", signed.url + "/flows/", service="flow-router")
    answer = send("GET", request.url, request.headers)
    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"


def test_refusals_are_counted_under_the_v1_dialect(signed: GatewayServer) -> None:
    call(signed, "GET", path())
    scraped = cf.scrape(signed)
    assert (
        cf.value(
            scraped, "flow_router_errors_total", dialect="v1", error="MissingAuthenticationToken"
        )
        == 1
    )
    assert (
        cf.value(
            scraped, "flow_router_api_requests_total", dialect="v1", action="GetRollout", code="403"
        )
        == 1
    )


def test_without_credentials_v1_is_served_unsigned(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    for server in gateway_for(bg_loop, MemoryStore(), recording_executor):
        assert_error(call(server, "GET", path()), 404, "FlowNotFound")
        # a signature is not checked at all: a wrong secret goes through too
        assert_error(signed_call(server, "GET", path(), secret="whatever"), 404, "FlowNotFound")
