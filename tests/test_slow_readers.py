"""What clients that never read can make the gateway hold, counted in bytes.

* lists page by bytes as well as by count (router/paging), so no list answer
  is much over 1 MiB whatever its ``Limit``;
* an answer above the streaming threshold goes out chunk by chunk under flow
  control (router/respond): the bytes buffered for one connection stay near
  one chunk plus the transport's high-water mark, and a client that reads
  nothing for ``--send-timeout`` is disconnected and counted;
* the definition cache is capped by bytes (router/lru);
* and, end to end: 20 non-reading clients of a large ListFlows leave a real
  gateway process's RSS within a bound (RSS is a count of bytes, not a time).
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from bench.slow_readers import create_flows, non_readers, rss_mb
from router import respond
from router.forward import Forwarder, Timeouts, UpstreamTemplate
from router.lru import ByteLRU
from router.metrics import Metrics
from router.model import Flow, FlowUpdate
from router.paging import PAGE_BYTES, encoded_size
from router.service import Gateway, Settings
from router.store.memory import MemoryStore
from tests.conftest import StoreBackend, make_backend
from tests.harness import CountingStore, free_port
from tests.processes import Connection, Processes

KINDS = ("memory", "redis")
BIG = 200_000  # bytes of one definition


@pytest.fixture(params=KINDS, ids=KINDS)
async def backend(request: pytest.FixtureRequest) -> Any:
    found = make_backend(request.param, request)
    try:
        yield found
    finally:
        await found.close()


def _gateway(store: Any, settings: Settings | None = None) -> Gateway:
    metrics = Metrics()
    return Gateway(
        store,
        Forwarder(Timeouts(), 1, None, metrics),  # never started: nothing is executed here
        metrics,
        UpstreamTemplate("http://127.0.0.1:9/{flow}"),
        settings,
    )


# -- paging by bytes --------------------------------------------------------------------


async def test_list_pages_stop_at_the_byte_budget(backend: StoreBackend) -> None:
    store = backend.open()
    for i in range(12):
        await store.create_flow(Flow(id=f"F{i:09d}", name=f"f{i:02d}", definition="x" * BIG))
    gateway = _gateway(store)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    for _ in range(20):  # bounded: 12 flows need 3 pages of 5, 5, 2
        page = await gateway.list_flows(100, token)
        pages += 1
        sizes = [encoded_size(f) for f in page.items]
        assert len(sizes) == 1 or sum(sizes) <= PAGE_BYTES
        seen += [f.name for f in page.items]
        token = page.next_token
        if token is None:
            break
    assert seen == [f"f{i:02d}" for i in range(12)]
    assert pages == 3
    # Small items: the count still decides.
    small = await gateway.list_versions(Flow(id="F000000000", name="f00", definition=""), 5, None)
    assert small.items == [] and small.next_token is None


async def test_one_item_over_the_budget_still_makes_a_page() -> None:
    store = MemoryStore()
    await store.create_flow(Flow(id="F1", name="a", definition="x" * (PAGE_BYTES + 1)))
    await store.create_flow(Flow(id="F2", name="b", definition=""))
    gateway = _gateway(store)
    first = await gateway.list_flows(10, None)
    assert [f.name for f in first.items] == ["a"] and first.next_token is not None
    second = await gateway.list_flows(10, first.next_token)
    assert [f.name for f in second.items] == ["b"] and second.next_token is None


# -- the definition cache by bytes -------------------------------------------------------


def test_byte_lru_keeps_the_most_recent_within_its_budget() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(10, len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # now the most recent
    cache.put("c", b"1234")  # 12 > 10: the least recent ("b") leaves
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.bytes == 8
    cache.put("huge", b"x" * 11)  # larger than the whole budget: not kept
    assert "huge" not in cache and cache.bytes == 8
    cache.put("a", b"123456")  # replacing counts the new size only
    assert cache.bytes == 10 and len(cache) == 2


async def test_definition_cache_is_capped_by_bytes() -> None:
    inner = MemoryStore()
    flow = Flow(id="F1", name="big", definition="")
    await inner.create_flow(flow)
    for v in range(1, 11):
        await inner.update_flow(flow.id, FlowUpdate(definition=chr(96 + v) * BIG), v)
        await inner.publish_version(flow.id, "", v)
    store = CountingStore(inner)
    budget = 3 * BIG + 1000  # room for three definitions (each ~BIG + 2 bytes of JSON)
    gateway = _gateway(store, Settings(definition_cache_bytes=budget))
    for v in range(1, 11):
        assert await gateway.version_definition(flow, str(v)) == chr(96 + v) * BIG
    cache = gateway.definitions._cache
    assert cache.bytes <= budget and len(cache) == 3
    reads = store.calls["get_version"]
    assert await gateway.version_definition(flow, "10") == "j" * BIG
    assert store.calls["get_version"] == reads  # the most recent is cached
    assert await gateway.version_definition(flow, "1") == "a" * BIG
    assert store.calls["get_version"] == reads + 1  # the oldest was dropped: read again


# -- sending under flow control ----------------------------------------------------------

ANSWER = 32 * 1024 * 1024  # far more than the kernel's socket buffers absorb


async def test_a_large_answer_is_buffered_a_chunk_at_a_time_and_a_silent_client_cut() -> None:
    registry = CollectorRegistry()
    timeouts = PromCounter("send_timeouts", "test", registry=registry)
    transports: list[asyncio.BaseTransport] = []

    async def big(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        transports.append(request.transport)
        answer = web.Response(body=b"x" * ANSWER, content_type="application/json")
        return await respond.finish(request, answer)  # as the request envelope ends

    app = web.Application()
    app[respond.SENDING] = respond.Sending(1.0, timeouts)
    app.router.add_get("/big", big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    try:
        await loop.sock_connect(client, ("127.0.0.1", port))
        await loop.sock_sendall(client, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        buffered = 0
        for _ in range(400):  # bounded; ends when the silent client has been cut off
            if timeouts._value.get() >= 1:
                break
            if transports:
                transport = transports[0]
                assert isinstance(transport, asyncio.WriteTransport)
                buffered = max(buffered, transport.get_write_buffer_size())
            await asyncio.sleep(0.02)
        assert timeouts._value.get() == 1
        assert transports and transports[0].is_closing()
        # One chunk on top of the high-water mark (64 KiB), with room for headers.
        assert buffered <= respond.CHUNK + 2 * 64 * 1024
        received = 0
        for _ in range(10_000):  # what was in flight before the cut, then EOF or reset
            try:
                chunk = await loop.sock_recv(client, 1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += len(chunk)
        assert received < ANSWER
    finally:
        client.close()
        await runner.cleanup()


# -- end to end: a gateway process, 20 clients that never read ---------------------------

CLIENTS = 20
FLOWS = 40  # 40 x 200 kB: an 8 MB ListFlows before paging by bytes
BOUND_MB = CLIENTS * 2 * PAGE_BYTES / 2**20  # a generous multiple of one page per client


def _list_flows_answered(port: int) -> float:
    with Connection(port) as connection:
        _, body = connection.get("/metrics")
    found = re.findall(rb'flow_router_api_requests_total\{[^}]*"ListFlows"[^}]*\} ([0-9.]+)', body)
    return sum(float(v) for v in found)


def test_rss_under_twenty_non_readers_stays_bounded(processes: Processes) -> None:
    gateway = processes.start("--store", "memory://", "--workers", "1")
    create_flows(gateway.port, FLOWS, BIG)
    before = rss_mb(gateway.pid)
    sockets = non_readers(gateway.port, CLIENTS)
    try:
        peak = before
        for _ in range(2000):  # bounded: until all 20 answers were made, sampling meanwhile
            peak = max(peak, rss_mb(gateway.pid))
            if _list_flows_answered(gateway.port) >= CLIENTS:
                break
        for _ in range(20):  # a few more samples while the answers are held
            peak = max(peak, rss_mb(gateway.pid))
        assert _list_flows_answered(gateway.port) >= CLIENTS
    finally:
        for s in sockets:
            s.close()
    assert peak - before < BOUND_MB, f"RSS {before:.0f} -> {peak:.0f} MB"


# -- the flags ---------------------------------------------------------------------------


def _config(*argv: str) -> Any:
    from router import cli

    return cli.config_from_args(cli._parser().parse_args(["serve", *argv]))


def test_send_timeout_and_definition_cache_flags() -> None:
    default = _config()
    assert default.send_timeout_s == respond.DEFAULT_SEND_TIMEOUT_S == 30.0
    assert default.settings.definition_cache_bytes == 64 * 1024 * 1024
    given = _config("--send-timeout", "5", "--definition-cache-bytes", "1000")
    assert (given.send_timeout_s, given.settings.definition_cache_bytes) == (5.0, 1000)
    with pytest.raises(ValueError, match="--send-timeout"):
        _config("--send-timeout", "0")
    with pytest.raises(ValueError, match="--definition-cache-bytes"):
        _config("--definition-cache-bytes", "-1")
