"""tests/async_executor.py, the protocol-v2 test executor: its answers and its counts.

Later tests take its counters as the ground truth of what ran, so they are
checked here against what a client saw, over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from router.lifecycle.callback import ROUTE, CallbackTokens, build_url
from tests.async_executor import AsyncExecutor, Behaviour
from tests.harness import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"s" * 32


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else b""
    async with http.request(method, url, data=data) as response:
        return response.status, orjson.loads(await response.read())


def start_body(name: str, callback: str | None = None, input: Any = None) -> dict[str, Any]:
    body = {"flow": "f", "flowId": "F1", "alias": "a", "execution": name, "input": input}
    if callback is not None:
        body["callback"] = callback
    return body


async def test_async_runs_end_after_their_duration(http: aiohttp.ClientSession) -> None:
    executor = AsyncExecutor({"*": Behaviour(mode="async", duration_ms=20)})
    async with executor.serve() as template:
        base = template.format(flow="f", version="1")
        status, body = await call(http, "POST", base, start_body("e1", input=3))
        assert (status, body["status"]) == (200, "Running")
        await executor.wait_until(lambda: executor.final_count() == 1)
        status, body = await call(http, "GET", f"{base}/e1")
        assert (status, body["status"], body["output"]) == (
            200, "Succeeded", {"ranOn": "1", "input": 3},
        )  # fmt: skip
    assert executor.started == {"1": 1} and executor.polls == {"e1": 1}


async def test_seeded_failures_per_version_are_reproducible_and_counted(
    http: aiohttp.ClientSession,
) -> None:
    behaviours = {"1": Behaviour(), "2": Behaviour(failure_ratio=0.3)}
    seen: list[Counter[tuple[str, str]]] = []
    for _ in range(2):
        executor = AsyncExecutor(behaviours, seed=11)
        replies: Counter[tuple[str, str]] = Counter()
        async with executor.serve() as template:
            for n in range(200):
                version = "1" if n % 2 else "2"
                url = template.format(flow="f", version=version)
                _, body = await call(http, "POST", url, start_body(f"e{n}"))
                replies[(version, body["status"])] += 1
        assert executor.finals == replies  # the ground truth is what clients saw
        seen.append(replies)
    assert seen[0] == seen[1]
    assert seen[0][("1", "Succeeded")] == 100
    # 100 draws at p = 0.3: 14..46 failures holds with probability > 1 - 1e-6.
    assert 14 <= seen[0][("2", "Failed")] <= 46


async def test_a_second_start_of_a_name_is_refused_and_counted(http: aiohttp.ClientSession) -> None:
    executor = AsyncExecutor()
    async with executor.serve() as template:
        url = template.format(flow="f", version="1")
        assert (await call(http, "POST", url, start_body("twice")))[0] == 200
        assert (await call(http, "POST", url, start_body("twice")))[0] == 409
    assert (executor.duplicates, executor.started["1"], executor.final_count()) == (1, 1, 1)


async def test_stop_and_manual_finish(http: aiohttp.ClientSession) -> None:
    executor = AsyncExecutor({"*": Behaviour(mode="async", duration_ms=None)})
    async with executor.serve() as template:
        url = template.format(flow="f", version="7")
        for name in ("s", "m"):
            await call(http, "POST", url, start_body(name))
        status, body = await call(http, "POST", f"{url}/s/stop", {"error": "E", "cause": "C"})
        assert (status, body["status"], body["error"], body["cause"]) == (200, "Aborted", "E", "C")
        assert (await call(http, "POST", f"{url}/s/stop", {}))[0] == 409
        assert (await call(http, "POST", f"{url}/nobody/stop", {}))[0] == 404
        assert (await call(http, "GET", f"{url}/nobody"))[0] == 404
        assert executor.finish("m") and not executor.finish("m")
        _, stats = await call(http, "GET", template.split("/flows/")[0] + "/_stats")
    assert executor.finals == {("7", "Aborted"): 1, ("7", "Succeeded"): 1}
    assert stats == {
        "started": {"7": 2}, "finals": {"7/Aborted": 1, "7/Succeeded": 1}, "stops": {"7": 1},
        "polls": 0, "duplicates": 0, "lost": 0, "callbacksSent": 0, "callbacksFailed": 0,
    }  # fmt: skip


async def test_forget_loses_only_the_running_runs(http: aiohttp.ClientSession) -> None:
    executor = AsyncExecutor(
        {"1": Behaviour(mode="async", duration_ms=None), "2": Behaviour(mode="sync")}
    )
    async with executor.serve() as template:
        one, two = (template.format(flow="f", version=v) for v in ("1", "2"))
        await call(http, "POST", one, start_body("r"))
        await call(http, "POST", two, start_body("d"))
        assert executor.forget() == 1
        assert (await call(http, "GET", f"{one}/r"))[0] == 404
        assert (await call(http, "GET", f"{two}/d"))[0] == 200
    assert (executor.lost, executor.finals) == (1, {("2", "Succeeded"): 1})


@pytest.mark.parametrize("raw", [b"nope", b"[1]"])
async def test_bad_start_bodies_are_400(http: aiohttp.ClientSession, raw: bytes) -> None:
    executor = AsyncExecutor()
    async with (
        executor.serve() as template,
        http.post(template.format(flow="f", version="1"), data=raw) as response,
    ):
        assert response.status == 400
    assert executor.started == {}


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[int, Any]]]]:
    """The gateway's callback route, as the lead will mount it: verify, record, answer."""
    tokens = CallbackTokens(SECRET)
    got: list[tuple[int, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        info = request.match_info
        status = 204 if tokens.verify(info["flow_id"], info["execution"], info["token"]) else 403
        got.append((status, orjson.loads(await request.read())))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post(ROUTE, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", got
    finally:
        await runner.cleanup()


async def test_async_runs_call_back_with_their_final_body(
    http: aiohttp.ClientSession, receiver: tuple[str, list[tuple[int, Any]]]
) -> None:
    base, got = receiver
    executor = AsyncExecutor(
        {
            "1": Behaviour(mode="async", duration_ms=None, callback_repeats=2),
            "2": Behaviour(mode="sync"),  # final in the start reply: nothing to call back
        }
    )
    good = CallbackTokens(SECRET).callback_url(base, "F1", "e1")
    forged = build_url(base, "F1", "e2", CallbackTokens(SECRET).token("F1", "e1"))
    async with executor.serve() as template:
        one, two = (template.format(flow="f", version=v) for v in ("1", "2"))
        await call(http, "POST", one, start_body("e1", good))
        await call(http, "POST", one, start_body("e2", forged))
        await call(http, "POST", two, start_body("e3", good))
        executor.finish("e1")
        executor.finish("e2", "Failed", error="X")
        await executor.wait_until(lambda: executor.callbacks_sent == 4)
    assert sorted((status, body["execution"], body["status"]) for status, body in got) == [
        (204, "e1", "Succeeded"), (204, "e1", "Succeeded"),
        (403, "e2", "Failed"), (403, "e2", "Failed"),
    ]  # fmt: skip
    assert executor.callback_answers == {204: 2, 403: 2} and executor.callbacks_failed == 0


async def test_an_unreachable_callback_is_counted(http: aiohttp.ClientSession) -> None:
    executor = AsyncExecutor({"*": Behaviour(mode="async", duration_ms=None)})
    async with executor.serve() as template:
        url = template.format(flow="f", version="1")
        await call(http, "POST", url, start_body("e", f"http://127.0.0.1:{free_port()}/cb"))
        executor.finish("e")
        await executor.wait_until(lambda: executor.callbacks_failed == 1)
    assert executor.callbacks_sent == 0


def test_it_runs_as_a_process_with_behaviours_from_the_command_line() -> None:
    port = free_port()
    behaviours = orjson.dumps({"*": {"mode": "sync", "failure_ratio": 1.0}}).decode()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.async_executor", "--port", str(port), "--seed", "3",
         "--behaviours", behaviours],
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}/flows/f/versions/9/executions"
        request = urllib.request.Request(url, data=orjson.dumps(start_body("p1")), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert orjson.loads(response.read())["status"] == "Failed"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as response:
            stats = orjson.loads(response.read())
        assert (stats["started"], stats["finals"]) == ({"9": 1}, {"9/Failed": 1})
    finally:
        process.terminate()
        process.wait(10)
