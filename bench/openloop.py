"""Constant-rate (open-loop) HTTP load: latency at a fixed request rate, like wrk2.

wrk is closed-loop: each connection sends its next request only after the last
answer, so a slow server is offered less load and its stalls hide (coordinated
omission). Here request ``i`` is due at ``t0 + i/rate`` whatever happened
before. A scheduler wakes at least every millisecond (the event loop's timer
resolution; waking more often would spin a core that the server needs) and
releases every request that is due into a queue; a pool of keep-alive
connections takes them from there. Latency is measured from the **release**
to the last byte of the answer: a wait for a free connection (all busy because
the server is slow) counts, as in wrk2, while the scheduler's own timer
granularity (under 1 ms, the same for every target) does not. The latency from
the due time (granularity included) and from the actual send (queue wait
excluded) are reported too, and so is the queue wait itself: if the queue wait
is large while the server is idle, the generator was the bottleneck.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (one
request in flight per connection; Content-Length and chunked answers), on
uvloop when installed, so one process can hold a few thousand requests per
second with low overhead.

Run: ``python -m bench.openloop --url http://127.0.0.1:8080/?Action=StartExecution
--rate 1500 --duration 10``; prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEFAULT_BODY = "FlowName=f1&Qualifier=prod&Input=%7B%7D"
MIN_SLEEP_S = 0.001  # below the loop's timer resolution a sleep returns at once: a busy loop


@dataclass
class Stats:
    measure_from: float  # due times before this are warm-up and not recorded
    from_release: list[float] = field(default_factory=list)
    from_due: list[float] = field(default_factory=list)
    from_send: list[float] = field(default_factory=list)
    queue_wait: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    connects: int = 0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer; return its status and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    chunked = False
    close = head.startswith(b"HTTP/1.0")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


async def worker(
    host: str,
    port: int,
    request: bytes,
    queue: asyncio.Queue[tuple[float, float] | None],
    stats: Stats,
) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while (item := await queue.get()) is not None:
            due, released = item
            sent = time.perf_counter()
            status, close = -1, True
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                    stats.connects += 1
                conn[1].write(request)
                status, close = await read_response(conn[0])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                pass
            done = time.perf_counter()
            if due >= stats.measure_from:
                if status < 0:
                    stats.errors += 1
                else:
                    stats.statuses[status] = stats.statuses.get(status, 0) + 1
                stats.from_release.append(done - released)
                stats.from_due.append(done - due)
                stats.from_send.append(done - sent)
                stats.queue_wait.append(sent - released)
            if close and conn is not None:
                conn[1].close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def run(
    url: str, body: str, rate: float, duration: float, warmup: float, connections: int
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    payload = body.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    queue: asyncio.Queue[tuple[float, float] | None] = asyncio.Queue()
    start = time.perf_counter() + 0.2
    stats = Stats(measure_from=start + warmup)
    workers = [
        asyncio.create_task(worker(host, port, request, queue, stats)) for _ in range(connections)
    ]
    total = int(rate * (warmup + duration))
    cpu0 = time.process_time()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = start + sent / rate
        if due > now:
            await asyncio.sleep(max(due - now, MIN_SLEEP_S))
            now = time.perf_counter()
        while sent < total and start + sent / rate <= now:
            queue.put_nowait((start + sent / rate, now))
            sent += 1
    for _ in workers:
        queue.put_nowait(None)
    # Bounded: every request has a 30 s budget at most once the schedule is over.
    _, pending = await asyncio.wait(workers, timeout=30)
    for task in pending:
        task.cancel()
    result = summary(stats, rate, duration, connections, unfinished=len(pending))
    result["generator_cpu_cores"] = (time.process_time() - cpu0) / (time.perf_counter() - start)
    return result


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def _ms(values: list[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9), ("max", 100)):
        v = percentile(values, q)
        out[name] = None if v is None else v * 1000
    return out


def summary(
    stats: Stats, rate: float, duration: float, connections: int, unfinished: int
) -> dict[str, Any]:
    completed = len(stats.from_release)
    ok = sum(n for s, n in stats.statuses.items() if 200 <= s < 300)
    return {
        "rate": rate,
        "duration_s": duration,
        "connections": connections,
        "completed": completed,
        "achieved_rate": completed / duration if duration else None,
        "ok_2xx": ok,
        "non_2xx": completed - ok - stats.errors,
        "errors": stats.errors,
        "connects": stats.connects,
        "unfinished_connections": unfinished,
        "latency_ms": _ms(stats.from_release),
        "latency_ms_from_due": _ms(stats.from_due),
        "latency_ms_from_send": _ms(stats.from_send),
        "queue_wait_ms": _ms(stats.queue_wait),
        "loop": type(asyncio.get_running_loop()).__module__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", default=DEFAULT_BODY)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    result = runner(
        run(args.url, args.body, args.rate, args.duration, args.warmup, args.connections)
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
