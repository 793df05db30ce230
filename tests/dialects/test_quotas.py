"""Quotas on flows, versions per flow and aliases per flow, through each real SDK.

The store enforces them atomically (tests/store/test_contract.py); here each
dialect answers its own quota error: CloudFlow 400 ``QuotaExceeded``, Bedrock 402
``ServiceQuotaExceededException``, and a refused create leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models

from router import cli
from router.service import Settings
from tests.dialects import bedrock_client, cloudflow_client
from tests.dialects.cloudflow_client import client_for, cloudflow_error
from tests.dialects.conftest import GATEWAY_STORES, start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.plugin import open_store

SMALL = Settings(max_flows=2, max_versions_per_flow=2, max_aliases_per_flow=1)


@pytest.fixture(params=GATEWAY_STORES)
def small(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    """A gateway whose quotas are 2 flows, 2 versions per flow and 1 alias per flow."""
    store = open_store(request.param, request)
    server = start_gateway(bg_loop, store, recording_executor, settings=SMALL)
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


def test_cloudflow_quotas(small: GatewayServer) -> None:
    client = client_for(small)
    cloudflow_client.create_flow(client, "f1", versions=2)
    cloudflow_client.create_flow(client, "f2")
    with cloudflow_error(400, "QuotaExceeded") as raised:
        cloudflow_client.create_flow(client, "f3")
    assert "max-flows" in raised.message and "2 flows" in raised.message
    listed = client.list_flows(models.ListFlowsRequest()).body.flows
    assert [f.name for f in listed] == ["f1", "f2"]

    with cloudflow_error(400, "QuotaExceeded") as raised:
        client.publish_flow_version(models.PublishFlowVersionRequest(flow_name="f1"))
    assert "max-versions-per-flow" in raised.message
    versions = client.list_flow_versions(models.ListFlowVersionsRequest(flow_name="f1"))
    assert [v.version for v in versions.body.flow_versions] == ["1", "2"]

    cloudflow_client.create_alias(client, "f1", "prod", ("1", 100))
    with cloudflow_error(400, "QuotaExceeded") as raised:
        cloudflow_client.create_alias(client, "f1", "beta", ("2", 100))
    assert "max-aliases-per-flow" in raised.message
    aliases = client.list_flow_aliases(models.ListFlowAliasesRequest(flow_name="f1"))
    assert [a.name for a in aliases.body.aliases] == ["prod"]

    # Quotas count what exists: deleting makes room again.
    client.delete_flow(models.DeleteFlowRequest(name="f2"))
    cloudflow_client.create_flow(client, "f3")


def test_bedrock_quotas(small: GatewayServer) -> None:
    agent = bedrock_client.agent_client(small)
    flow_id = bedrock_client.create_flow(agent, "f1", versions=2)
    bedrock_client.create_flow(agent, "f2")
    quota = "ServiceQuotaExceededException"
    with bedrock_client.bedrock_error(agent, quota, 402) as raised:
        bedrock_client.create_flow(agent, "f3")
    assert "max-flows" in raised.message
    assert sorted(f["name"] for f in agent.list_flows()["flowSummaries"]) == ["f1", "f2"]

    with bedrock_client.bedrock_error(agent, quota, 402) as raised:
        agent.create_flow_version(flowIdentifier=flow_id)
    assert "max-versions-per-flow" in raised.message
    summaries = agent.list_flow_versions(flowIdentifier=flow_id)["flowVersionSummaries"]
    assert sorted(v["version"] for v in summaries) == ["1", "2"]

    bedrock_client.create_alias(agent, flow_id, "prod", "1")
    with bedrock_client.bedrock_error(agent, quota, 402) as raised:
        bedrock_client.create_alias(agent, flow_id, "beta", "2")
    assert "max-aliases-per-flow" in raised.message
    aliases: list[dict[str, Any]] = agent.list_flow_aliases(flowIdentifier=flow_id)[
        "flowAliasSummaries"
    ]
    assert [a["name"] for a in aliases] == ["prod"]


def test_quota_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(*argv: str) -> Settings:
        return cli.config_from_args(cli._parser().parse_args(["serve", *argv])).settings

    default = settings()
    assert (default.max_flows, default.max_versions_per_flow, default.max_aliases_per_flow) == (
        1000,
        100,
        100,
    )
    given = settings("--max-flows", "5", "--max-versions-per-flow", "0")
    assert (given.max_flows, given.max_versions_per_flow) == (5, None)  # 0: no limit
    monkeypatch.setenv("FLOW_ROUTER_MAX_ALIASES_PER_FLOW", "7")
    assert settings().max_aliases_per_flow == 7
    with pytest.raises(ValueError, match="--max-flows"):
        settings("--max-flows", "-1")
