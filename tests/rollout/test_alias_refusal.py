"""While a rollout is active, UpdateFlowAlias is refused in each dialect's own envelope
(CloudFlow 409 Conflict, Bedrock ConflictException), and DeleteFlowAlias aborts the
rollout first. Real SDKs against an in-process gateway on the memory store and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_fnf20190315 import models

from tests.dialects import bedrock_client as br
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import GATEWAY_STORES, start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.plugin import open_store
from tests.rollout.v1_helpers import call, path


@pytest.fixture(params=GATEWAY_STORES)
def gateway(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    store = open_store(request.param, request)
    server = start_gateway(bg_loop, store, recording_executor)
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(store.close())


def test_cloudflow_update_is_refused_and_delete_aborts(gateway: GatewayServer) -> None:
    client = cf.client_for(gateway)
    cf.create_flow(client, "orders", 2)
    cf.create_alias(client, "orders", "live", ("1", 100))
    started = call(gateway, "PUT", path("orders", "live"), {"targetVersion": "2"})
    assert started.status == 201, started.body
    with cf.cloudflow_error(409, "Conflict") as raised:
        client.update_flow_alias(
            models.UpdateFlowAliasRequest(
                flow_name="orders", name="live", routing_configurations=cf.update_routes(("1", 100))
            )
        )
    assert "active rollout" in raised.message
    described = client.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="orders", name="live")
    )
    assert cf.routing(described.body.alias.routing_configurations) == [("1", 95), ("2", 5)]
    client.delete_flow_alias(models.DeleteFlowAliasRequest(flow_name="orders", name="live"))
    gone = call(gateway, "GET", path("orders", "live"))
    assert gone.status == 404, gone.body  # the alias, and its rollout with it


def test_bedrock_update_is_refused_and_delete_aborts(gateway: GatewayServer) -> None:
    agent: Any = br.agent_client(gateway)
    flow_id = br.create_flow(agent, "orders", 2)
    alias_id = br.create_alias(agent, flow_id, "live", "1")
    started = call(gateway, "PUT", path("orders", "live"), {"targetVersion": "2"})
    assert started.status == 201, started.body
    with br.bedrock_error(agent, "ConflictException", 409):
        agent.update_flow_alias(
            flowIdentifier=flow_id,
            aliasIdentifier=alias_id,
            name="live",
            routingConfiguration=[{"flowVersion": "2"}],
        )
    agent.get_flow_alias(flowIdentifier=flow_id, aliasIdentifier=alias_id)  # still readable
    agent.delete_flow_alias(flowIdentifier=flow_id, aliasIdentifier=alias_id)
    assert call(gateway, "GET", path("orders", "live")).status == 404
