"""The gateway bench's report: Markdown table, PNG chart, JSON file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench._util import write_json


def _f(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "unknown"


def header(data: dict[str, Any]) -> list[str]:
    m = data["machine"]
    s = data["settings"]
    r = data["router"]
    dirty = (
        f" + uncommitted changes in router/ (files sha1 {r['router_sha1'][:10]})"
        if r.get("router_dirty")
        else ""
    )
    load = m.get("loadavg_before")
    return [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']}, aiohttp {m['aiohttp']}, uvloop {m['uvloop']}, "
        f"{m['nginx']}, {m['wrk']}, {m['redis-server']}; "
        f"flow-router {_short(r.get('commit'))}{dirty}; {data['started']}"
        + (f"; load average before the run {load[0]:.2f}." if load else "."),
        "",
        f"Load: `{s['wrk']}`, {s['rounds']} interleaved round(s), median shown; "
        f"flow-router args `{' '.join(s['gateway_args']) or '(none)'}`. "
        "wrk, the target and the executor share the machine's cores (nothing pinned).",
    ]


def closed_loop_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "| target | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | x bare aiohttp | x direct "
        "| target CPU (cores) | wrk CPU | other load (cores) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    med, rat = data["medians"], data["ratios"]
    for key, target in data["targets"].items():
        if key not in med:
            reason = (target.get("reason") or "no result").splitlines()[0][:160]
            lines.append(f"| {key} | not measured: {reason} | | | | | | | | | |")
            continue
        row, r = med[key], rat.get(key, {})
        cpu = row["cpu_cores"]
        errors = row["non_2xx_total"] + row["socket_errors_total"]
        lines.append(
            f"| {key} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['p999_ms']:.2f} | {errors} | {_f(r.get('rps_vs_bare-aiohttp'))} "
            f"| {_f(r.get('rps_vs_direct'), 3)} | {_f(cpu.get('target'))} | {_f(cpu.get('wrk'))} "
            f"| {_f(cpu.get('other'))} |"
        )
    return lines


def open_loop_table(data: dict[str, Any]) -> list[str]:
    loop = data.get("open_loop", {})
    if "skipped" in loop or not loop:
        return [f"Open loop: skipped ({loop.get('skipped', 'not run')})."]
    lines = [
        f"Open loop at a constant {loop['rate']:,} req/s ({loop['rate_basis']}), "
        f"{loop['duration_s']:g} s, latency from each request's release "
        "by the scheduler (`bench/openloop.py`):",
        "",
        "| target | achieved req/s | p50 ms | p99 ms | p99.9 ms | added p99 vs direct "
        "| added p99 vs bare | non-2xx + errors | queue wait p99 ms | generator CPU "
        "| other load (cores) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    vs_direct = loop.get("added_p99_ms_vs_direct", {})
    vs_bare = loop.get("added_p99_ms_vs_bare-aiohttp", {})
    for key, res in loop["results"].items():
        if "latency_ms" not in res:
            lines.append(f"| {key} | failed | | | | | | | | | |")
            continue
        lat = res["latency_ms"]
        lines.append(
            f"| {key} | {res['achieved_rate']:,.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} "
            f"| {lat['p99.9']:.2f} | {_f(vs_direct.get(key), suffix=' ms')} "
            f"| {_f(vs_bare.get(key), suffix=' ms')} | {res['non_2xx'] + res['errors']} "
            f"| {res['queue_wait_ms']['p99']:.2f} | {_f(res.get('generator_cpu_cores'))} "
            f"| {_f(res.get('cpu_cores', {}).get('other'))} |"
        )
    return lines


def side_measurements(data: dict[str, Any]) -> list[str]:
    cmds = data.get("redis_commands", {})
    if "skipped" in cmds:
        redis_line = f"Redis commands per routed request: not measured ({cmds['skipped']})."
    else:
        per = ", ".join(f"{k} {v}" for k, v in sorted(cmds["by_command_during_load"].items()))
        sent = cmds.get("client_commands_per_request")
        sent_per = ", ".join(
            f"{k} {v}" for k, v in sorted(cmds.get("client_commands_during_load", {}).items())
        )
        redis_line = (
            f"Redis commands sent per routed request (MONITOR; a script's own commands run "
            f"inside Redis and are not sent): **{sent if sent is None else f'{sent:.4f}'}** "
            f"(during load: {sent_per or 'none'}). "
            f"Redis commands executed per routed request, script internals included: "
            f"**{cmds['commands_per_request']:.3f}** "
            f"({cmds['commands']:,} commands over {cmds['requests']:,} requests; background "
            f"{cmds['background_commands_per_s']:.1f}/s subtracted; during load: {per or 'none'})."
        )
    prop = data.get("propagation", {})
    if "skipped" in prop:
        prop_line = (
            f"UpdateFlowAlias propagation to a second replica: not measured ({prop['skipped']})."
        )
    else:
        d = prop.get("delay_ms")
        timing = (
            f"p50 {d['p50']:.1f} ms, p99 {d['p99']:.1f} ms, max {d['max']:.1f} ms "
            f"over {d['count']} flips"
            if d
            else "no flip propagated"
        )
        outcome = "" if prop["outcome"] == "ok" else f"; **{prop['outcome']}**"
        prop_line = f"UpdateFlowAlias propagation to a second replica: {timing}{outcome}."
    return [redis_line, "", prop_line]


def goals_table(data: dict[str, Any]) -> list[str]:
    lines = ["| goal | measured | met |", "| --- | --- | --- |"]
    for g in data.get("goals", []):
        measured = g["measured"]
        shown = f"{measured:.3f}" if isinstance(measured, float) else _f(measured)
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        if g.get("noisy"):
            met += f" (noisy run: {g['noisy']})"
        lines.append(f"| {g['goal']} | {shown} | {met} |")
    return lines


def split_line(data: dict[str, Any]) -> str:
    parts = []
    for key, t in data["targets"].items():
        check = t.get("split_check")
        if check:
            failed = {v: n for v, n in check["versions"].items() if v.startswith("HTTP")}
            errors = f" (**{', '.join(f'{n} answered {v}' for v, n in failed.items())}**)"
            parts.append(
                f"{key} {check['share_v1']:.0%} v1 of {check['requests']}{errors if failed else ''}"
            )
    return "Split check before load (share of version 1, configured 30%): " + "; ".join(parts) + "."


def other_load(data: dict[str, Any]) -> float:
    """The most CPU that processes the bench did not start took during any load run."""
    runs = [run for r in data["rounds"] for run in r["runs"].values() if "cpu_cores" in run]
    runs += [res for res in data.get("open_loop", {}).get("results", {}).values()
             if "cpu_cores" in res]  # fmt: skip
    return max((run["cpu_cores"].get("other", 0.0) for run in runs), default=0.0)


def markdown(data: dict[str, Any]) -> str:
    lines = ["### Gateway bench", "", *header(data), "", *closed_loop_table(data), ""]
    busy = other_load(data)
    if busy > 0.25:
        lines += [
            f"**Noisy run:** other processes used up to {busy:.2f} cores during a load run "
            "(column *other load*); compare targets within this run only.",
            "",
        ]
    lines += [split_line(data), "", *open_loop_table(data), "", *side_measurements(data), ""]
    lines += goals_table(data)
    notes = data.get("notes", [])
    if notes:
        lines += ["", *[f"Note: {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = data["medians"]
    keys = [k for k in data["targets"] if k in med]
    if not keys:
        return
    rps = [med[k]["rps"] for k in keys]
    low = [med[k]["rps"] - med[k]["rps_min"] for k in keys]
    high = [med[k]["rps_max"] - med[k]["rps"] for k in keys]
    fig, (bars, lat) = plt.subplots(1, 2, figsize=(14, 5.5))
    colors = [
        "#7f7f7f"
        if k == "direct"
        else "#1f77b4"
        if k.startswith("flow-router")
        else "#2ca02c"
        if k == "nginx-split"
        else "#ff7f0e"
        for k in keys
    ]
    drawn = bars.bar(keys, rps, yerr=[low, high], capsize=4, color=colors)
    for rect, k in zip(drawn, keys, strict=True):
        bars.annotate(
            f"{med[k]['rps']:,.0f}/s\np99 {med[k]['p99_ms']:.2f} ms",
            (rect.get_x() + rect.get_width() / 2, rect.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 3),
            textcoords="offset points",
        )
    bars.set_yscale("log")
    bars.set_ylim(bottom=10 ** math.floor(math.log10(min(rps) * 0.5)), top=max(rps) * 2)
    bars.set_ylabel("req/s (median over rounds, log scale; bars: min-max)")
    bars.set_title("throughput, wrk closed loop")
    bars.tick_params(axis="x", rotation=25)
    width = 0.27
    for i, (metric, label) in enumerate(
        (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
    ):
        xs = [j + (i - 1) * width for j in range(len(keys))]
        lat.bar(xs, [med[k][metric] for k in keys], width, label=label)
    lat.set_xticks(range(len(keys)), keys, rotation=25)
    lat.set_yscale("log")
    lat.set_ylabel("latency, ms (log scale)")
    lat.set_title("latency under the same closed-loop load")
    lat.legend()
    m = data["machine"]
    fig.suptitle(
        f"flow-router gateway bench · {m['cpu_model']}, {m['cores']} cores · "
        f"{data['settings']['wrk'].split(' --latency')[0]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "gateway.json", data)
    plot(data, out_dir / "gateway.png")
    (out_dir / "gateway.md").write_text(markdown(data))
