"""N-way aliases and sticky routing, end to end through the CloudFlow API.

The command-line flags (``--n-way``, ``--max-routes``) are tested on real
``flow-router serve`` subprocesses. The statistics run on an in-process gateway
(the same app) with a seeded version choice and, for the sticky tests, a flow
and alias seeded with fixed ids (a routing key is hashed with the alias's ids),
so every run sends the same requests and gets the same answers: the
significance levels below are the chance that a correct gateway fails,
paid once when the test was written, not on every run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from alibabacloud_fnf20190315 import models
from scipy.stats import chisquare

from router.model import Alias, Api, Flow, Route
from router.service import Settings
from router.store.memory import MemoryStore
from tests.dialects.cloudflow_client import client_for, create_routes
from tests.dialects.conftest import start_gateway
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor
from tests.processes import (
    Answer,
    Connection,
    GatewayProcess,
    Processes,
    execute,
    ok,
    routing,
    setup_flow,
)

ALPHA = 0.001  # significance level of every chi-square test in this module
WEIGHTS = (10, 20, 30, 25, 15)


# -- the flags, on real processes ----------------------------------------------------------


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, recording_executor_session: RecordingExecutor
) -> Iterator[dict[str, GatewayProcess]]:
    """Three gateways on the memory store: default, --n-way, --n-way --max-routes 4."""
    flags = {"default": [], "n-way": ["--n-way"], "max-4": ["--n-way", "--max-routes", "4"]}
    with Processes(tmp_path_factory.mktemp("nway")) as processes:
        started = processes.start_many(
            [
                ["--workers", "1", "--upstream", recording_executor_session.template, *f]
                for f in flags.values()
            ]
        )
        yield dict(zip(flags, started, strict=True))


def create_alias(conn: Connection, flow: str, name: str, versions: int) -> Answer:
    """An alias over versions 1..versions, weight 1 each."""
    pairs = [(v, 1) for v in range(1, versions + 1)]
    params = {"FlowName": flow, "Name": name, "RoutingConfigurations": routing(*pairs)}
    return conn.cloudflow("CreateFlowAlias", params)


def assert_invalid(answer: Answer, *fragments: str) -> None:
    assert (answer.status, answer.code) == (400, "InvalidArgument"), answer.body
    for fragment in fragments:
        assert fragment in answer.body["Message"], answer.body


@pytest.mark.network
def test_without_n_way_an_alias_has_at_most_two_versions(
    served: dict[str, GatewayProcess],
) -> None:
    with Connection(served["default"].port) as conn:
        setup_flow(conn, "f-default", 3)
        assert_invalid(create_alias(conn, "f-default", "three", 3), "1 to 2 entries")
        ok(create_alias(conn, "f-default", "two", 2))
        params = {"FlowName": "f-default", "Name": "two"}
        update = {**params, "RoutingConfigurations": routing((1, 1), (2, 1), (3, 1))}
        assert_invalid(conn.cloudflow("UpdateFlowAlias", update), "1 to 2 entries")
        described = ok(conn.cloudflow("DescribeFlowAlias", params)).body["Alias"]
        assert described["RoutingConfigurations"] == routing((1, 1), (2, 1))


@pytest.mark.network
def test_n_way_alias_created_with_the_sdk_routes_to_every_version(
    served: dict[str, GatewayProcess], recording_executor: RecordingExecutor
) -> None:
    gateway = served["n-way"]
    client = client_for(gateway)  # type: ignore[arg-type]  # it reads only .port
    with Connection(gateway.port) as conn:
        setup_flow(conn, "f-five", 5)
    pairs = [(str(v), w) for v, w in enumerate(WEIGHTS, 1)]
    created = client.create_flow_alias(
        models.CreateFlowAliasRequest(
            flow_name="f-five", name="prod", routing_configurations=create_routes(*pairs)
        )
    )
    assert [(r.version, r.weight) for r in created.body.routing_configurations] == pairs
    described = client.describe_flow_alias(
        models.DescribeFlowAliasRequest(flow_name="f-five", name="prod")
    )
    assert [(r.version, r.weight) for r in described.body.alias.routing_configurations] == pairs
    with Connection(gateway.port) as conn:
        answered = Counter(ok(execute(conn, "f-five", "prod")).version for _ in range(200))
    # a version missing after 200 draws: probability < 200 * 0.9**200 ~ 1.5e-7
    assert set(answered) == {"1", "2", "3", "4", "5"}
    assert answered == recording_executor.versions()


@pytest.mark.network
def test_n_way_quota_defaults_to_100(served: dict[str, GatewayProcess]) -> None:
    with Connection(served["n-way"].port) as conn:
        # 100 versions (a flow may hold at most 100 by default); the entry count is
        # checked before the versions exist, so 101 entries are refused as too many
        setup_flow(conn, "f-many", 100)
        assert_invalid(create_alias(conn, "f-many", "too-many", 101), "1 to 100 entries")
        ok(create_alias(conn, "f-many", "hundred", 100))


@pytest.mark.network
def test_max_routes_is_the_quota(served: dict[str, GatewayProcess]) -> None:
    with Connection(served["max-4"].port) as conn:
        setup_flow(conn, "f-four", 5)
        assert_invalid(create_alias(conn, "f-four", "five", 5), "1 to 4 entries")
        ok(create_alias(conn, "f-four", "four", 4))
        update = {
            "FlowName": "f-four",
            "Name": "four",
            "RoutingConfigurations": routing(*[(v, 1) for v in range(1, 6)]),
        }
        assert_invalid(conn.cloudflow("UpdateFlowAlias", update), "1 to 4 entries")


# -- statistics, on an in-process gateway ----------------------------------------------------


@pytest.fixture(scope="module")
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(scope="module")
def gateway(
    bg_loop: BackgroundLoop, store: MemoryStore, recording_executor_session: RecordingExecutor
) -> Iterator[GatewayServer]:
    settings = Settings(max_routes={Api.CLOUDFLOW: 100, Api.BEDROCK: 1})  # as with --n-way
    server = start_gateway(bg_loop, store, recording_executor_session, settings=settings)
    yield server
    bg_loop.run(server.stop())


@pytest.fixture
def conn(gateway: GatewayServer) -> Iterator[Connection]:
    with Connection(gateway.port) as connection:
        yield connection


def split_test(counts: Counter[str], weights: tuple[int, ...]) -> float:
    """p-value of the observed version counts against the configured weights."""
    n = sum(counts.values())
    observed = [counts[str(v)] for v in range(1, len(weights) + 1)]
    expected = [n * w / sum(weights) for w in weights]
    return float(chisquare(observed, expected).pvalue)


@pytest.mark.slow
def test_n_way_split_matches_the_weights(
    conn: Connection, recording_executor: RecordingExecutor
) -> None:
    setup_flow(conn, "weighted", len(WEIGHTS), "prod", *enumerate(WEIGHTS, 1))
    n = 3000
    answered = Counter(ok(execute(conn, "weighted", "prod")).version for _ in range(n))
    assert answered == recording_executor.versions()
    print(f"\n{n} executions over {WEIGHTS}: {[answered[str(v)] for v in range(1, 6)]}")
    assert split_test(answered, WEIGHTS) > ALPHA
    # negative control: the same counts are nowhere near an even split
    assert split_test(answered, (1,) * len(WEIGHTS)) < 1e-6


def seed_alias(
    bg_loop: BackgroundLoop,
    store: MemoryStore,
    flow: str,
    flow_id: str,
    *weights: int,
    sticky: bool = False,
) -> None:
    """A flow and alias with fixed ids, so each routing key's version is the same every run."""

    async def seed() -> None:
        await store.create_flow(Flow(id=flow_id, name=flow, definition="version: v1"))
        for _ in weights:
            await store.publish_version(flow_id, "", 0)
        routes = tuple(Route(v, w) for v, w in enumerate(weights, 1))
        await store.create_alias(
            Alias(flow_id, "ALIAS00001", "prod", routes, sticky_execution_name=sticky)
        )

    bg_loop.run(seed())


def by_key(conn: Connection, flow: str, keys: list[str]) -> dict[str, str]:
    found = {}
    for key in keys:
        answer = ok(execute(conn, flow, "prod", routing_key=key))
        assert answer.version is not None
        found[key] = answer.version
    return found


@pytest.mark.slow
def test_routing_key_is_sticky_and_split_by_weight(
    conn: Connection, bg_loop: BackgroundLoop, store: MemoryStore
) -> None:
    seed_alias(bg_loop, store, "sticky", "FLOWSTICKY", *WEIGHTS)
    keys = [f"user-{i}" for i in range(2000)]
    first = by_key(conn, "sticky", keys)
    for _ in range(2):  # 200 of them twice more: the same version every time
        assert by_key(conn, "sticky", keys[:200]) == {k: first[k] for k in keys[:200]}
    counts = Counter(first.values())
    print(f"\n2000 keys over {WEIGHTS}: {[counts[str(v)] for v in range(1, 6)]}")
    assert split_test(counts, WEIGHTS) > ALPHA
    assert split_test(counts, (1,) * len(WEIGHTS)) < 1e-6


@pytest.mark.slow
def test_ramp_never_moves_a_key_off_the_growing_version(
    conn: Connection, bg_loop: BackgroundLoop, store: MemoryStore
) -> None:
    seed_alias(bg_loop, store, "ramp", "FLOWRAMP01", 90, 10)
    keys = [f"user-{i}" for i in range(1000)]
    before = by_key(conn, "ramp", keys)
    on_canary = [len([k for k in keys if before[k] == "2"])]
    for stable, canary in ((70, 30), (50, 50)):
        params = {
            "FlowName": "ramp",
            "Name": "prod",
            "RoutingConfigurations": routing((1, stable), (2, canary)),
        }
        ok(conn.cloudflow("UpdateFlowAlias", params))
        after = by_key(conn, "ramp", keys)
        moved_back = [k for k in keys if before[k] == "2" and after[k] != "2"]
        assert moved_back == []
        on_canary.append(len([k for k in keys if after[k] == "2"]))
        before = after
    print(f"\nkeys on the canary at 10% / 30% / 50%: {on_canary}")
    assert on_canary[0] < on_canary[1] < on_canary[2]  # and keys did move to it


def test_sticky_execution_name_routes_like_the_same_routing_key(
    conn: Connection, bg_loop: BackgroundLoop, store: MemoryStore
) -> None:
    """An alias with StickyExecutionName routes ExecutionName as X-Routing-Key would."""
    seed_alias(bg_loop, store, "named", "FLOWNAMED1", 50, 50, sticky=True)
    names = [f"order-{i}" for i in range(100)]
    by_name = {n: ok(execute(conn, "named", "prod", name=n)).version for n in names}
    assert by_name == by_key(conn, "named", names)
    assert set(by_name.values()) == {"1", "2"}  # one-sided: probability 2**-99
