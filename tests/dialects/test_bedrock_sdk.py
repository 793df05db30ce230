"""bedrock-agent through the real boto3 client: lifecycle, idempotency, ARNs, tags, one model.

Each test runs against the embedded store and a real redis-server (the ``gateway``
fixture). Executions are in ``test_bedrock_runtime.py``, error codes and every
validation rule in ``test_bedrock_errors.py``.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models
from scipy.stats import chisquare

from router.config import Config
from tests.dialects import cloudflow_client as cf
from tests.dialects.bedrock_client import (
    DEFINITION,
    ROLE,
    agent_client,
    alias_arn,
    bedrock_error,
    create_alias,
    create_flow,
    flow_arn,
    invoke,
    runtime_client,
)
from tests.dialects.conftest import GATEWAY_STORES
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port
from tests.plugin import make_backend

ID = re.compile(r"[0-9a-zA-Z]{10}")
# make_app builds its Gateway without a seedable rng, so the split test cannot fix the
# seed: it uses alpha = 0.001, i.e. about one false failure in 1000 runs.
ALPHA = 0.001


def _token() -> str:
    return f"tok-{uuid.uuid4().hex}"  # 36 characters, within 33..256


# -- the full lifecycle -------------------------------------------------------------------


def test_flow_version_alias_lifecycle(agent: Any) -> None:
    created = agent.create_flow(
        name="orders",
        description="order pipeline",
        executionRoleArn=ROLE,
        definition=DEFINITION,
        tags={"team": "core"},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    flow_id = created["id"]
    assert ID.fullmatch(flow_id)
    assert created["arn"] == flow_arn(flow_id)
    assert (created["name"], created["description"], created["executionRoleArn"]) == (
        "orders",
        "order pipeline",
        ROLE,
    )
    assert (created["status"], created["version"], created["definition"]) == (
        "NotPrepared",
        "DRAFT",
        DEFINITION,
    )
    assert created["createdAt"] == created["updatedAt"]

    for identifier in (flow_id, flow_arn(flow_id)):
        got = agent.get_flow(flowIdentifier=identifier)
        assert (got["id"], got["name"], got["definition"]) == (flow_id, "orders", DEFINITION)
        assert got["validations"] == []
    summaries = agent.list_flows()["flowSummaries"]
    assert [(s["id"], s["name"], s["status"], s["version"]) for s in summaries] == [
        (flow_id, "orders", "NotPrepared", "DRAFT")
    ]

    prepared = agent.prepare_flow(flowIdentifier=flow_id)
    assert prepared["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (prepared["id"], prepared["status"]) == (flow_id, "Prepared")
    assert agent.get_flow(flowIdentifier=flow_id)["status"] == "Prepared"

    v1 = agent.create_flow_version(flowIdentifier=flow_id, description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (v1["id"], v1["arn"], v1["version"], v1["description"]) == (
        flow_id,
        flow_arn(flow_id),
        "1",
        "first",
    )
    assert (v1["name"], v1["status"], v1["definition"]) == ("orders", "Prepared", DEFINITION)

    # A new definition makes the draft NotPrepared again; version 1 keeps its snapshot.
    changed = {**DEFINITION, "connections": []}
    updated = agent.update_flow(
        flowIdentifier=flow_arn(flow_id),
        name="orders-v2",
        executionRoleArn=ROLE,
        definition=changed,
        description="now shorter",
    )
    assert (updated["name"], updated["status"], updated["definition"]) == (
        "orders-v2",
        "NotPrepared",
        changed,
    )
    v2 = agent.create_flow_version(flowIdentifier=flow_id)
    assert v2["version"] == "2" and "description" not in v2
    assert agent.get_flow_version(flowIdentifier=flow_id, flowVersion="1")["definition"] == (
        DEFINITION
    )
    assert agent.get_flow_version(flowIdentifier=flow_id, flowVersion="2")["definition"] == changed
    listed = agent.list_flow_versions(flowIdentifier=flow_id)["flowVersionSummaries"]
    assert [(v["id"], v["version"], v["status"]) for v in listed] == [
        (flow_id, "1", "Prepared"),
        (flow_id, "2", "Prepared"),
    ]

    alias = agent.create_flow_alias(
        flowIdentifier=flow_id,
        name="prod",
        description="live",
        routingConfiguration=[{"flowVersion": "1"}],
    )
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    alias_id = alias["id"]
    assert ID.fullmatch(alias_id) and alias_id != "TSTALIASID"
    assert alias["arn"] == alias_arn(flow_id, alias_id)
    assert (alias["flowId"], alias["name"], alias["description"]) == (flow_id, "prod", "live")
    assert alias["routingConfiguration"] == [{"flowVersion": "1"}]
    for identifier in (alias_id, alias_arn(flow_id, alias_id)):
        got = agent.get_flow_alias(flowIdentifier=flow_arn(flow_id), aliasIdentifier=identifier)
        assert (got["id"], got["routingConfiguration"]) == (alias_id, [{"flowVersion": "1"}])
    summaries = agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]
    assert [(a["id"], a["name"]) for a in summaries] == [(alias_id, "prod")]

    switched = agent.update_flow_alias(
        flowIdentifier=flow_id,
        aliasIdentifier=alias_arn(flow_id, alias_id),
        name="prod",
        routingConfiguration=[{"flowVersion": "2"}],
    )
    assert switched["routingConfiguration"] == [{"flowVersion": "2"}]
    assert "description" not in switched  # PUT: what is not sent is cleared
    assert switched["createdAt"] == alias["createdAt"]
    assert switched["updatedAt"] >= alias["updatedAt"]

    # Version 1 is free now; version 2 is in use.
    deleted = agent.delete_flow_version(flowIdentifier=flow_id, flowVersion="1")
    assert (deleted["id"], deleted["version"]) == (flow_id, "1")
    with bedrock_error(agent, "ConflictException", 409):
        agent.delete_flow_version(flowIdentifier=flow_id, flowVersion="2")
    with bedrock_error(agent, "ConflictException", 409):
        agent.delete_flow(flowIdentifier=flow_id)

    gone = agent.delete_flow_alias(flowIdentifier=flow_id, aliasIdentifier=alias_id)
    assert (gone["flowId"], gone["id"]) == (flow_id, alias_id)
    assert agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"] == []
    assert agent.delete_flow(flowIdentifier=flow_arn(flow_id))["id"] == flow_id
    with bedrock_error(agent, "ResourceNotFoundException", 404):
        agent.get_flow(flowIdentifier=flow_id)
    assert agent.list_flows()["flowSummaries"] == []


def test_delete_in_use_with_skip_resource_in_use_check(agent: Any) -> None:
    flow_id = create_flow(agent, "f1", versions=2)
    create_alias(agent, flow_id, "prod", "1")
    agent.delete_flow_version(flowIdentifier=flow_id, flowVersion="1", skipResourceInUseCheck=True)
    versions = agent.list_flow_versions(flowIdentifier=flow_id)["flowVersionSummaries"]
    assert [v["version"] for v in versions] == ["2"]
    assert agent.delete_flow(flowIdentifier=flow_id, skipResourceInUseCheck=True)["id"] == flow_id
    with bedrock_error(agent, "ResourceNotFoundException", 404):
        agent.get_flow(flowIdentifier=flow_id)


def test_update_flow_clears_what_is_not_sent_but_keeps_the_definition(agent: Any) -> None:
    flow_id = create_flow(agent, "f1", description="desc")
    agent.prepare_flow(flowIdentifier=flow_id)
    updated = agent.update_flow(flowIdentifier=flow_id, name="f1", executionRoleArn=ROLE)
    assert "description" not in updated
    assert updated["definition"] == DEFINITION
    assert updated["status"] == "Prepared"  # the definition did not change


def test_test_alias_is_draft(agent: Any) -> None:
    flow_id = create_flow(agent, "f1")
    got = agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier="TSTALIASID")
    assert (got["id"], got["flowId"], got["routingConfiguration"]) == (
        "TSTALIASID",
        flow_id,
        [{"flowVersion": "DRAFT"}],
    )
    assert got["arn"] == alias_arn(flow_id, "TSTALIASID")


@pytest.mark.parametrize("kind", ["flows", "versions", "aliases"])
def test_pagination(agent: Any, kind: str) -> None:
    if kind == "flows":
        for i in range(5):
            create_flow(agent, f"f{i}")
        pages = agent.get_paginator("list_flows").paginate(PaginationConfig={"PageSize": 2})
        seen = [s["name"] for page in pages for s in page["flowSummaries"]]
        assert seen == [f"f{i}" for i in range(5)]
        first = agent.list_flows(maxResults=2)
        assert len(first["flowSummaries"]) == 2 and first["nextToken"]
        rest = agent.list_flows(maxResults=10, nextToken=first["nextToken"])
        assert [s["name"] for s in rest["flowSummaries"]] == ["f2", "f3", "f4"]
        assert "nextToken" not in rest
        return
    flow_id = create_flow(agent, "f1", versions=5)
    if kind == "versions":
        pages = agent.get_paginator("list_flow_versions").paginate(
            flowIdentifier=flow_id, PaginationConfig={"PageSize": 2}
        )
        seen = [s["version"] for page in pages for s in page["flowVersionSummaries"]]
        assert seen == ["1", "2", "3", "4", "5"]
        return
    for i in range(5):
        create_alias(agent, flow_id, f"a{i}", str(i + 1))
    pages = agent.get_paginator("list_flow_aliases").paginate(
        flowIdentifier=flow_id, PaginationConfig={"PageSize": 2}
    )
    seen = [
        (s["name"], s["routingConfiguration"]) for page in pages for s in page["flowAliasSummaries"]
    ]
    assert seen == [(f"a{i}", [{"flowVersion": str(i + 1)}]) for i in range(5)]


# -- idempotency --------------------------------------------------------------------------


def test_same_client_token_twice_creates_one_alias(agent: Any) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    token = _token()
    request = {
        "flowIdentifier": flow_id,
        "name": "prod",
        "routingConfiguration": [{"flowVersion": "1"}],
        "clientToken": token,
    }
    first = agent.create_flow_alias(**request)
    again = agent.create_flow_alias(**request)
    assert again["id"] == first["id"]
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert again["createdAt"] == first["createdAt"]
    # The flow's ARN names the same flow: the same request.
    by_arn = agent.create_flow_alias(**{**request, "flowIdentifier": flow_arn(flow_id)})
    assert by_arn["id"] == first["id"]
    summaries = agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]
    assert [a["name"] for a in summaries] == ["prod"]

    with bedrock_error(agent, "ConflictException", 409) as raised:
        agent.create_flow_alias(**{**request, "description": "different"})
    assert "clientToken" in raised.message
    # Without the token, the same name is an ordinary conflict.
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow_alias(**{k: v for k, v in request.items() if k != "clientToken"})


def test_same_client_token_twice_creates_one_flow_and_one_version(agent: Any) -> None:
    token = _token()
    first = agent.create_flow(name="f1", executionRoleArn=ROLE, clientToken=token)
    again = agent.create_flow(name="f1", executionRoleArn=ROLE, clientToken=token)
    assert again["id"] == first["id"]
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow(name="f2", executionRoleArn=ROLE, clientToken=token)
    assert [f["name"] for f in agent.list_flows()["flowSummaries"]] == ["f1"]

    flow_id = first["id"]
    token = _token()
    v = agent.create_flow_version(flowIdentifier=flow_id, description="d", clientToken=token)
    again_v = agent.create_flow_version(flowIdentifier=flow_id, description="d", clientToken=token)
    assert (v["version"], again_v["version"]) == ("1", "1")
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow_version(flowIdentifier=flow_id, description="e", clientToken=token)
    # botocore fills in a fresh token when none is given: a new version each time.
    assert agent.create_flow_version(flowIdentifier=flow_id, description="d")["version"] == "2"
    versions = agent.list_flow_versions(flowIdentifier=flow_id)["flowVersionSummaries"]
    assert [s["version"] for s in versions] == ["1", "2"]


def test_concurrent_creates_with_one_token_create_once(gateway: GatewayServer) -> None:
    agent = agent_client(gateway)
    flow_id = create_flow(agent, "f1", versions=1)
    version_token, alias_token = _token(), _token()

    def version(_: int) -> str:
        client = agent_client(gateway)
        made = client.create_flow_version(flowIdentifier=flow_id, clientToken=version_token)
        return str(made["version"])

    def alias(_: int) -> str:
        client = agent_client(gateway)
        made = client.create_flow_alias(
            flowIdentifier=flow_id,
            name="prod",
            routingConfiguration=[{"flowVersion": "1"}],
            clientToken=alias_token,
        )
        return str(made["id"])

    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(version, range(8)))
        aliases = list(pool.map(alias, range(8)))
    assert versions == ["2"] * 8
    assert len(set(aliases)) == 1
    listed = agent.list_flow_versions(flowIdentifier=flow_id)["flowVersionSummaries"]
    assert [v["version"] for v in listed] == ["1", "2"]
    assert len(agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]) == 1


@pytest.mark.redis_clock
@pytest.mark.parametrize("store_kind", GATEWAY_STORES)
def test_client_tokens_expire(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
) -> None:
    backend = make_backend(store_kind, request)
    with cf.gateway_on(backend, bg_loop, recording_executor, idempotency_ttl_s=1) as gateway:
        agent = agent_client(gateway)
        flow_id = create_flow(agent, "f1")
        token = _token()
        assert (
            agent.create_flow_version(flowIdentifier=flow_id, clientToken=token)["version"] == "1"
        )
        assert (
            agent.create_flow_version(flowIdentifier=flow_id, clientToken=token)["version"] == "1"
        )
        bg_loop.run(backend.pass_time(1.5))
        assert (
            agent.create_flow_version(flowIdentifier=flow_id, clientToken=token)["version"] == "2"
        )


def test_client_tokens_survive_a_gateway_restart_on_redis(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    from router.store.redis import RedisStore

    server: Any = request.getfixturevalue("redis_server")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    token = _token()
    alias_request = {
        "name": "prod",
        "routingConfiguration": [{"flowVersion": "1"}],
        "clientToken": token,
    }

    def run(step: Any) -> Any:
        store = RedisStore.from_url(server.url, prefix)
        gateway = GatewayServer(
            Config(port=free_port(), upstream=recording_executor.template), store=store
        )
        bg_loop.run(gateway.start())
        try:
            return step(agent_client(gateway))
        finally:
            bg_loop.run(gateway.stop())
            bg_loop.run(store.close())

    def first(agent: Any) -> tuple[str, str]:
        flow_id = create_flow(agent, "f1", versions=1)
        return flow_id, agent.create_flow_alias(flowIdentifier=flow_id, **alias_request)["id"]

    flow_id, alias_id = run(first)

    def second(agent: Any) -> str:
        again = agent.create_flow_alias(flowIdentifier=flow_id, **alias_request)["id"]
        with bedrock_error(agent, "ConflictException", 409) as raised:
            agent.create_flow_alias(flowIdentifier=flow_id, **{**alias_request, "name": "other"})
        assert "clientToken" in raised.message
        return str(again)

    assert run(second) == alias_id


# -- tags -----------------------------------------------------------------------------------


def test_tags_on_flows_and_aliases(agent: Any) -> None:
    flow_id = create_flow(agent, "f1", versions=1, tags={"team": "core"})
    alias_id = create_alias(agent, flow_id, "prod", "1", tags={"env": "prod"})
    flow, alias = flow_arn(flow_id), alias_arn(flow_id, alias_id)
    assert agent.list_tags_for_resource(resourceArn=flow)["tags"] == {"team": "core"}
    assert agent.list_tags_for_resource(resourceArn=alias)["tags"] == {"env": "prod"}

    agent.tag_resource(resourceArn=flow, tags={"cost": "42", "team": "platform"})
    assert agent.list_tags_for_resource(resourceArn=flow)["tags"] == {
        "team": "platform",
        "cost": "42",
    }
    agent.untag_resource(resourceArn=flow, tagKeys=["team", "absent"])
    assert agent.list_tags_for_resource(resourceArn=flow)["tags"] == {"cost": "42"}

    agent.tag_resource(resourceArn=alias, tags={"a b": "c/d@e"})
    agent.untag_resource(resourceArn=alias, tagKeys=["env"])
    assert agent.list_tags_for_resource(resourceArn=alias)["tags"] == {"a b": "c/d@e"}
    # Tagging an alias does not change where it routes.
    got = agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier=alias_id)
    assert got["routingConfiguration"] == [{"flowVersion": "1"}]


# -- one model, two dialects ---------------------------------------------------------------


def test_a_cloudflow_flow_is_visible_through_bedrock_and_back(gateway: GatewayServer) -> None:
    agent, alibaba = agent_client(gateway), cf.client_for(gateway)
    made = alibaba.create_flow(
        models.CreateFlowRequest(name="cf1", definition=cf.DEFINITION, description="from fnf")
    ).body
    got = agent.get_flow(flowIdentifier=flow_arn(made.id))
    assert (got["id"], got["name"], got["description"]) == (made.id, "cf1", "from fnf")
    assert "definition" not in got  # FDL text is not a Bedrock structure
    assert agent.get_flow(flowIdentifier=made.id)["name"] == "cf1"

    flow_id = create_flow(agent, "br1", description="from bedrock")
    described = alibaba.describe_flow(models.DescribeFlowRequest(name="br1")).body
    assert (described.id, described.description) == (flow_id, "from bedrock")
    assert described.definition.startswith("{")  # the structure as JSON text
    listed = {f["name"]: f["id"] for f in agent.list_flows()["flowSummaries"]}
    assert listed == {"br1": flow_id, "cf1": made.id}

    # Names are unique across both APIs.
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow(name="cf1", executionRoleArn=ROLE)
    with cf.cloudflow_error(409, "FlowAlreadyExists"):
        alibaba.create_flow(models.CreateFlowRequest(name="br1", definition=cf.DEFINITION))

    # A version and an alias made through Bedrock, seen through CloudFlow.
    agent.create_flow_version(flowIdentifier=flow_id)
    create_alias(agent, flow_id, "prod", "1")
    alias = alibaba.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="br1", name="prod")
    ).body.alias
    assert cf.routing(alias.routing_configurations) == [("1", 1)]


@pytest.mark.slow
def test_weighted_cloudflow_alias_through_invoke_flow(
    gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    agent, runtime, alibaba = agent_client(gateway), runtime_client(gateway), cf.client_for(gateway)
    cf.create_flow(alibaba, "split", versions=2)
    cf.create_alias(alibaba, "split", "canary", ("1", 30), ("2", 70))
    flow_id = alibaba.describe_flow(models.DescribeFlowRequest(name="split")).body.id
    (summary,) = agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]
    got = agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier=summary["id"])
    assert got["name"] == "canary"
    assert got["routingConfiguration"] == [{"flowVersion": "1"}, {"flowVersion": "2"}]

    n = 1000
    headers: Counter[str] = Counter()
    for i in range(n):
        invoked = invoke(runtime, flow_id, alias_arn(flow_id, summary["id"]), {"i": i})
        (output, completion) = invoked.events
        assert output["flowOutputEvent"]["content"]["document"]["ranOn"] == invoked.version
        assert completion == {"flowCompletionEvent": {"completionReason": "SUCCESS"}}
        headers[invoked.version] += 1
    assert headers == recording_executor.versions()
    assert {r["alias"] for r in recording_executor.records} == {"canary"}
    observed = [headers["1"], headers["2"]]
    # alpha = 0.001 (see ALPHA): the split must not be distinguishable from 30/70.
    result = chisquare(observed, f_exp=[n * 0.3, n * 0.7])
    assert result.pvalue > ALPHA, (headers, result)


@pytest.mark.parametrize("store_kind", GATEWAY_STORES)
def test_arns_carry_the_configured_region_and_account(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
) -> None:
    with cf.custom_gateway(
        request,
        bg_loop,
        recording_executor,
        store_kind,
        region="eu-west-3",
        account_id="999988887777",
    ) as gateway:
        agent = agent_client(gateway)
        flow = agent.create_flow(name="f1", executionRoleArn=ROLE)
        arn = f"arn:aws:bedrock:eu-west-3:999988887777:flow/{flow['id']}"
        assert flow["arn"] == arn
        assert agent.get_flow(flowIdentifier=arn)["id"] == flow["id"]
        with bedrock_error(agent, "ResourceNotFoundException", 404):
            agent.get_flow(flowIdentifier=flow_arn(flow["id"]))  # us-east-1/123456789012
