"""The gateway bench's targets: start them, check them, load them with wrk (closed loop).

A :class:`Bench` owns the running targets. Each target is one process on its
own 127.0.0.1 port; a target that fails to start or to answer its pre-flight
request is left out with the reason recorded, and the others still run.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.util
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import _api
from bench._services import (
    CpuWatch,
    Proc,
    ServiceError,
    Services,
    has_option,
    serve_help,
    which,
)
from bench._util import BENCH_DIR, OUT_ROOT, Progress, free_port, quietest, retry_note

LUA = BENCH_DIR / "wrk_post.lua"
BODY = "FlowName=f1&Qualifier=prod&Input=%7B%7D"
SPLIT = {"1": 30, "2": 70}
BARE = "bare-aiohttp"
DIRECT = "direct"
ROUTERS = ("flow-router-redis", "flow-router-memory")  # the first available one is "the" router


@dataclass
class Options:
    rounds: int = 3
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 64
    threads: int = 1
    open_loop_s: float = 5.0  # per round
    open_loop_rounds: int = 3
    redis_idle_s: float = 3.0
    redis_load_s: float = 5.0
    propagation_attempts: int = 50
    propagation_timeout_s: float = 5.0
    propagation_budget_s: float = 90.0
    split_check: int = 400
    noisy_retries: int = 2  # repeat a run while other processes took CPU during it
    gateway_workers: int = 1
    gateway_args: list[str] = field(default_factory=list)
    install: bool = True
    keep_tmp: bool = False
    out_dir: Path = OUT_ROOT


@dataclass
class Target:
    key: str
    label: str
    url: str = ""
    proc: Proc | None = None
    routing: bool = False  # answers carry X-Flow-Version
    available: bool = True
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, opts: Options, services: Services, progress: Progress) -> None:
        self.opts = opts
        self.services = services
        self.progress = progress
        self.targets: dict[str, Target] = {}
        self.executor: Proc | None = None
        self.redis: Proc | None = None
        self.gateway_extra: list[str] = []
        self.notes: list[str] = []

    # -- set-up -------------------------------------------------------------------------

    def start(self) -> None:
        s, opts = self.services, self.opts
        self.progress.note("starting the executor (nginx), nginx split_clients, redis-server")
        executor_port = free_port()
        self.executor = s.executor(executor_port)
        upstream = (
            f"http://127.0.0.1:{executor_port}/flows/{{flow}}/versions/{{version}}/executions"
        )
        fixed = upstream.format(flow="f1", version="1")
        self._add(Target(DIRECT, "executor direct (nginx)", url=fixed, proc=self.executor))
        try:
            self.redis = s.redis(free_port())
        except ServiceError as e:
            self.notes.append(f"redis-server did not start, so no flow-router-redis: {e}")

        port = free_port()
        self._try(
            Target(BARE, "bare aiohttp proxy", url=f"http://127.0.0.1:{port}/"),
            lambda: s.bare_proxy(BARE, port, fixed, uvloop=False),
        )
        if importlib.util.find_spec("uvloop") is not None:
            port_u = free_port()
            self._try(
                Target(
                    f"{BARE}-uvloop",
                    "bare aiohttp proxy, uvloop",
                    url=f"http://127.0.0.1:{port_u}/",
                ),
                lambda: s.bare_proxy(f"{BARE}-uvloop", port_u, fixed, uvloop=True),
            )
        else:
            self.notes.append("uvloop is not installed: no bare-aiohttp-uvloop target")
        port_s = free_port()
        self._try(
            Target(
                "nginx-split",
                "nginx split_clients 30/70",
                url=self._action_url(port_s),
                routing=True,
            ),
            lambda: s.nginx_split(port_s, executor_port),
        )

        help_text = serve_help()
        if has_option(help_text, "--workers"):
            self.gateway_extra += ["--workers", str(opts.gateway_workers)]
        self.gateway_extra += opts.gateway_args
        stores = {"flow-router-memory": "memory://"}
        if self.redis is not None:
            stores["flow-router-redis"] = f"redis://127.0.0.1:{self.redis.port}/0"
        for key, store in stores.items():
            port_g = free_port()
            target = Target(key, key.replace("-", " "), url=self._action_url(port_g), routing=True)

            def launch(key: str = key, port: int = port_g, store: str = store) -> Proc:
                proc = s.gateway(key, port, store, upstream, self.gateway_extra)
                _api.setup_flow(port, "f1", "prod", SPLIT)
                return proc

            self._try(target, launch)

    @staticmethod
    def _action_url(port: int) -> str:
        return f"http://127.0.0.1:{port}/?Action=StartExecution"

    def _add(self, target: Target) -> None:
        self.targets[target.key] = target

    def _try(self, target: Target, launch: Callable[[], Proc]) -> None:
        self._add(target)
        self.progress.note(f"starting {target.key}")
        try:
            target.proc = launch()
            target.info["command"] = " ".join(target.proc.command)
        except (ServiceError, RuntimeError, OSError) as e:
            self._drop(target, str(e))

    def _drop(self, target: Target, reason: str) -> None:
        target.available = False
        target.reason = reason.strip()
        self.progress.note(f"{target.key} is left out: {target.reason.splitlines()[0]}")
        if target.proc is not None and target.proc is not self.executor:
            self.services.stop(target.proc)

    def live(self) -> list[Target]:
        return [t for t in self.targets.values() if t.available]

    def preflight(self) -> None:
        """One request per target must answer 2xx; routing targets must split about 30/70."""
        for target in self.live():
            conn = _api.KeepAlive(port_of(target.url))
            path = target.url.split(f":{port_of(target.url)}", 1)[1]
            try:
                status, headers, body = conn.post(path, BODY)
                if not 200 <= status < 300:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                target.info["preflight"] = {
                    "status": status,
                    "body": body[:120].decode(errors="replace"),
                    "x_flow_version": headers.get("x-flow-version"),
                }
                if target.routing:
                    seen: Counter[str] = Counter()
                    for _ in range(self.opts.split_check):
                        status, headers, _ = conn.post(path, BODY)
                        seen[headers.get("x-flow-version", f"HTTP {status}")] += 1
                    target.info["split_check"] = {
                        "requests": self.opts.split_check,
                        "versions": dict(seen),
                        "share_v1": seen["1"] / self.opts.split_check,
                    }
            except (RuntimeError, OSError, http.client.HTTPException) as e:
                self._drop(target, f"preflight failed: {e}")
            finally:
                conn.close()

    # -- closed-loop rounds ---------------------------------------------------------------

    def wrk(
        self, target: Target, duration: float, connections: int | None = None
    ) -> dict[str, Any]:
        wrk = which("wrk")
        assert wrk is not None
        command = [
            wrk,
            f"-t{self.opts.threads}",
            f"-c{connections or self.opts.connections}",
            f"-d{duration:g}s",
            "--latency",
            "-s",
            str(LUA),
            target.url,
        ]
        watched = {"target": target.proc, "executor": self.executor}
        if target.key == DIRECT:
            del watched["executor"]  # the target is the executor
        if target.key == "flow-router-redis":
            watched["redis"] = self.redis
        with CpuWatch(watched, child="wrk") as cpu:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=False,
                timeout=duration + 60,
                env=os.environ | {"BENCH_BODY": BODY},
            )
        match = re.search(r"^BENCH_RESULT (.*)$", done.stdout, re.M)
        if match is None:
            raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr[-300:]}")
        raw = {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
        seconds = raw["duration_us"] / 1e6
        return {
            "requests": int(raw["requests"]),
            "duration_s": seconds,
            "rps": raw["requests"] / seconds,
            "p50_ms": raw["p50_us"] / 1000,
            "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "p999_ms": raw["p999_us"] / 1000,
            "max_ms": raw["max_us"] / 1000,
            "mean_ms": raw["mean_us"] / 1000,
            "non_2xx": int(raw["errors_status"]),
            "socket_errors": {
                k: int(raw[f"errors_{k}"]) for k in ("connect", "read", "write", "timeout")
            },
            "cpu_cores": cpu.cores(),
        }

    def _wrk_or_error(self, target: Target, duration: float) -> dict[str, Any]:
        try:
            return self.wrk(target, duration)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            return {"error": str(e)}

    def rounds(self) -> list[dict[str, Any]]:
        opts = self.opts
        for target in self.live():
            self.progress.show(f"warm-up {target.key} ({opts.warmup:g}s)", force=True)
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.wrk(target, opts.warmup)
            self.progress.advance(opts.warmup + 0.5)
        rounds: list[dict[str, Any]] = []
        for r in range(1, opts.rounds + 1):
            runs: dict[str, Any] = {}
            live = self.live()
            for i, target in enumerate(live, 1):
                self.progress.show(
                    f"round {r}/{opts.rounds} · {target.key} ({i}/{len(live)}) · wrk "
                    f"-t{opts.threads} -c{opts.connections} -d{opts.duration:g}s",
                    force=True,
                )
                runs[target.key] = quietest(
                    functools.partial(self._wrk_or_error, target, opts.duration),
                    opts.noisy_retries,
                    retry_note(self.progress, f"round {r}/{opts.rounds} · {target.key}"),
                )
                if target.proc is not None and not target.proc.alive():
                    self._drop(target, f"exited during round {r}:\n{target.proc.log_tail()}")
                self.progress.advance(opts.duration + 0.5)
            rounds.append({"round": r, "runs": runs})
        self.progress.end_line()
        return rounds


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
