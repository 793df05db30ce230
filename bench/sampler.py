"""Sampler bench: ns per weighted sample and table build time, N = 2 … 10⁴.

Compares the gateway's alias table (``router.sampler.AliasTable.sample`` and, when
present, ``router.routing.CompiledAlias.pick``) with ``random.choices``, ``bisect``
over cumulative weights, a linear scan and numpy's per-call ``Generator.choice``,
against the reference cost of one ``random.random()`` call plus a list index.

Every figure is the minimum over repeats of a ``timeit`` loop of many calls
(the statement is compiled into the loop, the garbage collector is off), so it
is the cost on a quiet core, loop overhead included for every method alike.

Run: ``python -m bench.sampler [--quick]``. Writes ``bench/results/sampler.json``
and ``bench/results/sampler.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import bisect
import importlib
import itertools
import random
import time
import timeit
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._util import OUT_ROOT, Progress, git_commit, machine_info, out_dir, write_json

SIZES = (2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10000)
SEED = 20240404
MAX_WEIGHT = 1000
TARGET_RATIO = 1.5  # the goal (bench/README.md): <= 1.5x the reference, flat over N


@dataclass(frozen=True, slots=True)
class Method:
    key: str
    label: str
    stmt: str  # timed statement; names come from the per-N namespace
    build: str | None  # statement that builds the method's table, None if nothing to build


CUMSUM = "list(accumulate(weights))"

METHODS: tuple[Method, ...] = (
    Method("reference", "random() + list index", "lst[int(r() * n)]", None),
    Method("alias", "AliasTable.sample(random())", "table.sample(r())", "AliasTable(weights)"),
    Method("pick", "CompiledAlias.pick(random())", "compiled.pick(r())", "make_compiled(weights)"),
    Method("bisect", "bisect over cum. weights", "pop[bisect_right(cw, r() * total)]", CUMSUM),
    Method(
        "choices_cum",
        "random.choices(cum_weights=)",
        "choices(pop, cum_weights=cw)[0]",
        CUMSUM,
    ),
    Method("choices", "random.choices(weights)", "choices(pop, weights)[0]", None),
    Method("linear", "linear scan", "linear(r())", CUMSUM),
    Method("numpy", "numpy Generator.choice(n, p=p)", "gen.choice(n, p=p)", "make_p(weights)"),
    Method(
        "keyed",
        "KeyedTable.sample_key(key) (sticky)",
        "keyed.sample_key(key)",
        "KeyedTable(weights)",
    ),
)


def make_linear(cw: Sequence[int], total: int) -> Callable[[float], int]:
    last = len(cw) - 1

    def linear(u: float) -> int:
        x = u * total
        for i, c in enumerate(cw):
            if x < c:
                return i
        return last

    return linear


def compiled_factory() -> tuple[Callable[[list[int]], Any] | None, str]:
    """A builder for ``router.routing.CompiledAlias`` if it exists, else the reason why not.

    The class is built from real model values when the model allows it, otherwise
    from stand-ins with the attributes it reads (the lead is reshaping it).
    """
    try:
        routing = importlib.import_module("router.routing")
        model = importlib.import_module("router.model")
    except Exception as e:  # any import failure just means: not measurable here
        return None, f"router.routing not importable: {type(e).__name__}: {e}"
    cls = getattr(routing, "CompiledAlias", None)
    if cls is None or not (hasattr(cls, "pick") or "pick" in getattr(cls, "__slots__", ())):
        return None, "router.routing.CompiledAlias.pick does not exist"

    def real(weights: list[int]) -> Any:
        flow = model.Flow(id="bench", name="bench", definition="")
        routes = tuple(model.Route(i + 1, w) for i, w in enumerate(weights))
        alias = model.Alias(flow_id="bench", id="alias", name="prod", routes=routes)
        return cls(flow, alias)

    def stand_in(weights: list[int]) -> Any:
        flow = types.SimpleNamespace(id="bench", name="bench")
        routes = tuple(
            types.SimpleNamespace(version=i + 1, weight=w) for i, w in enumerate(weights)
        )
        alias = types.SimpleNamespace(
            id="alias", name="prod", routes=routes, revision=1, flow_id="bench"
        )
        return cls(flow, alias)

    for builder, how in ((real, "model values"), (stand_in, "stand-in values")):
        try:
            builder([1, 2]).pick(0.5)
        except Exception:  # a signature we do not know: try the next way
            continue
        return builder, f"built from {how}"
    return None, "CompiledAlias exists but could not be built (unknown constructor)"


def namespace(weights: list[int], compiled: Callable[[list[int]], Any] | None) -> dict[str, Any]:
    import numpy as np

    from router.sampler import AliasTable

    n = len(weights)
    cw = list(itertools.accumulate(weights))
    total = cw[-1]
    ns: dict[str, Any] = {
        "r": random.random,
        "n": n,
        "lst": list(range(n)),
        "pop": list(range(n)),
        "weights": weights,
        "cw": cw,
        "total": total,
        "choices": random.choices,
        "bisect_right": bisect.bisect_right,
        "accumulate": itertools.accumulate,
        "AliasTable": AliasTable,
        "table": AliasTable(weights),
        "linear": make_linear(cw, total),
        "gen": np.random.default_rng(SEED),
        "np": np,
        "key": b"user-4711",
    }
    p = np.asarray(weights, dtype=np.float64)
    ns["p"] = p / p.sum()
    ns["make_p"] = lambda w: (lambda a: a / a.sum())(np.asarray(w, dtype=np.float64))
    if compiled is not None:
        ns["make_compiled"] = compiled
        ns["compiled"] = compiled(weights)
    keyed_cls = getattr(importlib.import_module("router.sampler"), "KeyedTable", None)
    if keyed_cls is not None:
        ns["KeyedTable"] = keyed_cls
        ns["keyed"] = keyed_cls(weights)
    return ns


def available(method: Method, ns: dict[str, Any]) -> bool:
    needs = {"pick": "compiled", "keyed": "keyed"}.get(method.key)
    return needs is None or needs in ns


@dataclass
class Cell:
    """One timed statement: a timer, its loop count, and the best time per call so far."""

    timer: timeit.Timer
    number: int = 0
    best: float = float("inf")

    def calibrate(self, min_time: float) -> None:
        """Pick the loop count that makes one repeat last about ``min_time``."""
        number = 1
        while True:
            elapsed = self.timer.timeit(number)
            if elapsed >= min_time / 5:
                break
            number *= 10
        self.number = max(1, int(number * min_time / elapsed))

    def repeat(self) -> None:
        self.timer.timeit(max(1, self.number // 20))  # warm the caches the last cell cooled
        self.best = min(self.best, self.timer.timeit(self.number) / self.number)


def measure(stmt: str, ns: dict[str, Any], min_time: float, repeats: int) -> float:
    """Seconds per call, minimum over ``repeats`` back-to-back repeats."""
    cell = Cell(timeit.Timer(stmt, globals=ns))
    cell.calibrate(min_time)
    for _ in range(repeats):
        cell.repeat()
    return cell.best


@dataclass
class Options:
    sizes: tuple[int, ...] = SIZES
    min_time: float = 0.03
    repeats: int = 7
    out_dir: Path = OUT_ROOT
    plot: bool = True
    notes: list[str] = field(default_factory=list)


def run(opts: Options) -> dict[str, Any]:
    """Time every (N, method) cell ``repeats`` times and keep the minimum.

    The repeats are passes over the whole grid rather than back to back, so a burst of
    other load on the machine spoils one pass of a few cells, not every repeat of one.
    """
    rng = random.Random(SEED)
    compiled, compiled_note = compiled_factory()
    opts.notes.append(f"CompiledAlias.pick: {compiled_note}")
    sample_cells: dict[tuple[int, str], Cell] = {}
    build_cells: dict[tuple[int, str], Cell] = {}
    rows: dict[int, dict[str, Any]] = {}
    for n in opts.sizes:
        weights = [rng.randint(1, MAX_WEIGHT) for _ in range(n)]
        ns = namespace(weights, compiled)
        rows[n] = {"total_weight": sum(weights)}
        for method in METHODS:
            if available(method, ns):
                sample_cells[n, method.key] = Cell(timeit.Timer(method.stmt, globals=ns))
                if method.build is not None:
                    build_cells[n, method.key] = Cell(timeit.Timer(method.build, globals=ns))
    cells = list(sample_cells.items()) + list(build_cells.items())
    per_pass = len(cells) * opts.min_time * 1.1
    progress = Progress("sampler", per_pass * (opts.repeats + 1.5))
    # Let the CPU clock and the interpreter's specialisation settle before the first figure.
    warm = namespace([1, 1], compiled)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        measure(METHODS[0].stmt, warm, 0.01, 3)
    overhead_ns = measure("pass", {}, opts.min_time, opts.repeats) * 1e9
    for i, ((n, key), cell) in enumerate(cells, 1):
        progress.show(f"calibrating N={n} · {key} ({i}/{len(cells)})")
        cell.calibrate(opts.min_time)
        progress.advance(opts.min_time * 1.5 / 1.1 * 1.1)
    for p in range(1, opts.repeats + 1):
        for i, ((n, key), cell) in enumerate(cells, 1):
            progress.show(f"pass {p}/{opts.repeats} · N={n} · {key} ({i}/{len(cells)})")
            cell.repeat()
            progress.advance(opts.min_time * 1.1)
    progress.end_line()
    results: dict[str, Any] = {}
    for n, row in rows.items():
        for method in METHODS:
            found = sample_cells.get((n, method.key))
            if found is None:
                row[method.key] = None
                continue
            row[method.key] = {"ns_per_sample": found.best * 1e9, "loops": found.number}
            build = build_cells.get((n, method.key))
            if build is not None:
                row[method.key]["build_us"] = build.best * 1e6
        results[str(n)] = row
    summary = summarize(results)
    return {
        "bench": "sampler",
        "machine": machine_info() | {"numpy": _numpy_version()},
        "router": git_commit(),
        "settings": {
            "sizes": list(opts.sizes),
            "seed": SEED,
            "weights": f"random integers 1..{MAX_WEIGHT} (random.Random(seed))",
            "timing": f"timeit, min of {opts.repeats} passes over the grid, "
            f"~{opts.min_time}s per cell and pass",
            "loop_overhead_ns": overhead_ns,
            "target_ratio": TARGET_RATIO,
        },
        "methods": {m.key: {"label": m.label, "stmt": m.stmt, "build": m.build}
                    for m in METHODS},
        "results": results,
        "summary": summary,
        "notes": opts.notes,
    }  # fmt: skip


def _numpy_version() -> str:
    import numpy as np

    return str(np.__version__)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Ratio to the reference per N for the gateway's samplers, and whether the target holds."""
    out: dict[str, Any] = {}
    for key in ("alias", "pick"):
        ratios = {}
        values = []
        for n, row in results.items():
            if row.get(key) is None:
                continue
            ratios[n] = row[key]["ns_per_sample"] / row["reference"]["ns_per_sample"]
            values.append(row[key]["ns_per_sample"])
        if not ratios:
            continue
        out[key] = {
            "ratio_to_reference": ratios,
            "max_ratio": max(ratios.values()),
            "flatness_max_over_min": max(values) / min(values),
            "meets_target": max(ratios.values()) <= TARGET_RATIO,
        }
    return out


def table(data: dict[str, Any]) -> str:
    results = data["results"]
    keys = [m.key for m in METHODS if any(r.get(m.key) for r in results.values())]
    head = ["N", *keys]
    lines = ["ns per sample (min of repeats)", "  ".join(f"{h:>11}" for h in head)]
    for n, row in results.items():
        cells = [f"{n:>11}"]
        for k in keys:
            cell = row.get(k)
            cells.append(f"{cell['ns_per_sample']:>11.1f}" if cell else f"{'-':>11}")
        lines.append("  ".join(cells))
    build_keys = [
        k for k in keys if any((r.get(k) or {}).get("build_us") for r in results.values())
    ]
    lines += ["", "build time, µs", "  ".join(f"{h:>11}" for h in ["N", *build_keys])]
    for n, row in results.items():
        cells = [f"{n:>11}"] + [
            f"{row[k]['build_us']:>11.2f}" if row.get(k) else f"{'-':>11}" for k in build_keys
        ]
        lines.append("  ".join(cells))
    lines.append("")
    for key, s in data["summary"].items():
        verdict = "meets" if s["meets_target"] else "misses"
        lines.append(
            f"{key}: max {s['max_ratio']:.2f}x the reference over N "
            f"(target <= {TARGET_RATIO}x: {verdict}); "
            f"max/min over N {s['flatness_max_over_min']:.2f}"
        )
    lines += [f"note: {n}" for n in data["notes"]]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    sizes = [int(n) for n in results]
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(14, 5.5))
    ref = [results[str(n)]["reference"]["ns_per_sample"] for n in sizes]
    fast = ("alias", "pick", "bisect")
    for method in METHODS:
        points = [(n, results[str(n)][method.key]) for n in sizes]
        points = [(n, c["ns_per_sample"]) for n, c in points if c]
        if not points or method.key == "reference":
            continue
        xs, ys = zip(*points, strict=True)
        full.plot(xs, ys, marker="o", label=method.label)
        if method.key in fast:
            zoom.plot(xs, ys, marker="o", label=method.label)
    for ax in (full, zoom):
        ax.plot(sizes, ref, color="black", linestyle="--", label="reference: random() + index")
        ax.plot(
            sizes,
            [TARGET_RATIO * r for r in ref],
            color="red",
            linestyle=":",
            label=f"target: {TARGET_RATIO}x reference",
        )
        ax.set_xscale("log")
        ax.set_xlabel("N (versions in the alias)")
        ax.set_ylabel("ns per sample")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, framealpha=0.7)
    full.set_yscale("log")
    full.set_title("all methods (log y)")
    zoom.set_ylim(0, max(ref) * 4)
    zoom.set_title("fast methods vs the target (linear y)")
    machine = data["machine"]
    fig.suptitle(
        f"weighted sampling cost · {machine['cpu_model']} · Python {machine['python']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sampler", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timeit repeats (default 7)")
    parser.add_argument(
        "--out", type=Path, help="results directory (default: a new bench/out/<UTC time>/)"
    )
    args = parser.parse_args(argv)
    opts = Options(out_dir=out_dir(args.out))
    if args.quick:
        opts.min_time, opts.repeats = 0.005, 3
    if args.repeats:
        opts.repeats = args.repeats
    data = run(opts)
    write_json(opts.out_dir / "sampler.json", data)
    plot(data, opts.out_dir / "sampler.png")
    print(table(data))
    print(f"\nwrote {opts.out_dir / 'sampler.json'} and {opts.out_dir / 'sampler.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
