"""Junk framing costs one log line and one count, not a traceback per request.

A real gateway process gets raw malformed requests over sockets (bytes an
HTTP client library would refuse to send); its captured output must hold one
``bad request`` line per rejected request and no traceback, and
``flow_router_bad_requests_total`` must count each one by reason.
"""

from __future__ import annotations

import re
import socket

from tests.processes import GatewayProcess, Processes

# (raw request, the reason it is counted under). aiohttp's C parser reports
# bad header and chunk framing as a plain BadHttpMessage: "framing".
MALFORMED: tuple[tuple[bytes, str], ...] = (
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "framing"),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "framing"),
    (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", "url"),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "request_line"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "too_long"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "framing"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", "framing"),
)
# A bad method on a connection's first request is what TLS or other non-HTTP
# traffic looks like: aiohttp logs it at DEBUG only, so it is counted, not logged.
NOT_HTTP = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 / HTTP/1.1\r\n\r\n"
ROUNDS = 5


def _send(gateway: GatewayProcess, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection; what came back before the gateway closed it."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(raw)
        answer = b""
        for _ in range(1000):  # bounded: the gateway closes after its 400
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _counts(gateway: GatewayProcess) -> dict[str, float]:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        for _ in range(10_000):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    found = re.findall(rb'flow_router_bad_requests_total\{reason="(\w+)"\} ([0-9.]+)', body)
    return {k.decode(): float(v) for k, v in found}


def test_malformed_framing_logs_one_line_each_and_is_counted(processes: Processes) -> None:
    gateway = processes.start("--store", "memory://", "--workers", "1")
    expected: dict[str, int] = {}
    for _ in range(ROUNDS):
        for raw, reason in MALFORMED:
            assert _send(gateway, raw).startswith(b"HTTP/1.") and b" 400 " in _send(gateway, raw)
            expected[reason] = expected.get(reason, 0) + 2
        _send(gateway, NOT_HTTP)
        expected["method"] = expected.get("method", 0) + 1
    counts = _counts(gateway)
    assert {k: v for k, v in counts.items() if v} == expected
    assert gateway.stop() == 0
    log = gateway.log()
    lines = [line for line in log.splitlines() if "bad request from 127.0.0.1" in line]
    assert len(lines) == sum(expected.values()) - expected["method"]
    assert all(" WARNING " in line and len(line) < 400 for line in lines), lines[:3]
    assert "Traceback" not in log
    assert "Error handling request" not in log
