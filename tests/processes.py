"""flow-router as real processes: ``python -m router serve …`` started, awaited, stopped.

A test that needs several gateways sharing a store (replicas), the worker
supervisor, or the command-line flags uses :class:`Processes`: it starts each
gateway as a subprocess on a free 127.0.0.1 port with its output in a log
file, waits until ``/healthz`` answers, and stops everything it started with
SIGTERM (SIGKILL after a timeout) when the test ends, whatever its outcome.

:class:`Connection` talks to a gateway over raw HTTP/1.1 (keep-alive, or a
fresh connection per request), which is much cheaper than the SDK for the
thousands of executions the statistical tests send, and can set headers the
SDK cannot (``X-Routing-Key``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.harness import free_port

READY_TIMEOUT_S = 30.0  # a loaded 2-core machine can take a few seconds per interpreter
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3  # a free port may be taken before the gateway binds it


class ProcessFailed(RuntimeError):
    pass


@dataclass
class GatewayProcess:
    """One ``flow-router serve`` process (the supervisor, with ``--workers`` > 1)."""

    port: int
    args: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL to its process group if it is not gone in time."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()
        return self.process.wait(timeout)

    def kill_group(self) -> None:
        """SIGKILL whatever is left in the process group this gateway leads (its workers)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class Processes:
    """Every gateway process one test started; :meth:`close` stops them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[GatewayProcess] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> GatewayProcess:
        """``flow-router serve ARGS --host 127.0.0.1 --port <free>``, once it answers."""
        (gateway,) = self.start_many([args], env=env)
        return gateway

    def start_many(
        self, arg_lists: Sequence[Sequence[str]], env: Mapping[str, str] | None = None
    ) -> list[GatewayProcess]:
        """Start several gateways at once (interpreters start in parallel), wait for all."""
        gateways = [self._spawn(tuple(args), env) for args in arg_lists]
        for i, gateway in enumerate(gateways):
            for attempt in range(_PORT_ATTEMPTS):
                try:
                    wait_healthy(gateway)
                    break
                except ProcessFailed:
                    if attempt + 1 == _PORT_ATTEMPTS or "address already in use" not in (
                        gateway.log().lower()
                    ):
                        raise
                    gateway = gateways[i] = self._spawn(gateway.args, env)
        return gateways

    def _spawn(self, args: tuple[str, ...], env: Mapping[str, str] | None) -> GatewayProcess:
        port = free_port()
        log_path = self.directory / f"gateway-{len(self.started)}-{port}.log"
        command = [sys.executable, "-m", "router", "serve", *args]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**_hermetic(os.environ), **(env or {})},
                cwd=Path(__file__).resolve().parent.parent,
                start_new_session=True,  # its own process group, so no worker can escape
            )
        gateway = GatewayProcess(port, args, log_path, process)
        self.started.append(gateway)
        return gateway

    def close(self) -> None:
        for gateway in self.started:
            try:
                gateway.stop()
            except subprocess.TimeoutExpired:
                gateway.kill_group()
            gateway.kill_group()  # a worker orphaned by a killed supervisor


def _hermetic(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without settings that would change a gateway's defaults.

    ``FLOW_ROUTER_*`` set for the test run would override absent flags, and an
    inherited ``PROMETHEUS_MULTIPROC_DIR`` would make the supervisor reuse (and
    empty) that directory.
    """
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith("FLOW_ROUTER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


def wait_healthy(gateway: GatewayProcess, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not gateway.running():
            raise ProcessFailed(
                f"flow-router {' '.join(gateway.args)} exited with {gateway.process.returncode}:\n"
                + gateway.log()[-3000:]
            )
        try:
            with urllib.request.urlopen(gateway.url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise ProcessFailed(
                f"flow-router did not answer /healthz within {timeout}s:\n" + gateway.log()[-3000:]
            )
        time.sleep(0.05)


# -- /proc: the process tree of a gateway ---------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, ``None`` if there is none by that id."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """A process runs under this id (a zombie is an exit status, not a process)."""
    found = _stat(pid)
    return found is not None and found[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def children(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def worker_pids(supervisor: int) -> list[int]:
    """Children started as multiprocessing spawn workers (not the resource tracker)."""
    return [pid for pid in children(supervisor) if "spawn_main" in cmdline(pid)]


# -- HTTP ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        return self.body.get("Code") if isinstance(self.body, dict) else None

    @property
    def version(self) -> str | None:
        """``X-Flow-Version``: the version an execution ran on."""
        return self.headers.get("x-flow-version")


class Connection:
    """Raw HTTP/1.1 to one gateway port; keep-alive unless ``fresh`` (one connection each)."""

    def __init__(self, port: int, *, fresh: bool = False, timeout: float = 10.0) -> None:
        self.port = port
        self.fresh = fresh
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        sent = dict(headers or {})
        if self.fresh:
            sent["Connection"] = "close"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                self._conn.request(method, path, body=body, headers=sent)
                resp = self._conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                # the server closed an idle keep-alive connection: one retry on a new one
                self.close()
                if attempt == 2 or self.fresh:
                    raise
                continue
            answer_headers = {k.lower(): v for k, v in resp.getheaders()}
            if self.fresh or resp.will_close:
                self.close()
            return resp.status, data, answer_headers
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        status, data, _ = self.request("GET", path)
        return status, data

    def cloudflow(
        self,
        action: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One unsigned CloudFlow RPC call (docs/wire.md §2.1): Action in the query, a form body.

        A list or dict parameter (``RoutingConfigurations``) is sent as compact JSON text.
        """
        form = {
            k: json.dumps(v, separators=(",", ":")) if isinstance(v, list | dict) else str(v)
            for k, v in params.items()
            if v is not None
        }
        query = urlencode({"Action": action, "Format": "json", "Version": "2019-03-15"})
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        status, data, answer_headers = self.request(
            "POST", f"/?{query}", urlencode(form).encode(), sent
        )
        return Answer(status, json.loads(data) if data else None, answer_headers)


def routing(*pairs: tuple[int | str, int]) -> list[dict[str, Any]]:
    """``RoutingConfigurations`` as the SDK sends it: Version a string, Weight an integer."""
    return [{"Version": str(v), "Weight": w} for v, w in pairs]


def ok(answer: Answer) -> Answer:
    assert answer.status == 200, (answer.status, answer.body)
    return answer


def setup_flow(
    conn: Connection, flow: str, versions: int, alias: str | None = None, *pairs: tuple[int, int]
) -> None:
    """A flow with ``versions`` published versions and, if named, an alias over ``pairs``."""
    ok(conn.cloudflow("CreateFlow", {"Name": flow, "Definition": "version: v1", "Type": "FDL"}))
    for _ in range(versions):
        ok(conn.cloudflow("PublishFlowVersion", {"FlowName": flow}))
    if alias is not None:
        ok(
            conn.cloudflow(
                "CreateFlowAlias",
                {"FlowName": flow, "Name": alias, "RoutingConfigurations": routing(*pairs)},
            )
        )


def execute(
    conn: Connection,
    flow: str,
    qualifier: str,
    *,
    name: str | None = None,
    routing_key: str | None = None,
) -> Answer:
    headers = {"X-Routing-Key": routing_key} if routing_key is not None else None
    params = {"FlowName": flow, "Qualifier": qualifier, "Input": "{}", "ExecutionName": name}
    return conn.cloudflow("StartExecution", params, headers)
