"""deploy/prometheus: alert rules checked and unit-tested by promtool.

promtool comes with Debian's ``prometheus`` package, not from PyPI: without it
these tests skip (set FLOW_ROUTER_REQUIRE_PROMTOOL=1 to make that a failure).
The metric names of the rules are checked against a live gateway in
test_metric_names.py, with or without promtool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ALERTS, DASHBOARD, PROMETHEUS, load_yaml, promtool, run

TESTS = PROMETHEUS / "alerts.test.yaml"


def _rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


ALERT_NAMES = [rule["alert"] for rule in _rules() if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    result = run(promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", TESTS.name, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_compose_prometheus_config() -> None:
    result = run(promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


# Grafana's variables, given values so that promtool can parse the queries.
_GRAFANA = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$flow": "orders",
    "$alias": "prod",
}


def test_promtool_parses_the_dashboard_queries(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in sorted(_GRAFANA.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a Grafana variable not substituted here"
            rules.append(
                {"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr}
            )
    assert rules
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool(), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# -- without promtool ---------------------------------------------------------------------


def test_the_four_alerts_of_the_rollout_are_there() -> None:
    assert {
        "FlowRouterCanaryErrorRatioAboveStable",
        "FlowRouterCanaryLatencyRegression",
        "FlowRouterStoreUnreachable",
        "FlowRouterSplitDrift",
    } <= set(ALERT_NAMES)


@pytest.mark.parametrize("rule", [r for r in _rules() if "alert" in r], ids=ALERT_NAMES)
def test_alert_says_how_bad_and_what_happened(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_each_alert_has_a_firing_and_a_quiet_unit_test(alert: str) -> None:
    cases = [
        case
        for test in load_yaml(TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case["exp_alerts"] for case in cases), f"{alert}: no test where it fires"
    assert any(not case["exp_alerts"] for case in cases), f"{alert}: no test where it must not"


def test_recording_rules_follow_the_naming_convention() -> None:
    for rule in _rules():
        if "record" in rule:
            assert re.fullmatch(r"flow_router:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule
