"""The report of bench.rollout: its markdown, its plot, and the tables
docs/rollouts-statistics.md copies (tests/test_docs_tables.py checks the copy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench._rollout_sim import (
    ALPHA,
    BASE_RATIO,
    FLAGGER_INTERVAL,
    FLAGGER_MIN_SUCCESS,
    FLAGGER_THRESHOLD,
    HORIZON,
    MULTIPLIERS,
    ORACLE_BETA,
    RULES,
    TICK,
    WEIGHT,
)


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "> 1 h" if unit == " s" else "—"
    if x >= 10:
        return f"{x:.0f}{unit}"
    return f"{x:.1f}{unit}" if x >= 1 else f"{x:.2g}{unit}"


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Rollout bench",
        "",
        f"Canary at {WEIGHT}% weight, baseline failure ratio {BASE_RATIO:.0%}, one step held "
        f"for {HORIZON} s, alpha {ALPHA}; project rule checked at every failure and every "
        f"{TICK} s; Flagger-style: success ≥ {FLAGGER_MIN_SUCCESS:.0%} per "
        f"{FLAGGER_INTERVAL} s, rollback at {FLAGGER_THRESHOLD} failed checks; oracle: "
        f"Wald SPRT knowing both ratios (alpha {ALPHA}, beta {ORACLE_BETA}); comparative "
        "oracle: Wald SPRT on which side each failure came from, knowing the canary's "
        "ratio to the baseline's but not the baseline's. "
        f"Seed {meta['seed']}, commit {meta['commit']}.",
        "",
        "## Healthy canary (1%): false rollbacks",
        "",
        "| executions/s | rollouts | project | (95% upper) | from missing data | Flagger-style "
        "| from missing data |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary["healthy"]:
        lines.append(
            f"| {r['rate']} | {r['rollouts']} | {r['project_false_rollbacks']} "
            f"({r['project_rate']:.1%}) | {r['project_rate_upper95']:.1%} "
            f"| {r['project_missing_data']} | {r['flagger_false_rollbacks']} "
            f"({r['flagger_rate']:.0%}) | {r['flagger_missing_data']} |"
        )
    lines += [
        "",
        "## Bad canary: canary executions and seconds until rollback (median / p90)",
        "",
        "| failure ratio | executions/s | project: executions | project: s "
        "| Flagger-style: executions | Flagger-style: s | oracle: executions | oracle: s "
        "| comparative oracle: executions | comparative oracle: s "
        "| project / oracle executions "
        "| rolled back within 1 h (project / Flagger / oracle / comparative) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rules = RULES
    for r in sorted(summary["bad"], key=lambda r: (r["multiplier"], r["rate"])):
        ratio = r["executions_ratio_to_oracle"]
        mult = r["multiplier"]
        cells = [f"{mult}× ({mult * BASE_RATIO:.0%})", str(r["rate"])]  # noqa: RUF001
        for rule in rules:
            x = r[rule]
            cells.append(f"{_fmt(x['executions_median'])} / {_fmt(x['executions_p90'])}")
            cells.append(f"{_fmt(x['seconds_median'], ' s')} / {_fmt(x['seconds_p90'], ' s')}")
        cells.append("—" if ratio is None else f"{ratio:.2f}×")  # noqa: RUF001
        cells.append(" / ".join(f"{r[rule]['detected']:.0%}" for rule in rules))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        '"> 1 h" (seconds) and "—" (executions): that quantile of the rollouts was not '
        "rolled back within the horizon.",
        "",
        "Goals: " + ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in summary["goals"].items()),
        "",
    ]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MULTIPLIERS), figsize=(5 * len(MULTIPLIERS), 4), sharey=True)
    styles = {
        "project": ("C0", "project e-process"),
        "flagger": ("C3", "Flagger-style"),
        "oracle": ("C2", "SPRT oracle"),
        "sides": ("C1", "comparative oracle"),
    }
    for ax, mult in zip(axes, MULTIPLIERS, strict=True):
        rows = sorted(
            (r for r in summary["bad"] if r["multiplier"] == mult), key=lambda r: r["rate"]
        )
        for rule, (colour, label) in styles.items():
            xs, med, p90 = [], [], []
            for r in rows:
                m, q = r[rule]["seconds_median"], r[rule]["seconds_p90"]
                xs.append(r["rate"])
                med.append(m if m is not None else np.nan)
                p90.append(q if q is not None else HORIZON)
            ax.plot(xs, med, "o-", color=colour, label=f"{label} (median)")
            ax.plot(xs, p90, ":", color=colour, alpha=0.7)
        ax.axhline(HORIZON, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"canary failure {mult}x baseline ({mult * BASE_RATIO:.0%})")
        ax.set_xlabel("executions/s (canary 20%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds to rollback (dotted: p90; dashed: 1 h horizon)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pair(x: dict[str, Any], what: str) -> str:
    """``median / p90`` without units; a median past the horizon says how many were caught."""
    median, p90 = x[f"{what}_median"], x[f"{what}_p90"]
    if median is None:
        return "—" if what == "executions" else f"> 1 h ({x['detected']:.0%} caught)"
    return f"{_fmt(median)} / {_fmt(p90) if p90 is not None else '> 1 h'}"


def docs_tables(summary: dict[str, Any]) -> str:
    """The two tables of docs/rollouts-statistics.md, from a summary (rollout.json)."""
    lines = [
        "| executions/s | healthy canary: false rollbacks, project | (95% upper bound) "
        "| from missing data | Flagger-style |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary["healthy"]:
        flagger = r["flagger_false_rollbacks"]
        flagger_cell = f"{flagger} ({flagger / r['rollouts']:.0%})" if flagger else "0"
        lines.append(
            f"| {r['rate']} | {r['project_false_rollbacks']} / {r['rollouts']} "
            f"({r['project_rate']:.1%}) | {r['project_rate_upper95']:.1%} "
            f"| {r['project_missing_data']} "
            f"| {flagger_cell} |"
        )
    lines += [
        "",
        "| canary failure ratio | executions/s | project: executions | project: s "
        "| Flagger-style: s | oracle: executions | oracle: s | comparative oracle: s "
        "| project / oracle |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(summary["bad"], key=lambda r: (r["multiplier"], r["rate"])):
        mult, ratio = r["multiplier"], r["executions_ratio_to_oracle"]
        cells = [
            f"{mult}× ({mult * BASE_RATIO:.0%})",  # noqa: RUF001
            str(r["rate"]),
            _pair(r["project"], "executions"),
            _pair(r["project"], "seconds"),
            _pair(r["flagger"], "seconds"),
            _pair(r["oracle"], "executions"),
            _pair(r["oracle"], "seconds"),
            _pair(r["sides"], "seconds"),
            "—" if ratio is None else f"{ratio:.2f}×",  # noqa: RUF001
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
