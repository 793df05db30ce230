"""``/v1/console``: the JSON the console page draws, over real HTTP, on the memory store
and real Redis; the same numbers from every replica sharing a store; the shaping of
quantiles and windows (router/console/data) on known buckets."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from router.console import data
from router.lifecycle.status import Status
from router.model import Alias, Flow, Route, new_id
from router.store.redis import RedisStore
from router.store.stats import BUCKET_MS, RUN_BOUNDS_MS, STARTED, StatKey
from tests.dialects.cloudflow_client import client_for, create_alias, create_flow, start
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, Behaviour, GatewayServer, RecordingExecutor
from tests.plugin import make_backend
from tests.redis_servers import RedisServer
from tests.rollout.v1_helpers import signed_call


def get(gateway: GatewayServer, path: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(gateway.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(params=["memory", "redis"])
def gateway(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    backend = make_backend(request.param, request)
    server = start_gateway(bg_loop, backend.open(), recording_executor)
    yield server
    bg_loop.run(server.stop())
    bg_loop.run(backend.close())


def test_flows_list_search_and_pages(gateway: GatewayServer) -> None:
    client = client_for(gateway)
    for i in range(5):
        create_flow(client, f"flow-{i}", versions=2)
    create_alias(client, "flow-3", "live", ("1", 90), ("2", 10))
    status, page = get(gateway, "/v1/console/flows?limit=2")
    assert status == 200
    assert [f["name"] for f in page["flows"]] == ["flow-0", "flow-1"]
    assert (page["total"], page["matched"], page["nextToken"]) == (5, 5, "2")
    _, page = get(gateway, "/v1/console/flows?limit=2&nextToken=4")
    assert [f["name"] for f in page["flows"]] == ["flow-4"] and page["nextToken"] is None
    _, page = get(gateway, "/v1/console/flows?search=FLOW-3")
    assert page["matched"] == 1
    (flow,) = page["flows"]
    assert flow["aliases"] == [
        {
            "name": "live",
            "routes": [
                {"version": "1", "weight": 90, "share": 0.9},
                {"version": "2", "weight": 10, "share": 0.1},
            ],
            "rollout": None,
        }
    ]


def test_flow_detail_counts_real_executions(
    gateway: GatewayServer, recording_executor: RecordingExecutor
) -> None:
    client = client_for(gateway)
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 75), ("2", 25))
    recording_executor.behaviours["2"] = Behaviour(body=b'{"status": "Failed", "error": "E"}')
    for i in range(40):
        start(client, "orders", "live", "{}", name=f"r{i}" if i % 3 == 0 else None)
    sent = recording_executor.versions()
    detail = _settled(gateway, "orders", 40)
    (alias,) = detail["aliases"]
    assert alias["name"] == "live" and alias["rollout"] is None
    assert [r["version"] for r in alias["routes"]] == ["1", "2"]
    rows = {row["version"]: row for row in alias["versions"]}
    for v in ("1", "2"):
        assert rows[v]["executions"] == sent[v]
        assert sum(rows[v]["series"]["started"]) == sent[v]
        assert len(rows[v]["series"]["started"]) == data.WINDOW_MS // BUCKET_MS
    assert (rows["1"]["successRatio"], rows["1"]["failed"]) == (1.0, 0)
    assert (rows["2"]["successRatio"], rows["2"]["succeeded"]) == (0.0, 0)
    assert rows["2"]["failed"] == sent["2"] == sum(rows["2"]["series"]["failed"])
    assert rows["1"]["p50Ms"] is not None and rows["1"]["p50Ms"] <= rows["1"]["p99Ms"]
    shares = {r["version"]: r["share"] for r in alias["realized"]}
    assert shares == pytest.approx({v: sent[v] / 40 for v in ("1", "2")})


def _settled(gateway: GatewayServer, flow: str, executions: int) -> Any:
    """The flow's detail once the journal has flushed all ``executions`` (bounded)."""
    for _ in range(200):
        _, detail = get(gateway, f"/v1/console/flows/{flow}")
        counted = sum(r["executions"] for a in detail["aliases"] for r in a["versions"])
        finals = sum(r["succeeded"] + r["failed"] for a in detail["aliases"] for r in a["versions"])
        if counted == finals == executions:
            return detail
        time.sleep(0.02)  # the journal flushes every 10 ms
    raise AssertionError(f"the console never counted {executions} executions: {detail}")


def test_errors_in_the_v1_envelope(gateway: GatewayServer) -> None:
    assert get(gateway, "/v1/console/flows/nope")[0] == 404
    status, body = get(gateway, "/v1/console/flows/nope")
    assert body["code"] == "FlowNotFound" and set(body) == {"code", "message"}
    for bad in ("0", "501", "x", "-1"):
        status, body = get(gateway, f"/v1/console/flows?limit={bad}")
        assert (status, body["code"]) == (400, "InvalidArgument"), bad
    status, body = get(gateway, "/v1/console/flows?nextToken=abc")
    assert (status, body["code"]) == (400, "InvalidArgument")
    status, body = get(gateway, "/v1/console/flows", method="POST")
    assert (status, body["code"]) == (405, "MethodNotAllowed")
    for path in ("/v1/console", "/v1/console/nope", "/v1/console/flows/a/b", "/v1/console/flows/"):
        status, body = get(gateway, path)
        assert (status, body["code"]) == (404, "UnknownOperation"), path


def test_every_replica_shows_the_same_numbers(
    request: pytest.FixtureRequest,
    bg_loop: BackgroundLoop,
    recording_executor: RecordingExecutor,
    redis_server: Any,
) -> None:
    backend = make_backend("redis", request)
    replicas = [start_gateway(bg_loop, backend.open(), recording_executor) for _ in range(2)]
    try:
        client = client_for(replicas[0])
        create_flow(client, "orders", versions=2)
        create_alias(client, "orders", "live", ("1", 50), ("2", 50))
        for _ in range(30):
            start(client, "orders", "live", "{}")  # all through the first replica
        first = _settled(replicas[0], "orders", 30)
        second = _settled(replicas[1], "orders", 30)
        assert first["aliases"] == second["aliases"]
    finally:
        for server in replicas:
            bg_loop.run(server.stop())
        bg_loop.run(backend.close())


def test_with_credentials_only_signed_requests_get_the_data(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> None:
    backend = make_backend("memory", request)
    server = start_gateway(
        bg_loop, backend.open(), recording_executor, credentials={"AKIDEXAMPLE": "secret"}
    )
    try:
        create_flow(client_for(server), "orders", versions=1)
        for path in ("/v1/console/flows", "/v1/console/flows/orders"):
            status, body = get(server, path)
            assert (status, body["code"]) == (403, "MissingAuthenticationToken")
            reply = signed_call(server, "GET", path)
            assert reply.status == 200, reply.body
        assert signed_call(server, "GET", "/v1/console/flows").body["flows"][0]["name"] == "orders"
        # the page itself is open: it holds no data, and asks for a key
        with urllib.request.urlopen(server.url + "/console", timeout=10) as page:
            assert b'<meta name="flow-router-auth" content="sigv4">' in page.read()
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(backend.close())


# -- shaping (pure) -----------------------------------------------------------------------


def test_quantiles_interpolate_inside_their_bin() -> None:
    assert data.quantile({}, 0.5) is None
    assert data.quantile({0: 10}, 0.5) == 5.0  # bin 0 holds 0..10 ms
    assert data.quantile({3: 100}, 0.99) == pytest.approx(32 + (56 - 32) * 0.99)
    assert data.quantile({1: 50, 20: 50}, 0.5) == 18.0  # the last run of the lower bin
    assert data.quantile({len(RUN_BOUNDS_MS): 1}, 0.5) == RUN_BOUNDS_MS[-1]


def test_the_window_keeps_the_last_5_minutes_and_counts_each_kind() -> None:
    flow = Flow(id=new_id(), name="f", created_at=1, updated_at=1, definition="d")
    alias = Alias(flow.id, new_id(), "live", (Route(1, 3), Route(2, 1)), revision=7)
    now = 1_000 * BUCKET_MS + 1
    old, recent = 960, 1_000  # bucket numbers: out of and in the window

    def k(what: str, version: str = "1") -> StatKey:
        return StatKey("live", 7, version, what)

    stats = {
        old: {k(STARTED): 50},
        recent: {
            k(STARTED): 3,
            k(Status.SUCCEEDED.value): 2,
            k(Status.TIMED_OUT.value): 1,
            k("h4"): 3,
            k(STARTED, "3"): 1,  # a version the alias no longer routes to
        },
    }
    shown = data.flow_detail(flow, [alias], stats, now, {})
    (live,) = shown["aliases"]
    rows = {row["version"]: row for row in live["versions"]}
    assert sorted(rows) == ["1", "2", "3"]
    assert (rows["1"]["executions"], rows["1"]["succeeded"], rows["1"]["failed"]) == (3, 2, 1)
    assert rows["1"]["series"]["started"][-1] == 3 and rows["1"]["series"]["failed"][-1] == 1
    assert rows["1"]["successRatio"] == pytest.approx(2 / 3)
    assert rows["2"]["executions"] == 0 and rows["2"]["successRatio"] is None
    assert [r["share"] for r in live["realized"]] == [0.75, 0.0, 0.25]
    assert [r["share"] for r in live["routes"]] == [0.75, 0.25]
    assert shown["firstBucketAt"] == (1_000 - 29) * BUCKET_MS


def test_rollouts_in_the_list_and_the_detail(gateway: GatewayServer) -> None:
    client = client_for(gateway)
    create_flow(client, "orders", versions=2)
    create_alias(client, "orders", "live", ("1", 100))
    create_alias(client, "orders", "beta", ("1", 100))
    body = {"targetVersion": "2", "stepWeights": [10, 40], "minStepSeconds": 3600}
    put = urllib.request.Request(
        gateway.url + "/v1/flows/orders/aliases/live/rollout",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(put, timeout=10) as response:
        started = json.loads(response.read())
    _, page = get(gateway, "/v1/console/flows")
    assert {a["name"]: a["rollout"] for a in page["flows"][0]["aliases"]} == {
        "beta": None,
        "live": "Progressing",  # the phase of an active rollout
    }
    _, detail = get(gateway, "/v1/console/flows/orders")
    rollouts = {a["name"]: a["rollout"] for a in detail["aliases"]}
    assert rollouts["beta"] is None
    live = rollouts["live"]
    assert live["stepWeights"] == [10, 40]
    assert {k: v for k, v in live.items() if k != "stepWeights"}.keys() == started.keys()
    assert (live["phase"], live["step"], live["canaryWeight"]) == ("Progressing", 1, 10)
    abort = urllib.request.Request(
        gateway.url + "/v1/flows/orders/aliases/live/rollout/abort", method="POST"
    )
    urllib.request.urlopen(abort, timeout=10).close()
    _, page = get(gateway, "/v1/console/flows")
    assert [a["rollout"] for a in page["flows"][0]["aliases"]] == [None, None]
    _, detail = get(gateway, "/v1/console/flows/orders")
    (live_after,) = [a for a in detail["aliases"] if a["name"] == "live"]
    assert live_after["rollout"]["phase"] == "Aborted"  # the last rollout stays readable
    assert [(r["version"], r["weight"]) for r in live_after["routes"]] == [("1", 100)]


def test_a_store_outage_is_a_503_not_a_500(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor, own_redis: RedisServer
) -> None:
    store = RedisStore.from_url(own_redis.url, f"c{new_id()}")
    server = start_gateway(bg_loop, store, recording_executor)
    try:
        create_flow(client_for(server), "orders", versions=1)
        assert get(server, "/v1/console/flows/orders")[0] == 200
        own_redis.stop()
        for path in ("/v1/console/flows", "/v1/console/flows/orders"):
            status, body = get(server, path)
            assert (status, body["code"]) == (503, "ServiceUnavailable"), (path, body)
            assert "Traceback" not in body["message"] and own_redis.url not in body["message"]
    finally:
        bg_loop.run(server.stop())
        bg_loop.run(store.close())
