"""``flow-router rollout …`` as a real process against a real gateway.

The gateway runs in this process on 127.0.0.1 (a real socket); the CLI is
``python -m router rollout`` in a subprocess, with an environment free of the
test run's ``FLOW_ROUTER_*``. ``status --watch`` is followed as it prints, to a
pipe and to a pseudo-terminal, and ended by what the rollout does, not by time.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from router.store.memory import MemoryStore
from tests.auth.signing import AKID, CREDENTIALS, SECRET
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port
from tests.processes import Connection
from tests.rollout.v1_helpers import (
    ALIAS,
    FLOW,
    TARGET,
    alias_routes,
    call,
    expected_baseline,
    gateway_for,
    make_flow,
    make_signed_flow,
    path,
)

ROOT = Path(__file__).resolve().parents[2]
CLEAR = "\x1b[H\x1b[2J"
LONG_STEPS = ("--min-step-seconds", "3600", "--min-samples", "1000")
SECRET_ENV = "FLOW_ROUTER_SECRET_ACCESS_KEY"
WAIT_S = 60.0  # how long a test waits for output before it fails; never an expectation


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ROUTER_")}
    return {**env, **(extra or {})}


def rollout(
    gateway: GatewayServer | str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    endpoint = gateway if isinstance(gateway, str) else gateway.url
    return subprocess.run(
        [sys.executable, "-m", "router", "rollout", *args, "--endpoint", endpoint],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        cwd=ROOT,
        env=environment(env),
    )


def watch(gateway: GatewayServer, stdout: int, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "router", "rollout", "status", FLOW, ALIAS, "--watch"]
    return subprocess.Popen(
        [*command, "--interval", "0.2", "--endpoint", gateway.url, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=environment(),
    )


class Output:
    """What a process writes to ``fd``, read as it comes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""
        self.closed = False

    def _read(self, deadline: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # a pseudo-terminal whose other end is closed
            chunk = b""
        self.closed = not chunk
        self.text += chunk.decode("utf-8", "replace")

    def until(self, needle: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while needle not in self.text:
            assert not self.closed, f"the output ended without {needle!r}:\n{self.text}"
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text}"
            self._read(deadline)

    def to_end(self) -> str:
        deadline = time.monotonic() + WAIT_S
        while not self.closed:
            assert time.monotonic() < deadline, f"the output did not end:\n{self.text}"
            self._read(deadline)
        return self.text


@pytest.fixture
def gateway(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    yield from gateway_for(bg_loop, MemoryStore(), recording_executor)


@pytest.fixture
def conn(gateway: GatewayServer) -> Iterator[Connection]:
    with make_flow(gateway) as connection:
        yield connection


def test_a_session(gateway: GatewayServer, conn: Connection) -> None:
    started = rollout(
        gateway, "start", FLOW, ALIAS, "--target-version", TARGET, "--steps", "10,50",
        *LONG_STEPS, "--alpha", "0.05", "--webhook", "event=http://127.0.0.1:9/events",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert f"{FLOW}/{ALIAS} → version {TARGET}" in started.stdout
    assert "Progressing" in started.stdout and "[10% ▶][?% ][100%  ]" in started.stdout

    shown = rollout(gateway, "status", FLOW, ALIAS, "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["phase"], status["step"], status["canaryWeight"]) == ("Progressing", 1, 10)
    answered = call(gateway, "GET", path()).body
    live = ("message", "updatedAt", "evidence", "counts")  # the step's clock and traffic
    assert {k: v for k, v in status.items() if k not in live} == {
        k: v for k, v in answered.items() if k not in live
    }

    for action, phase in (("pause", "Paused"), ("resume", "Progressing")):
        done = rollout(gateway, action, FLOW, ALIAS, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["phase"] == phase
    promoted = rollout(gateway, "promote", FLOW, ALIAS, "--json")
    assert json.loads(promoted.stdout)["canaryWeight"] == 50  # one step, not all the way

    aborted = rollout(gateway, "abort", FLOW, ALIAS)
    assert aborted.returncode == 0, aborted.stderr
    assert "Aborted" in aborted.stdout
    assert alias_routes(conn) == expected_baseline()

    again = rollout(gateway, "promote", FLOW, ALIAS, "--full")
    assert again.returncode == 1
    assert again.stderr.startswith("flow-router: 409 RolloutFinished: ")
    assert again.stdout == ""


def test_start_takes_a_body_and_promote_full_succeeds(
    gateway: GatewayServer, conn: Connection, tmp_path: Path
) -> None:
    body = tmp_path / "rollout.json"
    body.write_text(json.dumps({"targetVersion": TARGET, "stepWeights": [30], "minSamples": 9}))
    started = rollout(gateway, "start", FLOW, ALIAS, "--body", f"@{body}", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["canaryWeight"] == 30
    done = rollout(gateway, "promote", FLOW, ALIAS, "--full", "--json")
    assert json.loads(done.stdout)["phase"] == "Succeeded"
    assert [(v, w) for v, w in alias_routes(conn) if w] == [(TARGET, 100)]


def test_watch_follows_until_the_rollout_ends(gateway: GatewayServer, conn: Connection) -> None:
    started = rollout(gateway, "start", FLOW, ALIAS, "--target-version", TARGET, *LONG_STEPS)
    assert started.returncode == 0, started.stderr
    process = watch(gateway, subprocess.PIPE)
    assert process.stdout is not None
    try:
        out = Output(process.stdout.fileno())
        out.until("Progressing")
        assert call(gateway, "POST", path(action="abort")).status == 200
        text = out.to_end()
        assert process.wait(WAIT_S) == 3  # ended, but not by success
    finally:
        process.kill()
        process.wait()
    assert CLEAR not in text  # to a pipe: each different view once, no redraw codes
    frames = [f for f in text.split("\n\n") if f.strip()]
    assert "Aborted" in frames[-1] and "[5% ✗]" in frames[-1]
    assert all(a != b for a, b in itertools.pairwise(frames))


def test_watch_redraws_a_terminal_and_ends_0_on_success(
    gateway: GatewayServer, conn: Connection
) -> None:
    started = rollout(gateway, "start", FLOW, ALIAS, "--target-version", TARGET, *LONG_STEPS)
    assert started.returncode == 0, started.stderr
    leader, follower = pty.openpty()
    process = watch(gateway, follower)
    os.close(follower)
    try:
        out = Output(leader)
        out.until("Progressing")
        promoted = call(gateway, "POST", path(action="promote"), {"full": True})
        assert promoted.body["phase"] == "Succeeded"
        text = out.to_end()
        assert process.wait(WAIT_S) == 0
    finally:
        process.kill()
        process.wait()
        os.close(leader)
    assert text.startswith(CLEAR)
    assert "Succeeded" in text.rpartition(CLEAR)[2]  # the last screen


def test_signing_with_keys_from_the_environment(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    keys = {"FLOW_ROUTER_ACCESS_KEY_ID": AKID, "FLOW_ROUTER_SECRET_ACCESS_KEY": SECRET}
    for server in gateway_for(bg_loop, MemoryStore(), recording_executor, credentials=CREDENTIALS):
        make_signed_flow(server)
        unsigned = rollout(server, "status", FLOW, ALIAS)
        assert unsigned.returncode == 1
        assert unsigned.stderr.startswith("flow-router: 403 MissingAuthenticationToken: ")
        wrong = rollout(server, "status", FLOW, ALIAS, env={**keys, SECRET_ENV: "wrong"})
        assert wrong.stderr.startswith("flow-router: 403 SignatureDoesNotMatch: ")

        started = rollout(server, "start", FLOW, ALIAS, "--target-version", TARGET, env=keys)
        assert started.returncode == 0, started.stderr
        flags = ("--access-key-id", AKID, "--secret-access-key", SECRET)
        shown = rollout(server, "status", FLOW, ALIAS, "--json", *flags)
        assert json.loads(shown.stdout)["phase"] == "Progressing"
        # names that need percent-encoding, signed as sent
        other = rollout(server, "status", "my flow/2", "a b", env=keys)
        assert other.stderr.startswith("flow-router: 404 FlowNotFound: ")
        assert "my flow/2" in other.stderr


def test_usage_errors_exit_2(gateway: GatewayServer, conn: Connection) -> None:
    for args, message in [
        (("start", FLOW, ALIAS), "--target-version is required"),
        (("status", FLOW, ALIAS, "--access-key-id", AKID), "needs both"),
        (("status", FLOW, ALIAS, "--watch", "--interval", "0"), "--interval must be between"),
        (("status", FLOW, ALIAS, "--timeout", "0"), "--timeout must be positive"),
    ]:
        done = rollout(gateway, *args)
        assert (done.returncode, done.stdout) == (2, ""), done
        assert message in done.stderr
    assert "must be an http" in rollout("ftp://127.0.0.1", "status", FLOW, ALIAS).stderr
    closed = rollout(f"http://127.0.0.1:{free_port()}", "status", FLOW, ALIAS)
    assert closed.returncode == 2
    assert "cannot reach" in closed.stderr
    missing = rollout(gateway, "status", FLOW, ALIAS)
    assert missing.returncode == 1
    assert missing.stderr.startswith("flow-router: 404 RolloutNotFound: ")
