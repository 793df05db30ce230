"""Client limits on a real ``flow-router serve`` process: body size, slow bodies, slow heads.

A raw socket plays the slow or greedy client, so the bytes and their timing
are exactly what the test says. The gateway runs with short limits
(``--idle-timeout 1 --body-timeout 0.5 --max-body-bytes 4096``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from tests.harness import RecordingExecutor
from tests.processes import Connection, GatewayProcess, Processes

pytestmark = pytest.mark.network  # one real flow-router serve process throughout

IDLE_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 0.5
MAX_BODY = 4096
SLACK_S = 1.0
QUERY = "/?" + urlencode({"Action": "CreateFlow", "Format": "json", "Version": "2019-03-15"})


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, recording_executor_session: RecordingExecutor
) -> Iterator[GatewayProcess]:
    with Processes(tmp_path_factory.mktemp("limits")) as processes:
        yield processes.start(
            *("--store", "memory://", "--workers", "1"),
            *("--upstream", recording_executor_session.template),
            *("--idle-timeout", str(IDLE_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S)),
            *("--max-body-bytes", str(MAX_BODY)),
        )


def raw(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split(" ")[1]), headers, rest[:length]


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float:
    """Seconds until the server closed ``sock``, sending ``trickle`` a byte at a time."""
    started = time.monotonic()
    sock.settimeout(0.1)
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if sent < len(trickle):
                sock.sendall(trickle[sent : sent + 1])
                sent += 1
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
    raise AssertionError(f"still open after {seconds:g}s ({sent} bytes trickled)")


# -- request head -------------------------------------------------------------------------------


def test_slowloris_head_is_cut_at_the_idle_timeout(gateway: GatewayProcess) -> None:
    """Headers sent a byte every 100 ms never complete: closed at --idle-timeout."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 200
    with raw(gateway) as sock:
        elapsed = closed_within(sock, IDLE_TIMEOUT_S + SLACK_S + 2, trickle=head)
    assert IDLE_TIMEOUT_S * 0.8 < elapsed < IDLE_TIMEOUT_S + SLACK_S


def test_idle_connection_is_closed(gateway: GatewayProcess) -> None:
    with raw(gateway) as sock:
        elapsed = closed_within(sock, IDLE_TIMEOUT_S + SLACK_S + 2)
    assert elapsed < IDLE_TIMEOUT_S + SLACK_S


def test_idle_timer_restarts_after_each_response(gateway: GatewayProcess) -> None:
    with raw(gateway) as sock:
        for _ in range(3):  # 3 x 0.6 s on one connection: longer than the timeout in all
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
            time.sleep(IDLE_TIMEOUT_S * 0.6)


# -- request body -------------------------------------------------------------------------------


def test_slow_body_gets_the_dialects_error_at_the_body_timeout(gateway: GatewayProcess) -> None:
    body = urlencode({"Name": "slow", "Definition": "x", "Type": "FDL"}).encode()
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with raw(gateway) as sock:
        sock.sendall(head + body[:5])  # and the rest never comes
        started = time.monotonic()
        status, headers, answer = read_response(sock)
        elapsed = time.monotonic() - started
    assert BODY_TIMEOUT_S * 0.8 < elapsed < BODY_TIMEOUT_S + SLACK_S
    error = json.loads(answer)
    assert (status, error["Code"]) == (400, "InvalidArgument")
    assert "did not arrive within 0.5s" in error["Message"]
    assert headers["x-acs-request-id"] == error["RequestId"]
    with Connection(gateway.port) as conn:  # nothing was created
        assert conn.cloudflow("DescribeFlow", {"Name": "slow"}).status == 404


def test_oversize_body_cloudflow(gateway: GatewayProcess) -> None:
    with Connection(gateway.port) as conn:
        answer = conn.cloudflow(
            "CreateFlow", {"Name": "big", "Definition": "x" * MAX_BODY, "Type": "FDL"}
        )
        assert answer.status == 400, answer
        assert answer.body["Code"] == "InvalidArgument"
        assert f"larger than {MAX_BODY} bytes" in answer.body["Message"]
        assert conn.cloudflow("DescribeFlow", {"Name": "big"}).status == 404
        small = {"Name": "small", "Definition": "x" * (MAX_BODY // 2), "Type": "FDL"}
        assert conn.cloudflow("CreateFlow", small).status == 200


def test_oversize_body_bedrock(gateway: GatewayProcess) -> None:
    body = json.dumps({"name": "big", "executionRoleArn": "arn:x", "description": "x" * MAX_BODY})
    with Connection(gateway.port) as conn:
        status, data, headers = conn.request(
            "POST", "/flows/", body.encode(), {"Content-Type": "application/json"}
        )
    assert (status, headers["x-amzn-errortype"]) == (400, "ValidationException")
    assert f"larger than {MAX_BODY} bytes" in json.loads(data)["message"]


def test_oversize_declared_length_is_refused_without_reading_it(gateway: GatewayProcess) -> None:
    """A client announcing 1 GB gets its answer after sending a few KB."""
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {1024**3}\r\n\r\n"
    ).encode()
    with raw(gateway) as sock:
        sock.sendall(head + b"Name=x&Definition=" + b"y" * (MAX_BODY * 2))
        status, _, answer = read_response(sock)
    assert (status, json.loads(answer)["Code"]) == (400, "InvalidArgument")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-body-bytes", "0"), ("--body-timeout", "0"), ("--idle-timeout", "-1")],
)
def test_bad_limits_are_refused_at_start(flag: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--port", "1", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{flag} must be" in done.stderr
