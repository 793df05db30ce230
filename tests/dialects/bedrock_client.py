"""The real boto3 Bedrock clients aimed at a test gateway, and helpers for the Bedrock suites.

``agent_client``/``runtime_client`` build unmodified ``bedrock-agent`` and
``bedrock-agent-runtime`` clients with retries off (one request per call, so the
executor's records count calls exactly); ``bedrock_error`` checks what boto3
raised; ``raw_request`` is for the few requests boto3 cannot express.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from tests.harness import GatewayServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = "arn:aws:iam::123456789012:role/flows"
_INPUT_NODE = {
    "name": "FlowInputNode",
    "type": "Input",
    "outputs": [{"name": "document", "type": "Object"}],
}
_OUTPUT_NODE = {
    "name": "FlowOutputNode",
    "type": "Output",
    "inputs": [{"name": "document", "type": "Object", "expression": "$.data"}],
}
DEFINITION: dict[str, Any] = {
    "nodes": [_INPUT_NODE, _OUTPUT_NODE],
    "connections": [
        {
            "name": "in_to_out",
            "type": "Data",
            "source": "FlowInputNode",
            "target": "FlowOutputNode",
            "configuration": {"data": {"sourceOutput": "document", "targetInput": "document"}},
        }
    ],
}


def _config() -> botocore.config.Config:
    return botocore.config.Config(retries={"total_max_attempts": 1})


def agent_client(gateway: GatewayServer) -> Any:
    return boto3.client(
        "bedrock-agent",
        endpoint_url=gateway.url,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=_config(),
    )


def runtime_client(gateway: GatewayServer) -> Any:
    return boto3.client(
        "bedrock-agent-runtime",
        endpoint_url=gateway.url,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=_config(),
    )


def flow_arn(flow_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:flow/{flow_id}"


def alias_arn(flow_id: str, alias_id: str) -> str:
    return f"{flow_arn(flow_id)}/alias/{alias_id}"


# -- requests ------------------------------------------------------------------------


def create_flow(agent: Any, name: str, versions: int = 0, **extra: Any) -> str:
    """A flow with ``versions`` published versions (1..versions); returns its id."""
    extra.setdefault("definition", DEFINITION)
    flow_id: str = agent.create_flow(name=name, executionRoleArn=ROLE, **extra)["id"]
    for _ in range(versions):
        agent.create_flow_version(flowIdentifier=flow_id)
    return flow_id


def create_alias(agent: Any, flow_id: str, name: str, version: str, **extra: Any) -> str:
    alias_id: str = agent.create_flow_alias(
        flowIdentifier=flow_id,
        name=name,
        routingConfiguration=[{"flowVersion": version}],
        **extra,
    )["id"]
    return alias_id


def inputs(document: Any) -> list[dict[str, Any]]:
    return [
        {
            "nodeName": "FlowInputNode",
            "nodeOutputName": "document",
            "content": {"document": document},
        }
    ]


@dataclass
class Invoked:
    """An InvokeFlow answer with its event stream read to the end."""

    version: str
    execution_id: str
    events: list[dict[str, Any]] = field(default_factory=list)


def invoke(runtime: Any, flow: str, alias: str, document: Any = None) -> Invoked:
    resp = runtime.invoke_flow(
        flowIdentifier=flow, flowAliasIdentifier=alias, inputs=inputs(document or {"q": 1})
    )
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    invoked = Invoked(headers["x-flow-version"], resp["executionId"])
    invoked.events.extend(resp["responseStream"])
    return invoked


# -- errors --------------------------------------------------------------------------


@dataclass
class Raised:
    error: ClientError | None = None

    @property
    def message(self) -> str:
        assert self.error is not None
        return str(self.error.response["Error"]["Message"])


@contextmanager
def bedrock_error(client: Any, code: str, status: int) -> Iterator[Raised]:
    """The block must raise the modeled ``client.exceptions.<code>`` with this status,
    a message, and the request id from ``x-amzn-RequestId``."""
    modeled = getattr(client.exceptions, code)
    raised = Raised()
    with pytest.raises(modeled) as info:
        yield raised
    error = info.value
    raised.error = error
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    message = error.response["Error"]["Message"]
    assert isinstance(message, str) and message and "Traceback" not in message
    assert error.response["ResponseMetadata"]["RequestId"]


# -- raw HTTP, only for what boto3 cannot send ----------------------------------------------


@dataclass(frozen=True)
class RawAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    gateway: GatewayServer, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> RawAnswer:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(gateway.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return RawAnswer(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return RawAnswer(e.code, e.read(), dict(e.headers))
