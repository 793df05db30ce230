"""``flow_router_errors_total`` labels an error with the code the caller got.

Driven by the real SDKs (fnf and boto3) against both stores: the ``error``
label must be the CloudFlow ``Code`` or the Bedrock ``x-amzn-ErrorType`` the
client saw, so an alert or a dashboard names the same errors as client logs.
Before, it was the Python class name (``FlowNotFound`` for ``FlowNotExists``).
"""

from __future__ import annotations

from typing import Any

from alibabacloud_fnf20190315 import models

from tests.dialects.bedrock_client import ROLE, bedrock_error
from tests.dialects.cloudflow_client import client_for, cloudflow_error, scrape, value
from tests.harness import GatewayServer

ERRORS = "flow_router_errors_total"
API_REQUESTS = "flow_router_api_requests_total"


def test_errors_carry_each_dialects_own_code(gateway: GatewayServer, agent: Any) -> None:
    client = client_for(gateway)
    for _ in range(2):
        with cloudflow_error(404, "FlowNotExists"):
            client.describe_flow(models.DescribeFlowRequest(name="missing"))
    with cloudflow_error(400, "MissingRequiredParams"):
        client.create_flow(models.CreateFlowRequest(name="f"))  # no Definition
    with bedrock_error(agent, "ResourceNotFoundException", 404):
        agent.get_flow(flowIdentifier="ABCDEFGHIJ")
    agent.create_flow(name="taken", executionRoleArn=ROLE)
    with bedrock_error(agent, "ConflictException", 409):
        agent.create_flow(name="taken", executionRoleArn=ROLE)

    scraped = scrape(gateway)
    assert value(scraped, ERRORS, dialect="cloudflow", error="FlowNotExists") == 2
    assert value(scraped, ERRORS, dialect="cloudflow", error="MissingRequiredParams") == 1
    assert value(scraped, ERRORS, dialect="bedrock", error="ResourceNotFoundException") == 1
    assert value(scraped, ERRORS, dialect="bedrock", error="ConflictException") == 1
    assert {s.labels["error"] for s in scraped if s.name == ERRORS} == {
        "FlowNotExists",
        "MissingRequiredParams",
        "ResourceNotFoundException",
        "ConflictException",
    }
    # every answer is counted once by operation and status, errors included
    assert value(scraped, API_REQUESTS, dialect="cloudflow", action="DescribeFlow", code="404") == 2
    assert value(scraped, API_REQUESTS, dialect="bedrock", action="CreateFlow", code="409") == 1
    assert value(scraped, API_REQUESTS, dialect="bedrock", action="CreateFlow", code="201") == 1
