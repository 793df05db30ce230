"""Soak: minutes of mixed load on two gateways sharing one Redis that keeps restarting.

    python -m bench.soak --minutes 2

Not part of CI. It starts, on free 127.0.0.1 ports and in a temporary
directory: a private redis-server with an append-only file fsynced on every
write (so a restart, even SIGKILL, loses nothing it acknowledged), the
reference executor (``flow-router executor``), and two ``flow-router serve``
processes on that Redis. Then, for N minutes:

* control-plane writers (CloudFlow): create flows, publish versions, create
  aliases, change alias weights and flow descriptions, spread over both
  gateways. Every acknowledged write goes into a ledger; a write whose outcome
  is unknown (5xx, timeout, connection error) is noted as "maybe";
* execution clients: StartExecution through the aliases, on both gateways;
* every ``--restart-every`` seconds Redis is stopped (SIGTERM and SIGKILL in
  turn), left down ``--down`` seconds, and started again on its files;
* RSS of each gateway sampled every 2 s.

At the end, with Redis up, each ledger entry is checked through the API: the
flow exists, its acknowledged versions are listed, its alias routes and its
description are the last acknowledged value (or a later "maybe" one). Any
miss is a lost write. Results: ``soak.json`` and ``soak.txt`` in a new
``bench/out/<UTC time>/`` directory, or in ``--out DIR`` (``--out bench/results``
replaces the committed ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench._soak import (
    Processes,
    Soak,
    executions,
    free_port,
    rss_mb,
    verify,
    wait_port,
    writer,
)
from bench._util import out_dir


async def redis_restarts(soak: Soak, processes: Processes, every: float, down: float) -> None:
    while True:
        await asyncio.sleep(every)
        if soak.stopping:
            return
        # Shielded: cancelling the loop must never leave Redis half restarted.
        soak.restart = asyncio.ensure_future(restart_redis(soak, processes, down))
        await asyncio.shield(soak.restart)


async def restart_redis(soak: Soak, processes: Processes, down: float) -> None:
    signum = (signal.SIGTERM, signal.SIGKILL)[len(soak.restarts) % 2]
    at = soak.elapsed()
    soak.redis_down = True
    await asyncio.to_thread(processes.stop, "redis", signum)
    await asyncio.sleep(down)
    await asyncio.to_thread(processes.start_redis)
    soak.redis_down = False
    soak.recovering_until = time.monotonic() + 5
    soak.restarts.append(
        {"at_s": round(at, 1), "signal": signum.name, "down_s": round(soak.elapsed() - at, 2)}
    )


async def sample_rss(soak: Soak, pids: dict[str, int]) -> None:
    while not soak.stopping:
        for name, pid in pids.items():
            mb = rss_mb(pid)
            if mb is not None:
                soak.rss.setdefault(name, []).append((round(soak.elapsed(), 1), round(mb, 2)))
        await asyncio.sleep(2)


async def progress(soak: Soak, every: float) -> None:
    while not soak.stopping:
        await asyncio.sleep(every)
        total = sum(sum(c.values()) for c in soak.outcomes.values())
        errors = sum(n for c in soak.outcomes.values() for k, n in c.items() if k != "ok")
        rss = " ".join(f"{g} {v[-1][1]:.1f}MB" for g, v in soak.rss.items() if v)
        print(
            f"[{soak.elapsed():5.0f}s] requests {total} ({total / soak.elapsed():.0f}/s) "
            f"errors {errors} | writes acked {sum(soak.acked.values())} | "
            f"redis {'DOWN' if soak.redis_down else 'up'} (restarts {len(soak.restarts)}) | "
            f"rss {rss}",
            flush=True,
        )


# -- run ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, processes: Processes) -> dict[str, Any]:
    executor_port = free_port()
    processes.spawn("executor", [sys.executable, "-m", "router", "executor",
                                 "--port", str(executor_port)])  # fmt: skip
    processes.start_redis()
    wait_port(executor_port, 30)
    upstream = f"http://127.0.0.1:{executor_port}/flows/{{flow}}/versions/{{version}}/executions"
    prefix = f"soak{random.randrange(16**6):06x}"
    ports = [free_port(), free_port()]
    pids = {}
    for i, port in enumerate(ports, 1):
        pids[f"gateway-{i}"] = processes.spawn(f"gateway-{i}", [
            sys.executable, "-m", "router", "serve", "--port", str(port), "--workers", "1",
            "--store", f"redis://127.0.0.1:{processes.redis_port}/0", "--key-prefix", prefix,
            "--upstream", upstream,
        ]).pid  # fmt: skip
    for port in ports:
        wait_port(port, 60)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=200)
    ) as session:
        soak = Soak([f"http://127.0.0.1:{p}" for p in ports], session)
        background = [
            asyncio.create_task(redis_restarts(soak, processes, args.restart_every, args.down)),
            asyncio.create_task(sample_rss(soak, pids)),
            asyncio.create_task(progress(soak, args.progress_every)),
        ]
        load = [asyncio.create_task(writer(soak, i, args.write_rate / 2, args.flows // 2))
                for i in range(2)]  # fmt: skip
        load += [asyncio.create_task(executions(soak, args.rate / args.clients))
                 for _ in range(args.clients)]  # fmt: skip
        await asyncio.sleep(args.minutes * 60)
        soak.stopping = True
        await asyncio.gather(*load)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if soak.restart is not None:
            await soak.restart
        if "redis" not in processes.started:
            processes.start_redis()
        duration = soak.elapsed()
        print("verifying every acknowledged write through the API …", flush=True)
        checks, lost = await verify(soak)
    return report(args, soak, duration, checks, lost, prefix)


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


def report(
    args: argparse.Namespace, soak: Soak, duration: float, checks: int, lost: list[str], prefix: str
) -> dict[str, Any]:
    verify_requests = soak.outcomes.pop("verify", Counter())
    total = sum(sum(c.values()) for c in soak.outcomes.values())
    errors: Counter[str] = Counter()
    for counts in soak.outcomes.values():
        errors.update({k: n for k, n in counts.items() if k != "ok"})
    rss = {}
    for name, points in soak.rss.items():
        settled = [p for p in points if p[0] >= duration * 0.25]  # after warm-up
        rss[name] = {
            "first_mb": points[0][1], "after_warmup_mb": settled[0][1] if settled else None,
            "last_mb": points[-1][1], "max_mb": max(v for _, v in points),
            "slope_after_warmup_mb_per_min": round(slope_mb_per_min(settled), 3),
        }  # fmt: skip
    return {
        "minutes": args.minutes,
        "duration_s": round(duration, 1),
        "settings": {
            "rate": args.rate,
            "write_rate": args.write_rate,
            "clients": args.clients,
            "restart_every_s": args.restart_every,
            "down_s": args.down,
            "key_prefix": prefix,
        },
        "requests": total,
        "verify_requests": sum(verify_requests.values()),
        "requests_by_op": {op: dict(c) for op, c in sorted(soak.outcomes.items())},
        "errors": dict(errors.most_common()),
        "errors_by_phase": {
            phase: {k: n for k, n in c.items() if k != "ok" and n}
            for phase, c in sorted(soak.by_phase.items())
        },
        "writes_acknowledged": dict(soak.acked),
        "writes_acknowledged_total": sum(soak.acked.values()),
        "checks": checks,
        "writes_lost": len(lost),
        "lost": lost[:100],
        "redis_restarts": soak.restarts,
        "rss_summary": rss,
        "rss_mb": {name: points for name, points in soak.rss.items()},
    }


def text(result: dict[str, Any]) -> str:
    lines = [
        f"soak: {result['duration_s']:.0f} s, {result['requests']} requests "
        f"({result['requests'] / result['duration_s']:.0f}/s), "
        f"{len(result['redis_restarts'])} Redis restarts "
        f"({', '.join(r['signal'] for r in result['redis_restarts'])})",
        "requests by operation: "
        + "; ".join(
            f"{op} {sum(c.values())} ({c.get('ok', 0)} ok)"
            for op, c in result["requests_by_op"].items()
        ),
        "errors by operation: "
        + (
            "; ".join(
                f"{op}: " + ", ".join(f"{k} {n}" for k, n in c.items() if k != "ok")
                for op, c in result["requests_by_op"].items()
                if set(c) - {"ok"}
            )
            or "none"
        ),
        "errors by phase:",
    ]
    for phase, errors in result["errors_by_phase"].items():
        shown = ", ".join(f"{k}: {n}" for k, n in sorted(errors.items(), key=lambda e: -e[1]))
        lines.append(f"  {phase}: {shown or 'none'}")
    lines.append(
        f"writes acknowledged: {result['writes_acknowledged_total']} "
        f"({', '.join(f'{k} {n}' for k, n in result['writes_acknowledged'].items())}); "
        f"checked {result['checks']} facts through the API; writes lost: {result['writes_lost']}"
    )
    lines.extend(f"  LOST: {entry}" for entry in result["lost"][:20])
    for name, s in result["rss_summary"].items():
        lines.append(
            f"RSS {name}: start {s['first_mb']:.1f} MB, after warm-up {s['after_warmup_mb']} MB, "
            f"end {s['last_mb']:.1f} MB, max {s['max_mb']:.1f} MB, "
            f"slope after warm-up {s['slope_after_warmup_mb_per_min']:+.2f} MB/min"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=200, help="executions per second")
    parser.add_argument("--write-rate", type=float, default=10, help="writes per second")
    parser.add_argument("--clients", type=int, default=16, help="concurrent execution loops")
    parser.add_argument("--flows", type=int, default=40, help="flows to keep writing to")
    parser.add_argument("--restart-every", type=float, default=30, help="seconds between restarts")
    parser.add_argument("--down", type=float, default=2, help="seconds Redis stays down")
    parser.add_argument("--progress-every", type=float, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, help="results directory (default: a new bench/out/<UTC time>/)"
    )
    args = parser.parse_args(argv)
    random.seed(args.seed)
    directory = Path(tempfile.mkdtemp(prefix="flow-router-soak-"))
    processes = Processes(directory)
    print(f"soak for {args.minutes:g} min; processes log into {directory}", flush=True)
    try:
        result = asyncio.run(run(args, processes))
    finally:
        processes.stop_all()
    results = out_dir(args.out)
    (results / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    summary = text(result)
    (results / "soak.txt").write_text(summary)
    print(summary, end="")
    print(f"wrote {results / 'soak.json'} and soak.txt", flush=True)
    return 0 if result["writes_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
