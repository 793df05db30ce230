"""Numbers from the gateway bench's raw runs: medians, ratios, the goals (bench/README.md)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench._targets import BARE, DIRECT, ROUTERS
from bench._util import NOISY_CORES


def summary(values: list[float]) -> dict[str, float] | None:
    """p50, p99 (nearest rank) and max of a small sample."""
    if not values:
        return None
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q / 100) - 1))]

    return {"p50": pct(50), "p99": pct(99), "max": ordered[-1], "count": len(ordered)}


METRICS = ("rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_target: dict[str, list[dict[str, Any]]] = {}
    for r in rounds:
        for key, run in r["runs"].items():
            if "rps" in run:
                per_target.setdefault(key, []).append(run)
    out: dict[str, Any] = {}
    for key, runs in per_target.items():
        row: dict[str, Any] = {m: statistics.median(run[m] for run in runs) for m in METRICS}
        row["rounds"] = len(runs)
        row["rps_min"] = min(run["rps"] for run in runs)
        row["rps_max"] = max(run["rps"] for run in runs)
        row["non_2xx_total"] = sum(run["non_2xx"] for run in runs)
        row["socket_errors_total"] = sum(sum(run["socket_errors"].values()) for run in runs)
        cores = {k for run in runs for k in run["cpu_cores"]}
        row["cpu_cores"] = {
            k: statistics.median(run["cpu_cores"].get(k, 0.0) for run in runs)
            for k in sorted(cores)
        }
        own = row["cpu_cores"].get("target", 0.0)
        row["rps_per_target_core"] = row["rps"] / own if own > 0.05 else None
        out[key] = row
    return out


def ratios(med: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, row in med.items():
        entry: dict[str, Any] = {}
        for base in (BARE, DIRECT, "nginx-split"):
            if base in med and med[base]["rps"]:
                entry[f"rps_vs_{base}"] = row["rps"] / med[base]["rps"]
        split_core = med.get("nginx-split", {}).get("rps_per_target_core")
        if split_core and row.get("rps_per_target_core"):
            entry["per_core_vs_nginx-split"] = row["rps_per_target_core"] / split_core
        out[key] = entry
    return out


def goals(
    med: dict[str, Any], rat: dict[str, Any], results: dict[str, Any]
) -> list[dict[str, Any]]:
    """The goals (bench/README.md): what was measured, and whether it is met (None: not measured).

    They are set for flow-router on Redis; when that target could not run, the
    throughput and latency goals are shown for the memory store instead, and say so.
    """
    router = next((k for k in ROUTERS if k in med), ROUTERS[0])
    r = rat.get(router, {})
    loop = results.get("open_loop", {}).get("added_p99_ms_vs_direct", {})
    sent = results.get("redis_commands", {}).get("client_commands_per_request")
    prop = results.get("propagation", {})
    prop_p99 = (prop.get("delay_ms") or {}).get("p99")
    prop_ok = (
        None
        if "skipped" in prop
        else (prop.get("outcome") == "ok" and prop_p99 is not None and prop_p99 <= 100)
    )

    def goal(text: str, measured: Any, met: bool | None, other: float = 0.0) -> dict[str, Any]:
        out = {"goal": text, "measured": measured, "met": met}
        if other > NOISY_CORES:
            out["noisy"] = f"other processes took up to {other:.2f} cores meanwhile"
        return out

    loop_other = max(
        (res.get("cpu_cores", {}).get("other", 0.0)
         for key, res in results.get("open_loop", {}).get("results", {}).items()
         if key in (DIRECT, router)),
        default=0.0,
    )  # fmt: skip
    closed_other = max(
        (med[k]["cpu_cores"].get("other", 0.0) for k in (BARE, router, "nginx-split") if k in med),
        default=0.0,
    )

    def at_least(value: float | None, bound: float) -> bool | None:
        return None if value is None else value >= bound

    return [
        goal(
            f"must: {router} >= 0.9x bare aiohttp req/s",
            r.get(f"rps_vs_{BARE}"),
            at_least(r.get(f"rps_vs_{BARE}"), 0.9),
            closed_other,
        ),
        goal(
            f"must: {router} p99 added latency <= 1 ms at 50% of peak (open loop, vs direct)",
            loop.get(router),
            None if loop.get(router) is None else loop[router] <= 1.0,
            loop_other,
        ),
        goal(
            f"stretch: {router} >= 2x bare aiohttp req/s",
            r.get(f"rps_vs_{BARE}"),
            at_least(r.get(f"rps_vs_{BARE}"), 2.0),
            closed_other,
        ),
        goal(
            f"stretch: {router} >= 0.3x nginx split_clients req/s per core",
            r.get("per_core_vs_nginx-split"),
            at_least(r.get("per_core_vs_nginx-split"), 0.3),
            closed_other,
        ),
        goal(
            "~0 Redis round trips per routed request (commands sent, steady state; <= 0.02)",
            sent,
            None if sent is None else sent <= 0.02,
        ),
        goal(
            "UpdateFlowAlias visible on another replica <= 100 ms p99",
            prop_p99 if prop.get("outcome") == "ok" else prop.get("outcome", prop.get("skipped")),
            prop_ok,
        ),
    ]
