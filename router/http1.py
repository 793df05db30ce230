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
* an idle connection the peer has closed is noticed (its ``connection_lost``
  runs) and never reused;
* a total deadline per request covers connect, send and the whole response.

What it never does: retry. A request that failed after it may have reached
the executor is reported, not sent again, because an execution must not run
twice. (A request is only retried on another connection when it could not
have been sent at all: the pooled connection was already closed.)
"""

from __future__ import annotations

import asyncio
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


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._status = 0
        self._headers_done = False
        self._delimited = False  # Content-Length or chunked: the parser finds the end
        self._keep_alive = True

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upstream tried to upgrade the connection", sent=True))
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"malformed response from upstream: {e}", sent=True))

    def eof_received(self) -> bool:
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
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()
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
        self._status = 0
        self._headers_done = False
        self._delimited = False
        self._keep_alive = True
        assert self.transport is not None
        self.transport.write(data)

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed


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
    ) -> None:
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self._max_idle = max_idle_per_host
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
        self, method: str, url: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body). Raises UpstreamError or TimeoutError."""
        target = self._target(url)
        head = method.encode("latin-1") + target.head
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n".encode(
                "latin-1"
            )
        data = head + b"\r\n" + body
        loop = asyncio.get_running_loop()
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
            if not conn.closed:
                return conn
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.connect_timeout)):
                transport, conn = await loop.create_connection(
                    _Connection,
                    target.host,
                    target.port,
                    ssl=(self._ssl or ssl_module.create_default_context()) if target.ssl else None,
                )
        except TimeoutError:
            raise ConnectError(
                f"connecting to {target.host}:{target.port} timed out", sent=False
            ) from None
        except OSError as e:
            raise ConnectError(
                f"cannot connect to {target.host}:{target.port}: {e.strerror or e}", sent=False
            ) from None
        # uvloop may call connection_made after create_connection returns.
        conn.transport = transport
        self.connections_opened += 1
        return conn

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
