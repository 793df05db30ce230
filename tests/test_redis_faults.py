"""Redis stopped, hung and restarted under a running gateway, through the real SDKs.

What the gateway promises (docs/operations.md):

* executions through an alias it has cached keep routing, with no errors, while
  Redis is down: unnamed ones need no Redis at all. A caller-named execution
  must claim its name in Redis first (one SET NX), so it fails fast with the
  retryable error instead, before anything is sent to an executor;
* control-plane writes fail fast with the dialect's retryable 5xx (CloudFlow 503
  ``ServiceUnavailable``, Bedrock 500 ``InternalServerException``);
* ``/readyz`` answers 503 while Redis is unreachable, 200 once it is back;
* after a restart the gateway reconnects and resubscribes by itself, and a
  change made through another gateway reaches it;
* no partial writes: what was acknowledged is there after the restart (this
  module's server has an fsync-always AOF, so a restart keeps its data), and
  a write refused while Redis was down is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from alibabacloud_fnf20190315 import models
from alibabacloud_fnf20190315.client import Client
from alibabacloud_tea_openapi.exceptions import ServerException

from router.config import Config
from router.errors import Unavailable
from router.service import Settings
from router.store.redis import RedisStore
from tests.dialects import bedrock_client
from tests.dialects.cloudflow_client import (
    client_for,
    cloudflow_error,
    create_alias,
    create_flow,
    http_get,
    scrape,
    start,
    update_routes,
    value,
)
from tests.harness import BackgroundLoop, GatewayServer, RecordingExecutor, free_port
from tests.redis_servers import (
    SENTINEL_SERVICE,
    RedisServer,
    SentinelProcess,
    redis_binary,
    start_on_free_port,
)
from tests.store.test_contract import a_flow, an_alias

pytestmark = pytest.mark.network  # real redis-servers (sentinel, failover) throughout

FAIL_FAST_S = 3.0  # "within ~2 s" (the client's socket timeout), asserted loosely
RESYNCS = "flow_router_route_cache_resyncs_total"


# -- fixtures: a durable redis-server, gateways (on tests/plugin.py's loop and executor) --


@pytest.fixture(scope="module")
def durable_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server whose every acknowledged write survives a restart."""
    args = ("--appendonly", "yes", "--appendfsync", "always")
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("aof"), args)
    start_on_free_port(server)
    yield server
    server.stop()


@dataclass
class Gateways:
    loop: BackgroundLoop
    executor: RecordingExecutor
    started: list[tuple[GatewayServer, RedisStore]] = field(default_factory=list)

    def start(self, url: str, prefix: str, check_interval_s: float = 3600) -> GatewayServer:
        """A gateway on ``url``; the periodic revision check is off unless asked for,
        so only the change feed (and its resyncs) can tell it about changes."""
        store = RedisStore.from_url(url, prefix)
        config = Config(
            port=free_port(),
            upstream=self.executor.template,
            random_seed=7,
            settings=Settings(cache_check_interval_s=check_interval_s),
        )
        server = GatewayServer(config, store=store)
        self.loop.run(server.start())
        self.started.append((server, store))
        return server

    def stop(self) -> None:
        for server, store in self.started:
            self.loop.run(server.stop())
            self.loop.run(store.close())


@pytest.fixture
def gateways(
    bg_loop: BackgroundLoop, recording_executor: RecordingExecutor, durable_redis: RedisServer
) -> Iterator[Gateways]:
    found = Gateways(bg_loop, recording_executor)
    try:
        yield found
    finally:
        durable_redis.start()  # whatever the test left it as
        durable_redis.resume()
        found.stop()


def _prefix() -> str:
    return f"faults{uuid.uuid4().hex[:8]}"


# -- helpers -----------------------------------------------------------------------------


def _fails_fast(call: Callable[[], Any]) -> None:
    started = time.monotonic()
    call()
    elapsed = time.monotonic() - started
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.2f}s to fail"


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _ready(gateway: GatewayServer) -> int:
    return http_get(gateway, "/readyz")[0]


def _cloudflow_unavailable(call: Callable[[], Any]) -> None:
    def check() -> None:
        with cloudflow_error(503, "ServiceUnavailable"):
            call()

    _fails_fast(check)


def _bedrock_unavailable(agent: Any, call: Callable[[], Any]) -> None:
    def check() -> None:
        with bedrock_client.bedrock_error(agent, "InternalServerException", 500):
            call()

    _fails_fast(check)


class Hammer:
    """Executions through a cached alias, from a thread, counting what failed."""

    def __init__(self, gateway: GatewayServer, flow: str, alias: str) -> None:
        self._client = client_for(gateway)
        self._flow, self._alias = flow, alias
        self.ok = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                start(self._client, self._flow, self._alias, input='{"n": 1}')
                self.ok += 1
            except Exception as e:  # counted and reported by the test
                self.errors.append(e)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# -- routing continues, everything else fails fast and retryable --------------------------


def test_redis_down_routing_continues_and_writes_fail_fast(
    gateways: Gateways, durable_redis: RedisServer
) -> None:
    # The periodic check runs every 0.2 s and keeps failing while Redis is down:
    # that must not disturb what is cached.
    gateway = gateways.start(durable_redis.url, _prefix(), check_interval_s=0.2)
    client = client_for(gateway)
    agent = bedrock_client.agent_client(gateway)
    runtime = bedrock_client.runtime_client(gateway)
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 50), ("2", 50))
    flow_id = bedrock_client.create_flow(agent, "b1", versions=1)
    alias_id = bedrock_client.create_alias(agent, flow_id, "live", "1")
    for _ in range(10):  # warm: the aliases, and both versions' definitions
        start(client, "f1", "prod")
    bedrock_client.invoke(runtime, flow_id, alias_id)
    assert _ready(gateway) == 200

    with Hammer(gateway, "f1", "prod") as hammer:
        _until(lambda: hammer.ok > 5, "executions before the stop")
        durable_redis.stop()
        before = hammer.ok
        assert _ready(gateway) == 503
        # Control-plane writes, and reads of what is not cached, fail fast.
        _cloudflow_unavailable(lambda: create_flow(client, "f2"))
        _cloudflow_unavailable(
            lambda: client.update_flow_alias(
                models.UpdateFlowAliasRequest(
                    flow_name="f1", name="prod", routing_configurations=update_routes(("1", 100))
                )
            )
        )
        _cloudflow_unavailable(lambda: client.list_flows(models.ListFlowsRequest()))
        _bedrock_unavailable(agent, lambda: bedrock_client.create_flow(agent, "b2"))
        _bedrock_unavailable(agent, lambda: agent.create_flow_version(flowIdentifier=flow_id))
        # A named execution must claim its name in Redis first: refused, unsent.
        sent = len(gateways.executor.records)
        _cloudflow_unavailable(lambda: start(client, "f1", "prod", name="named-1"))
        # Unnamed executions route on the cache, in both dialects.
        for _ in range(5):
            assert start(client, "f1", "prod").body.status == "Succeeded"
            assert bedrock_client.invoke(runtime, flow_id, alias_id).version == "1"
        _until(lambda: hammer.ok > before + 20, "executions while Redis is down")
        assert all(r["execution"] != "named-1" for r in gateways.executor.records[sent:])

        durable_redis.start()
        _until(lambda: _ready(gateway) == 200, "/readyz to recover")
        during = hammer.ok
        _until(lambda: hammer.ok > during + 5, "executions after the restart")
    assert hammer.errors == []

    # Writes work again, and the named execution can now be claimed.
    create_flow(client, "f2")
    assert start(client, "f1", "prod", name="named-1").body.name == "named-1"
    assert sorted(f.name for f in client.list_flows(models.ListFlowsRequest()).body.flows) == [
        "b1",
        "f1",
        "f2",
    ]


def test_hung_redis_fails_within_the_socket_timeout(
    gateways: Gateways, durable_redis: RedisServer
) -> None:
    gateway = gateways.start(durable_redis.url, _prefix())
    client = client_for(gateway)
    create_flow(client, "f1", versions=1)
    create_alias(client, "f1", "prod", ("1", 100))
    start(client, "f1", "prod")
    durable_redis.pause()
    try:
        _fails_fast(lambda: _assert_status(_ready(gateway), 503))
        _cloudflow_unavailable(lambda: client.describe_flow(models.DescribeFlowRequest(name="f1")))
        assert start(client, "f1", "prod").body.status == "Succeeded"
    finally:
        durable_redis.resume()
    _until(lambda: _ready(gateway) == 200, "/readyz after the server resumed")
    create_flow(client, "f2")


def _assert_status(status: int, expected: int) -> None:
    assert status == expected


def test_an_announcement_whose_reload_cannot_reach_redis_keeps_routing(
    gateways: Gateways, durable_redis: RedisServer
) -> None:
    """Issue 10, bug 7: an invalidation during an outage must not drop a cached flow.

    One pipeline announces a change to the flow and then pauses every write
    (``CLIENT PAUSE … WRITE``): the announcement reaches the gateway only once
    the pause holds, so its reload (a store script, which the pause blocks)
    fails on the socket timeout while executions keep coming through the alias.
    """
    prefix = _prefix()
    gateway = gateways.start(durable_redis.url, prefix)
    client = client_for(gateway)
    create_flow(client, "f1", versions=2)
    create_alias(client, "f1", "prod", ("1", 30), ("2", 70))
    for _ in range(10):  # warm: the alias, and both versions' definitions
        start(client, "f1", "prod")
    flow_id = client.describe_flow(models.DescribeFlowRequest(name="f1")).body.id
    errors = "flow_router_route_cache_errors_total"
    failed_before = value(scrape(gateway), errors) or 0
    raw = redis.Redis.from_url(durable_redis.url)
    try:
        with Hammer(gateway, "f1", "prod") as hammer:
            _until(lambda: hammer.ok > 5, "executions before the pause")
            pipe = raw.pipeline(transaction=False)
            pipe.publish(f"{prefix}:changes", flow_id)
            pipe.execute_command("CLIENT", "PAUSE", 3000, "WRITE")
            pipe.execute()
            _until(
                lambda: (value(scrape(gateway), errors) or 0) > failed_before, "the reload to fail"
            )
            during = hammer.ok
            _until(lambda: hammer.ok > during + 20, "executions after the failed reload")
    finally:
        raw.execute_command("CLIENT", "UNPAUSE")
        raw.close()
    assert hammer.errors == []


# -- reconnect and resynchronise ----------------------------------------------------------


def test_after_a_restart_changes_from_another_gateway_arrive(
    gateways: Gateways, durable_redis: RedisServer
) -> None:
    prefix = _prefix()
    watcher = gateways.start(durable_redis.url, prefix)
    writer = gateways.start(durable_redis.url, prefix)
    watching, writing = client_for(watcher), client_for(writer)
    create_flow(writing, "f1", versions=2)
    create_alias(writing, "f1", "prod", ("1", 100))
    assert start(watching, "f1", "prod").headers["x-flow-version"] == "1"
    resyncs = value(scrape(watcher), RESYNCS) or 0

    durable_redis.stop()
    with pytest.raises(ServerException):
        create_flow(writing, "lost")
    durable_redis.start()
    # The feed has resubscribed once it has asked for a resync again.
    _until(lambda: (value(scrape(watcher), RESYNCS) or 0) > resyncs, "the feed to resubscribe")
    writing.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="f1", name="prod", routing_configurations=update_routes(("2", 100))
        )
    )
    # The periodic check is off (1 h): only the resubscribed feed can bring this.
    _until(
        lambda: start(watching, "f1", "prod").headers["x-flow-version"] == "2",
        "the change to reach the other gateway",
        timeout_s=5,
    )


@pytest.mark.parametrize("deployment", ["sentinel", "cluster"])
def test_changes_reach_other_gateways_through_sentinel_and_cluster(
    gateways: Gateways, deployment: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"redis_{deployment}").url
    prefix = _prefix()
    watcher = gateways.start(url, prefix)
    writer = gateways.start(url, prefix)
    watching, writing = client_for(watcher), client_for(writer)
    create_flow(writing, "f1", versions=2)
    create_alias(writing, "f1", "prod", ("1", 100))
    assert start(watching, "f1", "prod").headers["x-flow-version"] == "1"
    writing.update_flow_alias(
        models.UpdateFlowAliasRequest(
            flow_name="f1", name="prod", routing_configurations=update_routes(("2", 100))
        )
    )
    _until(
        lambda: start(watching, "f1", "prod").headers["x-flow-version"] == "2",
        "the change to reach the other gateway",
        timeout_s=5,
    )


# -- nothing partial, nothing lost ------------------------------------------------------


def test_acknowledged_writes_survive_and_refused_ones_are_absent(
    gateways: Gateways, durable_redis: RedisServer
) -> None:
    prefix = _prefix()
    gateway = gateways.start(durable_redis.url, prefix)
    client = client_for(gateway)
    acknowledged: list[str] = []
    refused: list[str] = []
    ambiguous: list[str] = []
    stop = threading.Event()

    def write() -> None:
        # Flows with a version and an alias: three writes each, any of which
        # may be cut by the stop.
        writer = client_for(gateway)
        for i in range(10_000):
            if stop.is_set():
                return
            name = f"w{i:04}"
            try:
                create_flow(writer, name, versions=1)
                create_alias(writer, name, "prod", ("1", 100))
                acknowledged.append(name)
            except ServerException:
                ambiguous.append(name)  # cut around the stop: whole or absent

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    _until(lambda: len(acknowledged) >= 10, "writes before the stop")
    durable_redis.stop()
    _until(lambda: bool(ambiguous), "the writer to meet the outage")
    for i in range(5):  # certainly refused: nothing listens
        name = f"x{i}"
        with pytest.raises(ServerException):
            create_flow(client, name, versions=1)
        refused.append(name)
    durable_redis.start()
    _until(lambda: _ready(gateway) == 200, "/readyz to recover")
    count = len(acknowledged)
    _until(lambda: len(acknowledged) >= count + 10, "writes after the restart")
    stop.set()
    thread.join(30)

    assert ambiguous, "the writer never hit the outage"
    listed = _all_flows(client)
    assert set(acknowledged) <= set(listed)
    assert not set(refused) & set(listed)
    assert set(listed) <= set(acknowledged) | set(ambiguous)
    for name in acknowledged:
        aliases = client.list_flow_aliases(models.ListFlowAliasesRequest(flow_name=name))
        assert [a.name for a in aliases.body.aliases] == ["prod"]
    _assert_consistent(durable_redis, prefix)


def _all_flows(client: Client) -> list[str]:
    names: list[str] = []
    token = None
    while True:
        page = client.list_flows(models.ListFlowsRequest(limit=100, next_token=token)).body
        names += [f.name for f in page.flows]
        token = page.next_token
        if not token:
            return names


def _assert_consistent(server: RedisServer, prefix: str) -> None:
    """Every write happened whole: the name index, the listing and each flow agree."""
    raw = redis.Redis(port=server.port)
    try:
        names = {k.decode(): v.decode() for k, v in raw.hgetall(f"{prefix}:flow_names").items()}
        listed = {m.decode() for m in raw.zrange(f"{prefix}:flow_index", 0, -1)}
        assert set(names) == listed
        metas = {k.decode() for k in raw.scan_iter(match=f"{prefix}:{{flow:*}}:meta")}
        assert metas == {f"{prefix}:{{flow:{flow_id}}}:meta" for flow_id in names.values()}
        for name, flow_id in names.items():
            assert raw.hget(f"{prefix}:{{flow:{flow_id}}}:meta", "name") == name.encode()
    finally:
        raw.close()


def test_the_durable_server_keeps_data_across_a_restart(durable_redis: RedisServer) -> None:
    # The premise of the test above: this server's restart loses nothing.
    raw = redis.Redis(port=durable_redis.port)
    try:
        raw.set("durable-check", "1")
        durable_redis.stop()
        durable_redis.start()
        assert raw.get("durable-check") == b"1"
    finally:
        raw.close()


async def test_pooled_connections_are_renewed_after_a_restart(durable_redis: RedisServer) -> None:
    # The pool holds connections the restart closed: each is found closed when
    # taken and reopened, so no caller sees an error once Redis is back.
    store = RedisStore.from_url(durable_redis.url, _prefix())
    try:
        flow = a_flow()
        await store.create_flow(flow)
        await asyncio.gather(*(store.get_flow_by_id(flow.id) for _ in range(10)))
        durable_redis.stop()
        durable_redis.start()
        await asyncio.sleep(0.1)
        found = await asyncio.gather(*(store.get_flow_by_id(flow.id) for _ in range(10)))
        assert found == [flow] * 10
    finally:
        await store.close()


# -- Sentinel failover -------------------------------------------------------------------


@pytest.fixture
def failover_group(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, SentinelProcess]]:
    """A master, its replica and one sentinel (quorum 1) watching them; torn down after."""
    binary = redis_binary()
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    (tmp_path / "s").mkdir()
    master = RedisServer(binary, tmp_path / "m")
    start_on_free_port(master)
    replica = RedisServer(binary, tmp_path / "r", ("--replicaof", "127.0.0.1", str(master.port)))
    sentinel = SentinelProcess(binary, tmp_path / "s", master)
    try:
        start_on_free_port(replica)
        raw = redis.Redis(port=master.port)
        try:
            _until(lambda: raw.info("replication")["connected_slaves"] == 1, "the replica")
        finally:
            raw.close()
        start_on_free_port(sentinel)
        yield master, replica, sentinel
    finally:
        for server in (sentinel, replica, master):
            server.stop()


async def test_sentinel_failover_moves_the_store_to_the_new_master(
    failover_group: tuple[RedisServer, RedisServer, SentinelProcess],
) -> None:
    master, replica, sentinel = failover_group
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SENTINEL_SERVICE}"
    store = RedisStore.from_url(url, _prefix())
    changes: list[str] = []
    resyncs: list[None] = []
    follower = asyncio.create_task(store.listen(changes.append, lambda: resyncs.append(None)))
    try:
        kept = a_flow("kept")
        await store.create_flow(kept)
        raw = redis.asyncio.Redis(port=master.port)
        try:
            assert await raw.execute_command("WAIT", 1, 5000) == 1  # replicated
        finally:
            await raw.aclose()
        await _until_async(lambda: len(resyncs) >= 1)

        master.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:  # Unavailable (retryable) until the sentinel has promoted the replica
            try:
                await store.ping()
                break
            except Unavailable:
                assert loop.time() < deadline, "no failover within 30 s"
                await asyncio.sleep(0.2)
        assert await store.get_flow("kept") == kept
        info = redis.Redis(port=replica.port)
        try:
            assert info.info("replication")["role"] == "master"
        finally:
            info.close()
        # The change feed followed the master and resynchronised.
        await _until_async(lambda: len(resyncs) >= 2)
        other = a_flow("other")
        await store.create_flow(other)
        await store.publish_version(other.id, "", 1)
        await store.create_alias(an_alias(other))
        await _until_async(lambda: changes == [other.id])
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await store.close()


async def _until_async(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
