"""deploy/grafana/flow-router.json: a dashboard Grafana can load, filtered by flow and alias.

Which metrics its queries use is checked against a live gateway in
test_metric_names.py, and that they parse as PromQL by promtool in test_alerts.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.conftest import DASHBOARD
from tests.deploy.promql import parse_label_values, uses

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _rows(dashboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Panels by the title of the row above them."""
    rows: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = []
        else:
            rows.setdefault(current, []).append(panel)
    return rows


def test_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "flow-router"
    assert dashboard["title"] == "flow-router"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    flow = parse_label_values(variables["flow"]["query"]["query"])
    alias = parse_label_values(variables["alias"]["query"]["query"])
    assert flow[1] == "flow" and alias[1] == "alias"
    assert alias[0] is not None and 'flow="$flow"' in alias[0], "aliases of the chosen flow"
    for name in ("flow", "alias"):
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["multi"] is False, "one flow and alias: the ratios are per alias"


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_rollout_row_is_per_flow_and_alias(dashboard: dict[str, Any]) -> None:
    rows = _rows(dashboard)
    (title,) = [t for t in rows if t.startswith("Rollout")]
    titles = {p["title"] for p in rows[title]}
    assert {
        "Configured weight vs realized share",
        "Executions/s per version",
        "Error ratio per version (canary vs stable)",
        "Executor latency p50 / p99 per version",
    } <= titles
    for panel in rows[title]:
        for target in panel["targets"]:
            for selector in uses(target["expr"]).selectors:
                matchers = {(m.label, m.op, m.value) for m in selector.matchers}
                assert ("flow", "=", "$flow") in matchers, (panel["title"], selector)
                if selector.metric != "flow_router_execution_duration_seconds_bucket":
                    assert ("alias", "=", "$alias") in matchers, (panel["title"], selector)
            assert "version" in uses(target["expr"]).grouping_labels, panel["title"]
            assert "{{version}}" in target["legendFormat"], panel["title"]


def test_latency_panel_has_p50_and_p99(dashboard: dict[str, Any]) -> None:
    (panel,) = [p for p in _panels(dashboard) if p["title"].startswith("Executor latency")]
    exprs = [t["expr"] for t in panel["targets"]]
    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
    assert any(e.startswith("histogram_quantile(0.99,") for e in exprs)
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
