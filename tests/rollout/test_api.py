"""The /v1 rollout API over real HTTP: exact shapes, every documented status, never a 500.

A real gateway (``make_app``) on 127.0.0.1 with the memory store and with a real
redis-server; flows and aliases made through the CloudFlow dialect, the rollout
through /v1 with urllib. Steps are an hour long (``minStepSeconds``), so nothing
moves by itself while a test looks: what the driver decides is R1's suite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.store.redis import RedisStore
from tests.dialects import cloudflow_client as cf
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.plugin import open_store
from tests.processes import Connection
from tests.redis_servers import RedisServer, redis_binary, start_on_free_port
from tests.rollout.v1_helpers import (
    ALIAS,
    FLOW,
    TARGET,
    alias_routes,
    assert_error,
    assert_status_shape,
    call,
    expected_baseline,
    gateway_for,
    make_flow,
    path,
)

START = {"targetVersion": TARGET, "minStepSeconds": 3600, "minSamples": 1000}


@pytest.fixture(params=["memory", "redis"])
def gateway(
    request: pytest.FixtureRequest, bg_loop: BackgroundLoop, recording_executor: RecordingExecutor
) -> Iterator[GatewayServer]:
    store = open_store(request.param, request)
    yield from gateway_for(bg_loop, store, recording_executor)


@pytest.fixture
def conn(gateway: GatewayServer) -> Iterator[Connection]:
    """The CloudFlow side of ``gateway``, with the flow to roll out made."""
    with make_flow(gateway) as connection:
        yield connection


def start(gateway: GatewayServer, **fields: Any) -> dict[str, Any]:
    reply = call(gateway, "PUT", path(), {**START, **fields})
    assert reply.status == 201, reply.body
    assert_status_shape(reply.body)
    status: dict[str, Any] = reply.body
    return status


# -- start and status -------------------------------------------------------------------------


def test_start_answers_201_with_the_status(gateway: GatewayServer, conn: Connection) -> None:
    reply = call(gateway, "PUT", path(), {**START, "stepWeights": [10, 50]})
    assert reply.status == 201, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert re.fullmatch(r"[0-9A-F-]{36}", reply.headers["x-request-id"])
    status = reply.body
    assert_status_shape(status)
    assert (status["flow"], status["alias"], status["targetVersion"]) == (FLOW, ALIAS, TARGET)
    assert (status["phase"], status["step"], status["canaryWeight"]) == ("Progressing", 1, 10)
    assert status["baseline"] == [{"version": "1", "weight": 70}, {"version": "2", "weight": 30}]
    assert status["history"][0]["phase"] == "Progressing"
    assert status["history"][0]["canaryWeight"] == 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", status["startedAt"])

    # the alias routes 10% to the target, the rest 70:30 as before
    routes = dict(alias_routes(conn))
    total = sum(routes.values())
    assert routes[TARGET] * 10 == total
    assert routes["1"] * 30 == routes["2"] * 70

    got = call(gateway, "GET", path())
    assert got.status == 200
    assert_status_shape(got.body)
    stable = ("flow", "alias", "targetVersion", "baseline", "phase", "step", "canaryWeight")
    assert {k: got.body[k] for k in stable} == {k: status[k] for k in stable}
    assert got.body["startedAt"] == status["startedAt"]


def test_defaults_fill_what_the_body_leaves_out(gateway: GatewayServer, conn: Connection) -> None:
    reply = call(gateway, "PUT", path(), {"targetVersion": TARGET})
    assert reply.status == 201, reply.body
    assert (reply.body["step"], reply.body["canaryWeight"]) == (1, 5)  # stepWeights [5, 25, 50]


def test_a_second_start_while_active_is_409(gateway: GatewayServer, conn: Connection) -> None:
    first = start(gateway)
    assert_error(call(gateway, "PUT", path(), START), 409, "RolloutActive")
    assert call(gateway, "GET", path()).body["startedAt"] == first["startedAt"]


def test_unknown_flow_alias_or_version_is_404(gateway: GatewayServer, conn: Connection) -> None:
    assert_error(call(gateway, "PUT", path(flow="nope"), START), 404, "FlowNotFound")
    assert_error(call(gateway, "PUT", path(alias="nope"), START), 404, "AliasNotFound")
    reply = call(gateway, "PUT", path(), {**START, "targetVersion": "9"})
    assert_error(reply, 404, "VersionNotFound")
    assert_error(call(gateway, "GET", path(flow="nope")), 404, "FlowNotFound")
    assert_error(call(gateway, "POST", path(alias="nope", action="abort")), 404, "AliasNotFound")
    assert alias_routes(conn) == expected_baseline()


def test_an_alias_that_never_had_a_rollout_is_404(gateway: GatewayServer, conn: Connection) -> None:
    assert_error(call(gateway, "GET", path()), 404, "RolloutNotFound")
    for action in ("promote", "pause", "resume", "abort"):
        assert_error(call(gateway, "POST", path(action=action)), 404, "RolloutNotFound")


# -- bad requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "MissingParameter"),
        (b"{}", "MissingParameter"),
        (b"{not json", "InvalidArgument"),
        (b'["targetVersion", "3"]', "InvalidArgument"),
        (b'"3"', "InvalidArgument"),
        (b'{"targetVersion": "3", "minStepSeconds": NaN}', "InvalidArgument"),
        (b'{"targetVersion": "3", "minSamples": 1180591620717411303424}', "InvalidArgument"),
        (b'{"targetVersion": "3", "bogus": 1}', "InvalidArgument"),
        (b'{"targetVersion": true}', "InvalidArgument"),
        (b'{"targetVersion": "three"}', "InvalidArgument"),
        (b'{"targetVersion": "3", "stepWeights": "5,25"}', "InvalidArgument"),
        (b'{"targetVersion": "3", "stepWeights": [50, 25]}', "InvalidArgument"),
        (b'{"targetVersion": "3", "stepWeights": [0, 100]}', "InvalidArgument"),
        (b'{"targetVersion": "3", "stepWeights": []}', "InvalidArgument"),
        (b'{"targetVersion": "3", "minSamples": 0}', "InvalidArgument"),
        (b'{"targetVersion": "3", "minSamples": 2.5}', "InvalidArgument"),
        (b'{"targetVersion": "3", "minStepSeconds": -1}', "InvalidArgument"),
        (b'{"targetVersion": "3", "minStepSeconds": 60, "maxStepSeconds": 30}', "InvalidArgument"),
        (b'{"targetVersion": "3", "onInconclusive": "maybe"}', "InvalidArgument"),
        (b'{"targetVersion": "3", "requireApproval": "yes"}', "InvalidArgument"),
        (b'{"targetVersion": "3", "analysis": {"alpha": 2}}', "InvalidArgument"),
        (b'{"targetVersion": "3", "analysis": {"alpha": "0.01"}}', "InvalidArgument"),
        (b'{"targetVersion": "3", "analysis": {"maxFailureRatio": 0}}', "InvalidArgument"),
        (b'{"targetVersion": "3", "analysis": {"beta": 1}}', "InvalidArgument"),
        (b'{"targetVersion": "3", "analysis": []}', "InvalidArgument"),
        (b'{"targetVersion": "3", "webhooks": [{"type": "event"}]}', "InvalidArgument"),
        (b'{"targetVersion": "3", "webhooks": [{"type": "x", "url": "http://h"}]}',
         "InvalidArgument"),
        (b'{"targetVersion": "3", "webhooks": [{"type": "event", "url": "file:///x"}]}',
         "InvalidArgument"),
        (b'{"targetVersion": "3", "webhooks": {}}', "InvalidArgument"),
        (b"\xff\xfe{}", "InvalidArgument"),
    ],
)  # fmt: skip
def test_bad_start_bodies_are_400_and_start_nothing(
    gateway: GatewayServer, conn: Connection, raw: bytes, code: str
) -> None:
    assert_error(call(gateway, "PUT", path(), raw=raw), 400, code)
    assert_error(call(gateway, "GET", path()), 404, "RolloutNotFound")
    assert alias_routes(conn) == expected_baseline()


def test_bad_action_bodies_are_400(gateway: GatewayServer, conn: Connection) -> None:
    start(gateway)
    promote = path(action="promote")
    assert_error(call(gateway, "POST", promote, {"full": "yes"}), 400, "InvalidArgument")
    assert_error(call(gateway, "POST", promote, {"fully": True}), 400, "InvalidArgument")
    assert_error(call(gateway, "POST", promote, raw=b"[true]"), 400, "InvalidArgument")
    assert_error(call(gateway, "POST", path(action="pause"), {"x": 1}), 400, "InvalidArgument")
    assert_error(call(gateway, "POST", path(action="abort"), raw=b"{"), 400, "InvalidArgument")
    assert call(gateway, "GET", path()).body["phase"] == "Progressing"


def test_paths_and_methods_this_api_does_not_have(gateway: GatewayServer) -> None:
    wrong = call(gateway, "DELETE", path())
    assert_error(wrong, 405, "MethodNotAllowed")
    assert wrong.headers["allow"] == "PUT, GET"
    wrong = call(gateway, "GET", path(action="promote"))
    assert_error(wrong, 405, "MethodNotAllowed")
    assert wrong.headers["allow"] == "POST"
    for target in (
        "/v1/",
        "/v1/flows",
        f"/v1/flows/{FLOW}",
        f"/v1/flows/{FLOW}/aliases/{ALIAS}",
        path() + "/",
        path(action="restart"),
        path() + "%2Fpromote",
        f"/v1/flows//aliases/{ALIAS}/rollout",
        f"/v1/flows/{FLOW}/aliases//rollout",
        f"/v1/flows/{FLOW}/versions/{ALIAS}/rollout",
        path(action="pause/now"),
    ):
        assert_error(call(gateway, "POST", target), 404, "UnknownOperation")


def test_names_are_path_labels(gateway: GatewayServer) -> None:
    reply = call(gateway, "GET", path(flow="a/b c"))
    assert_error(reply, 404, "FlowNotFound")
    assert "a/b c" in reply.body["message"]


def test_a_body_over_the_limit_is_413(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor, request: pytest.FixtureRequest
) -> None:
    store = open_store("memory", request)
    for server in gateway_for(bg_loop, store, recording_executor, max_body_bytes=1024):
        raw = b'{"targetVersion": "3", "pad": "' + b"x" * 2048 + b'"}'
        assert_error(call(server, "PUT", path(), raw=raw), 413, "RequestTooLarge")


# -- actions --------------------------------------------------------------------------------------


def test_abort_restores_the_routes_and_the_rollout_stays_readable(
    gateway: GatewayServer, conn: Connection
) -> None:
    start(gateway)
    assert alias_routes(conn) != expected_baseline()
    reply = call(gateway, "POST", path(action="abort"))
    assert reply.status == 200, reply.body
    assert_status_shape(reply.body)
    assert reply.body["phase"] == "Aborted"
    assert alias_routes(conn) == expected_baseline()

    got = call(gateway, "GET", path())
    assert (got.status, got.body["phase"]) == (200, "Aborted")
    for action in ("promote", "pause", "resume", "abort"):
        assert_error(call(gateway, "POST", path(action=action)), 409, "RolloutFinished")
    assert alias_routes(conn) == expected_baseline()
    again = start(gateway)  # a finished rollout does not block the next one
    assert again["phase"] == "Progressing"


def test_pause_resume_and_promote(gateway: GatewayServer, conn: Connection) -> None:
    start(gateway, stepWeights=[20, 60])
    paused = call(gateway, "POST", path(action="pause"))
    assert (paused.status, paused.body["phase"]) == (200, "Paused")
    assert paused.body["history"][-1]["phase"] == "Paused"
    resumed = call(gateway, "POST", path(action="resume"))
    assert (resumed.status, resumed.body["phase"]) == (200, "Progressing")

    promoted = call(gateway, "POST", path(action="promote"), {"full": True})
    assert promoted.status == 200, promoted.body
    assert_status_shape(promoted.body)
    assert (promoted.body["phase"], promoted.body["canaryWeight"]) == ("Succeeded", 100)
    assert [(v, w) for v, w in alias_routes(conn) if w] == [(TARGET, 100)]
    assert_error(call(gateway, "POST", path(action="abort")), 409, "RolloutFinished")
    assert [(v, w) for v, w in alias_routes(conn) if w] == [(TARGET, 100)]


def test_promote_without_full_moves_one_step(gateway: GatewayServer, conn: Connection) -> None:
    start(gateway, stepWeights=[20, 60])
    promoted = call(gateway, "POST", path(action="promote"))
    assert promoted.status == 200, promoted.body
    assert (promoted.body["phase"], promoted.body["canaryWeight"]) == ("Progressing", 60)
    assert promoted.body["step"] == 2  # steps count from 1


# -- the envelope's bookkeeping ------------------------------------------------------------------


def test_answers_are_counted_under_the_v1_dialect(gateway: GatewayServer, conn: Connection) -> None:
    start(gateway)
    call(gateway, "PUT", path(), START)
    call(gateway, "GET", path())
    call(gateway, "GET", "/v1/nothing")
    scraped = cf.scrape(gateway)

    def requests(action: str, code: str) -> float | None:
        labels = {"dialect": "v1", "action": action, "code": code}
        return cf.value(scraped, "flow_router_api_requests_total", **labels)

    assert requests("StartRollout", "201") == 1
    assert requests("StartRollout", "409") == 1
    assert requests("GetRollout", "200") == 1
    assert requests("unknown", "404") == 1
    assert cf.value(scraped, "flow_router_errors_total", dialect="v1", error="RolloutActive") == 1
    errors = cf.value(scraped, "flow_router_errors_total", dialect="v1", error="UnknownOperation")
    assert errors == 1


# -- the store gone -------------------------------------------------------------------------------

INTERNALS = re.compile(r"127\.0\.0\.1|0x[0-9a-f]{6,}|Error \d+|Connection|redis", re.IGNORECASE)


def test_a_lost_store_is_503_without_internals(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor, tmp_path: Path
) -> None:
    redis = RedisServer(redis_binary(), tmp_path)
    start_on_free_port(redis)
    try:
        store = RedisStore.from_url(redis.url + "?socket_timeout=1", "lost")
        for server in gateway_for(bg_loop, store, recording_executor):
            with make_flow(server):
                start(server)
            redis.stop()
            for method, action, body in [
                ("GET", "", None),
                ("PUT", "", START),
                ("POST", "abort", None),
            ]:
                reply = call(server, method, path(action=action), body)
                assert_error(reply, 503, "ServiceUnavailable")
                assert reply.headers["retry-after"] == "1"
                assert not INTERNALS.search(reply.body["message"]), reply.body
    finally:
        redis.stop()


@pytest.mark.parametrize(
    "label",
    ["%00", "%FF", "%C3%28", "x" * 4000, "%7B%7D", "..", ".", "%2E%2E", "a%0Ab", "%25"],
)
def test_odd_names_are_a_404_never_a_500(
    gateway: GatewayServer, conn: Connection, label: str
) -> None:
    for target, code in (
        (f"/v1/flows/{label}/aliases/{ALIAS}/rollout", "FlowNotFound"),
        (f"/v1/flows/{FLOW}/aliases/{label}/rollout", "AliasNotFound"),
    ):
        assert_error(call(gateway, "GET", target), 404, code)
        assert_error(call(gateway, "PUT", target, {"targetVersion": "1"}), 404, code)
        assert_error(call(gateway, "POST", target + "/abort"), 404, code)


def test_deeply_nested_json_is_a_400(gateway: GatewayServer, conn: Connection) -> None:
    raw = b'{"targetVersion": "3", "analysis": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(call(gateway, "PUT", path(), raw=raw), 400, "InvalidArgument")
