"""router/lifecycle/callback.py: tokens, URLs, and the secret the replicas share.

The URL round trip goes through a real aiohttp app on 127.0.0.1 with the
route a gateway will mount, so the quoting is checked by the router that will
parse it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from router.errors import InvalidArgument
from router.lifecycle.callback import (
    ROUTE,
    SECRET_BYTES,
    STORE_NAME,
    CallbackTokens,
    FinalBody,
    build_url,
    final_body,
    resolve_secret,
    secret_from_flag,
)
from router.lifecycle.status import Status

SECRET = bytes(range(32))


def test_token_is_urlsafe_unpadded_sha256() -> None:
    token = CallbackTokens(SECRET).token("F1", "exec-1")
    assert len(token) == 43 and "=" not in token
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert token == CallbackTokens(bytes(range(32))).token("F1", "exec-1")  # another replica


def test_token_is_bound_to_secret_flow_and_execution() -> None:
    tokens = CallbackTokens(SECRET)
    token = tokens.token("F1", "exec-1")
    assert tokens.verify("F1", "exec-1", token)
    assert not tokens.verify("F1", "exec-2", token)
    assert not tokens.verify("F2", "exec-1", token)
    assert not CallbackTokens(bytes(32)).verify("F1", "exec-1", token)
    assert not tokens.verify("F1", "exec-1", token[:-1])
    assert not tokens.verify("F1", "exec-1", "")
    assert not tokens.verify("F1", "exec-1", "é" * 43)  # not even ASCII: refused, no error
    # The message is length-prefixed: moving characters across the boundary changes it.
    assert tokens.token("ab", "c") != tokens.token("a", "bc")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        CallbackTokens(b"short")
    with pytest.raises(ValueError, match="at least 16"):
        secret_from_flag("too-short")
    stretched = secret_from_flag("a long enough shared secret")
    assert len(stretched) == SECRET_BYTES
    assert stretched == secret_from_flag("a long enough shared secret")
    assert stretched != secret_from_flag("another long enough secret!")


class SetIfAbsent:
    """What the store's set-if-absent does, on a dict (the store method is not built yet)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.calls = 0

    async def __call__(self, name: str, value: bytes) -> bytes:
        self.calls += 1
        await asyncio.sleep(0)  # let concurrent replicas interleave
        return self.values.setdefault(name, value)


async def test_replicas_agree_on_the_stored_secret() -> None:
    store = SetIfAbsent()
    counter = iter(range(100))
    secrets = await asyncio.gather(
        *(resolve_secret(None, store, lambda n: bytes([next(counter)]) * n) for _ in range(5))
    )
    assert len(set(secrets)) == 1 and len(secrets[0]) == SECRET_BYTES
    assert list(store.values) == [STORE_NAME]


async def test_the_flag_wins_and_the_store_is_not_asked() -> None:
    store = SetIfAbsent()
    assert await resolve_secret("a long enough shared secret", store) == secret_from_flag(
        "a long enough shared secret"
    )
    assert store.calls == 0


async def test_a_stored_secret_too_short_is_an_error() -> None:
    store = SetIfAbsent()
    store.values[STORE_NAME] = b"x"
    with pytest.raises(ValueError, match="expected 32"):
        await resolve_secret(None, store)


def test_url_shape_and_quoting() -> None:
    tokens = CallbackTokens(SECRET)
    url = tokens.callback_url("http://gw:8080/base/", "F 1", "a/b?c")
    assert url == f"http://gw:8080/base/_callback/F%201/a%2Fb%3Fc/{tokens.token('F 1', 'a/b?c')}"
    assert build_url("http://gw", "F", "e", "t") == "http://gw/_callback/F/e/t"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[str, str, bool]]]]:
    """A real app with the callback route; records (flow, execution, verified)."""
    tokens = CallbackTokens(SECRET)
    seen: list[tuple[str, str, bool]] = []

    async def handle(request: web.Request) -> web.Response:
        info = request.match_info
        ok = tokens.verify(info["flow_id"], info["execution"], info["token"])
        seen.append((info["flow_id"], info["execution"], ok))
        return web.Response(status=204 if ok else 403)

    app = web.Application()
    app.router.add_post(ROUTE, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("flow_id", "execution"),
    [("F1", "exec-1"), ("FLOW12345", "a_b-c"), ("F 1", "e%20x"), ("F1", "ü-ß"), ("F1", "a/b")],
)
async def test_callback_urls_reach_the_route_intact(
    receiver: tuple[str, list[tuple[str, str, bool]]], flow_id: str, execution: str
) -> None:
    base, seen = receiver
    url = CallbackTokens(SECRET).callback_url(base, flow_id, execution)
    other = CallbackTokens(bytes(32)).token(flow_id, execution)  # under another secret
    forged = build_url(base, flow_id, execution, other)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"status": "Succeeded"}) as response:
            assert response.status == 204
        async with session.post(forged, json={"status": "Succeeded"}) as response:
            assert response.status == 403
    assert seen == [(flow_id, execution, True), (flow_id, execution, False)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"status": "Succeeded", "output": {"a": 1}}',
         FinalBody(Status.SUCCEEDED, {"a": 1}, None, None)),
        (b'{"output": 2}', FinalBody(Status.SUCCEEDED, 2, None, None)),  # as a v1 reply
        (b'{"status": "stopped", "error": "E", "cause": {"why": 1}}',
         FinalBody(Status.ABORTED, None, "E", '{"why":1}')),
        (b'{"status": "FAILED", "error": "X"}', FinalBody(Status.FAILED, None, "X", None)),
    ],
)  # fmt: skip
def test_final_bodies(raw: bytes, expected: FinalBody) -> None:
    assert final_body(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"nope", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"status": "Done"}', "unknown execution status"),
        (b'{"status": "Running"}', "Running is not final"),
    ],
)
def test_a_callback_body_must_be_final(raw: bytes, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        final_body(raw)
