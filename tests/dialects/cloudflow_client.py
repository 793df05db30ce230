"""The real fnf 2019-03-15 SDK aimed at a test gateway, and assertions on what it raises.

Everything a CloudFlow test needs besides the fixtures in ``conftest.py``: a client
for a :class:`~tests.harness.GatewayServer`, ``cloudflow_error`` to check an error
the SDK raised, ``raw_call`` for the few requests the SDK cannot express (an
unknown or missing ``Action``, a ``RoutingConfigurations`` field that is not a JSON
array), and a ``/metrics`` scrape parsed with ``prometheus_client``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from alibabacloud_tea_openapi.exceptions import (
    AlibabaCloudException,
    ClientException,
    ServerException,
)
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.plugin import StoreBackend, make_backend

DEFINITION = "version: v1\ntype: flow\nsteps:\n  - type: pass\n    name: hello"


def client_for(gateway: GatewayServer) -> Client:
    return Client(
        SdkConfig(
            access_key_id="AKIDEXAMPLE",
            access_key_secret="secret",
            endpoint=f"127.0.0.1:{gateway.port}",
            protocol="http",
            region_id="cn-hangzhou",
        )
    )


# -- errors ------------------------------------------------------------------------


@dataclass
class Raised:
    """Filled in by :func:`cloudflow_error` once the block has raised."""

    error: AlibabaCloudException | None = None

    @property
    def message(self) -> str:
        assert self.error is not None
        return str(self.error.data["Message"])


@contextmanager
def cloudflow_error(status: int, code: str) -> Iterator[Raised]:
    """The block must make the SDK raise a CloudFlow error with this status and Code.

    4xx must arrive as ``ClientException``, 5xx as ``ServerException`` (docs/wire.md
    2.5), each with a non-empty raw ``Message`` and ``RequestId`` and no traceback.
    """
    expected = ClientException if status < 500 else ServerException
    raised = Raised()
    with pytest.raises(expected) as info:
        yield raised
    error = info.value
    raised.error = error
    assert (error.status_code, error.code) == (status, code), error.data
    data = error.data
    assert data["Code"] == code
    assert isinstance(data["Message"], str) and data["Message"], data
    assert "Traceback" not in data["Message"]
    assert isinstance(data["RequestId"], str) and data["RequestId"], data
    assert error.request_id == data["RequestId"]


# -- raw HTTP, only for what the SDK cannot send -------------------------------------


@dataclass(frozen=True)
class RawAnswer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


def raw_call(
    gateway: GatewayServer, action: str | None, params: Mapping[str, str], method: str = "POST"
) -> RawAnswer:
    """One unsigned RPC request: ``Action`` in the query, business parameters in a form."""
    query = {"Format": "json", "Version": "2019-03-15"}
    if action is not None:
        query["Action"] = action
    url = f"{gateway.url}/?{urlencode(query)}"
    data: bytes | None = None
    headers = {}
    if method == "POST":
        data = urlencode(params).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    else:
        url += "&" + urlencode(params)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return RawAnswer(resp.status, json.loads(resp.read()), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return RawAnswer(e.code, json.loads(e.read()), dict(e.headers))


def assert_raw_error(answer: RawAnswer, status: int, code: str) -> None:
    assert (answer.status, answer.body.get("Code")) == (status, code), answer.body
    assert isinstance(answer.body["Message"], str) and answer.body["Message"]
    assert "Traceback" not in answer.body["Message"]
    assert isinstance(answer.body["RequestId"], str) and answer.body["RequestId"]


# -- requests ---------------------------------------------------------------------


def create_routes(
    *pairs: tuple[str | None, Any],
) -> list[models.CreateFlowAliasRequestRoutingConfigurations]:
    return [
        models.CreateFlowAliasRequestRoutingConfigurations(version=v, weight=w) for v, w in pairs
    ]


def update_routes(
    *pairs: tuple[str | None, Any],
) -> list[models.UpdateFlowAliasRequestRoutingConfigurations]:
    return [
        models.UpdateFlowAliasRequestRoutingConfigurations(version=v, weight=w) for v, w in pairs
    ]


def create_flow(client: Client, name: str, versions: int = 0, definition: str = DEFINITION) -> None:
    """A flow with ``versions`` published versions (1..versions)."""
    client.create_flow(models.CreateFlowRequest(name=name, definition=definition, description=""))
    for _ in range(versions):
        client.publish_flow_version(models.PublishFlowVersionRequest(flow_name=name))


def create_alias(client: Client, flow: str, name: str, *pairs: tuple[str, Any]) -> None:
    client.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name=flow, name=name, routing_configurations=create_routes(*pairs)
        )
    )


def start(
    client: Client,
    flow: str,
    qualifier: str | None = None,
    input: str | None = None,
    name: str | None = None,
) -> models.StartExecutionResponse:
    return client.start_execution(
        models.StartExecutionRequest(
            flow_name=flow, qualifier=qualifier, input=input, execution_name=name
        )
    )


def routing(body_routes: Any) -> list[tuple[str, int]]:
    """``RoutingConfigurations`` of any response model as ``(Version, Weight)`` pairs."""
    return [(r.version, r.weight) for r in body_routes]


# -- gateways built with a non-default configuration ------------------------------------


@contextmanager
def custom_gateway(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    store_kind: str,
    **config: Any,
) -> Iterator[GatewayServer]:
    """Like the ``gateway`` fixture, with ``Config`` overrides (upstream, timeouts)."""
    with gateway_on(make_backend(store_kind, request), bg_loop, recording_executor, **config) as gw:
        yield gw


@contextmanager
def gateway_on(
    backend: StoreBackend,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    **config: Any,
) -> Iterator[GatewayServer]:
    """``custom_gateway`` on a store whose backend the test holds (to pass its time)."""
    store = backend.open()
    server = start_gateway(bg_loop, store, recording_executor, **config)
    try:
        yield server
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(backend.close())


# -- operations endpoints ---------------------------------------------------------------


def http_get(gateway: GatewayServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(gateway.url + path, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(gateway: GatewayServer) -> list[Sample]:
    status, body = http_get(gateway, "/metrics")
    assert status == 200
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def samples(scraped: list[Sample], name: str, **labels: str) -> list[Sample]:
    """Samples called ``name`` whose labels include ``labels``."""
    return [
        s
        for s in scraped
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(scraped: list[Sample], name: str, **labels: str) -> float | None:
    """The one sample matching, or ``None`` if there is none."""
    found = samples(scraped, name, **labels)
    assert len(found) <= 1, found
    return found[0].value if found else None
