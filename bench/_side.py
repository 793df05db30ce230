"""The gateway bench's side measurements, after the closed-loop rounds.

(i) latency at a constant 50 % of flow-router's peak rate (open loop),
(ii) Redis commands per routed request, (iii) UpdateFlowAlias propagation
from one replica to another on the same Redis.
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from bench import _api
from bench._analysis import summary
from bench._services import CpuWatch, ServiceError
from bench._targets import BARE, DIRECT, ROUTERS, Bench
from bench._util import BENCH_DIR, free_port, quietest, retry_note


def open_loop_once(bench: Bench, key: str, rate: int) -> dict[str, Any]:
    """One bench.openloop run against one target, with the CPU use around it."""
    target, opts = bench.targets[key], bench.opts
    command = [sys.executable, "-m", "bench.openloop", "--url", target.url, "--rate", str(rate),
               "--duration", f"{opts.open_loop_s:g}", "--warmup", "1",
               "--connections", str(opts.connections)]  # fmt: skip
    watched = {"target": target.proc, "executor": bench.executor}
    if key == DIRECT:
        del watched["executor"]
    if key == "flow-router-redis":
        watched["redis"] = bench.redis
    with CpuWatch(watched, child="generator") as cpu:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=opts.open_loop_s + 60,
            cwd=BENCH_DIR.parent,
        )
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": done.stderr[-500:]}
    result["cpu_cores"] = cpu.cores()
    return result


def open_loop(bench: Bench, medians: dict[str, Any]) -> dict[str, Any]:
    """Latency at a constant 50 % of flow-router's peak, interleaved over rounds like wrk's.

    Per target the median over rounds of each percentile is reported; a round that ran
    while other processes took CPU shows it in ``cpu_cores.other``.
    """
    router = next((k for k in ROUTERS if k in medians and medians[k].get("rps")), None)
    if router is None:
        return {"skipped": "no flow-router target was measured"}
    opts = bench.opts
    rate = round(medians[router]["rps"] * 0.5)
    keys = [k for k in (DIRECT, BARE, *reversed(ROUTERS)) if k in medians]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    for r in range(1, opts.open_loop_rounds + 1):
        for key in keys:
            bench.progress.show(
                f"open loop round {r}/{opts.open_loop_rounds} · {key} at {rate} req/s "
                f"for {opts.open_loop_s:g}s",
                force=True,
            )
            runs[key].append(
                quietest(
                    functools.partial(open_loop_once, bench, key, rate),
                    opts.noisy_retries,
                    retry_note(bench.progress, f"open loop round {r} · {key}"),
                )
            )
            bench.progress.advance(opts.open_loop_s + 1.5)
    results: dict[str, Any] = {}
    for key, rounds in runs.items():
        good = [run for run in rounds if "latency_ms" in run]
        if not good:
            results[key] = {"error": rounds[-1].get("error", "no result"), "rounds": rounds}
            continue
        results[key] = {
            "latency_ms": {
                q: statistics.median(run["latency_ms"][q] for run in good)
                for q in ("p50", "p90", "p99", "p99.9", "max")
            },
            "achieved_rate": statistics.median(run["achieved_rate"] for run in good),
            "non_2xx": sum(run["non_2xx"] for run in good),
            "errors": sum(run["errors"] for run in good),
            "queue_wait_ms": {
                "p99": statistics.median(run["queue_wait_ms"]["p99"] for run in good)
            },
            "generator_cpu_cores": statistics.median(run["generator_cpu_cores"] for run in good),
            "cpu_cores": {"other": max(run["cpu_cores"].get("other", 0.0) for run in good)},
            "rounds": rounds,
        }
    p99 = {k: v["latency_ms"]["p99"] for k, v in results.items() if "latency_ms" in v}
    out: dict[str, Any] = {
        "method": "bench.openloop: constant-rate open-loop generator (asyncio streams, "
        "keep-alive pool), latency from each request's release by the scheduler; the same "
        "rate for every target; targets interleaved over rounds, median over rounds",
        "rate": rate,
        "rate_basis": f"50% of {router} median peak req/s",
        "duration_s": opts.open_loop_s,
        "rounds": opts.open_loop_rounds,
        "results": results,
        "p99_ms": p99,
    }
    for base in (DIRECT, BARE):
        if base in p99:
            out[f"added_p99_ms_vs_{base}"] = {k: v - p99[base] for k, v in p99.items() if k != base}
    return out


# -- (ii) Redis commands per routed request ------------------------------------------------


class _ClientCommands:
    """Counts the commands clients send (MONITOR, script-internal ones left out) while
    the ``with`` block runs, from a thread of its own."""

    def __init__(self, port: int) -> None:
        import redis

        self._client = redis.Redis(host="127.0.0.1", port=port)
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _watch(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for entry in monitor.listen():
                if self._stop.is_set():
                    return
                if entry.get("client_type") != "lua":
                    name = str(entry.get("command", "")).split(" ", 1)[0].lower()
                    if name not in ("info", "monitor"):
                        self.counts[name] += 1

    def __enter__(self) -> _ClientCommands:
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._client.ping()  # one more line, so the watcher sees the stop flag
        self._thread.join(5)
        self._client.close()


def redis_commands(bench: Bench) -> dict[str, Any]:
    target = bench.targets.get("flow-router-redis")
    if target is None or not target.available or bench.redis is None:
        return {"skipped": "flow-router-redis is not available"}
    import redis

    client = redis.Redis(host="127.0.0.1", port=bench.redis.port)

    def snapshot() -> Counter[str]:
        stats = client.info("commandstats")
        return Counter(
            {
                k.removeprefix("cmdstat_"): int(v["calls"])
                for k, v in stats.items()
                if k != "cmdstat_info"
            }
        )

    try:
        bench.progress.show(f"redis commands · idle {bench.opts.redis_idle_s:g}s", force=True)
        a = snapshot()
        t0 = time.monotonic()
        with _ClientCommands(bench.redis.port) as idle_sent:
            time.sleep(bench.opts.redis_idle_s)
        b = snapshot()
        idle_s = time.monotonic() - t0
        bench.progress.show(f"redis commands · wrk {bench.opts.redis_load_s:g}s", force=True)
        t1 = time.monotonic()
        with _ClientCommands(bench.redis.port) as load_sent:
            run = bench.wrk(target, bench.opts.redis_load_s)
        c = snapshot()
        load_s = time.monotonic() - t1
    finally:
        client.close()
    idle, load = b - a, c - b
    background_per_s = sum(idle.values()) / idle_s
    requests = run["requests"]
    total = sum(load.values())
    bench.progress.advance(bench.opts.redis_idle_s + bench.opts.redis_load_s + 1)
    return {
        "method": "INFO commandstats before/after an idle window and a wrk run "
        "(INFO itself excluded); per request = (commands - background rate x window) "
        "/ requests",
        "requests": requests,
        "commands": total,
        "commands_per_request_raw": total / requests if requests else None,
        "background_commands_per_s": background_per_s,
        # background noise can push the difference a hair below zero
        "commands_per_request": max(0.0, (total - background_per_s * load_s) / requests)
        if requests
        else None,
        # What the gateway sent, as MONITOR shows it: commands a script runs inside
        # Redis are not sent, and a pipeline of these is one round trip.
        "client_commands_per_request": max(
            0.0, (load_sent.total - idle_sent.total / idle_s * load_s) / requests
        )
        if requests
        else None,
        "client_commands_during_load": dict(load_sent.counts),
        "by_command_during_load": dict(load),
        "by_command_idle": dict(idle),
        "idle_window_s": idle_s,
        "load_window_s": load_s,
        "non_2xx": run["non_2xx"],
    }


# -- (iii) propagation ------------------------------------------------------------------


def propagation(bench: Bench) -> dict[str, Any]:
    target = bench.targets.get("flow-router-redis")
    if target is None or not target.available or target.proc is None or bench.redis is None:
        return {"skipped": "flow-router-redis is not available"}
    opts = bench.opts
    a_port = target.proc.port
    b_port = free_port()
    upstream = target.proc.command[target.proc.command.index("--upstream") + 1]
    store = f"redis://127.0.0.1:{bench.redis.port}/0"
    bench.progress.show("propagation · starting replica B", force=True)
    try:
        replica = bench.services.gateway(
            "flow-router-redis-b", b_port, store, upstream, bench.gateway_extra
        )
    except ServiceError as e:
        return {"skipped": f"replica B did not start: {e}"}
    flow, alias = "fprop", "flip"
    body = f"FlowName={flow}&Qualifier={alias}&Input=%7B%7D"
    poll, update = _api.KeepAlive(b_port), _api.KeepAlive(a_port)
    timeout = opts.propagation_timeout_s
    delays: list[float] = []
    acked: list[float] = []
    outcome = "ok"
    try:
        _api.setup_flow(a_port, flow, alias, {"1": 100, "2": 0})

        def seen_on_b() -> str | None:
            status, headers, _ = poll.post(_api.action_path("StartExecution"), body)
            return headers.get("x-flow-version") if status == 200 else None

        deadline = time.monotonic() + timeout
        while seen_on_b() != "1":  # B loads the alias cold, once, then caches it
            if time.monotonic() > deadline:
                return {"skipped": f"replica B never routed {flow}/{alias} to version 1"}
            time.sleep(0.01)
        current = "1"
        budget_end = time.monotonic() + opts.propagation_budget_s
        for attempt in range(1, opts.propagation_attempts + 1):
            if time.monotonic() > budget_end:
                outcome = f"stopped after {attempt - 1} attempts (time budget)"
                break
            bench.progress.show(f"propagation · flip {attempt}/{opts.propagation_attempts}")
            new = "2" if current == "1" else "1"
            weights = {"1": 100 if new == "1" else 0, "2": 100 if new == "2" else 0}
            params = f"FlowName={flow}&Name={alias}&RoutingConfigurations=" + quote(
                _api.routing(weights), safe=""
            )
            t0 = time.perf_counter()
            status, _, answer = update.post(_api.action_path("UpdateFlowAlias"), params)
            t_ack = time.perf_counter()
            if status != 200:
                outcome = f"UpdateFlowAlias failed: HTTP {status} {answer[:200]!r}"
                break
            while seen_on_b() != new:
                if time.perf_counter() - t0 > timeout:
                    break
            else:
                t_seen = time.perf_counter()
                delays.append((t_seen - t0) * 1000)
                acked.append(max(0.0, t_seen - t_ack) * 1000)
                current = new
                time.sleep(0.02)
                continue
            # B's state is unknown from here on: flipping back would look instant.
            outcome = f"not propagated within {timeout:g} s (attempt {attempt})"
            break
    finally:
        poll.close()
        update.close()
        bench.services.stop(replica)
    bench.progress.advance(min(opts.propagation_budget_s, opts.propagation_attempts * 0.1))
    return {
        "method": "replica A (flow-router-redis) and replica B on the same Redis; "
        "UpdateFlowAlias on A flips alias between 100/0 and 0/100; B is polled with "
        "StartExecution (keep-alive) until X-Flow-Version shows the new version; delay "
        "from sending the update to B's first answer with it",
        "attempts": len(delays) + (0 if outcome == "ok" or "budget" in outcome else 1),
        "propagated": len(delays),
        "outcome": outcome,
        "timeout_s": timeout,
        "delay_ms": summary(delays),
        "delay_after_ack_ms": summary(acked),
        "raw_delay_ms": delays,
    }
