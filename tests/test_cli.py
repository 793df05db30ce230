"""What a new user meets first: ``flow-router`` started as a real process.

``--version`` everywhere, ``flow-router executor`` saying where it is and how
to reach it, a taken port as one line and exit 2, the start-up line with the
store's password hidden, and the warning when nonces live in a Redis that
would lose them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from router import __version__
from router.cli import _parser
from router.config import Config
from router.store import redact_url
from tests.harness import RecordingExecutor, free_port
from tests.processes import Connection, GatewayProcess, Processes, execute, ok, setup_flow
from tests.redis_servers import RedisServer, redis_binary, start_on_free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-Pa55"
PERSISTENCE_WARNING = "Redis reports appendonly no"


def flow_router(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"AKIDEXAMPLE": "example-secret"}))
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on (plainly: no SO_REUSEPORT to share it)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# -- --version ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["serve"], ["executor"]], ids=["top", "serve", "executor"])
def test_version_prints_the_version(command: list[str]) -> None:
    done = flow_router(*command, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"flow-router {__version__}"


# -- defaults ----------------------------------------------------------------------------


def test_serve_defaults_are_the_config_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["serve"])
    config, settings, limits = Config(), Config().settings, Config().version_limits
    expected = {
        "host": config.host,
        "port": config.port,
        "store": config.store,
        "key_prefix": config.key_prefix,
        "upstream": config.upstream,
        "connect_timeout": config.timeouts.connect_s,
        "timeout": config.timeouts.total_s,
        "region": config.region,
        "account_id": config.account_id,
        "idempotency_ttl": config.idempotency_ttl_s,
        "cache_check_interval": settings.cache_check_interval_s,
        "max_inflight_per_version": limits.max_inflight,
        "breaker_failures": limits.breaker_failures,
        "breaker_reset": limits.breaker_reset_s,
        "max_body_bytes": config.max_body_bytes,
        "body_timeout": config.body_timeout_s,
        "idle_timeout": config.idle_timeout_s,
        "drain_timeout": config.drain_timeout_s,
        "rate_limit": config.rate_limit or 0,
        "rate_burst": config.rate_burst,
        "max_flows": settings.max_flows,
        "max_versions_per_flow": settings.max_versions_per_flow,
        "max_aliases_per_flow": settings.max_aliases_per_flow,
    }
    assert {name: getattr(args, name) for name in expected} == expected
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(0: no limit; default: {settings.max_flows}) [FLOW_ROUTER_MAX_FLOWS]" in shown


# -- flow-router executor ------------------------------------------------------------------


def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    """The first line of ``path`` containing ``text``, once the process has written it."""
    deadline = time.monotonic() + 30
    while True:
        for line in path.read_text(errors="replace").splitlines():
            if text in line:
                return line
        assert process.poll() is None, path.read_text()
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


def test_executor_logs_where_it_listens_and_the_upstream_that_reaches_it(
    tmp_path: Path,
    processes: Processes,
) -> None:
    port = free_port()
    log_path = tmp_path / "executor.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "router",
                "executor",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
    try:
        line = wait_for_line(log_path, "--upstream", process)
        assert f"listening on http://127.0.0.1:{port}" in line
        template = line.split("--upstream ")[1].strip().strip("'")
        assert template == f"http://127.0.0.1:{port}/flows/{{flow}}/versions/{{version}}/executions"

        # the printed template is what a gateway needs to reach it
        gateway = processes.start("--upstream", template)
        conn = Connection(gateway.port)
        setup_flow(conn, "orders", 1, "prod", (1, 100))
        answer = ok(execute(conn, "orders", "prod", name="through-the-template"))
        assert answer.version == "1"
    finally:
        process.terminate()
        process.wait(10)


# -- a port already in use -------------------------------------------------------------------


def assert_cannot_listen(done: subprocess.CompletedProcess[str], port: int) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr, output
    assert "Traceback" not in output
    assert "listening on" not in output


def test_serve_on_a_taken_port_is_one_line_and_exit_2(taken_port: int) -> None:
    done = flow_router("serve", "--host", "127.0.0.1", "--port", str(taken_port))
    assert_cannot_listen(done, taken_port)


def test_workers_on_a_taken_port_is_one_line_and_exit_2(
    taken_port: int,
    redis_server: RedisServer,
    recording_executor: RecordingExecutor,
) -> None:
    done = flow_router(
        *("serve", "--host", "127.0.0.1", "--port", str(taken_port), "--workers", "2"),
        *("--store", redis_server.url, "--upstream", recording_executor.template),
    )
    assert_cannot_listen(done, taken_port)


def test_executor_on_a_taken_port_is_one_line_and_exit_2(taken_port: int) -> None:
    done = flow_router("executor", "--host", "127.0.0.1", "--port", str(taken_port))
    assert_cannot_listen(done, taken_port)


# -- the start-up log: no password, and a warning when nonces would not survive ---------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h:6379/0?socket_timeout=2", "redis://user:***@h:6379/0?socket_timeout=2"),
        ("rediss://u:p%40w@h:6380", "rediss://u:***@h:6380"),
        ("redis://:p/w@x@h:1/0", "redis://:***@h:1/0"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        (
            "redis+sentinel://u:pw@a:26379,b:26379/svc/0?sentinel_password=spw&socket_timeout=1",
            "redis+sentinel://u:***@a:26379,b:26379/svc/0?sentinel_password=***&socket_timeout=1",
        ),
        ("redis+cluster://:pw@a:7000,b:7001", "redis+cluster://:***@a:7000,b:7001"),
        ("redis://h:6379/0?password=pw", "redis://h:6379/0?password=***"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def require_password(server: RedisServer) -> None:
    client = redis.Redis(port=server.port, socket_timeout=5)
    try:
        client.config_set("requirepass", PASSWORD)
    finally:
        client.close()


def test_the_store_password_is_not_logged(
    own_redis: RedisServer,
    processes: Processes,
) -> None:
    require_password(own_redis)
    host = f"127.0.0.1:{own_redis.port}/0"
    plain, named = processes.start_many(
        [
            ["--store", f"redis://:{PASSWORD}@{host}", "--workers", "1"],
            ["--store", f"redis://default:{PASSWORD}@{host}", "--workers", "1"],
        ]
    )
    ok(Connection(plain.port).cloudflow("ListFlows", {}))  # the password does work
    assert f"(store redis://:***@{host}, 1 worker)" in plain.log(), plain.log()
    assert f"(store redis://default:***@{host}, 1 worker)" in named.log(), named.log()
    for gateway in (plain, named):
        assert PASSWORD not in gateway.log()


def persistence_warnings(gateway: GatewayProcess) -> list[str]:
    return [line for line in gateway.log().splitlines() if PERSISTENCE_WARNING in line]


def test_credentials_on_redis_without_persistence_warn_at_start(
    own_redis: RedisServer,
    credentials: Path,
    processes: Processes,
) -> None:
    common = ("--store", own_redis.url, "--workers", "1")
    volatile = processes.start(*common, "--credentials", str(credentials))
    (warning,) = persistence_warnings(volatile)
    assert " WARNING " in warning and "appendonly yes" in warning, warning

    unsigned = processes.start(*common)  # no nonces: nothing to warn about
    assert persistence_warnings(unsigned) == []

    client = redis.Redis(port=own_redis.port, socket_timeout=5)
    try:
        client.config_set("appendonly", "yes")
    finally:
        client.close()
    durable = processes.start(*common, "--credentials", str(credentials))
    assert persistence_warnings(durable) == []


def test_credentials_on_redis_without_config_command_start_quietly(
    tmp_path: Path,
    credentials: Path,
    processes: Processes,
) -> None:
    server = RedisServer(redis_binary(), tmp_path, ("--rename-command", "CONFIG", ""))
    start_on_free_port(server)
    try:
        gateway = processes.start(
            *("--store", server.url, "--workers", "1", "--credentials", str(credentials))
        )
        assert persistence_warnings(gateway) == []
        assert "Traceback" not in gateway.log()
        assert Connection(gateway.port).get("/readyz")[0] == 200
    finally:
        server.stop()
