"""router/http1.py against raw sockets: servers written here send exact bytes.

Each test starts a tiny asyncio server on 127.0.0.1 whose connection handler
reads HTTP/1.1 requests and writes the response bytes the case needs (keep
the connection, close it, chunked, read-until-close, garbage, nothing), and
records every request it received, so a test can also check that nothing was
sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from router.http1 import Client, ConnectError, UpstreamError
from tests.harness import free_port


@dataclass
class Request:
    head: bytes
    body: bytes

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request off the connection, ``None`` at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request = Request(head[:-4], b"")
    length = int(request.header(b"content-length") or 0)
    request.body = await reader.readexactly(length) if length else b""
    return request


def response(body: bytes = b'{"ok":true}', status: int = 200, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        extra,
        body,
    )


# A connection handler: gets the request just read and the writer; returns
# False to stop serving the connection (the server then closes it).
Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class RawServer:
    answer: Answer
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/flows/f/versions/1/executions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while (request := await read_request(reader)) is not None:
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[RawServer]:
    server = RawServer(answer)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def client(**kwargs: float) -> AsyncIterator[Client]:
    settings = {"connect_timeout": 2.0, "total_timeout": 5.0, **kwargs}
    c = Client(**settings)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        await c.close()


async def keep_alive(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(response(b'{"n":%d}' % len(request.body)))
    return True


async def close_after_response(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(response())  # no "Connection: close": the close comes unannounced
    return False


# -- keep-alive -----------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection() -> None:
    async with serving(keep_alive) as server, client() as c:
        for i in range(200):
            status, body = await c.request("POST", server.url, b"x" * i)
            assert (status, body) == (200, b'{"n":%d}' % i)
        assert c.connections_opened == 1
        assert server.connections == 1
        assert len(server.requests) == 200


async def test_request_bytes() -> None:
    async with serving(keep_alive) as server, client() as c:
        await c.request("POST", server.url + "?a=1", b'{"input":1}')
        await c.request("GET", server.url + "/e1")
    post, get = server.requests
    assert post.line == b"POST /flows/f/versions/1/executions?a=1 HTTP/1.1"
    assert post.header(b"host") == f"127.0.0.1:{server.port}".encode()
    assert post.header(b"content-type") == b"application/json"
    assert post.header(b"content-length") == b"11"
    assert post.body == b'{"input":1}'
    assert get.line == b"GET /flows/f/versions/1/executions/e1 HTTP/1.1"
    assert get.header(b"content-length") is None


async def test_upstream_closing_after_each_response_costs_nothing() -> None:
    """The peer closes right after answering, without saying so: the next request,
    sent at once, must not go into that closing connection."""
    async with serving(close_after_response) as server, client() as c:
        for _ in range(50):
            assert (await c.request("POST", server.url, b"{}"))[0] == 200
        assert c.connections_opened == 50
        assert len(server.requests) == 50  # each sent exactly once


async def test_upstream_closing_an_idle_connection() -> None:
    idle_close_s = 0.2

    async def close_when_idle(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response())
        await writer.drain()
        await asyncio.sleep(idle_close_s)
        return False  # as a server's keep-alive timeout would

    async with serving(close_when_idle) as server, client() as c:
        assert (await c.request("POST", server.url, b"{}"))[0] == 200
        await asyncio.sleep(idle_close_s * 3)
        assert (await c.request("POST", server.url, b"{}"))[0] == 200
        assert c.connections_opened == 2
        assert len(server.requests) == 2


async def test_stray_bytes_on_an_idle_connection_retire_it() -> None:
    async def garbage_after(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response() + b"HTTP/1.1 200 surprise\r\n")
        return True

    async with serving(garbage_after) as server, client() as c:
        assert (await c.request("POST", server.url, b"{}"))[0] == 200
        await asyncio.sleep(0.05)
        assert (await c.request("POST", server.url, b"{}"))[0] == 200
        assert c.connections_opened == 2


async def test_connection_close_response() -> None:
    async def announce_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(extra=b"Connection: close\r\n"))
        await writer.drain()
        await asyncio.sleep(0.05)  # the client must not wait for our close to reuse
        return False

    async with serving(announce_close) as server, client() as c:
        for _ in range(5):
            assert await c.request("POST", server.url, b"{}") == (200, b'{"ok":true}')
        assert c.connections_opened == 5
        assert len(server.requests) == 5


async def test_http_1_0_response_without_keep_alive_is_not_reused() -> None:
    async def http10(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        return False

    async with serving(http10) as server, client() as c:
        assert await c.request("GET", server.url) == (200, b"ok")
        assert await c.request("GET", server.url) == (200, b"ok")
        assert c.connections_opened == 2


# -- body framing -----------------------------------------------------------------------------


async def test_chunked_response() -> None:
    async def chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"out', b'put":', b"[1,2,3]}"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)  # separate reads on the client side
        writer.write(b"4;ext=1\r\n    \r\n0\r\nX-Trailer: t\r\n\r\n")
        return True

    async with serving(chunked) as server, client() as c:
        for _ in range(3):
            assert await c.request("POST", server.url, b"{}") == (200, b'{"output":[1,2,3]}    ')
        assert c.connections_opened == 1  # a chunked body ends the response, not the connection


async def test_body_delimited_by_close() -> None:
    async def until_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        for part in (b'{"a":', b'"', b"x" * 100_000, b'"}'):
            writer.write(part)
            await writer.drain()
        return False  # the close is the end of the body

    async with serving(until_close) as server, client() as c:
        for _ in range(3):
            status, body = await c.request("POST", server.url, b"{}")
            assert status == 200
            assert body == b'{"a":"' + b"x" * 100_000 + b'"}'
        assert c.connections_opened == 3
        assert len(server.requests) == 3


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_large_response(framing: str) -> None:
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB

    async def large(request: Request, writer: asyncio.StreamWriter) -> bool:
        if framing == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 300_000):
                part = payload[i : i + 300_000]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(response(payload))
        return True

    async with serving(large) as server, client() as c:
        for _ in range(2):
            status, body = await c.request("GET", server.url)
            assert status == 200
            assert body == payload
        assert c.connections_opened == 1


async def test_response_over_the_size_limit_is_an_error() -> None:
    async def large(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(b"x" * 200_000))
        return True

    async with serving(large) as server:
        c = Client(connect_timeout=2, total_timeout=5, max_response_bytes=100_000)
        try:
            with pytest.raises(UpstreamError, match="exceeds 100000 bytes") as info:
                await c.request("POST", server.url, b"{}")
            assert info.value.sent
        finally:
            await c.close()


# -- failures: typed, once --------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["not-http", "bad-status", "bad-content-length", "bad-chunk"],
)
async def test_malformed_response(reply: bytes) -> None:
    async def malformed(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(1)  # keep the connection open: the parser must notice
        return False

    async with serving(malformed) as server, client() as c:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="malformed response") as info:
            await c.request("POST", server.url, b"{}")
        assert info.value.sent
        assert time.monotonic() - started < 0.9
        assert len(server.requests) == 1


@pytest.mark.parametrize(
    "partial",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"],
    ids=["nothing", "half-a-head", "half-a-body"],
)
async def test_connection_closed_mid_response(partial: bytes) -> None:
    async def hang_up(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(partial)
        return False

    async with serving(hang_up) as server, client() as c:
        with pytest.raises(UpstreamError, match="closed the connection") as info:
            await c.request("POST", server.url, b"{}")
        assert info.value.sent
        assert not isinstance(info.value, ConnectError)
        assert len(server.requests) == 1  # reported, not sent again


async def test_connection_reset_after_the_request_was_read() -> None:
    async def reset(request: Request, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: the close sends RST, not FIN
        return False

    async with serving(reset) as server, client() as c:
        with pytest.raises(UpstreamError) as info:
            await c.request("POST", server.url, b"{}")
        assert info.value.sent
        await asyncio.sleep(0.1)
        assert len(server.requests) == 1


async def test_timeout_covers_the_whole_response() -> None:
    async def slow_body(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):  # one byte every 50 ms: 5 s in all
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)
        return True

    async with serving(slow_body) as server, client(total_timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await c.request("POST", server.url, b"{}")
        assert 0.25 < time.monotonic() - started < 1.0
        assert len(server.requests) == 1


async def test_timeout_when_nothing_answers_and_the_connection_is_retired() -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as server, client(total_timeout=0.2) as c:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await c.request("POST", server.url, b"{}")
        assert c.connections_opened == 2  # a timed-out connection is never reused
        assert len(server.requests) == 2


async def test_explicit_deadline() -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as server, client(total_timeout=10) as c:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await c.request("POST", server.url, b"{}", deadline=loop.time() + 0.2)
        assert time.monotonic() - started < 1
        with pytest.raises(TimeoutError):  # already past: nothing is sent
            await c.request("POST", server.url, b"{}", deadline=loop.time() - 1)
        assert len(server.requests) == 1


async def test_connection_refused() -> None:
    port = free_port()  # bound and released: nothing listens
    async with client() as c:
        with pytest.raises(ConnectError, match="cannot connect") as info:
            await c.request("POST", f"http://127.0.0.1:{port}/x", b"{}")
        assert not info.value.sent


async def test_not_an_http_url() -> None:
    async with client() as c:
        with pytest.raises(ValueError):
            await c.request("POST", "ftp://127.0.0.1/x")


async def test_idle_pools_are_per_host() -> None:
    """Two hosts (ports) each keep their own idle connection."""
    async with serving(keep_alive) as a, serving(keep_alive) as b, client() as c:
        for _ in range(10):
            await asyncio.gather(
                c.request("POST", a.url, b"{}"),
                c.request("POST", b.url, b"{}"),
            )
        assert (a.connections, b.connections) == (1, 1)
        assert c.connections_opened == 2


async def test_concurrent_requests_each_get_a_connection_and_idle_ones_are_capped() -> None:
    async def slowish(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(response())
        return True

    async with serving(slowish) as server:
        c = Client(connect_timeout=2, total_timeout=5, max_idle_per_host=3)
        try:
            answers = await asyncio.gather(
                *(c.request("POST", server.url, b"{}") for _ in range(10))
            )
            assert all(status == 200 for status, _ in answers)
            assert c.connections_opened == 10
            await asyncio.gather(*(c.request("POST", server.url, b"{}") for _ in range(3)))
            assert c.connections_opened == 10  # three kept idle, reused
        finally:
            await c.close()


async def test_informational_response_before_the_answer() -> None:
    async def early_hints(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(response(b'{"late":1}'))
        return True

    async with serving(early_hints) as server, client() as c:
        for _ in range(2):
            assert await c.request("POST", server.url, b"{}") == (200, b'{"late":1}')
        assert c.connections_opened == 1


def test_under_uvloop() -> None:
    """Production workers run uvloop: its transports must work the same way."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with (
            serving(close_after_response) as closing,
            serving(keep_alive) as kept,
            client() as c,
        ):
            for _ in range(20):
                assert (await c.request("POST", closing.url, b"{}"))[0] == 200
                assert (await c.request("POST", kept.url, b"{}"))[0] == 200
            assert len(closing.requests) == 20
            assert kept.connections == 1

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
