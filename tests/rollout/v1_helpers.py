"""What the /v1 API and CLI tests share: raw HTTP calls, a flow to roll out, exact shapes.

Requests go over real sockets with urllib (tests/auth/signing.send), signed, when a
test signs, by botocore's ``SigV4Auth`` (tests/auth/signing.sigv4_request), never by
the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from alibabacloud_fnf20190315.client import Client as CloudFlowClient
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

from router.store.base import Store
from tests.auth.signing import AKID, SECRET, send, sigv4_request
from tests.dialects import cloudflow_client as cf
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.processes import Connection, ok, routing, setup_flow

FLOW, ALIAS = "orders", "live"
BASELINE = ((1, 70), (2, 30))  # the alias before any rollout: two versions, so ratios show
TARGET = "3"
SERVICE = "flow-router"

STATUS_KEYS = {
    "flow", "alias", "targetVersion", "baseline", "phase", "step", "canaryWeight", "counts",
    "evidence", "message", "startedAt", "updatedAt", "history",
}  # fmt: skip
HISTORY_KEYS = {"at", "phase", "step", "canaryWeight", "message"}
PHASES = {"Progressing", "Paused", "WaitingPromotion", "Succeeded", "RolledBack", "Aborted"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


def path(flow: str = FLOW, alias: str = ALIAS, action: str = "") -> str:
    base = f"/v1/flows/{quote(flow, safe='')}/aliases/{quote(alias, safe='')}/rollout"
    return f"{base}/{action}" if action else base


def call(
    gateway: GatewayServer,
    method: str,
    target: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """``method target`` (a path) with ``body`` as JSON, or ``raw`` bytes as they are."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
    answer = send(method, gateway.url + target, sent, data)
    try:
        parsed = json.loads(answer.body) if answer.body else None
    except ValueError:
        parsed = answer.body
    return Reply(answer.status, parsed, {k.lower(): v for k, v in answer.headers.items()})


def signed_call(
    gateway: GatewayServer, method: str, target: str, body: Any = None, **sign: Any
) -> Reply:
    """Signed by botocore for the service ``flow-router`` (``sign``: sigv4_request options)."""
    data = json.dumps(body).encode() if body is not None else b""
    sign.setdefault("service", SERVICE)
    request = sigv4_request(method, gateway.url + target, data, **sign)
    return call(gateway, method, target, raw=data, headers=request.headers)


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), (reply.status, reply.body)
    assert set(reply.body) == {"code", "message"}, reply.body
    assert reply.body["message"] and "Traceback" not in reply.body["message"]
    assert reply.headers.get("x-request-id"), reply.headers


def assert_status_shape(status: Any) -> None:
    """The status JSON of the issue, key for key and type for type."""
    assert isinstance(status, dict) and set(status) == STATUS_KEYS, status
    assert status["phase"] in PHASES
    for key in ("flow", "alias", "targetVersion", "message", "startedAt", "updatedAt"):
        assert isinstance(status[key], str), (key, status[key])
    for key in ("step", "canaryWeight"):
        assert isinstance(status[key], int) and not isinstance(status[key], bool), key
    assert isinstance(status["evidence"], int | float)
    for entry in status["baseline"]:
        assert set(entry) == {"version", "weight"}, entry
    for version, counts in status["counts"].items():
        assert isinstance(version, str)
        assert set(counts) == {"executions", "failed", "slow"}, counts
        assert all(isinstance(n, int) for n in counts.values()), counts
    assert status["history"], "a rollout has at least its start in the history"
    for entry in status["history"]:
        assert set(entry) == HISTORY_KEYS, entry
        assert entry["phase"] in PHASES


def gateway_for(
    bg_loop: BackgroundLoop, store: Store, executor: RecordingExecutor, **config: Any
) -> Iterator[GatewayServer]:
    server = start_gateway(bg_loop, store, executor, **config)
    try:
        yield server
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(store.close())


def make_flow(gateway: GatewayServer, flow: str = FLOW, alias: str = ALIAS) -> Connection:
    """``flow`` with versions 1-3 and ``alias`` over :data:`BASELINE` (unsigned CloudFlow)."""
    conn = Connection(gateway.port)
    setup_flow(conn, flow, 3, alias, *BASELINE)
    return conn


def alias_routes(conn: Connection, flow: str = FLOW, alias: str = ALIAS) -> list[tuple[str, int]]:
    """The alias's routes as CloudFlow's DescribeFlowAlias answers them."""
    answer = ok(conn.cloudflow("DescribeFlowAlias", {"FlowName": flow, "Name": alias}))
    return sorted(
        (r["Version"], int(r["Weight"])) for r in answer.body["Alias"]["RoutingConfigurations"]
    )


def expected_baseline() -> list[tuple[str, int]]:
    return sorted((r["Version"], r["Weight"]) for r in routing(*BASELINE))


def make_signed_flow(gateway: GatewayServer, flow: str = FLOW, alias: str = ALIAS) -> None:
    """:func:`make_flow` on a gateway with credentials, through the signed CloudFlow SDK."""
    client = CloudFlowClient(
        SdkConfig(
            access_key_id=AKID,
            access_key_secret=SECRET,
            endpoint=f"127.0.0.1:{gateway.port}",
            protocol="http",
            region_id="cn-hangzhou",
        )
    )
    cf.create_flow(client, flow, versions=3)
    cf.create_alias(client, flow, alias, *((str(v), w) for v, w in BASELINE))
