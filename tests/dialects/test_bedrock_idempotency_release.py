"""A create the store refused does not burn its clientToken (real boto3, both stores).

Before the claim was released, the failed create's claim stayed for the token's
lifetime: the same token with corrected parameters was answered
ConflictException ("clientToken was already used with different parameters"),
and with the same parameters it waited for the claim to settle first.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.dialects.bedrock_client import ROLE, bedrock_error, create_flow


def _token() -> str:
    return f"tok-{uuid.uuid4().hex}"  # 36 characters, within 33..256


def test_a_flow_name_clash_leaves_the_token_usable(agent: Any) -> None:
    taken = agent.create_flow(name="taken", executionRoleArn=ROLE)["id"]
    token = _token()
    with bedrock_error(agent, "ConflictException", 409) as raised:
        agent.create_flow(name="taken", executionRoleArn=ROLE, clientToken=token)
    assert "already exists" in raised.message
    # the caller fixes the name and retries with its token
    fresh = agent.create_flow(name="fresh", executionRoleArn=ROLE, clientToken=token)
    assert fresh["name"] == "fresh"
    again = agent.create_flow(name="fresh", executionRoleArn=ROLE, clientToken=token)
    assert again["id"] == fresh["id"]  # and from now on the token stands for that flow
    with bedrock_error(agent, "ConflictException", 409) as raised:
        agent.create_flow(name="other", executionRoleArn=ROLE, clientToken=token)
    assert "clientToken" in raised.message
    names = sorted(f["name"] for f in agent.list_flows()["flowSummaries"])
    assert names == ["fresh", "taken"]
    assert taken != fresh["id"]


def test_the_same_request_succeeds_once_the_clash_is_gone(agent: Any) -> None:
    taken = agent.create_flow(name="orders", executionRoleArn=ROLE)["id"]
    token = _token()
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow(name="orders", executionRoleArn=ROLE, clientToken=token)
    agent.delete_flow(flowIdentifier=taken)
    made = agent.create_flow(name="orders", executionRoleArn=ROLE, clientToken=token)
    assert made["id"] != taken
    again = agent.create_flow(name="orders", executionRoleArn=ROLE, clientToken=token)
    assert again["id"] == made["id"]


def test_an_alias_name_clash_leaves_the_token_usable(agent: Any) -> None:
    flow_id = create_flow(agent, "f1", versions=1)
    routing = [{"flowVersion": "1"}]
    agent.create_flow_alias(flowIdentifier=flow_id, name="prod", routingConfiguration=routing)
    token = _token()
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow_alias(
            flowIdentifier=flow_id, name="prod", routingConfiguration=routing, clientToken=token
        )
    made = agent.create_flow_alias(
        flowIdentifier=flow_id, name="canary", routingConfiguration=routing, clientToken=token
    )
    assert made["name"] == "canary"
    aliases = agent.list_flow_aliases(flowIdentifier=flow_id)["flowAliasSummaries"]
    assert sorted(a["name"] for a in aliases) == ["canary", "prod"]
