"""A lean pooled HTTP/1.1 client for the executor hop.

Why not aiohttp's ClientSession: profiling the gateway under load showed its
client machinery (request/response objects, tracing hooks, cookie and
redirect handling, per-request timer objects) costing more than the rest of the
gateway together. The executor hop needs none of it: one method, a JSON body,
keep-alive connections to a few hosts, and a status plus a body back.

What it does:

* one idle-connection pool per (scheme, host, port); a connection goes back
  to the pool only after a complete response that allows keep-alive;
* responses are parsed by httptools (llhttp, the parser of Node.js): chunked
  bodies, Content-Length, ``Connection: close`` and read-until-close bodies;
* an idle connection the peer has closed is never reused: its
  ``connection_lost`` or ``eof_received`` has run, or, checked right before
  reuse, its socket is readable (a FIN or stray bytes arrived while it was idle
  and the event loop has not processed them yet; urllib3 does the same check);
* a total deadline per request covers connect, send and the whole response
  (the caller may pass its own deadline, e.g. one that started earlier);
* a response body larger than ``max_response_bytes`` is an error, so a broken
  executor cannot make the gateway buffer without bound;
* idle connections are kept per (scheme, host, port) only; nothing is shared
  between requests in flight, so a slow peer ties up its own connections (the
  caller bounds how many: see :mod:`router.breaker`), never a common pool.

What it never does: retry. A request that failed after it may have reached
the executor is reported, not sent again, because an execution must not run
twice. (A request is only retried on another connection when it could not
have been sent at all: the pooled connection was already closed.)
"""

from __future__ import annotations

import asyncio
import select
import ssl as ssl_module
from collections import deque
from urllib.parse import urlsplit

import httptools


class UpstreamError(Exception):
    """The request failed; ``sent`` says whether it may have reached the peer."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ConnectError(UpstreamError):
    pass


class _Target:
    """A parsed URL, kept so a hot URL is parsed once."""

    __slots__ = ("head", "host", "key", "port", "ssl")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.ssl = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.ssl else 80)
        self.key = (self.ssl, self.host, self.port)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        default = 443 if self.ssl else 80
        host_header = self.host if self.port == default else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            host_header = f"[{self.host}]" + ("" if self.port == default else f":{self.port}")
        self.head = f" {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1")


DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024**2


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self, max_body: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._poll: select.poll | None = None  # the socket, for the check before reuse
        self._max_body = max_body
        self._body_size = 0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._status = 0
        self._headers_done = False
        self._delimited = False  # Content-Length or chunked: the parser finds the end
        self._keep_alive = True
        self._answered = False  # a response to the request in flight has begun

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and self._poll is None:
            # poll, not select: select fails on descriptors above 1023.
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN | select.POLLPRI)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: never reuse this connection
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upstream tried to upgrade the connection", sent=True))
        except httptools.HttpParserError as e:
            if self._body_size > self._max_body:
                message = f"upstream response body exceeds {self._max_body} bytes"
            else:
                message = f"malformed response from upstream: {e}"
            self._fail(UpstreamError(message, sent=True))

    def eof_received(self) -> bool:
        self.closed = True  # connection_lost follows on a later loop turn
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._delimited:
            # A body delimited by the connection closing: this is its end.
            self._finish()
        else:
            self._fail(UpstreamError("upstream closed the connection mid-response", sent=True))

    # httptools callbacks --------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17):  # cheap pre-filter before lower-casing
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                self._delimited = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            raise httptools.HttpParserError("too large")  # data_received says why
        self._body.append(body)

    def on_message_begin(self) -> None:
        if self._answered:
            # A second response to one request (bytes left over in the same read):
            # whatever they are, this connection's framing can no longer be trusted.
            self._keep_alive = False
        self._answered = True

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # informational (103 Early Hints): the answer follows
            self._answered = self._headers_done = False
            self._body, self._body_size = [], 0
            return
        self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
        self._finish()

    # ------------------------------------------------------------------------------------
    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, b"".join(self._body)))

    def _fail(self, error: UpstreamError) -> None:
        self._keep_alive = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        self._waiter = waiter
        self._body = []
        self._body_size = 0
        self._status = 0
        self._headers_done = False
        self._delimited = False
        self._keep_alive = True
        self._answered = False
        assert self.transport is not None
        self.transport.write(data)

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed

    def dropped_while_idle(self) -> bool:
        """The peer closed (or sent stray bytes) while idle, unseen by the loop so far.

        An idle connection must not be readable: anything there is a FIN or
        garbage. One ``poll`` with a zero timeout costs about a microsecond, and
        spares sending an execution into a connection that is already closing,
        which would fail it (and must not be retried).
        """
        if self.closed:
            return True
        if self._poll is None:
            return False
        try:
            return bool(self._poll.poll(0))
        except OSError:
            return True


def _expire(waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Client:
    """Pooled HTTP/1.1 client. Create and close it on the loop that uses it."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        total_timeout: float,
        max_idle_per_host: int = 256,
        ssl_context: ssl_module.SSLContext | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self._max_idle = max_idle_per_host
        self._max_response = max_response_bytes
        self._idle: dict[tuple[bool, str, int], deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl = ssl_context
        self._closed = False
        self.connections_opened = 0  # tests read this to check keep-alive reuse

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= 10_000:
                self._targets.clear()
            target = self._targets[url] = _Target(url)
        return target

    async def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        content_type: str = "application/json",
        deadline: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body). Raises UpstreamError or TimeoutError.

        ``deadline`` (event-loop time) replaces ``now + total_timeout``.
        """
        target = self._target(url)
        head = method.encode("latin-1") + target.head
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode(
                "latin-1"
            )
        data = head + b"\r\n" + body
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.total_timeout
        conn = await self._acquire(target, loop, deadline)
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        # A bare timer handle costs less than asyncio.timeout() on every request.
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            conn.send(data, waiter)
            result = await waiter
        except BaseException:
            conn.close()  # state unknown (timeout, cancel, bad reply): never reuse it
            raise
        finally:
            timer.cancel()
        self._release(target, conn)
        return result

    async def _acquire(
        self, target: _Target, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> _Connection:
        idle = self._idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.dropped_while_idle():
                return conn
            conn.close()
        if loop.time() >= deadline:
            raise TimeoutError()
        connect_deadline = loop.time() + self.connect_timeout
        try:
            async with asyncio.timeout_at(min(deadline, connect_deadline)):
                transport, conn = await loop.create_connection(
                    self._protocol,
                    target.host,
                    target.port,
                    ssl=(self._ssl or ssl_module.create_default_context()) if target.ssl else None,
                )
        except TimeoutError:
            if deadline <= connect_deadline:
                raise  # the request's own deadline, not the connect timeout
            raise ConnectError(
                f"connecting to {target.host}:{target.port} timed out", sent=False
            ) from None
        except OSError as e:
            raise ConnectError(
                f"cannot connect to {target.host}:{target.port}: {e.strerror or e}", sent=False
            ) from None
        # uvloop may call connection_made after create_connection returns.
        if conn.transport is None:
            conn.connection_made(transport)
        self.connections_opened += 1
        return conn

    def _protocol(self) -> _Connection:
        return _Connection(self._max_response)

    def _release(self, target: _Target, conn: _Connection) -> None:
        if not conn.reusable or self._closed:
            conn.close()
            return
        idle = self._idle.setdefault(target.key, deque())
        if len(idle) >= self._max_idle:
            conn.close()
            return
        idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
