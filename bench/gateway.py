"""Gateway bench: flow-router against its floor and its peers, side by side, on loopback.

Targets, all on 127.0.0.1 and measured in one run, interleaved round by round:

- ``direct``: the executor itself, an nginx answering
  ``POST /flows/<flow>/versions/<v>/executions`` with a fixed JSON body; the
  upstream of every other target;
- ``bare-aiohttp`` (and ``bare-aiohttp-uvloop``): :mod:`bench.bare_proxy`, a
  passthrough proxy with one shared ClientSession, no routing: the floor for any
  Python gateway;
- ``nginx-split``: nginx ``split_clients`` doing the same 30/70 split over a
  keep-alive upstream: the C peer;
- ``flow-router-memory`` / ``flow-router-redis``: ``flow-router serve`` with the
  memory store / a Redis of our own, alias ``prod`` = 30 % v1, 70 % v2, loaded
  with CloudFlow ``StartExecution`` requests.

Load: ``wrk -t1 -c64 -d<D>s --latency`` (closed loop) per target per round;
medians over rounds. Then: (i) latency at a constant 50 % of flow-router's peak
rate with :mod:`bench.openloop` (open loop); (ii) Redis commands per routed
request from ``INFO commandstats``; (iii) propagation time of an
UpdateFlowAlias from one replica to another on the same Redis.

Run: ``python -m bench.gateway [--quick] [--rounds R] [--duration D]``.
Writes ``bench/results/gateway.{json,png,md}``; prints the Markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import redis.exceptions

from bench import _report
from bench._analysis import goals, medians, ratios
from bench._services import (
    ServiceError,
    Services,
    ensure_tools,
    tool_version,
)
from bench._side import open_loop, propagation, redis_commands
from bench._targets import BODY, DIRECT, Bench, Options
from bench._util import Progress, git_commit, machine_info, out_dir


def versions() -> dict[str, str]:
    out = {name: tool_version(name) for name in ("nginx", "wrk", "redis-server")}
    patterns = {
        "nginx": r"nginx/(\S+)",
        "wrk": r"wrk (?:\S*/)?(\d[\w.~+-]*)",
        "redis-server": r"v=(\S+)",
    }
    for name, pattern in patterns.items():
        found = re.search(pattern, out[name])
        if found:
            out[name] = f"{name} {found.group(1)}"
    for package in ("aiohttp", "uvloop", "redis"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def planned_seconds(opts: Options, targets: int = 6) -> float:
    closed = targets * (opts.warmup + 0.5 + opts.rounds * (opts.duration + 0.5))
    loop = 4 * opts.open_loop_rounds * (opts.open_loop_s + 1.5)
    return closed + loop + opts.redis_idle_s + opts.redis_load_s + 10


def guarded(progress: Progress, name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A side measurement that fails (a process died, a socket broke) is reported, not fatal:
    the closed-loop results are already in hand."""
    try:
        return measure()
    except (
        OSError,
        RuntimeError,
        ValueError,
        KeyError,
        http.client.HTTPException,
        subprocess.SubprocessError,
        redis.exceptions.RedisError,
    ) as e:
        progress.note(f"{name} failed: {type(e).__name__}: {e}")
        return {"skipped": f"failed: {type(e).__name__}: {e}"}


def run(opts: Options) -> dict[str, Any]:
    progress = Progress("gateway", planned_seconds(opts))
    installed = ensure_tools(progress) if opts.install else []
    tmp = Path(tempfile.mkdtemp(prefix="flow-router-bench-"))
    tmp.chmod(0o755)  # nginx workers run as another user when we are root
    services = Services(tmp)
    bench = Bench(opts, services, progress)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    router = git_commit()  # now: router/ may be edited while the bench runs
    load_before = os.getloadavg()
    try:
        bench.start()
        if not bench.targets[DIRECT].available:
            raise ServiceError(f"the executor did not start: {bench.targets[DIRECT].reason}")
        bench.preflight()
        progress.planned_s = planned_seconds(opts, len(bench.live()))
        rounds = bench.rounds()
        med = medians(rounds)
        results: dict[str, Any] = {}
        results["open_loop"] = guarded(progress, "open loop", lambda: open_loop(bench, med))
        results["redis_commands"] = guarded(
            progress, "redis commands", lambda: redis_commands(bench)
        )
        results["propagation"] = guarded(progress, "propagation", lambda: propagation(bench))
        progress.end_line()
    finally:
        services.stop_all()
        if opts.keep_tmp:
            progress.note(f"kept logs and configs in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rat = ratios(med)
    return {
        "bench": "gateway",
        "started": started,
        "machine": machine_info()
        | versions()
        | {"loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "router": router,
        "installed": installed,
        "settings": {
            "rounds": opts.rounds,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "wrk": f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration:g}s --latency "
            f"-s bench/wrk_post.lua (POST, form body {BODY})",
            "order": [t.key for t in bench.targets.values() if t.key in med],
            "gateway_args": bench.gateway_extra,
            "cpu_note": "wrk, the target and the executor share the machine's cores; "
            "nothing is pinned",
        },
        "targets": {
            k: {
                "label": t.label,
                "url": t.url,
                "available": t.available,
                "reason": t.reason,
                **t.info,
            }
            for k, t in bench.targets.items()
        },
        "rounds": rounds,
        "medians": med,
        "ratios": rat,
        **results,
        "goals": goals(med, rat, results),
        "notes": bench.notes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    opts = options_from(args)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C must reach us even when started with SIGINT ignored (e.g. `... &` in a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        data = run(opts)
    except ServiceError as e:
        print(f"gateway bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ngateway bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    _report.write(data, opts.out_dir)
    print(_report.markdown(data))
    print(f"wrote {opts.out_dir / 'gateway.json'}, gateway.png and gateway.md")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 round, 3 s runs, short side measurements (smoke run)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="--workers for flow-router serve, when it has that option (default 1)",
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for flow-router serve (repeatable)",
    )
    parser.add_argument("--no-install", action="store_true", help="never call apt-get")
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    parser.add_argument(
        "--out", type=Path, help="results directory (default: a new bench/out/<UTC time>/)"
    )


def options_from(args: argparse.Namespace) -> Options:
    opts = Options(
        gateway_workers=args.gateway_workers,
        gateway_args=list(args.gateway_arg),
        install=not args.no_install,
        keep_tmp=args.keep_tmp,
        out_dir=out_dir(args.out),
    )
    if args.quick:
        opts.rounds, opts.duration, opts.warmup = 1, 3.0, 1.0
        opts.open_loop_s, opts.redis_idle_s, opts.redis_load_s = 3.0, 1.0, 2.0
        opts.open_loop_rounds, opts.noisy_retries = 1, 0
        opts.propagation_attempts, opts.propagation_budget_s, opts.split_check = 10, 20.0, 200
    if args.rounds:
        opts.rounds = opts.open_loop_rounds = args.rounds
    if args.duration:
        opts.duration = args.duration
    return opts


if __name__ == "__main__":
    raise SystemExit(main())
