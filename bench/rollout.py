"""Rollout bench: the project's abort rule against a Flagger-style rule and an oracle.

One step at 20% canary weight, baseline failure ratio 1%, one-hour horizon, traffic
of 1, 10, 100 and 1,000 executions/s (Poisson). On the *same* simulated streams:

- ``project``: ``router.rollout.decision.decide`` called as a driver would, with the
  step's counts since its start: at every failure of either side (the only moments
  its evidence against the weight can rise) and on a 5-second tick.
- ``flagger``: Flagger's request-success-rate check, ``interval: 1m``,
  ``threshold: 5``, success floor 98% (twice the baseline failure ratio). An
  interval with no canary execution fails its check ("no values found"), and failed
  checks accumulate until the 5th rolls back, as Flagger's scheduler does.
- ``oracle``: Wald's SPRT on the canary's executions, knowing both true failure
  ratios (``H0: r = 1%`` against ``H1: r = rho * 1%``), alpha 0.01, beta 0.01: the
  statistical limit.
- ``sides`` (the comparative oracle): Wald's SPRT on which side each failure came
  from, knowing ``rho`` but not the baseline's ratio, alpha 0.01, beta 0.01: the
  limit of any rule that, like the project's, judges the canary against the
  baseline it runs beside rather than against a failure ratio known in advance.

Healthy canaries (1%) measure false rollbacks; bad ones (2x, 5x, 20x) the canary
executions and seconds until rollback. ``executions`` are canary executions with a
known outcome, the unit of the oracle.

Exactness shortcut: ``decide`` can roll back only where the step's evidence against
the weight alone reaches 1/alpha (its evidence is the smaller of that and the one
against the realised share), which for ``m`` failures means at least ``k*(m)`` canary
failures, ``k*`` computed with the router's own evidence function. The bench calls
``decide`` at exactly those checks; at every other check its verdict is "hold". A
self-check replays a sample of streams calling ``decide`` at every check and
requires the same result.

Run: ``python -m bench.rollout [--out DIR] [--quick]``. Without ``--out`` results go
to a fresh temporary directory; ``--out bench/results`` updates the committed
``rollout.json``, ``rollout.md`` and ``rollout.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._rollout_report import markdown, plot
from bench._rollout_sim import (
    ALPHA,
    BASE_RATIO,
    FLAGGER_INTERVAL,
    FLAGGER_MIN_SUCCESS,
    FLAGGER_THRESHOLD,
    HORIZON,
    MULTIPLIERS,
    ORACLE_BETA,
    RATES,
    RULES,
    SEED,
    TICK,
    WEIGHT,
    KStar,
    Outcome,
    run_cell,
)

REPO = Path(__file__).resolve().parent.parent


def quantile(values: np.ndarray, q: float) -> float | None:
    """Quantile counting rollouts never rolled back as +inf; None when it is beyond the horizon."""
    with np.errstate(invalid="ignore"):  # inf - inf while interpolating between misses
        v = float(np.quantile(values, q)) if len(values) else math.inf
    return v if math.isfinite(v) else None


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + half) / (1 + z * z / n)


def self_check(seed: int, n: int) -> dict[str, Any]:
    """The candidate filter changes nothing: replay with decide at every check."""
    checked = 0
    for rate in (1, 10):
        for mult in (1, 5):
            runs = []
            for brute in (False, True):
                rng = np.random.default_rng([seed, rate, mult, 7])
                runs.append(
                    run_cell(rng, rate, BASE_RATIO * mult, n, KStar(WEIGHT / 100, ALPHA), brute)
                )
            fast, slow = runs
            if not np.array_equal(fast.seconds["project"], slow.seconds["project"]):
                raise AssertionError(f"candidate filter differs from decide at {rate}/s, {mult}x")
            checked += n
    return {"rollouts": checked, "identical": True}


def summarise(healthy: dict[int, Outcome], bad: dict[tuple[int, int], Outcome]) -> dict[str, Any]:
    rows_h = []
    for rate, o in healthy.items():
        p = int(np.isfinite(o.seconds["project"]).sum())
        f = int(np.isfinite(o.seconds["flagger"]).sum())
        rows_h.append(
            {
                "rate": rate,
                "rollouts": o.n,
                "project_false_rollbacks": p,
                "project_rate": p / o.n,
                "project_rate_upper95": wilson_upper(p, o.n),
                "project_missing_data": 0,
                "flagger_false_rollbacks": f,
                "flagger_rate": f / o.n,
                "flagger_missing_data": int(o.flagger_nodata.sum()),
            }
        )
    rows_b = []
    for (rate, mult), o in bad.items():
        row: dict[str, Any] = {"rate": rate, "multiplier": mult, "rollouts": o.n}
        for rule in RULES:
            row[rule] = {
                "detected": float(np.isfinite(o.seconds[rule]).mean()),
                "executions_median": quantile(o.executions[rule], 0.5),
                "executions_p90": quantile(o.executions[rule], 0.9),
                "seconds_median": quantile(o.seconds[rule], 0.5),
                "seconds_p90": quantile(o.seconds[rule], 0.9),
            }
        row["oracle"]["accepted_h0"] = float(o.oracle_accepted.mean())
        pm, om = row["project"]["executions_median"], row["oracle"]["executions_median"]
        row["executions_ratio_to_oracle"] = pm / om if pm and om else None
        ps, fs = row["project"]["seconds_median"], row["flagger"]["seconds_median"]
        row["faster_than_flagger"] = ps is not None and (fs is None or ps < fs)
        rows_b.append(row)
    goals = {
        "false_rollbacks_le_alpha": all(r["project_rate"] <= ALPHA for r in rows_h),
        "none_for_missing_data": all(r["project_missing_data"] == 0 for r in rows_h),
        "ratio_5x_le_2.5": all(
            (r["executions_ratio_to_oracle"] or math.inf) <= 2.5
            for r in rows_b
            if r["multiplier"] == 5
        ),
        "ratio_20x_le_5": all(
            (r["executions_ratio_to_oracle"] or math.inf) <= 5
            for r in rows_b
            if r["multiplier"] == 20
        ),
        **{
            f"faster_than_flagger_from_10_per_s_{mult}x": all(
                r["faster_than_flagger"]
                for r in rows_b
                if r["rate"] >= 10 and r["multiplier"] == mult
            )
            for mult in MULTIPLIERS
        },
    }
    return {"healthy": rows_h, "bad": rows_b, "goals": goals}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "router/rollout"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rollout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, help="results directory (default: a fresh temp dir)")
    parser.add_argument("--rollouts", type=int, default=1000, help="healthy rollouts per rate")
    parser.add_argument("--bad-rollouts", type=int, default=500, help="bad rollouts per cell")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 and 50 rollouts")
    args = parser.parse_args(argv)
    if args.quick:
        args.rollouts, args.bad_rollouts = 100, 50
    out_dir: Path = args.out or Path(tempfile.mkdtemp(prefix="flow-router-rollout-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def progress(text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - began:6.1f} s] {text}\n")
        sys.stderr.flush()

    progress("self-check: decide at every check vs the candidate filter")
    check = self_check(args.seed, 20 if args.quick else 40)
    kstar = KStar(WEIGHT / 100, ALPHA)
    healthy: dict[int, Outcome] = {}
    bad: dict[tuple[int, int], Outcome] = {}
    for rate in RATES:
        progress(f"{rate}/s healthy x{args.rollouts}")
        healthy[rate] = run_cell(
            np.random.default_rng([args.seed, rate, 1]), rate, BASE_RATIO, args.rollouts, kstar
        )
        for mult in MULTIPLIERS:
            progress(f"{rate}/s {mult}x x{args.bad_rollouts}")
            bad[(rate, mult)] = run_cell(
                np.random.default_rng([args.seed, rate, mult]),
                rate,
                BASE_RATIO * mult,
                args.bad_rollouts,
                kstar,
            )
    summary = summarise(healthy, bad)
    meta = {
        "seed": args.seed,
        "commit": git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.platform(),
        "seconds": round(time.monotonic() - began, 1),
        "self_check": check,
        "parameters": {
            "rates": list(RATES),
            "multipliers": list(MULTIPLIERS),
            "base_ratio": BASE_RATIO,
            "weight": WEIGHT,
            "horizon_s": HORIZON,
            "tick_s": TICK,
            "alpha": ALPHA,
            "oracle_beta": ORACLE_BETA,
            "flagger": {
                "interval_s": FLAGGER_INTERVAL,
                "threshold": FLAGGER_THRESHOLD,
                "min_success": FLAGGER_MIN_SUCCESS,
            },
            "healthy_rollouts": args.rollouts,
            "bad_rollouts": args.bad_rollouts,
        },
    }
    (out_dir / "rollout.json").write_text(json.dumps({"meta": meta, **summary}, indent=2) + "\n")
    md = markdown(summary, meta)
    (out_dir / "rollout.md").write_text(md)
    plot(summary, out_dir / "rollout.png")
    sys.stdout.write(md)
    progress(f"wrote {out_dir}/rollout.json, rollout.md, rollout.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
