"""CloudFlow error answers through the real fnf SDK: status, Code and no partial writes.

The codes are the contract of docs/wire.md §2.5 (plus ``ExecutionNotExists``,
``ResourceInUse``, ``InvalidAction.NotFound`` and the executor failures mapped in
``router/dialects/cloudflow.py``). Raw HTTP is used only where the SDK cannot
send the request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client

from router.forward import Timeouts
from tests.dialects.cloudflow_client import (
    DEFINITION,
    assert_raw_error,
    client_for,
    cloudflow_error,
    create_alias,
    create_flow,
    create_routes,
    custom_gateway,
    raw_call,
    routing,
    scrape,
    start,
    update_routes,
    value,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop, Behaviour, GatewayServer, RecordingExecutor, free_port

EXECUTIONS = "flow_router_executions_total"
API_REQUESTS = "flow_router_api_requests_total"


@pytest.fixture
def client(gateway: GatewayServer) -> Client:
    return client_for(gateway)


def _flow_names(client: Client) -> list[str]:
    return [f.name for f in client.list_flows(models.ListFlowsRequest()).body.flows]


def _alias_names(client: Client, flow: str = "f1") -> list[str]:
    req = models.ListFlowAliasesRequest(flow_name=flow)
    return [a.name for a in client.list_flow_aliases(req).body.aliases]


def _alias(client: Client, name: str = "prod") -> Any:
    req = models.DescribeFlowAliasRequest(flow_name="f1", name=name)
    return client.describe_flow_alias(req).body.alias


def _with_alias(client: Client) -> None:
    """f1 with versions 1..3 and alias prod (1: 30, 2: 70, "before")."""
    create_flow(client, "f1", versions=3)
    client.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name="f1",
            name="prod",
            description="before",
            routing_configurations=create_routes(("1", 30), ("2", 70)),
        )
    )


def _assert_alias_unchanged(client: Client) -> None:
    alias = _alias(client)
    assert alias.description == "before"
    assert routing(alias.routing_configurations) == [("1", 30), ("2", 70)]
    assert _alias_names(client) == ["prod"]


# -- MissingRequiredParams -----------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        models.CreateFlowRequest(definition=DEFINITION),
        models.CreateFlowRequest(name="", definition=DEFINITION),
        models.CreateFlowRequest(name="f2"),
    ],
    ids=["no-name", "empty-name", "no-definition"],
)
def test_create_flow_missing_parameter(client: Client, request_: Any) -> None:
    create_flow(client, "f1")
    with cloudflow_error(400, "MissingRequiredParams") as raised:
        client.create_flow(request_)
    assert "Name" in raised.message or "Definition" in raised.message
    assert _flow_names(client) == ["f1"]


@pytest.mark.parametrize(
    "fields",
    [
        {"routing_configurations": create_routes(("1", 1))},
        {"name": "", "routing_configurations": create_routes(("1", 1))},
        {"name": "prod"},
    ],
    ids=["no-name", "empty-name", "no-routing"],
)
def test_create_flow_alias_missing_parameter(client: Client, fields: dict[str, Any]) -> None:
    create_flow(client, "f1", versions=1)
    with cloudflow_error(400, "MissingRequiredParams"):
        client.create_flow_alias(models.CreateFlowAliasRequest(flow_name="f1", **fields))
    assert _alias_names(client) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.describe_flow(models.DescribeFlowRequest()),
        lambda c: c.publish_flow_version(models.PublishFlowVersionRequest(flow_name="")),
        lambda c: c.delete_flow_version(models.DeleteFlowVersionRequest(flow_name="f1")),
        lambda c: c.describe_flow_alias(models.DescribeFlowAliasRequest(flow_name="f1")),
        lambda c: c.update_flow_alias(
            models.UpdateFlowAliasRequest(flow_name="f1", description="x")
        ),
        lambda c: c.delete_flow_alias(models.DeleteFlowAliasRequest(flow_name="f1")),
        lambda c: c.start_execution(models.StartExecutionRequest(qualifier="prod")),
        lambda c: c.describe_execution(models.DescribeExecutionRequest(flow_name="f1")),
    ],
    ids=[
        "DescribeFlow",
        "PublishFlowVersion",
        "DeleteFlowVersion",
        "DescribeFlowAlias",
        "UpdateFlowAlias",
        "DeleteFlowAlias",
        "StartExecution",
        "DescribeExecution",
    ],
)
def test_other_missing_parameters(
    client: Client, recording_executor: RecordingExecutor, call: Callable[[Client], Any]
) -> None:
    _with_alias(client)
    with cloudflow_error(400, "MissingRequiredParams"):
        call(client)
    _assert_alias_unchanged(client)
    assert recording_executor.records == []


# -- InvalidArgument -----------------------------------------------------------------

# RoutingConfigurations the SDK can send; each must be refused whole.
BAD_ROUTES: dict[str, list[tuple[str | None, Any]]] = {
    "no-entries": [],
    "three-entries": [("1", 1), ("2", 1), ("3", 1)],
    "negative-weight": [("1", -1), ("2", 5)],
    "all-weights-zero": [("1", 0), ("2", 0)],
    "duplicate-version": [("1", 50), ("1", 50)],
    "weight-not-a-number": [("1", "x")],
    "weight-fractional": [("1", 1.5), ("2", 1)],
    "weight-over-int32": [("1", 2**31)],
    "weight-missing": [("1", None)],
    "version-abc": [("abc", 1)],
    "version-zero": [("0", 1)],
    "version-missing": [(None, 1)],
}
# RoutingConfigurations values only raw HTTP can send.
BAD_RAW_ROUTES = {
    "not-json": '[{"Version": "1", "Weight": 30',
    "not-an-array": '{"Version": "1", "Weight": 30}',
    "array-of-numbers": "[1, 2]",
    "json-string": '"1:30,2:70"',
    "version-a-json-float": '[{"Version": 1.5, "Weight": 1}]',
    "weight-a-json-bool": '[{"Version": "1", "Weight": true}]',
    "entry-without-version": '[{"Weight": 1}]',
}


@pytest.mark.parametrize("case", BAD_ROUTES)
def test_create_flow_alias_rejects_bad_routing(client: Client, case: str) -> None:
    create_flow(client, "f1", versions=3)
    with cloudflow_error(400, "InvalidArgument"):
        client.create_flow_alias(
            models.CreateFlowAliasRequest(
                flow_name="f1", name="prod", routing_configurations=create_routes(*BAD_ROUTES[case])
            )
        )
    assert _alias_names(client) == []


@pytest.mark.parametrize("case", BAD_ROUTES)
def test_update_flow_alias_rejects_bad_routing(client: Client, case: str) -> None:
    _with_alias(client)
    with cloudflow_error(400, "InvalidArgument"):
        client.update_flow_alias(
            models.UpdateFlowAliasRequest(
                flow_name="f1",
                name="prod",
                description="after",
                routing_configurations=update_routes(*BAD_ROUTES[case]),
            )
        )
    _assert_alias_unchanged(client)


@pytest.mark.parametrize("case", BAD_RAW_ROUTES)
@pytest.mark.parametrize("action", ["CreateFlowAlias", "UpdateFlowAlias"])
def test_malformed_routing_json(
    gateway: GatewayServer, client: Client, action: str, case: str
) -> None:
    _with_alias(client)
    name = "prod" if action == "UpdateFlowAlias" else "canary"
    answer = raw_call(
        gateway,
        action,
        {
            "FlowName": "f1",
            "Name": name,
            "Description": "after",
            "RoutingConfigurations": BAD_RAW_ROUTES[case],
        },
    )
    assert_raw_error(answer, 400, "InvalidArgument")
    assert answer.headers["Content-Type"].startswith("application/json")
    _assert_alias_unchanged(client)


@pytest.mark.parametrize("name", ["1starts-with-digit", "has space", "a" * 129, "ünï", "a.b"])
def test_create_flow_rejects_a_bad_name(client: Client, name: str) -> None:
    with cloudflow_error(400, "InvalidArgument"):
        client.create_flow(models.CreateFlowRequest(name=name, definition=DEFINITION))
    assert _flow_names(client) == []


@pytest.mark.parametrize("name", ["has space", "123", "x" * 129])
def test_create_flow_alias_rejects_a_bad_name(client: Client, name: str) -> None:
    create_flow(client, "f1", versions=1)
    with cloudflow_error(400, "InvalidArgument"):
        create_alias(client, "f1", name, ("1", 1))
    assert _alias_names(client) == []


def test_update_flow_rejects_a_long_description_and_changes_nothing(client: Client) -> None:
    client.create_flow(models.CreateFlowRequest(name="f1", definition="def: one", description="d"))
    with cloudflow_error(400, "InvalidArgument"):
        client.update_flow(
            models.UpdateFlowRequest(name="f1", definition="def: two", description="x" * 257)
        )
    flow = client.describe_flow(models.DescribeFlowRequest(name="f1")).body
    assert (flow.definition, flow.description) == ("def: one", "d")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.list_flows(models.ListFlowsRequest(limit="x")),
        lambda c: c.list_flows(models.ListFlowsRequest(limit=0)),
        lambda c: c.list_flow_versions(models.ListFlowVersionsRequest(flow_name="f1", limit="x")),
        lambda c: c.list_flow_aliases(models.ListFlowAliasesRequest(flow_name="f1", limit="-1")),
        lambda c: c.describe_flow(models.DescribeFlowRequest(name="f1", flow_version="abc")),
        lambda c: c.start_execution(
            models.StartExecutionRequest(flow_name="f1", qualifier="prod", input="{not json")
        ),
        lambda c: c.start_execution(
            models.StartExecutionRequest(flow_name="f1", qualifier="prod", execution_name="a b")
        ),
    ],
    ids=[
        "ListFlows-limit-x",
        "ListFlows-limit-0",
        "ListFlowVersions-limit-x",
        "ListFlowAliases-limit-negative",
        "DescribeFlow-version-abc",
        "StartExecution-input-not-json",
        "StartExecution-bad-execution-name",
    ],
)
def test_invalid_values(
    client: Client, recording_executor: RecordingExecutor, call: Callable[[Client], Any]
) -> None:
    _with_alias(client)
    with cloudflow_error(400, "InvalidArgument"):
        call(client)
    assert recording_executor.records == []


def test_list_flow_versions_rejects_a_malformed_next_token(client: Client) -> None:
    create_flow(client, "f1", versions=3)
    with cloudflow_error(400, "InvalidArgument"):
        client.list_flow_versions(
            models.ListFlowVersionsRequest(flow_name="f1", limit="1", next_token="abc")
        )


# -- not found -----------------------------------------------------------------------

# Every action that names a flow, aimed at one that does not exist.
ON_MISSING_FLOW: dict[str, Callable[[Client], Any]] = {
    "DescribeFlow": lambda c: c.describe_flow(models.DescribeFlowRequest(name="nope")),
    "UpdateFlow": lambda c: c.update_flow(models.UpdateFlowRequest(name="nope", description="x")),
    "DeleteFlow": lambda c: c.delete_flow(models.DeleteFlowRequest(name="nope")),
    "PublishFlowVersion": lambda c: c.publish_flow_version(
        models.PublishFlowVersionRequest(flow_name="nope")
    ),
    "ListFlowVersions": lambda c: c.list_flow_versions(
        models.ListFlowVersionsRequest(flow_name="nope")
    ),
    "DeleteFlowVersion": lambda c: c.delete_flow_version(
        models.DeleteFlowVersionRequest(flow_name="nope", flow_version="1")
    ),
    "CreateFlowAlias": lambda c: c.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name="nope", name="prod", routing_configurations=create_routes(("1", 1))
        )
    ),
    "DescribeFlowAlias": lambda c: c.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="nope", name="prod")
    ),
    "ListFlowAliases": lambda c: c.list_flow_aliases(
        models.ListFlowAliasesRequest(flow_name="nope")
    ),
    "UpdateFlowAlias": lambda c: c.update_flow_alias(
        models.UpdateFlowAliasRequest(flow_name="nope", name="prod", description="x")
    ),
    "DeleteFlowAlias": lambda c: c.delete_flow_alias(
        models.DeleteFlowAliasRequest(flow_name="nope", name="prod")
    ),
    "StartExecution-alias": lambda c: start(c, "nope", "prod"),
    "StartExecution-version": lambda c: start(c, "nope", "1"),
    "StartExecution-latest": lambda c: start(c, "nope"),
    "DescribeExecution": lambda c: c.describe_execution(
        models.DescribeExecutionRequest(flow_name="nope", execution_name="e1")
    ),
}


@pytest.mark.parametrize("action", ON_MISSING_FLOW)
def test_flow_not_exists(
    client: Client, recording_executor: RecordingExecutor, action: str
) -> None:
    _with_alias(client)
    with cloudflow_error(404, "FlowNotExists") as raised:
        ON_MISSING_FLOW[action](client)
    assert "nope" in raised.message
    assert _flow_names(client) == ["f1"]
    assert recording_executor.records == []


ON_MISSING_ALIAS: dict[str, Callable[[Client], Any]] = {
    "DescribeFlowAlias": lambda c: c.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="f1", name="nope")
    ),
    "UpdateFlowAlias": lambda c: c.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="f1", name="nope", routing_configurations=update_routes(("1", 1))
        )
    ),
    "DeleteFlowAlias": lambda c: c.delete_flow_alias(
        models.DeleteFlowAliasRequest(flow_name="f1", name="nope")
    ),
    "StartExecution": lambda c: start(c, "f1", "nope"),
}


@pytest.mark.parametrize("action", ON_MISSING_ALIAS)
def test_flow_alias_not_exists(
    client: Client, recording_executor: RecordingExecutor, action: str
) -> None:
    _with_alias(client)
    with cloudflow_error(404, "FlowAliasNotExists"):
        ON_MISSING_ALIAS[action](client)
    _assert_alias_unchanged(client)
    assert recording_executor.records == []


def test_create_flow_alias_to_a_missing_version(client: Client) -> None:
    create_flow(client, "f1", versions=2)
    with cloudflow_error(404, "FlowVersionNotExists"):
        create_alias(client, "f1", "prod", ("1", 50), ("9", 50))
    assert _alias_names(client) == []


def test_update_flow_alias_to_a_missing_version(client: Client) -> None:
    _with_alias(client)
    with cloudflow_error(404, "FlowVersionNotExists"):
        client.update_flow_alias(
            models.UpdateFlowAliasRequest(
                flow_name="f1",
                name="prod",
                description="after",
                routing_configurations=update_routes(("9", 1)),
            )
        )
    _assert_alias_unchanged(client)


def test_update_flow_alias_to_a_deleted_version(client: Client) -> None:
    _with_alias(client)
    client.delete_flow_version(models.DeleteFlowVersionRequest(flow_name="f1", flow_version="3"))
    with cloudflow_error(404, "FlowVersionNotExists"):
        client.update_flow_alias(
            models.UpdateFlowAliasRequest(
                flow_name="f1", name="prod", routing_configurations=update_routes(("3", 1))
            )
        )
    _assert_alias_unchanged(client)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: start(c, "f1", "99"),
        lambda c: c.describe_flow(models.DescribeFlowRequest(name="f1", flow_version="9")),
        lambda c: c.delete_flow_version(
            models.DeleteFlowVersionRequest(flow_name="f1", flow_version="9")
        ),
    ],
    ids=["StartExecution", "DescribeFlow", "DeleteFlowVersion"],
)
def test_flow_version_not_exists(
    client: Client, recording_executor: RecordingExecutor, call: Callable[[Client], Any]
) -> None:
    _with_alias(client)
    with cloudflow_error(404, "FlowVersionNotExists"):
        call(client)
    assert recording_executor.records == []


def test_execution_not_exists_for_a_forged_generated_name(client: Client) -> None:
    _with_alias(client)
    with cloudflow_error(404, "ExecutionNotExists"):
        client.describe_execution(
            models.DescribeExecutionRequest(flow_name="f1", execution_name="0" * 32 + ".1.prod")
        )


# -- already exists ---------------------------------------------------------------------


def test_flow_already_exists(client: Client) -> None:
    client.create_flow(
        models.CreateFlowRequest(name="f1", definition="def: one", description="first")
    )
    with cloudflow_error(409, "FlowAlreadyExists") as raised:
        client.create_flow(
            models.CreateFlowRequest(name="f1", definition="def: two", description="second")
        )
    assert "f1" in raised.message
    flow = client.describe_flow(models.DescribeFlowRequest(name="f1")).body
    assert (flow.definition, flow.description) == ("def: one", "first")
    assert _flow_names(client) == ["f1"]


def test_flow_alias_already_exists(client: Client) -> None:
    _with_alias(client)
    with cloudflow_error(409, "FlowAliasAlreadyExists"):
        client.create_flow_alias(
            models.CreateFlowAliasRequest(
                flow_name="f1",
                name="prod",
                description="second",
                routing_configurations=create_routes(("3", 1)),
            )
        )
    _assert_alias_unchanged(client)


def test_execution_already_exists(client: Client, recording_executor: RecordingExecutor) -> None:
    _with_alias(client)
    first = start(client, "f1", "prod", '{"n": 1}', name="once")
    with cloudflow_error(409, "ExecutionAlreadyExists"):
        start(client, "f1", "1", '{"n": 2}', name="once")
    assert [r["execution"] for r in recording_executor.records] == ["once"]
    described = client.describe_execution(
        models.DescribeExecutionRequest(flow_name="f1", execution_name="once")
    )
    version = first.headers["x-flow-version"]
    assert described.headers["x-flow-version"] == version
    assert json.loads(described.body.output) == {"ranOn": version, "input": {"n": 1}}


# -- actions ------------------------------------------------------------------------------


# The raw-HTTP tests below first create a flow through the SDK: the state they must
# leave alone, and time for the gateway's change-feed subscriber to finish
# subscribing (see test_gateway_stops_right_after_start in test_cloudflow_metrics.py).


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_action(gateway: GatewayServer, client: Client, method: str) -> None:
    create_flow(client, "f1")
    answer = raw_call(gateway, "DescribeFlowz", {"Name": "f1"}, method)
    assert_raw_error(answer, 400, "InvalidAction.NotFound")
    assert "DescribeFlowz" in answer.body["Message"]
    answer = raw_call(gateway, "CreateFlowz", {"Name": "f2", "Definition": DEFINITION}, method)
    assert_raw_error(answer, 400, "InvalidAction.NotFound")
    assert _flow_names(client) == ["f1"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_missing_action(gateway: GatewayServer, client: Client, method: str) -> None:
    create_flow(client, "f1")
    answer = raw_call(gateway, None, {"Name": "f2", "Definition": DEFINITION}, method)
    assert_raw_error(answer, 400, "MissingRequiredParams")
    assert "Action" in answer.body["Message"]
    assert _flow_names(client) == ["f1"]


def test_action_from_the_acs_header(gateway: GatewayServer, client: Client) -> None:
    """ACS3-style clients put the action only in ``x-acs-action`` (docs/wire.md §2.3)."""
    create_flow(client, "f1")
    req = urllib.request.Request(
        f"{gateway.url}/?Name=f1", headers={"x-acs-action": "DescribeFlow"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["Definition"] == DEFINITION
    req = urllib.request.Request(
        f"{gateway.url}/?Name=nope", headers={"x-acs-action": "DescribeFlow"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    body = json.loads(info.value.read())
    assert (info.value.code, body["Code"]) == (404, "FlowNotExists")


# -- executor failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(status=500),
        Behaviour(status=404),
        Behaviour(body=b"not json"),
        Behaviour(body=b"[1, 2]"),
    ],
    ids=["http-500", "http-404", "body-not-json", "body-not-an-object"],
)
def test_executor_failure(
    gateway: GatewayServer,
    client: Client,
    recording_executor: RecordingExecutor,
    behaviour: Behaviour,
) -> None:
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 1))
    recording_executor.behaviours["1"] = behaviour
    with cloudflow_error(502, "ExecutorFailed") as raised:
        start(client, "f1", "prod", '{"a": 1}')
    assert "Traceback" not in raised.message
    assert [r["version"] for r in recording_executor.records] == ["1"]
    # Other versions are unaffected.
    assert start(client, "f1", "2").headers["x-flow-version"] == "2"

    scraped = scrape(gateway)
    failed = {"flow": "f1", "alias": "prod", "version": "1"}
    assert value(scraped, EXECUTIONS, outcome="error", **failed) == 1
    assert not value(scraped, EXECUTIONS, outcome="success", **failed)
    assert value(scraped, EXECUTIONS, outcome="success", flow="f1", alias="", version="2") == 1
    assert value(scraped, API_REQUESTS, action="StartExecution", code="502") == 1


@pytest.mark.parametrize("store_kind", GATEWAY_STORES)
def test_executor_unreachable(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
) -> None:
    closed = free_port()  # bound and released: nothing listens there
    upstream = f"http://127.0.0.1:{closed}/x/{{flow}}/{{version}}"
    with custom_gateway(
        request, bg_loop, recording_executor, store_kind, upstream=upstream
    ) as gateway:
        client = client_for(gateway)
        create_flow(client, "f1", versions=1)
        create_alias(client, "f1", "prod", ("1", 1))
        with cloudflow_error(502, "ExecutorUnavailable"):
            start(client, "f1", "prod", "{}", name="lost")
        # The failed start is recorded (issue 11): describing it asks no executor.
        described = client.describe_execution(
            models.DescribeExecutionRequest(flow_name="f1", execution_name="lost")
        ).body
        assert described.status == "Failed"
        labels = {"flow": "f1", "alias": "prod", "version": "1"}
        assert value(scrape(gateway), EXECUTIONS, outcome="error", **labels) == 1


@pytest.mark.parametrize("store_kind", GATEWAY_STORES)
def test_executor_timeout(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
) -> None:
    timeouts = Timeouts(connect_s=1, total_s=0.3)
    with custom_gateway(
        request, bg_loop, recording_executor, store_kind, timeouts=timeouts
    ) as gateway:
        client = client_for(gateway)
        create_flow(client, "f1", versions=2)
        create_alias(client, "f1", "prod", ("1", 1))
        recording_executor.behaviours["1"] = Behaviour(delay_s=1)
        with cloudflow_error(504, "ExecutorTimeout"):
            start(client, "f1", "prod", "{}")
        assert start(client, "f1", "2").headers["x-flow-version"] == "2"
