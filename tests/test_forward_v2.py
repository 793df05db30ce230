"""router/forward.py speaking executor protocol v2 to real executors on 127.0.0.1.

The well-behaved executor is ``tests/async_executor.py``; the answers it would
never give (unknown statuses, odd bodies, odd HTTP statuses) come from a small
aiohttp app here that answers exactly what a test sets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from router.errors import Conflict, ExecutionNotFound, ExecutorError
from router.forward import ExecutionFinished, Forwarder, Timeouts
from router.lifecycle.status import Status
from tests.async_executor import AsyncExecutor, Behaviour

FLOW = {"flow": "orders", "flowId": "F1", "alias": "live"}


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(Timeouts(connect_s=2, total_s=10))
    await forwarder.start()
    yield forwarder
    await forwarder.close()


@pytest.fixture
async def executor() -> AsyncIterator[tuple[AsyncExecutor, str]]:
    executor = AsyncExecutor(
        {
            "1": Behaviour(mode="sync"),
            "2": Behaviour(mode="async", duration_ms=None),
            "3": Behaviour(mode="v1"),
            "4": Behaviour(mode="sync", failure_ratio=1.0),
        }
    )
    async with executor.serve() as template:
        yield executor, template


def url(template: str, version: str) -> str:
    return template.format(flow="orders", version=version)


def payload(version: str, name: str, input: Any = None) -> dict[str, Any]:
    return {**FLOW, "version": version, "execution": name, "input": input}


async def test_a_synchronous_executor_finishes_in_the_start_reply(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    ex, template = executor
    reply = await forwarder.execute(url(template, "1"), payload("1", "s1", {"n": 1}), "1")
    assert reply.status is Status.SUCCEEDED
    assert orjson.dumps({"Status": reply.status}) == b'{"Status":"Succeeded"}'  # as v1's str
    assert reply.output == {"ranOn": "1", "input": {"n": 1}}
    assert (reply.error, reply.cause) == (None, None)
    assert ex.finals == {("1", "Succeeded"): 1}


async def test_a_v1_executor_without_status_still_succeeds(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    _, template = executor
    reply = await forwarder.execute(url(template, "3"), payload("3", "v1", 5), "3")
    assert "status" not in reply.body
    assert reply.status is Status.SUCCEEDED and reply.output == {"ranOn": "3", "input": 5}
    described = await forwarder.describe(url(template, "3"), "v1", "3")
    assert described.status is Status.SUCCEEDED


async def test_a_failure_carries_error_and_cause(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    _, template = executor
    reply = await forwarder.execute(url(template, "4"), payload("4", "f1"), "4")
    assert reply.status is Status.FAILED
    assert (reply.error, reply.cause) == ("Injected.Failure", "version 4 failed on purpose")


async def test_running_then_described_until_final(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    ex, template = executor
    reply = await forwarder.execute(url(template, "2"), payload("2", "a1", "in"), "2")
    assert reply.status is Status.RUNNING and not reply.status.is_final
    assert (await forwarder.describe(url(template, "2"), "a1", "2")).status is Status.RUNNING
    assert ex.finish("a1", "TimedOut", error="States.Timeout", cause="too slow")
    final = await forwarder.describe(url(template, "2"), "a1", "2")
    assert (final.status, final.error) == (Status.TIMED_OUT, "States.Timeout")
    assert final.cause == "too slow"
    assert ex.polls["a1"] == 2


async def test_stop_aborts_a_running_execution_once(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    ex, template = executor
    target = url(template, "2")
    await forwarder.execute(target, payload("2", "name with space"), "2")
    stopped = await forwarder.stop(target, "name with space", "2", error="User", cause="no longer")
    assert (stopped.status, stopped.error, stopped.cause) == (Status.ABORTED, "User", "no longer")
    with pytest.raises(ExecutionFinished) as caught:
        await forwarder.stop(target, "name with space", "2")
    assert isinstance(caught.value, Conflict)
    assert caught.value.reply is not None and caught.value.reply.status is Status.ABORTED
    assert "already finished (Aborted)" in caught.value.message
    assert (ex.stops["2"], ex.finals[("2", "Aborted")]) == (1, 1)


async def test_stop_without_error_or_cause_sends_an_empty_object(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    _, template = executor
    await forwarder.execute(url(template, "2"), payload("2", "bare"), "2")
    stopped = await forwarder.stop(url(template, "2"), "bare", "2")
    assert (stopped.status, stopped.error, stopped.cause) == (Status.ABORTED, None, None)


async def test_stop_and_describe_of_unknown_executions(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    _, template = executor
    with pytest.raises(ExecutionNotFound):
        await forwarder.stop(url(template, "2"), "nobody", "2")
    with pytest.raises(ExecutionNotFound):
        await forwarder.describe(url(template, "2"), "nobody", "2")


async def test_stop_of_a_synchronous_execution_is_already_finished(
    forwarder: Forwarder, executor: tuple[AsyncExecutor, str]
) -> None:
    _, template = executor
    await forwarder.execute(url(template, "1"), payload("1", "done"), "1")
    with pytest.raises(ExecutionFinished) as caught:
        await forwarder.stop(url(template, "1"), "done", "1")
    assert caught.value.reply is not None and caught.value.reply.status is Status.SUCCEEDED


# -- answers a good executor never gives ------------------------------------------------


class Scripted:
    """Answers every request with the next (HTTP status, body) a test set; records them."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (200, b"{}")
        self.requests: list[tuple[str, str, bytes]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, await request.read()))
        status, body = self.answer
        return web.Response(status=status, body=body, content_type="application/json")


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted()
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield server, f"http://127.0.0.1:{runner.addresses[0][1]}/x/versions/1/executions"
    finally:
        await runner.cleanup()


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (body(status="SUCCESS"), Status.SUCCEEDED),
        (body(status="stopped"), Status.ABORTED),
        (body(status="timed_out"), Status.TIMED_OUT),
        (body(status="RUNNING"), Status.RUNNING),
        (body(output=1), Status.SUCCEEDED),
        (body(status=None), Status.SUCCEEDED),
    ],
)
async def test_statuses_are_parsed_leniently(
    forwarder: Forwarder, scripted: tuple[Scripted, str], answer: bytes, status: Status
) -> None:
    server, target = scripted
    server.answer = (200, answer)
    for call in (
        forwarder.execute(target, payload("1", "e"), "1"),
        forwarder.describe(target, "e", "1"),
        forwarder.stop(target, "e", "1"),
    ):
        assert (await call).status is status


@pytest.mark.parametrize("value", ["Done", "", 3, ["Running"]])
async def test_an_unknown_status_is_an_executor_error_and_a_breaker_failure(
    forwarder: Forwarder, scripted: tuple[Scripted, str], value: Any
) -> None:
    server, target = scripted
    server.answer = (200, body(status=value))
    with pytest.raises(ExecutorError, match="version 1 answered an unknown execution status"):
        await forwarder.execute(target, payload("1", "e"), "1")
    assert forwarder.guards.guard("F1", "orders", "1").failures == 1
    with pytest.raises(ExecutorError, match="unknown execution status"):
        await forwarder.describe(target, "e", "1")


async def test_error_and_cause_that_are_not_strings_become_json_text(
    forwarder: Forwarder, scripted: tuple[Scripted, str]
) -> None:
    server, target = scripted
    server.answer = (200, body(status="Failed", error={"code": 7}, cause=["a"]))
    reply = await forwarder.execute(target, payload("1", "e"), "1")
    assert (reply.error, reply.cause) == ('{"code":7}', '["a"]')


async def test_stop_sends_its_request_to_the_execution_stop_url(
    forwarder: Forwarder, scripted: tuple[Scripted, str]
) -> None:
    server, target = scripted
    server.answer = (200, body(status="Aborted"))
    await forwarder.stop(target, "a/b c", "1", error="E")
    await forwarder.stop(target, "plain", "1", cause="C")
    assert server.requests == [
        ("POST", "/x/versions/1/executions/a%2Fb%20c/stop", b'{"error":"E"}'),
        ("POST", "/x/versions/1/executions/plain/stop", b'{"cause":"C"}'),
    ]


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ((409, b"not json"), ExecutionFinished, "already finished$"),
        ((409, body(status="Bogus")), ExecutionFinished, "already finished$"),
        ((500, body(message="boom")), ExecutorError, "answered HTTP 500"),
        ((400, body(message="bad")), ExecutorError, "answered HTTP 400"),
        ((200, b"[]"), ExecutorError, "not an object"),
        ((200, b"nope"), ExecutorError, "not JSON"),
    ],
)
async def test_stop_failures_are_typed(
    forwarder: Forwarder,
    scripted: tuple[Scripted, str],
    answer: tuple[int, bytes],
    error: type[Exception],
    match: str,
) -> None:
    server, target = scripted
    server.answer = answer
    with pytest.raises(error, match=match) as caught:
        await forwarder.stop(target, "e", "1")
    if isinstance(caught.value, ExecutionFinished):
        assert caught.value.reply is None and caught.value.execution == "e"
