"""Every CloudFlow action through the real fnf SDK, and weighted routing through aliases.

Each test runs against the embedded store and a real redis-server (the ``gateway``
fixture). Error codes live in ``test_cloudflow_errors.py``, /metrics in
``test_cloudflow_metrics.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from scipy.stats import chisquare

from tests.dialects.cloudflow_client import (
    DEFINITION,
    client_for,
    cloudflow_error,
    create_alias,
    create_flow,
    create_routes,
    custom_gateway,
    routing,
    start,
    update_routes,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor

ISO_8601 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
# make_app builds its Gateway without a seedable rng, so the split tests cannot fix
# the seed: they use alpha = 0.001, i.e. about one false failure in 1000 runs each.
ALPHA = 0.001


@pytest.fixture
def client(gateway: GatewayServer) -> Client:
    return client_for(gateway)


def _is_request_id(value: object) -> bool:
    return isinstance(value, str) and len(value) > 0


# -- flows -------------------------------------------------------------------------


def test_create_flow_answers_the_flow(client: Client) -> None:
    resp = client.create_flow(
        models.CreateFlowRequest(
            name="orders", definition=DEFINITION, description="order pipeline", type="FDL"
        )
    )
    body = resp.body
    assert resp.status_code == 200
    assert _is_request_id(body.request_id)
    assert (body.name, body.definition, body.description, body.type) == (
        "orders",
        DEFINITION,
        "order pipeline",
        "FDL",
    )
    assert isinstance(body.id, str) and len(body.id) == 10
    assert ISO_8601.fullmatch(body.created_time)
    assert ISO_8601.fullmatch(body.last_modified_time)

    described = client.describe_flow(models.DescribeFlowRequest(name="orders")).body
    assert _is_request_id(described.request_id)
    assert described.request_id != body.request_id
    assert (described.name, described.id, described.definition, described.description) == (
        "orders",
        body.id,
        DEFINITION,
        "order pipeline",
    )
    assert described.created_time == body.created_time


def test_describe_flow_with_version_answers_that_versions_definition(client: Client) -> None:
    create_flow(client, "f1", definition="def: one")
    client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    client.update_flow(models.UpdateFlowRequest(name="f1", definition="def: two"))
    client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    client.update_flow(models.UpdateFlowRequest(name="f1", definition="def: draft"))

    def definition(version: str | None) -> str:
        req = models.DescribeFlowRequest(name="f1", flow_version=version)
        return str(client.describe_flow(req).body.definition)

    assert definition("1") == "def: one"
    assert definition("2") == "def: two"
    assert definition(None) == "def: draft"


def test_list_flows_pages_in_name_order(client: Client) -> None:
    names = ["g", "c", "a", "f", "b", "e", "d"]
    for name in names:
        create_flow(client, name)
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        body = client.list_flows(models.ListFlowsRequest(limit=3, next_token=token)).body
        assert _is_request_id(body.request_id)
        pages.append([f.name for f in body.flows])
        token = body.next_token or None
        if token is None:
            break
        assert len(pages) < 5, "pagination does not end"
    assert pages == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    everything = client.list_flows(models.ListFlowsRequest()).body
    assert [f.name for f in everything.flows] == sorted(names)
    assert not everything.next_token


def test_update_flow_changes_only_the_given_fields(client: Client) -> None:
    client.create_flow(
        models.CreateFlowRequest(name="f1", definition="def: one", description="first")
    )
    resp = client.update_flow(models.UpdateFlowRequest(name="f1", definition="def: two"))
    assert _is_request_id(resp.body.request_id)
    assert (resp.body.definition, resp.body.description) == ("def: two", "first")

    client.update_flow(models.UpdateFlowRequest(name="f1", description="second"))
    described = client.describe_flow(models.DescribeFlowRequest(name="f1")).body
    assert (described.definition, described.description) == ("def: two", "second")
    assert described.last_modified_time >= described.created_time


def test_delete_flow(client: Client) -> None:
    create_flow(client, "keep")
    create_flow(client, "gone", versions=1)
    create_alias(client, "gone", "prod", ("1", 1))
    resp = client.delete_flow(models.DeleteFlowRequest(name="gone"))
    assert _is_request_id(resp.body.request_id)
    with cloudflow_error(404, "FlowNotExists"):
        client.describe_flow(models.DescribeFlowRequest(name="gone"))
    listed = client.list_flows(models.ListFlowsRequest()).body.flows
    assert [f.name for f in listed] == ["keep"]
    # The name is free again, with nothing left over from the deleted flow.
    create_flow(client, "gone")
    versions = client.list_flow_versions(models.ListFlowVersionsRequest(flow_name="gone"))
    assert versions.body.flow_versions == []
    aliases = client.list_flow_aliases(models.ListFlowAliasesRequest(flow_name="gone"))
    assert aliases.body.aliases == []


# -- versions ----------------------------------------------------------------------


def test_publish_flow_version_numbers_from_one(client: Client) -> None:
    create_flow(client, "f1")
    published = []
    for i in range(1, 4):
        req = models.PublishFlowVersionRequest(flow_name="f1", description=f"release {i}")
        body = client.publish_flow_version(req).body
        assert _is_request_id(body.request_id)
        assert body.flow_name == "f1"
        assert ISO_8601.fullmatch(body.created_time)
        published.append((body.version, body.description))
    assert published == [("1", "release 1"), ("2", "release 2"), ("3", "release 3")]


def test_list_flow_versions_pages_in_number_order(client: Client) -> None:
    create_flow(client, "f1", versions=5)
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        req = models.ListFlowVersionsRequest(flow_name="f1", limit="2", next_token=token)
        body = client.list_flow_versions(req).body
        assert _is_request_id(body.request_id)
        pages.append([v.version for v in body.flow_versions])
        for v in body.flow_versions:
            assert isinstance(v.version, str)
            assert ISO_8601.fullmatch(v.created_time)
        token = body.next_token or None
        if token is None:
            break
        assert len(pages) < 5, "pagination does not end"
    assert pages == [["1", "2"], ["3", "4"], ["5"]]


def test_delete_flow_version(client: Client) -> None:
    create_flow(client, "f1", versions=3)
    create_alias(client, "f1", "prod", ("2", 1))

    resp = client.delete_flow_version(
        models.DeleteFlowVersionRequest(flow_name="f1", flow_version="1")
    )
    assert _is_request_id(resp.body.request_id)
    with cloudflow_error(409, "ResourceInUse"):
        client.delete_flow_version(
            models.DeleteFlowVersionRequest(flow_name="f1", flow_version="2")
        )

    listed = client.list_flow_versions(models.ListFlowVersionsRequest(flow_name="f1")).body
    assert [v.version for v in listed.flow_versions] == ["2", "3"]
    # Numbers are never reused after a delete.
    again = client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    assert again.body.version == "4"


# -- aliases -----------------------------------------------------------------------


def test_create_flow_alias_answers_flat(client: Client) -> None:
    create_flow(client, "f1", versions=2)
    resp = client.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name="f1",
            name="prod",
            description="canary",
            routing_configurations=create_routes(("1", 30), ("2", 70)),
        )
    )
    # Read flat: a body wrapped in "Alias" would leave these top-level fields unset.
    assert resp.body.to_map()["RoutingConfigurations"] == [
        {"Version": "1", "Weight": 30},
        {"Version": "2", "Weight": 70},
    ]
    body = resp.body
    assert _is_request_id(body.request_id)
    assert (body.flow_name, body.name, body.description) == ("f1", "prod", "canary")
    assert ISO_8601.fullmatch(body.created_time)
    for route in body.routing_configurations:
        assert type(route.version) is str and type(route.weight) is int


def test_describe_flow_alias_answers_wrapped(client: Client) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    resp = client.describe_flow_alias(models.DescribeFlowAliasRequest(flow_name="f1", name="prod"))
    assert _is_request_id(resp.body.request_id)
    assert "RoutingConfigurations" not in resp.body.to_map()
    alias = resp.body.alias
    assert (alias.name, alias.description) == ("prod", "")
    assert routing(alias.routing_configurations) == [("1", 30), ("2", 70)]
    assert [type(r.weight) for r in alias.routing_configurations] == [int, int]
    assert ISO_8601.fullmatch(alias.created_time)


def test_list_flow_aliases_pages_in_name_order(client: Client) -> None:
    create_flow(client, "f1", versions=1)
    for name in ["e", "b", "d", "a", "c"]:
        create_alias(client, "f1", name, ("1", 1))
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        req = models.ListFlowAliasesRequest(flow_name="f1", limit=2, next_token=token)
        body = client.list_flow_aliases(req).body
        assert _is_request_id(body.request_id)
        pages.append([a.name for a in body.aliases])
        for alias in body.aliases:
            assert routing(alias.routing_configurations) == [("1", 1)]
        token = body.next_token or None
        if token is None:
            break
        assert len(pages) < 5, "pagination does not end"
    assert pages == [["a", "b"], ["c", "d"], ["e"]]


def test_update_flow_alias_keeps_what_is_not_sent(client: Client) -> None:
    create_flow(client, "f1", versions=2)
    client.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name="f1",
            name="prod",
            description="before",
            routing_configurations=create_routes(("1", 30), ("2", 70)),
        )
    )
    resp = client.update_flow_alias(
        models.UpdateFlowAliasRequest(flow_name="f1", name="prod", description="after")
    )
    assert _is_request_id(resp.body.request_id)
    assert resp.body.alias.description == "after"
    assert routing(resp.body.alias.routing_configurations) == [("1", 30), ("2", 70)]

    resp = client.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="f1", name="prod", routing_configurations=update_routes(("2", 1))
        )
    )
    assert routing(resp.body.alias.routing_configurations) == [("2", 1)]
    described = client.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="f1", name="prod")
    ).body.alias
    assert described.description == "after"
    assert routing(described.routing_configurations) == [("2", 1)]


def test_empty_description_clears_it(client: Client) -> None:
    create_flow(client, "f1", versions=1)
    client.update_flow(models.UpdateFlowRequest(name="f1", description="flow text"))
    client.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name="f1",
            name="prod",
            description="alias text",
            routing_configurations=create_routes(("1", 1)),
        )
    )
    # The SDK sends an empty string as `Description=`: present, so not "keep".
    alias = client.update_flow_alias(
        models.UpdateFlowAliasRequest(flow_name="f1", name="prod", description="")
    ).body.alias
    flow = client.update_flow(models.UpdateFlowRequest(name="f1", description="")).body
    assert (alias.description, flow.description) == ("", "")


def test_delete_flow_alias(client: Client) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 1))
    create_alias(client, "f1", "beta", ("2", 1))
    resp = client.delete_flow_alias(models.DeleteFlowAliasRequest(flow_name="f1", name="prod"))
    assert _is_request_id(resp.body.request_id)
    with cloudflow_error(404, "FlowAliasNotExists"):
        client.describe_flow_alias(models.DescribeFlowAliasRequest(flow_name="f1", name="prod"))
    listed = client.list_flow_aliases(models.ListFlowAliasesRequest(flow_name="f1")).body
    assert [a.name for a in listed.aliases] == ["beta"]
    # The version it routed to is free now.
    client.delete_flow_version(models.DeleteFlowVersionRequest(flow_name="f1", flow_version="1"))


# -- executions ----------------------------------------------------------------------


def test_start_execution_through_an_alias(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    flow_id = client.describe_flow(models.DescribeFlowRequest(name="f1")).body.id
    seen: Counter[str] = Counter()
    for i in range(50):
        document = {"i": i, "text": "héllo wörld & more"}
        resp = start(client, "f1", "prod", json.dumps(document), name=f"run-{i}")
        record = recording_executor.records[-1]
        version = resp.headers["x-flow-version"]
        assert version == record["version"] == record["path_version"]
        assert {k: record[k] for k in ("flow", "flowId", "alias", "execution", "input")} == {
            "flow": "f1",
            "flowId": flow_id,
            "alias": "prod",
            "execution": f"run-{i}",
            "input": document,
        }
        body = resp.body
        assert _is_request_id(body.request_id)
        assert (body.name, body.flow_name, body.status) == (f"run-{i}", "f1", "Succeeded")
        assert json.loads(body.output) == {"ranOn": version, "input": document}
        assert json.loads(body.input) == document
        assert ISO_8601.fullmatch(body.started_time) and ISO_8601.fullmatch(body.stopped_time)
        seen[version] += 1
    assert len(recording_executor.records) == 50
    # Both versions get traffic: all 50 on one side has probability below 2e-8.
    assert set(seen) == {"1", "2"}


def test_start_execution_with_a_version_qualifier(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=3)
    create_alias(client, "f1", "prod", ("1", 1))
    for _ in range(5):
        resp = start(client, "f1", "2", '{"a": 1}')
        assert resp.headers["x-flow-version"] == "2"
    assert recording_executor.versions() == Counter({"2": 5})
    assert {r["alias"] for r in recording_executor.records} == {""}
    assert json.loads(resp.body.output) == {"ranOn": "2", "input": {"a": 1}}


def test_start_execution_without_qualifier_runs_the_latest_version(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    assert start(client, "f1").headers["x-flow-version"] == "2"
    client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    resp = start(client, "f1", input='{"x": [1, 2]}')
    assert resp.headers["x-flow-version"] == "3"
    assert [r["version"] for r in recording_executor.records] == ["2", "3"]
    assert recording_executor.records[-1]["input"] == {"x": [1, 2]}


def test_start_execution_without_a_published_version(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1")
    with cloudflow_error(404, "FlowVersionNotExists"):
        start(client, "f1")
    assert recording_executor.records == []


def test_describe_execution_asks_the_version_that_ran_it(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("2", 1))
    start(client, "f1", "prod", '{"n": 1}', name="on-two")
    start(client, "f1", "1", '{"n": 2}', name="on-one")

    for name, version, document in [("on-two", "2", {"n": 1}), ("on-one", "1", {"n": 2})]:
        req = models.DescribeExecutionRequest(flow_name="f1", execution_name=name)
        resp = client.describe_execution(req)
        assert resp.headers["x-flow-version"] == version
        body = resp.body
        assert _is_request_id(body.request_id)
        assert (body.name, body.flow_name, body.status) == (name, "f1", "Succeeded")
        assert json.loads(body.output) == {"ranOn": version, "input": document}
        assert json.loads(body.input) == document
        assert body.flow_definition == DEFINITION

    with cloudflow_error(404, "ExecutionNotExists"):
        client.describe_execution(
            models.DescribeExecutionRequest(flow_name="f1", execution_name="never-ran")
        )


def test_describe_execution_without_a_caller_chosen_name(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    for i in range(10):
        started = start(client, "f1", "prod", json.dumps({"i": i}))
        version = started.headers["x-flow-version"]
        name = started.body.name
        assert isinstance(name, str) and name
        assert recording_executor.records[-1]["execution"] == name
        req = models.DescribeExecutionRequest(flow_name="f1", execution_name=name)
        described = client.describe_execution(req)
        assert described.headers["x-flow-version"] == version
        assert described.body.name == name
        assert json.loads(described.body.output) == {"ranOn": version, "input": {"i": i}}


# -- weighted routing -----------------------------------------------------------------


def _run(client: Client, qualifier: str, n: int) -> Counter[str]:
    """Start ``n`` executions through ``qualifier``; count the versions from X-Flow-Version."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        seen[start(client, "f1", qualifier, "{}").headers["x-flow-version"]] += 1
    return seen


def _assert_split(seen: Counter[str], weights: dict[str, int]) -> None:
    n = sum(seen.values())
    total = sum(weights.values())
    observed = [seen[v] for v in weights]
    expected = [n * w / total for w in weights.values()]
    assert sum(observed) == n, seen  # nothing went to a version outside the alias
    result = chisquare(observed, f_exp=expected)
    assert result.pvalue > ALPHA, (seen, weights, result)


@pytest.mark.slow
def test_weighted_split_follows_the_weights(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    t0 = time.perf_counter()
    seen = _run(client, "prod", 2000)
    elapsed = time.perf_counter() - t0
    # Every header agrees with what the executor was actually called with.
    assert seen == recording_executor.versions()
    _assert_split(seen, {"1": 30, "2": 70})
    print(f"2000 executions through the SDK in {elapsed:.1f}s")


@pytest.mark.slow
def test_weights_are_relative(client: Client, recording_executor: RecordingExecutor) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 20), ("2", 30))
    seen = _run(client, "prod", 2000)
    assert seen == recording_executor.versions()
    _assert_split(seen, {"1": 40, "2": 60})


def test_update_to_100_0_sends_everything_to_the_first(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    before = _run(client, "prod", 50)
    assert set(before) == {"1", "2"}
    client.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="f1", name="prod", routing_configurations=update_routes(("1", 100), ("2", 0))
        )
    )
    recording_executor.reset()
    assert _run(client, "prod", 200) == Counter({"1": 200})
    assert recording_executor.versions() == Counter({"1": 200})


def test_single_version_takes_everything(
    client: Client, recording_executor: RecordingExecutor
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("2", 5))
    assert _run(client, "prod", 100) == Counter({"2": 100})
    assert recording_executor.versions() == Counter({"2": 100})


# -- the built-in reference executor (no --upstream) -----------------------------------------


@pytest.mark.parametrize("store_kind", GATEWAY_STORES)
def test_default_upstream_is_the_reference_executor(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
) -> None:
    with custom_gateway(request, bg_loop, recording_executor, store_kind, upstream=None) as gateway:
        client = client_for(gateway)
        create_flow(client, "f1", versions=2)
        create_alias(client, "f1", "prod", ("2", 1))
        document = {"order": 42, "items": ["a", "b"]}
        resp = start(client, "f1", "prod", json.dumps(document), name="ref-1")
        assert resp.headers["x-flow-version"] == "2"
        assert resp.body.status == "Succeeded"
        assert json.loads(resp.body.output) == document

        described = client.describe_execution(
            models.DescribeExecutionRequest(flow_name="f1", execution_name="ref-1")
        )
        assert described.headers["x-flow-version"] == "2"
        assert described.body.name == "ref-1"
        assert json.loads(described.body.output) == document
        assert json.loads(described.body.input) == document

        versioned = start(client, "f1", "1", '{"v": 1}')
        assert versioned.headers["x-flow-version"] == "1"
        assert json.loads(versioned.body.output) == {"v": 1}
    # Nothing went to the recording executor: the gateway served it itself.
    assert recording_executor.records == []
