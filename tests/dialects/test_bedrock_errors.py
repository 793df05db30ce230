"""Bedrock error codes through boto3: every constraint of the seed, not-found, conflict.

Every validation rule of CreateFlowAlias (docs/wire.md §3.1) answers ``ValidationException``
naming the field. botocore checks minimum lengths client-side and nothing else,
so rules it would stop before sending (an empty description, a 32-character
clientToken, a missing name) are sent as raw HTTP to show the gateway enforces
them too. Memory store and real Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.dialects.bedrock_client import (
    ROLE,
    RawAnswer,
    alias_arn,
    bedrock_error,
    create_alias,
    create_flow,
    flow_arn,
    inputs,
    raw_request,
)
from tests.harness import GatewayServer, RecordingExecutor

MISSING = "ZZZZZZZZZ0"


@pytest.fixture
def flow_id(agent: Any) -> str:
    return create_flow(agent, "f1", versions=2)


def _invalid(client: Any, field: str, call: Callable[[], Any]) -> None:
    with bedrock_error(client, "ValidationException", 400) as raised:
        call()
    assert field in raised.message, raised.message
    assert raised.error is not None
    # Only bedrock-agent models fieldList; the runtime's ValidationException has a message.
    if "fieldList" in client.meta.service_model.shape_for("ValidationException").members:
        assert [f["name"] for f in raised.error.response["fieldList"]] == [field]


def _assert_raw_error(answer: RawAnswer, status: int, code: str, field: str | None = None) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["x-amzn-ErrorType"] == code
    assert answer.headers["x-amzn-RequestId"]
    body = answer.json()
    assert isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert field in body["message"]
        assert body["fieldList"][0]["name"] == field


# -- CreateFlowAlias: every constraint of docs/wire.md §3.1 ---------------------------------

ROUTE_1 = [{"flowVersion": "1"}]
LONG_KEY = "k" * 129


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("name", {"name": "bad name!"}),
        ("name", {"name": "a__b"}),
        ("name", {"name": "-lead"}),
        ("name", {"name": "a" * 101}),
        ("description", {"description": "d" * 201}),
        ("clientToken", {"clientToken": "t" * 257}),
        ("clientToken", {"clientToken": "t" * 32 + "_"}),
        ("clientToken", {"clientToken": "-" + "t" * 40}),
        ("routingConfiguration", {"routingConfiguration": [*ROUTE_1, {"flowVersion": "2"}]}),
        ("routingConfiguration", {"routingConfiguration": [{"flowVersion": "DRAFT"}]}),
        ("routingConfiguration.version", {"routingConfiguration": [{"flowVersion": "v1"}]}),
        ("routingConfiguration.flowVersion", {"routingConfiguration": [{}]}),
        ("tags", {"tags": {LONG_KEY: "v"}}),
        ("tags", {"tags": {"bad#key": "v"}}),
        ("tags", {"tags": {"k": "v" * 257}}),
        ("tags", {"tags": {"k": "bad!value"}}),
    ],
    ids=[
        "name-pattern",
        "name-double-underscore",
        "name-leading-dash",
        "name-too-long",
        "description-too-long",
        "token-too-long",
        "token-pattern",
        "token-leading-dash",
        "routing-two-items",
        "routing-draft",
        "routing-version-pattern",
        "routing-no-version",
        "tag-key-too-long",
        "tag-key-pattern",
        "tag-value-too-long",
        "tag-value-pattern",
    ],
)
def test_create_flow_alias_constraints(
    agent: Any, flow_id: str, field: str, overrides: dict[str, Any]
) -> None:
    request = {"flowIdentifier": flow_id, "name": "prod", "routingConfiguration": ROUTE_1}
    _invalid(agent, field, lambda: agent.create_flow_alias(**{**request, **overrides}))
    assert agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"] == []


def test_create_flow_alias_flow_identifier_pattern(agent: Any) -> None:
    for bad in ("short", "arn:aws:bedrock:us-east-1:123456789012:flow/short"):
        _invalid(
            agent,
            "flowIdentifier",
            lambda bad=bad: agent.create_flow_alias(
                flowIdentifier=bad, name="prod", routingConfiguration=ROUTE_1
            ),
        )


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("name", {"routingConfiguration": ROUTE_1}),
        ("name", {"name": "", "routingConfiguration": ROUTE_1}),
        ("routingConfiguration", {"name": "prod"}),
        ("routingConfiguration", {"name": "prod", "routingConfiguration": []}),
        ("routingConfiguration", {"name": "prod", "routingConfiguration": "1"}),
        ("description", {"name": "prod", "routingConfiguration": ROUTE_1, "description": ""}),
        ("clientToken", {"name": "prod", "routingConfiguration": ROUTE_1, "clientToken": "t" * 32}),
        ("tags", {"name": "prod", "routingConfiguration": ROUTE_1, "tags": {"": "v"}}),
        ("tags", {"name": "prod", "routingConfiguration": ROUTE_1, "tags": ["k"]}),
        ("name", {"name": 5, "routingConfiguration": ROUTE_1}),
    ],
    ids=[
        "no-name",
        "empty-name",
        "no-routing",
        "empty-routing",
        "routing-not-a-list",
        "empty-description",
        "token-too-short",
        "empty-tag-key",
        "tags-not-a-map",
        "name-not-a-string",
    ],
)
def test_create_flow_alias_constraints_botocore_checks_first(
    gateway: GatewayServer, flow_id: str, field: str, body: dict[str, Any]
) -> None:
    answer = raw_request(gateway, "POST", f"/flows/{flow_id}/aliases", body)
    _assert_raw_error(answer, 400, "ValidationException", field)


def test_alias_to_a_missing_version_is_not_found(agent: Any, flow_id: str) -> None:
    with bedrock_error(agent, "ResourceNotFoundException", 404):
        agent.create_flow_alias(
            flowIdentifier=flow_id, name="prod", routingConfiguration=[{"flowVersion": "9"}]
        )
    alias_id = create_alias(agent, flow_id, "prod", "1")
    with bedrock_error(agent, "ResourceNotFoundException", 404):
        agent.update_flow_alias(
            flowIdentifier=flow_id,
            aliasIdentifier=alias_id,
            name="prod",
            routingConfiguration=[{"flowVersion": "9"}],
        )
    got = agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier=alias_id)
    assert got["routingConfiguration"] == ROUTE_1


def test_update_flow_alias_constraints(agent: Any, flow_id: str) -> None:
    alias_id = create_alias(agent, flow_id, "prod", "1")
    request = {
        "flowIdentifier": flow_id,
        "aliasIdentifier": alias_id,
        "name": "prod",
        "routingConfiguration": ROUTE_1,
    }
    for field, overrides in [
        ("routingConfiguration", {"routingConfiguration": [*ROUTE_1, {"flowVersion": "2"}]}),
        ("name", {"name": "bad name"}),
        ("description", {"description": "d" * 201}),
        ("aliasIdentifier", {"aliasIdentifier": "TSTALIASID"}),
        ("aliasIdentifier", {"aliasIdentifier": "nope"}),
    ]:
        _invalid(agent, field, lambda o=overrides: agent.update_flow_alias(**{**request, **o}))
    got = agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier=alias_id)
    assert (got["name"], got["routingConfiguration"]) == ("prod", ROUTE_1)


# -- other operations' constraints ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("name", {"name": "bad name"}),
        ("executionRoleArn", {"executionRoleArn": "arn:aws:iam::123:user/x"}),
        ("description", {"description": "d" * 201}),
        ("customerEncryptionKeyArn", {"customerEncryptionKeyArn": "arn:aws:kms:us-east-1:1:k"}),
        ("clientToken", {"clientToken": "x" * 257}),
        ("tags", {"tags": {"k": "v!"}}),
    ],
)
def test_create_flow_constraints(agent: Any, field: str, overrides: dict[str, Any]) -> None:
    request = {"name": "f1", "executionRoleArn": ROLE}
    _invalid(agent, field, lambda: agent.create_flow(**{**request, **overrides}))
    assert agent.list_flows()["flowSummaries"] == []


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("executionRoleArn", {"name": "f1"}),
        ("definition", {"name": "f1", "executionRoleArn": ROLE, "definition": "text"}),
    ],
)
def test_create_flow_constraints_botocore_checks_first(
    gateway: GatewayServer, field: str, body: dict[str, Any]
) -> None:
    _assert_raw_error(
        raw_request(gateway, "POST", "/flows/", body), 400, "ValidationException", field
    )


def test_other_validation_rules(agent: Any, runtime: Any, flow_id: str) -> None:
    alias_id = create_alias(agent, flow_id, "prod", "1")
    _invalid(
        agent,
        "flowVersion",
        lambda: agent.get_flow_version(flowIdentifier=flow_id, flowVersion="x"),
    )
    _invalid(agent, "maxResults", lambda: agent.list_flows(maxResults=1001))
    _invalid(
        agent,
        "description",
        lambda: agent.create_flow_version(flowIdentifier=flow_id, description="d" * 201),
    )
    _invalid(
        agent,
        "name",
        lambda: agent.update_flow(flowIdentifier=flow_id, name="a b", executionRoleArn=ROLE),
    )
    _invalid(
        agent, "tags", lambda: agent.tag_resource(resourceArn=flow_arn(flow_id), tags={"k": "!"})
    )
    _invalid(
        agent,
        "tagKeys",
        lambda: agent.untag_resource(resourceArn=flow_arn(flow_id), tagKeys=["k" * 129]),
    )
    _invalid(
        agent,
        "resourceArn",
        lambda: agent.list_tags_for_resource(resourceArn="arn:aws:s3:::bucket-x"),
    )
    _invalid(
        runtime,
        "flowExecutionName",
        lambda: runtime.start_flow_execution(
            flowIdentifier=flow_id,
            flowAliasIdentifier=alias_id,
            inputs=inputs({}),
            flowExecutionName="no_underscores",
        ),
    )
    _invalid(
        runtime,
        "inputs.nodeName",
        lambda: runtime.start_flow_execution(
            flowIdentifier=flow_id,
            flowAliasIdentifier=alias_id,
            inputs=[{"nodeName": "9bad", "content": {"document": 1}}],
        ),
    )
    _invalid(
        runtime,
        "executionIdentifier",
        lambda: runtime.get_flow_execution(
            flowIdentifier=flow_id,
            flowAliasIdentifier=alias_id,
            executionIdentifier=alias_arn(flow_id, alias_id),
        ),
    )


def test_malformed_next_token(agent: Any, flow_id: str) -> None:
    with bedrock_error(agent, "ValidationException", 400):
        agent.list_flow_versions(flowIdentifier=flow_id, maxResults=1, nextToken="abc")


# -- not found -----------------------------------------------------------------------------------

ON_MISSING_FLOW: dict[str, Callable[[Any, Any], Any]] = {
    "GetFlow": lambda a, r: a.get_flow(flowIdentifier=MISSING),
    "GetFlow-arn": lambda a, r: a.get_flow(flowIdentifier=flow_arn(MISSING)),
    "UpdateFlow": lambda a, r: a.update_flow(
        flowIdentifier=MISSING, name="x", executionRoleArn=ROLE
    ),
    "DeleteFlow": lambda a, r: a.delete_flow(flowIdentifier=MISSING),
    "PrepareFlow": lambda a, r: a.prepare_flow(flowIdentifier=MISSING),
    "CreateFlowVersion": lambda a, r: a.create_flow_version(flowIdentifier=MISSING),
    "ListFlowVersions": lambda a, r: a.list_flow_versions(flowIdentifier=MISSING),
    "GetFlowVersion": lambda a, r: a.get_flow_version(flowIdentifier=MISSING, flowVersion="1"),
    "DeleteFlowVersion": lambda a, r: a.delete_flow_version(
        flowIdentifier=MISSING, flowVersion="1"
    ),
    "CreateFlowAlias": lambda a, r: a.create_flow_alias(
        flowIdentifier=MISSING, name="p", routingConfiguration=ROUTE_1
    ),
    "ListFlowAliases": lambda a, r: a.list_flow_aliases(flowIdentifier=MISSING),
    "GetFlowAlias": lambda a, r: a.get_flow_alias(
        flowIdentifier=MISSING, aliasIdentifier="TSTALIASID"
    ),
    "TagResource": lambda a, r: a.tag_resource(resourceArn=flow_arn(MISSING), tags={"k": "v"}),
    "ListTagsForResource": lambda a, r: a.list_tags_for_resource(resourceArn=flow_arn(MISSING)),
    "StartFlowExecution": lambda a, r: r.start_flow_execution(
        flowIdentifier=MISSING, flowAliasIdentifier="TSTALIASID", inputs=inputs({})
    ),
    "InvokeFlow": lambda a, r: r.invoke_flow(
        flowIdentifier=MISSING, flowAliasIdentifier="TSTALIASID", inputs=inputs({})
    ),
    "GetFlowExecution": lambda a, r: r.get_flow_execution(
        flowIdentifier=MISSING, flowAliasIdentifier="TSTALIASID", executionIdentifier="e1"
    ),
    "other-account-arn": lambda a, r: a.get_flow(
        flowIdentifier=f"arn:aws:bedrock:us-east-1:000000000000:flow/{MISSING}"
    ),
}


@pytest.mark.parametrize("operation", ON_MISSING_FLOW)
def test_missing_flow(
    agent: Any, runtime: Any, recording_executor: RecordingExecutor, operation: str
) -> None:
    client = (
        runtime if operation in ("StartFlowExecution", "InvokeFlow", "GetFlowExecution") else agent
    )
    with bedrock_error(client, "ResourceNotFoundException", 404):
        ON_MISSING_FLOW[operation](agent, runtime)
    assert recording_executor.records == []


def test_missing_alias_and_version(
    agent: Any, runtime: Any, flow_id: str, recording_executor: RecordingExecutor
) -> None:
    gone = "ZZZZZZZZZ1"
    calls: list[tuple[Any, Callable[[], Any]]] = [
        (agent, lambda: agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier=gone)),
        (
            agent,
            lambda: agent.get_flow_alias(
                flowIdentifier=flow_id, aliasIdentifier=alias_arn(flow_id, gone)
            ),
        ),
        (agent, lambda: agent.delete_flow_alias(flowIdentifier=flow_id, aliasIdentifier=gone)),
        (
            agent,
            lambda: agent.update_flow_alias(
                flowIdentifier=flow_id, aliasIdentifier=gone, name="p", routingConfiguration=ROUTE_1
            ),
        ),
        (agent, lambda: agent.list_tags_for_resource(resourceArn=alias_arn(flow_id, gone))),
        (agent, lambda: agent.get_flow_version(flowIdentifier=flow_id, flowVersion="9")),
        (agent, lambda: agent.delete_flow_version(flowIdentifier=flow_id, flowVersion="9")),
        (
            runtime,
            lambda: runtime.invoke_flow(
                flowIdentifier=flow_id, flowAliasIdentifier=gone, inputs=inputs({})
            ),
        ),
        (
            runtime,
            lambda: runtime.start_flow_execution(
                flowIdentifier=flow_id, flowAliasIdentifier=gone, inputs=inputs({})
            ),
        ),
    ]
    for client, call in calls:
        with bedrock_error(client, "ResourceNotFoundException", 404):
            call()
    assert recording_executor.records == []


# -- conflicts ------------------------------------------------------------------------


def test_conflicts(agent: Any, flow_id: str) -> None:
    alias_id = create_alias(agent, flow_id, "prod", "1")
    create_alias(agent, flow_id, "beta", "2")
    with bedrock_error(agent, "ConflictException", 409):
        create_alias(agent, flow_id, "prod", "2")
    with bedrock_error(agent, "ConflictException", 409):  # renaming onto a taken name
        agent.update_flow_alias(
            flowIdentifier=flow_id,
            aliasIdentifier=alias_id,
            name="beta",
            routingConfiguration=ROUTE_1,
        )
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow(name="f1", executionRoleArn=ROLE)
    with bedrock_error(agent, "ConflictException", 409) as raised:
        agent.delete_flow_version(flowIdentifier=flow_id, flowVersion="1")
    assert "prod" in raised.message
    with bedrock_error(agent, "ConflictException", 409):
        agent.delete_flow_version(
            flowIdentifier=flow_id, flowVersion="1", skipResourceInUseCheck=False
        )
    with bedrock_error(agent, "ConflictException", 409):
        agent.delete_flow(flowIdentifier=flow_id)
    versions = agent.list_flow_versions(flowIdentifier=flow_id)["flowVersionSummaries"]
    assert [v["version"] for v in versions] == ["1", "2"]


# -- the envelope and routing, over raw HTTP -------------------------------------------------------


def test_error_envelope(gateway: GatewayServer) -> None:
    answer = raw_request(gateway, "GET", f"/flows/{MISSING}/")
    _assert_raw_error(answer, 404, "ResourceNotFoundException")
    assert answer.headers["Content-Type"].startswith("application/json")
    assert MISSING in answer.json()["message"]


def test_percent_encoded_arns_route_on_the_raw_path(gateway: GatewayServer, agent: Any) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    alias_id = create_alias(agent, flow_id, "prod", "1")
    flow, alias = quote(flow_arn(flow_id), safe=""), quote(alias_arn(flow_id, alias_id), safe="")
    assert "%2F" in flow
    answer = raw_request(gateway, "GET", f"/flows/{flow}/aliases/{alias}")
    assert answer.status == 200 and answer.json()["id"] == alias_id
    answer = raw_request(gateway, "GET", f"/tags/{alias}")
    assert answer.status == 200 and answer.json() == {"tags": {}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/flows"),
        ("GET", f"/flows/{MISSING}"),  # GetFlow needs its trailing slash
        ("GET", f"/flows/{MISSING}/versions/"),
        ("GET", f"/flows/{MISSING}/versions/1"),
        ("GET", f"/flows/{MISSING}/aliases/"),
        ("PATCH", f"/flows/{MISSING}/"),
        ("GET", "/flows//"),
    ],
)
def test_unknown_routes(gateway: GatewayServer, method: str, path: str) -> None:
    _assert_raw_error(raw_request(gateway, method, path), 404, "UnknownOperationException")


def test_malformed_json_body(gateway: GatewayServer) -> None:
    too_large = b'{"name": "' + b"x" * (1024**2 + 1) + b'"}'
    for raw in (b"{not json", b"[1, 2]", too_large):
        answer = raw_request(gateway, "POST", "/flows/", raw=raw)
        _assert_raw_error(answer, 400, "ValidationException")
