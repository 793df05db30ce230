"""The gateway bench's processes: tools from Debian, nginx configs, start/stop, CPU use.

Every service is a subprocess in its own session (so Ctrl-C reaches only the
bench, which then stops them), on a free 127.0.0.1 port, logging into the
run's temporary directory. :meth:`Services.stop_all` ends exactly the process
groups it started.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._util import REPO_DIR, Progress

# executable -> Debian package
TOOLS = {"nginx": "nginx", "wrk": "wrk", "redis-server": "redis-server"}
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
EXECUTOR_BODY = '{"status":"Succeeded","output":{}}'


class ServiceError(RuntimeError):
    pass


def which(exe: str) -> str | None:
    found = shutil.which(exe)
    if found:
        return found
    for folder in _SBIN:  # nginx lives in /usr/sbin, not always on a user's PATH
        candidate = Path(folder) / exe
        if candidate.exists():
            return str(candidate)
    return None


def ensure_tools(progress: Progress) -> list[str]:
    """Install nginx, wrk and redis-server from Debian when missing; return what was installed."""
    missing = sorted({pkg for exe, pkg in TOOLS.items() if which(exe) is None})
    if not missing:
        return []
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        raise ServiceError(f"missing {', '.join(missing)}: run `sudo {' '.join(command)}` first")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    progress.note(f"installing {', '.join(missing)}: {' '.join(command)}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        progress.note("apt-get install failed; running apt-get update once and retrying")
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    still = [exe for exe in TOOLS if which(exe) is None]
    if done.returncode != 0 or still:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise ServiceError(f"could not install {', '.join(missing)}: " + " | ".join(tail))
    progress.note(f"installed {', '.join(missing)}")
    return missing


def tool_version(exe: str) -> str:
    path = which(exe)
    if path is None:
        return "missing"
    flag = {"nginx": "-v", "wrk": "-v", "redis-server": "--version"}[exe]
    done = subprocess.run([path, flag], capture_output=True, text=True, check=False, timeout=10)
    first = (done.stdout + done.stderr).strip().splitlines()
    return first[0].strip() if first else "unknown"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path
    command: list[str]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def pids(self) -> list[int]:
        """This process and its descendants (nginx workers, gateway workers)."""
        found = [self.popen.pid]
        i = 0
        while i < len(found):
            task_dir = Path(f"/proc/{found[i]}/task")
            with contextlib.suppress(OSError):
                for task in task_dir.iterdir():
                    with contextlib.suppress(OSError):
                        found += [int(p) for p in (task / "children").read_text().split()]
            i += 1
        return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (the ``cpu`` line of /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


class CpuWatch:
    """Cores used during a window: by named processes, by our waited-for children (the load
    generator), by the whole machine, and by everything else ("other": load we did not start,
    which makes a run noisy)."""

    def __init__(self, procs: dict[str, Proc | None], child: str) -> None:
        self.procs = {k: p for k, p in procs.items() if p is not None}
        self.child = child

    def __enter__(self) -> CpuWatch:
        self.t0 = time.monotonic()
        self.cpu0 = {k: cpu_seconds(p.pids()) for k, p in self.procs.items()}
        self.ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.machine0 = machine_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.t0
        self.cpu1 = {k: cpu_seconds(p.pids()) for k, p in self.procs.items()}
        self.ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.machine1 = machine_ticks()

    def cores(self, seconds: float | None = None) -> dict[str, float]:
        """Cores per name over ``seconds`` (default: the window's wall time)."""
        span = seconds or self.wall
        out = {k: (self.cpu1[k] - self.cpu0[k]) / span for k in self.procs}
        ru0, ru1 = self.ru0, self.ru1
        out[self.child] = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / span
        busy = self.machine1[0] - self.machine0[0]
        total = self.machine1[1] - self.machine0[1]
        if total > 0:
            out["machine"] = busy / total * (os.cpu_count() or 1)
            out["other"] = max(
                0.0, out["machine"] - sum(v for k, v in out.items() if k != "machine")
            )
        return out


def wait_port(port: int, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            tail = proc.log_tail()
            last = tail.splitlines()[-1] if tail else "no output"
            raise ServiceError(f"{proc.name} exited ({proc.popen.returncode}): {last}\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServiceError(
        f"{proc.name} did not listen on {port} within {timeout:g}s\n{proc.log_tail()}"
    )


@dataclass
class Services:
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, command: list[str], port: int, timeout: float = 20.0) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_DIR,
                start_new_session=True,  # Ctrl-C goes to the bench only; it stops us
            )
        proc = Proc(name, popen, port, log, command)
        self.procs.append(proc)
        try:
            wait_port(port, proc, timeout)
        except ServiceError:
            self.stop(proc)
            raise
        return proc

    def stop(self, proc: Proc) -> None:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        else:
            # the leader is gone; its group (e.g. gateway workers) may not be
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):  # keep stopping the others whatever happens
                self.stop(proc)

    # -- the services ---------------------------------------------------------------

    def nginx(self, name: str, port: int, http_body: str) -> Proc:
        base = self.tmp / name
        base.mkdir()
        conf = base / "nginx.conf"
        temp_paths = "\n".join(
            f"    {kind}_temp_path {base}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"""worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 100000000;
    keepalive_timeout 600s;
{http_body}
}}
"""
        )
        nginx = which("nginx")
        if nginx is None:
            raise ServiceError("nginx is not installed")
        command = [nginx, "-p", str(base), "-e", str(base / "error.log"), "-c", str(conf)]
        proc = self.start(name, command, port)
        proc.log = base / "error.log"
        return proc

    def executor(self, port: int) -> Proc:
        body = f"""    server {{
        listen 127.0.0.1:{port};
        location ~ ^/flows/[^/]+/versions/[^/]+/executions$ {{
            default_type application/json;
            return 200 '{EXECUTOR_BODY}';
        }}
    }}"""
        return self.nginx("executor", port, body)

    def nginx_split(self, port: int, executor_port: int) -> Proc:
        body = f"""    upstream executor {{
        server 127.0.0.1:{executor_port};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }}
    split_clients "${{request_id}}" $flow_version {{
        30% 1;
        *   2;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://executor/flows/f1/versions/$flow_version/executions;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Flow-Version $flow_version always;
        }}
    }}"""
        return self.nginx("nginx-split", port, body)

    def redis(self, port: int) -> Proc:
        server = which("redis-server")
        if server is None:
            raise ServiceError("redis-server is not installed")
        folder = self.tmp / "redis"
        folder.mkdir(exist_ok=True)
        command = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder), "--daemonize", "no",
        ]  # fmt: skip
        return self.start("redis", command, port)

    def bare_proxy(self, name: str, port: int, upstream: str, uvloop: bool) -> Proc:
        command = [sys.executable, "-m", "bench.bare_proxy", "--port", str(port)]
        command += ["--upstream", upstream] + (["--uvloop"] if uvloop else [])
        return self.start(name, command, port)

    def gateway(self, name: str, port: int, store: str, upstream: str, extra: list[str]) -> Proc:
        command = [sys.executable, "-m", "router", "serve", "--port", str(port)]
        command += ["--store", store, "--upstream", upstream, *extra]
        return self.start(name, command, port, timeout=30)


def serve_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "router", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        check=False,
        timeout=30,
    )
    return done.stdout + done.stderr


def has_option(help_text: str, option: str) -> bool:
    return re.search(rf"(^|\s|\[){re.escape(option)}(\s|=|\]|$)", help_text, re.M) is not None
