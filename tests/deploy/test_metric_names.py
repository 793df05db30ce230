"""Every metric the dashboard and the alert rules query is one a live gateway exports.

Two real gateways on 127.0.0.1 provide the scrape:
- one on the memory store with a 30/70 alias whose version 2's executor answers
  500, so executions of both outcomes, 5xx answers, executor errors and route-cache
  loads and invalidations all have series;
- one whose Redis does not answer, for ``error="ServiceUnavailable"`` and the route
  cache's errors.
Their ``/metrics`` is parsed with ``prometheus_client.parser``, which also says
each family's type, so ``_total``, ``_bucket``/``_count``/``_sum`` are mapped
from the family names and not guessed. Each PromQL selector's metric must be in
that scrape, its label matchers must use labels the metric has, and label
values written literally (``outcome="error"``, ``code=~"5.."``) must occur in it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.config import Config
from router.store.memory import MemoryStore
from tests.deploy.conftest import ALERTS, DASHBOARD, load_yaml
from tests.deploy.promql import Uses, parse_label_values, uses
from tests.dialects.cloudflow_client import http_get, raw_call
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, Behaviour, GatewayServer, RecordingExecutor, free_port

# Labels Prometheus attaches to every scraped series, and series it makes itself.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES = frozenset({"up"})
# Label values the gateway exports but that these scrapes cannot provoke:
# source="check" needs a change announcement lost in Redis pub/sub.
UNPROVOKED = frozenset({("flow_router_route_cache_invalidations_total", "source", "check")})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
}


@dataclass
class Catalog:
    """What a scrape shows: sample names, and the labels and values of each."""

    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
            for sample in family.samples:
                self.names.add(sample.name)
                for label, value in sample.labels.items():
                    self.labels[sample.name].add(label)
                    self.values[(sample.name, label)].add(value)

    @property
    def all_labels(self) -> set[str]:
        return set().union(*self.labels.values())


@pytest.fixture(scope="module")
def live() -> Iterator[Catalog]:
    loop = BackgroundLoop()
    executor = RecordingExecutor()
    loop.run(executor.start())
    executor.behaviours["2"] = Behaviour(status=500)
    catalog = Catalog()
    healthy = start_gateway(loop, MemoryStore(), executor)
    broken = GatewayServer(
        Config(
            port=free_port(),
            store=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            upstream=executor.template,
        )
    )
    try:
        _traffic(healthy)
        catalog.add(_scrape(healthy))
        loop.run(broken.start())
        answer = raw_call(broken, "CreateFlow", {"Name": "f", "Definition": "version: v1"})
        assert answer.status == 503, answer.body
        catalog.add(_scrape(broken))
        yield catalog
    finally:
        loop.run(broken.stop())
        loop.run(healthy.stop())
        loop.run(executor.stop())
        loop.close()


def _ok(gateway: GatewayServer, action: str, **params: str) -> dict[str, Any]:
    answer = raw_call(gateway, action, params)
    assert answer.status == 200, (action, answer.body)
    return answer.body


def _traffic(gateway: GatewayServer) -> None:
    _ok(gateway, "CreateFlow", Name="orders", Definition="version: v1")
    for _ in range(2):
        _ok(gateway, "PublishFlowVersion", FlowName="orders")
    routes = [{"Version": "1", "Weight": 30}, {"Version": "2", "Weight": 70}]
    _ok(
        gateway,
        "CreateFlowAlias",
        FlowName="orders",
        Name="prod",
        RoutingConfigurations=json.dumps(routes),
    )
    codes = set()
    for _ in range(20):
        answer = raw_call(gateway, "StartExecution", {"FlowName": "orders", "Qualifier": "prod"})
        codes.add(answer.status)
    assert codes == {200, 502}, codes  # both versions ran (seeded choice), version 2 failed
    raw_call(gateway, "StartExecution", {"FlowName": "orders", "Qualifier": "1"})
    _rolled_back(gateway)


def _rolled_back(gateway: GatewayServer) -> None:
    """A rollout to the failing version 2, rolled back by the gateway's own driver: every
    rollout metric has series, ``result="RolledBack"`` among them."""
    routes = [{"Version": "1", "Weight": 100}]
    _ok(gateway, "CreateFlowAlias", FlowName="orders", Name="canary",
        RoutingConfigurations=json.dumps(routes))  # fmt: skip
    rollout = f"{gateway.url}/v1/flows/orders/aliases/canary/rollout"
    body = json.dumps({"targetVersion": "2", "stepWeights": [50]}).encode()
    put = urllib.request.Request(rollout, body, {"Content-Type": "application/json"}, method="PUT")
    with urllib.request.urlopen(put, timeout=10) as answer:
        assert answer.status == 201
    deadline = time.monotonic() + 60  # about 12 failures of the canary roll it back
    while time.monotonic() < deadline:
        with urllib.request.urlopen(rollout, timeout=10) as answer:
            if json.loads(answer.read())["phase"] == "RolledBack":
                return
        for _ in range(5):
            raw_call(gateway, "StartExecution", {"FlowName": "orders", "Qualifier": "canary"})
        time.sleep(0.05)  # polling pace: the driver decides once a second
    pytest.fail("the failing canary was never rolled back")


def _scrape(gateway: GatewayServer) -> str:
    deadline = time.monotonic() + 5
    while True:  # the route cache publishes the weights when it loads the flow
        status, body = http_get(gateway, "/metrics")
        assert status == 200
        text = body.decode()
        if "flow_router_alias_weight{" in text or "orders" not in text:
            return text
        if time.monotonic() > deadline:
            pytest.fail("alias weights never appeared in /metrics")
        time.sleep(0.05)


# -- the expressions ---------------------------------------------------------------------


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector, _ = parse_label_values(variable["query"]["query"])
            if selector is not None:
                found.append((f"variable {variable['name']}", selector))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in load_yaml(ALERTS)["groups"]
        for rule in group["rules"]
    ]


def recorded() -> set[str]:
    return {
        rule["record"]
        for group in load_yaml(ALERTS)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


EXPRESSIONS = dashboard_expressions() + rule_expressions()


def problems(where: str, used: Uses, catalog: Catalog) -> list[str]:
    out = []
    known = catalog.names | PROMETHEUS_SERIES | recorded()
    for selector in used.selectors:
        metric = selector.metric
        if metric not in known:
            out.append(f"{where}: {metric!r} is not exported")
            continue
        if metric not in catalog.names:
            continue  # a recording rule's or Prometheus' own series: labels are theirs
        for matcher in selector.matchers:
            if matcher.label in TARGET_LABELS:
                continue
            if matcher.label not in catalog.labels[metric]:
                out.append(f"{where}: {metric} has no label {matcher.label!r}")
                continue
            if matcher.templated or matcher.op in ("!=", "!~"):
                continue
            if (metric, matcher.label, matcher.value) in UNPROVOKED:
                continue
            seen = catalog.values[(metric, matcher.label)]
            if matcher.op == "=" and matcher.value not in seen:
                out.append(f"{where}: {metric}{{{matcher.label}={matcher.value!r}}} never seen")
            if matcher.op == "=~" and not any(re.fullmatch(matcher.value, v) for v in seen):
                out.append(f"{where}: {metric}{{{matcher.label}=~{matcher.value!r}}} never seen")
    unknown = used.grouping_labels - catalog.all_labels - TARGET_LABELS
    if unknown:
        out.append(f"{where}: grouping by labels no metric has: {sorted(unknown)}")
    return out


def test_the_live_scrape_has_what_the_checks_need(live: Catalog) -> None:
    """Guards the fixture: without these series the checks below would prove little."""
    assert {"success", "error"} <= live.values[("flow_router_executions_total", "outcome")]
    assert "ServiceUnavailable" in live.values[("flow_router_errors_total", "error")]
    assert "502" in live.values[("flow_router_api_requests_total", "code")]
    assert "local" in live.values[("flow_router_route_cache_invalidations_total", "source")]
    assert live.values[("flow_router_alias_weight", "version")] == {"1", "2"}
    assert live.values[("flow_router_execution_duration_seconds_bucket", "version")] == {"1", "2"}


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_expression_uses_only_exported_metrics(live: Catalog, where: str, expr: str) -> None:
    used = uses(expr)
    assert used.selectors, f"{where}: no metric found in {expr!r}"
    assert problems(where, used, live) == []


def test_dashboard_covers_the_gateway_metrics() -> None:
    used = set().union(*(uses(expr).metrics for _, expr in dashboard_expressions()))
    assert used >= {
        "flow_router_alias_weight",
        "flow_router_executions_total",
        "flow_router_execution_duration_seconds_bucket",
        "flow_router_api_requests_total",
        "flow_router_errors_total",
        "flow_router_route_cache_loads_total",
        "flow_router_route_cache_invalidations_total",
        "flow_router_route_cache_resyncs_total",
        "flow_router_route_cache_errors_total",
    }


def test_the_checker_catches_mistakes(live: Catalog) -> None:
    """The checker itself: names, suffixes, labels and values that do not exist."""
    bad = {
        "flow_router_executions": "is not exported",  # counter without _total
        "flow_router_execution_duration_seconds": "is not exported",  # histogram without suffix
        'flow_router_execution_duration_seconds_bucket{alias="prod"}': "no label 'alias'",
        'flow_router_executions_total{outcome="failed"}': "never seen",
        'flow_router_api_requests_total{code=~"6.."}': "never seen",
        "sum by (region) (flow_router_executions_total)": "grouping by labels",
    }
    for expr, message in bad.items():
        found = problems("test", uses(expr), live)
        assert len(found) == 1 and message in found[0], (expr, found)
    good = 'rate(flow_router_executions_total{outcome="error", flow="$flow"}[$__rate_interval])'
    assert problems("test", uses(good), live) == []
