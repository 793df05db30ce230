"""Tables in docs/ that mirror code are checked against that code, so they cannot drift.

* docs/configuration.md: every ``flow-router serve`` option with its
  environment variable and default, against the command's own parser (built
  with no ``FLOW_ROUTER_*`` variable set, so the defaults are the code's);
* docs/metrics.md: every metric with its labels, against what
  :class:`router.metrics.Metrics` registers;
* docs/benchmarks.md: the sampler figures it states, against
  bench/results/sampler.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from router import cli
from router.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DASH, TIMES = "\u2013", "\u00d7"  # the en dash and multiplication sign the docs use


def _table(path: Path, first_header: str) -> list[list[str]]:
    """The rows of the Markdown table whose first column is headed ``first_header``."""
    rows: list[list[str]] = []
    inside = False
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else []
        if not inside:
            inside = bool(cells) and cells[0] == first_header
            continue
        if not cells:
            if rows:
                break
            continue
        if set(cells[0]) <= set("-: "):
            continue
        rows.append(cells)
    assert rows, f"{path.name} has no table headed {first_header!r}"
    return rows


def _ticked(cell: str) -> list[str]:
    """The `code` spans of a cell, leaving out those inside parentheses."""
    return re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cell))


# -- configuration -----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("FLOW_ROUTER_"):
            monkeypatch.delenv(name)
    yield


def _serve_parser() -> argparse.ArgumentParser:
    """The ``serve`` subcommand of the parser ``flow-router`` runs."""
    build = next(
        getattr(cli, name)
        for name in ("build_parser", "make_parser", "parser", "_parser")
        if callable(getattr(cli, name, None))
    )
    parser = build()
    assert isinstance(parser, argparse.ArgumentParser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            serve = action.choices["serve"]
            assert isinstance(serve, argparse.ArgumentParser)
            return serve
    raise AssertionError("flow-router has no serve subcommand")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        action.option_strings[-1]: action
        for action in parser._actions
        # --help and --version print and exit: no setting, no environment variable
        if action.option_strings and action.dest not in ("help", "version")
    }


def _documented_default(cell: str) -> object:
    first = cell.split()[0] if cell.split() else ""
    if first in ("none", "off"):
        return {"none": None, "off": False}[first]
    ticked = re.match(r"`([^`]*)`", cell)
    assert ticked is not None, f"default {cell!r} is neither `value`, none nor off"
    return ticked.group(1)


def _same_default(documented: object, actual: object) -> bool:
    if documented is None or isinstance(documented, bool) or isinstance(actual, bool):
        return documented == actual
    if isinstance(actual, int | float):
        return float(str(documented)) == float(actual)
    return documented == actual


@pytest.mark.usefixtures("clean_env")
def test_configuration_table_matches_the_serve_parser() -> None:
    options = _options(_serve_parser())
    rows = _table(DOCS / "configuration.md", "flag")
    documented: dict[str, tuple[str, str]] = {}
    for flag_cell, env_cell, default_cell, *_ in rows:
        (flag,) = _ticked(flag_cell)
        (env,) = _ticked(env_cell)
        assert flag not in documented, f"{flag} is documented twice"
        documented[flag] = (env, default_cell)

    assert sorted(set(documented) - set(options)) == [], "documented, but no such option"
    assert sorted(set(options) - set(documented)) == [], "options missing from the table"
    for flag, (env, default_cell) in documented.items():
        action = options[flag]
        assert env == "FLOW_ROUTER_" + flag[2:].upper().replace("-", "_")
        expected = _documented_default(default_cell)
        assert _same_default(expected, action.default), (
            f"{flag}: documented default {expected!r}, parser default {action.default!r}"
        )


@pytest.mark.usefixtures("clean_env")
def test_documented_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each documented variable changes its option's value (read when the parser is built)."""
    rows = _table(DOCS / "configuration.md", "flag")
    for flag_cell, env_cell, *_ in rows:
        (flag,) = _ticked(flag_cell)
        (env,) = _ticked(env_cell)
        action = _options(_serve_parser())[flag]
        value = "1" if action.type in (int, float) or action.nargs == 0 else "x"
        monkeypatch.setenv(env, value)
        changed = _options(_serve_parser())[flag].default
        monkeypatch.delenv(env)
        assert changed != action.default, f"{env} does not change {flag}"


# -- metrics -------------------------------------------------------------------------------


def _owners() -> list[object]:
    """Every object that declares metrics on the gateway's registry."""
    from router.rollout.metrics import RolloutMetrics
    from router.rollout.webhooks import Webhooks

    metrics = Metrics()
    # the rollout driver's metrics live on the same registry (router/rollout)
    return [metrics, RolloutMetrics(metrics.registry), Webhooks(metrics.registry)]


def _registered() -> dict[str, tuple[str, ...]]:
    """Exposition name (``_total`` for counters) -> label names, of every metric."""
    from prometheus_client.metrics import MetricWrapperBase

    found: dict[str, tuple[str, ...]] = {}
    for owner in _owners():
        for value in vars(owner).values():
            if isinstance(value, MetricWrapperBase):
                (family,) = value.describe()
                name = family.name + ("_total" if family.type == "counter" else "")
                found[name] = tuple(value._labelnames)
    return found


def test_metrics_table_matches_the_registry() -> None:
    registered = _registered()
    assert len(registered) >= 10
    documented: dict[str, tuple[str, ...]] = {}
    for name_cell, _type, labels_cell, *_ in _table(DOCS / "metrics.md", "metric"):
        (name,) = _ticked(name_cell)
        documented[name] = tuple(_ticked(labels_cell))
    assert sorted(set(documented) - set(registered)) == [], "documented, but not registered"
    assert sorted(set(registered) - set(documented)) == [], "registered, but not documented"
    for name, labels in registered.items():
        assert documented[name] == labels, f"{name}: docs say {documented[name]}, code {labels}"


def test_metric_types_are_documented() -> None:
    types = {}
    for owner in _owners():
        for value in vars(owner).values():
            for family in getattr(value, "describe", list)():
                suffix = "_total" if family.type == "counter" else ""
                types[family.name + suffix] = family.type
    for name_cell, type_cell, *_ in _table(DOCS / "metrics.md", "metric"):
        (name,) = _ticked(name_cell)
        assert types[name] == type_cell, name


# -- benchmarks ----------------------------------------------------------------------------


def test_benchmarks_state_the_sampler_results() -> None:
    data = json.loads((ROOT / "bench" / "results" / "sampler.json").read_text())
    ratios = data["summary"]["alias"]["ratio_to_reference"]
    text = (DOCS / "benchmarks.md").read_text()
    low, high = min(ratios.values()), max(ratios.values())
    assert f"**{low:.2f}{DASH}{high:.2f}{TIMES}**" in text
    worst = max(ratios, key=ratios.__getitem__)
    assert f"the worst\n  ratio is {high:.2f}{TIMES} at N = {worst}" in text
    met = [n for n, r in ratios.items() if r <= data["settings"]["target_ratio"]]
    assert f"met at N = {' and N = '.join(met)} only" in text
    flat = data["summary"]["alias"]["flatness_max_over_min"]
    assert f"the largest ratio is {flat:.2f}{TIMES} the smallest" in text
    pick = data["summary"]["pick"]["ratio_to_reference"].values()
    assert f"{min(pick):.2f}{DASH}{max(pick):.2f}{TIMES} the reference" in text
    results = data["results"]
    choices_2 = results["2"]["choices"]["ns_per_sample"]
    choices_max = results["10000"]["choices"]["ns_per_sample"] / 1000
    assert f"`random.choices` costs {choices_2:,.0f} ns per call at N = 2" in text
    assert f"{choices_max:.0f} µs at N = 10⁴" in text


def test_rollout_statistics_state_the_rollout_bench() -> None:
    from bench._rollout_report import docs_tables

    data = json.loads((ROOT / "bench" / "results" / "rollout.json").read_text())
    text = (DOCS / "rollouts-statistics.md").read_text()
    assert docs_tables(data) in text  # both tables, exactly as the bench prints them
    cells = {(r["multiplier"], r["rate"]): r for r in data["bad"]}
    two = cells[(2, 10)]
    ours, flagger = two["project"]["seconds_median"], two["flagger"]["seconds_median"]
    sides = two["sides"]["seconds_median"]
    assert f"median ({flagger:.0f} s) beats ours\n  ({ours:.0f} s)" in text
    assert f"needs {sides:.0f} s there" in text
    assert f"({ours:.0f} s against {sides:.0f} s at 10/s)" in text
    healthy = {r["rate"]: r for r in data["healthy"]}
    assert f"rolling back {healthy[10]['flagger_rate']:.0%} of *healthy*" in text
    for mult in (2, 5, 20):  # the price against the comparative oracle, from 10/s
        prices = {
            f"{cells[(mult, rate)]['project']['seconds_median'] / cells[(mult, rate)]['sides']['seconds_median']:.1f}"  # noqa: E501
            for rate in (10, 100, 1000)
        }
        assert len(prices) == 1, (mult, prices)
        assert f"{prices.pop()}{TIMES} at {mult}{TIMES}" in text


def test_benchmarks_state_the_gateway_results() -> None:
    """The gateway tables in docs/benchmarks.md are the committed run's, line for line,
    and the prose quotes that run's ratios."""
    results = ROOT / "bench" / "results"
    report = (results / "gateway.md").read_text().splitlines()
    data = json.loads((results / "gateway.json").read_text())
    text = (DOCS / "benchmarks.md").read_text()
    copied = text.split("From `bench/results/gateway.md`:", 1)[1]
    copied = copied.split("What the numbers say.", 1)[0]
    lines = [line for line in copied.splitlines() if line.strip()]
    assert len(lines) > 20
    for line in lines:
        assert line in report, line
    redis = data["ratios"]["flow-router-redis"]["rps_vs_bare-aiohttp"]
    memory = data["ratios"]["flow-router-memory"]["rps_vs_bare-aiohttp"]
    sent = data["redis_commands"]["client_commands_per_request"]
    assert f"{redis:.2f}{TIMES} the bare aiohttp passthrough proxy in this run" in text
    assert f"per flow), ran at {memory:.2f}{TIMES} here" in text
    assert f"{sent:.4f} commands sent per routed\nrequest in this run" in text
