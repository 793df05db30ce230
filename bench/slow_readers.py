"""RSS of a gateway while clients ask for a large answer and never read it.

``python -m bench.slow_readers`` starts ``flow-router serve`` (memory store, one
worker, 127.0.0.1, a free port), creates ``--flows`` flows with
``--definition-bytes``-byte definitions, then opens ``--clients`` raw sockets
(small receive buffers) that each send one ``ListFlows`` with ``Limit=1000``
and read nothing. It samples the gateway's RSS (``VmRSS`` in
``/proc/<pid>/status``) before, while they hold their connections
(``--hold`` seconds), and after they have closed, and prints each in MB.
Everything stops by itself; nothing is written.

``--router-path DIR`` runs the gateway from another checkout (its ``router``
package), to compare before and after a change.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bench._api import post

READY_TIMEOUT_S = 30.0
LIST_REQUEST = "Limit=1000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS, in kB in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextmanager
def gateway(
    extra: Sequence[str], router_path: str | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    command = [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--store", "memory://", *extra]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if router_path is not None:
        env["PYTHONPATH"] = router_path
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=router_path,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.05)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def create_flows(port: int, flows: int, definition_bytes: int) -> None:
    filler = "#" * max(0, definition_bytes - 40)
    for i in range(flows):
        definition = f"version: v1\ntype: flow\n{filler}\nsteps: []\n"
        post(port, "CreateFlow", timeout=30, Name=f"big-{i:04d}", Definition=definition)


def list_request() -> bytes:
    return (
        "POST /?Action=ListFlows&Format=json&Version=2019-03-15 HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(LIST_REQUEST)}\r\n\r\n{LIST_REQUEST}"
    ).encode()


def answer_bytes(port: int) -> int:
    """Size of one ListFlows answer, read in full by a well-behaved client."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(list_request().replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
        received = 0
        for _ in range(1_000_000):  # bounded: ends at the server's close
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        return received


def non_readers(port: int, count: int) -> list[socket.socket]:
    """Sockets that ask for the list and never read (a small receive window each)."""
    opened = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(list_request())
        opened.append(s)
    return opened


@dataclass
class Result:
    answer_bytes: int
    before_mb: float
    peak_mb: float
    after_mb: float


def measure(
    flows: int,
    definition_bytes: int,
    clients: int,
    hold_s: float,
    extra: Sequence[str] = (),
    router_path: str | None = None,
) -> Result:
    with gateway(extra, router_path) as (process, port):
        create_flows(port, flows, definition_bytes)
        size = answer_bytes(port)
        before = rss_mb(process.pid)
        sockets = non_readers(port, clients)
        peak = before
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(process.pid))
            time.sleep(0.1)
        for s in sockets:
            s.close()
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            time.sleep(0.1)
        after = rss_mb(process.pid)
        return Result(size, before, peak, after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_readers", description=__doc__)
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--definition-bytes", type=int, default=31_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--hold", type=float, default=5.0, help="seconds the clients hold on")
    parser.add_argument(
        "--gateway-arg", action="append", default=[], help="extra flag for flow-router serve"
    )
    parser.add_argument("--router-path", help="run the gateway from this checkout")
    args = parser.parse_args(argv)
    result = measure(
        args.flows,
        args.definition_bytes,
        args.clients,
        args.hold,
        args.gateway_arg,
        args.router_path,
    )
    print(f"one ListFlows Limit=1000 answer: {result.answer_bytes / 1e6:.2f} MB")
    print(
        f"RSS before {result.before_mb:.0f} MB, peak with {args.clients} non-readers "
        f"{result.peak_mb:.0f} MB (+{result.peak_mb - result.before_mb:.0f}), after they "
        f"closed {result.after_mb:.0f} MB (+{result.after_mb - result.before_mb:.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
