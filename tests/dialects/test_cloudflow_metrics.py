"""/metrics, /healthz and /readyz after traffic sent with the real fnf SDK.

``/metrics`` is parsed with ``prometheus_client.parser`` (docs/wire.md §5), so
a scrape that does not parse fails these tests too.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client

from tests.dialects.cloudflow_client import (
    DEFINITION,
    client_for,
    cloudflow_error,
    create_alias,
    create_flow,
    http_get,
    raw_call,
    samples,
    scrape,
    start,
    update_routes,
    value,
)
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.plugin import open_store

EXECUTIONS = "flow_router_executions_total"
DURATION_COUNT = "flow_router_execution_duration_seconds_count"
WEIGHT = "flow_router_alias_weight"
API_REQUESTS = "flow_router_api_requests_total"


@pytest.fixture
def client(gateway: GatewayServer) -> Client:
    return client_for(gateway)


def test_execution_counters_match_what_the_executor_saw(
    gateway: GatewayServer, client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    n = 200
    headers: Counter[str] = Counter()
    for _ in range(n):
        headers[start(client, "f1", "prod", "{}").headers["x-flow-version"]] += 1
    assert set(headers) == {"1", "2"}  # all 200 on one side: probability < 1e-30
    seen = recording_executor.versions()
    assert headers == seen

    scraped = scrape(gateway)
    counted = {
        s.labels["version"]: s.value
        for s in samples(scraped, EXECUTIONS, flow="f1", alias="prod", outcome="success")
    }
    assert counted == {"1": seen["1"], "2": seen["2"]}
    assert sum(counted.values()) == n
    assert not [s for s in samples(scraped, EXECUTIONS, outcome="error") if s.value]
    for version in ("1", "2"):
        assert value(scraped, DURATION_COUNT, flow="f1", version=version) == seen[version]


def test_executions_by_version_qualifier_are_counted_without_alias(
    gateway: GatewayServer, client: Client
) -> None:
    create_flow(client, "f1", versions=2)
    for _ in range(3):
        start(client, "f1", "1")
    start(client, "f1")  # latest: 2
    scraped = scrape(gateway)
    by_version = {
        s.labels["version"]: s.value
        for s in samples(scraped, EXECUTIONS, flow="f1", outcome="success")
    }
    assert by_version == {"1": 3, "2": 1}
    assert {s.labels["alias"] for s in samples(scraped, EXECUTIONS, flow="f1")} == {""}


def _eventually(check: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    """Poll ``check``: after an alias write the route cache reloads the flow in the
    background (router/routing.py), and the gauges are republished by that reload."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_alias_weight_gauges_follow_updates(gateway: GatewayServer, client: Client) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    for _ in range(5):
        start(client, "f1", "prod")

    def weights() -> dict[str, float]:
        scraped = scrape(gateway)
        return {
            s.labels["version"]: s.value for s in samples(scraped, WEIGHT, flow="f1", alias="prod")
        }

    def update(*pairs: tuple[str, int]) -> None:
        client.update_flow_alias(
            models.UpdateFlowAliasRequest(
                flow_name="f1", name="prod", routing_configurations=update_routes(*pairs)
            )
        )

    assert weights() == pytest.approx({"1": 0.3, "2": 0.7})
    update(("1", 100), ("2", 0))
    assert _eventually(lambda: weights() in ({"1": 1.0, "2": 0.0}, {"1": 1.0})), weights()
    update(("1", 20), ("2", 30))
    assert _eventually(lambda: weights() == pytest.approx({"1": 0.4, "2": 0.6})), weights()
    update(("2", 5))
    assert _eventually(lambda: weights() == {"2": 1.0}), weights()
    client.delete_flow_alias(models.DeleteFlowAliasRequest(flow_name="f1", name="prod"))
    assert _eventually(lambda: weights() == {}), weights()


def test_api_requests_are_counted_by_action_and_code(
    gateway: GatewayServer, client: Client
) -> None:
    for name in ("a", "b", "c"):
        create_flow(client, name)
    with cloudflow_error(409, "FlowAlreadyExists"):
        create_flow(client, "a")
    for _ in range(2):
        with cloudflow_error(404, "FlowNotExists"):
            client.describe_flow(models.DescribeFlowRequest(name="zzz"))
    client.list_flows(models.ListFlowsRequest())
    raw_call(gateway, "NoSuchAction", {})

    scraped = scrape(gateway)

    def count(action: str, code: str) -> float | None:
        return value(scraped, API_REQUESTS, dialect="cloudflow", action=action, code=code)

    assert count("CreateFlow", "200") == 3
    assert count("CreateFlow", "409") == 1
    assert count("DescribeFlow", "404") == 2
    assert count("ListFlows", "200") == 1
    assert count("DescribeFlow", "200") is None
    assert count("unknown", "400") == 1
    # Unknown action names do not become label values.
    assert not samples(scraped, API_REQUESTS, action="NoSuchAction")


def test_metrics_content_type(gateway: GatewayServer, client: Client) -> None:
    create_flow(client, "f1")  # see test_gateway_stops_right_after_start
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
def test_health_endpoints(gateway: GatewayServer, client: Client, path: str, status: str) -> None:
    create_flow(client, "f1")  # see test_gateway_stops_right_after_start
    code, body = http_get(gateway, path)
    assert code == 200
    assert json.loads(body)["status"] == status


def test_gateway_stops_right_after_start(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    """Stopping a gateway on Redis must not depend on when its subscriber is connecting."""
    hung = 0
    for _ in range(20):
        store = open_store("redis", request)
        server = start_gateway(bg_loop, store, recording_executor)
        try:
            bg_loop.run(server.stop(), timeout=3)
        except TimeoutError:
            hung += 1
            bg_loop.run(_cancel_stuck_followers())  # let that stop() finish after all
            time.sleep(0.2)
        bg_loop.run(store.close())
        if hung:
            break
    assert hung == 0


async def _cancel_stuck_followers() -> None:
    for task in asyncio.all_tasks():
        if task.get_name() == "route-cache" and task.cancelling():
            task.cancel()


def test_deleted_flow_drops_its_weight_gauges(gateway: GatewayServer, client: Client) -> None:
    client.create_flow(models.CreateFlowRequest(name="f1", definition=DEFINITION))
    client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    create_alias(client, "f1", "prod", ("1", 1))
    start(client, "f1", "prod")
    assert value(scrape(gateway), WEIGHT, flow="f1", alias="prod", version="1") == 1.0
    client.delete_flow(models.DeleteFlowRequest(name="f1"))
    assert _eventually(lambda: samples(scrape(gateway), WEIGHT, flow="f1") == [])
