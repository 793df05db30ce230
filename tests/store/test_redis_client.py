"""Store URLs for one server, Sentinel and Cluster, and what each deployment changes.

The whole Store contract also runs through the Sentinel and Cluster URLs (the
``sentinel`` and ``cluster`` kinds of the ``store`` fixture); here are the URL
forms, the single-slot cluster layout and the cluster-wide change feed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from router.errors import Unavailable
from router.model import new_id
from router.store import open_store
from router.store.base import ExecutionRecord, IdempotencyRecord
from router.store.redis import RedisStore
from router.store.redis_client import FailureLog, connect
from tests.harness import free_port
from tests.redis_servers import RedisClusterNodes, RedisSentinel
from tests.store.test_contract import a_flow, an_alias, flow_with_versions

# -- URL forms ---------------------------------------------------------------------


def _kwargs(client: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    return kwargs


def test_redis_url_gets_fail_fast_defaults_that_its_options_override() -> None:
    plain = connect("redis://127.0.0.1:7000/2").client
    assert _kwargs(plain)["socket_connect_timeout"] == 1.0
    assert _kwargs(plain)["socket_timeout"] == 2.0
    assert _kwargs(plain)["health_check_interval"] == 5
    assert _kwargs(plain)["retry"].get_retries() == 0
    tuned = connect("redis://127.0.0.1:7000/2?socket_timeout=7&socket_connect_timeout=0.5")
    assert (_kwargs(tuned.client)["socket_timeout"], _kwargs(tuned.client)["db"]) == (7.0, 2)
    assert _kwargs(tuned.client)["socket_connect_timeout"] == 0.5


def test_sentinel_url() -> None:
    url = "redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2:26380/orders/3?socket_timeout=0.5"
    clients = connect(url + "&sentinel_password=sp")
    pool: Any = clients.client.connection_pool
    assert pool.service_name == "orders"
    kwargs = _kwargs(clients.client)
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "p@ss", 0.5)
    assert kwargs["socket_connect_timeout"] == 1.0
    sentinels = [_kwargs(s) for s in clients.also_close]
    assert [(s["host"], s["port"]) for s in sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert {s["password"] for s in sentinels} == {"sp"}
    assert not clients.cluster
    assert _kwargs(connect("redis+sentinel://h:1/svc").client)["db"] == 0


def test_cluster_url() -> None:
    clients = connect("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001?health_check_interval=1")
    client = clients.client
    assert isinstance(client, RedisCluster)
    assert clients.cluster
    nodes = client.nodes_manager.startup_nodes
    assert sorted(nodes) == ["10.0.0.1:7000", "10.0.0.2:7001"]
    assert clients.node_options["health_check_interval"] == 1
    assert clients.node_options["socket_timeout"] == 2.0
    assert (clients.node_options["username"], clients.node_options["password"]) == ("u", "pw")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:1",  # no service
        "redis+sentinel://h:1/svc/zero",
        "redis+sentinel://h/svc",  # no port
        "redis+sentinel://h:1/svc?socket_timeout=soon",
        "redis+cluster://h:1,h2/",
        "redis+cluster://h:1/3",  # a cluster has db 0 only
        "redis+cluster://h:1?sentinel_password=x",  # unknown option for a cluster
        "redis+cluster://h:1?retry_forever=1",
    ],
)
async def test_bad_store_urls_are_refused_at_start(url: str) -> None:
    with pytest.raises(ValueError):
        await open_store(url)


def test_cluster_prefix_may_not_carry_its_own_hash_tag() -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisStore.from_url("redis+cluster://127.0.0.1:7000", "fr{x}")


# -- real Sentinel and Cluster -------------------------------------------------------


async def test_open_store_on_sentinel_and_cluster(
    redis_sentinel: RedisSentinel, redis_cluster: RedisClusterNodes
) -> None:
    for url in (redis_sentinel.url, redis_cluster.url):
        store = await open_store(url, f"open{new_id()}")
        try:
            assert isinstance(store, RedisStore)
            await store.ping()
        finally:
            await store.close()


async def test_cluster_keeps_every_key_but_executions_in_one_slot(
    redis_cluster: RedisClusterNodes,
) -> None:
    prefix = f"layout{new_id()}"
    store = RedisStore.from_url(redis_cluster.url, prefix)
    nodes = [redis.asyncio.Redis(port=n.port) for n in redis_cluster.nodes]
    try:
        flow = await flow_with_versions(store, 2)
        await store.create_alias(an_alias(flow, "live", (1, 1), (2, 1)))
        await store.claim_execution(ExecutionRecord(flow.id, "", "run-1", "1", "live", 1), 60)
        await store.put_token("scope", "tok", IdempotencyRecord("fp", flow.id), 60)
        # executions carry the bare flow id as their hash tag (their own slot)
        executions = f"{prefix}:x:{{{flow.id}}}:"
        held = [{k.decode() async for k in n.scan_iter(match=f"*{prefix}*")} for n in nodes]
        ours = [{k for k in keys if not k.startswith(executions)} for keys in held]
        assert sorted(len(keys) > 0 for keys in ours) == [False, False, True]
        keys = set().union(*ours)
        assert all(k.startswith(f"{{{prefix}}}:") for k in keys)
        assert len({key_slot(k.encode()) for k in keys}) == 1
        assert f"{{{prefix}}}:flow_names" in keys
        assert f"{{{prefix}}}:{{flow:{flow.id}}}:meta" in keys
        exec_keys = set().union(*held) - keys
        assert exec_keys == {executions + n for n in ("exec:run-1", "execs", "outcomes")}
        assert {key_slot(k.encode()) for k in exec_keys} == {key_slot(flow.id.encode())}
        await store.delete_flow(flow.id, force=True)
        left = set().union(
            *[{k.decode() async for k in n.scan_iter(match=f"*{prefix}*")} for n in nodes]
        )
        assert left == {f"{{{prefix}}}:token:5:scope:tok", executions + "gone"}
    finally:
        await store.close()
        for node in nodes:
            await node.aclose()


async def test_cluster_stores_with_different_prefixes_spread_over_the_masters(
    redis_cluster: RedisClusterNodes,
) -> None:
    # What a cluster does shard: separate gateways (prefixes), not one gateway's flows.
    slots = {key_slot(f"{{t{i}}}".encode()) for i in range(30)}
    owners: set[int] = set()
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    try:
        await client.initialize()
        for slot in slots:
            owners.add(int(client.nodes_manager.get_node_from_slot(slot).port))
    finally:
        await client.aclose()
    assert owners == {n.port for n in redis_cluster.nodes}


async def test_cluster_change_feed_is_heard_on_every_node(redis_cluster: RedisClusterNodes) -> None:
    prefix = f"feed{new_id()}"
    store = RedisStore.from_url(redis_cluster.url, prefix)
    nodes = [redis.asyncio.Redis(port=n.port) for n in redis_cluster.nodes]
    subscribers = [n.pubsub(ignore_subscribe_messages=True) for n in nodes]
    try:
        for subscriber in subscribers:
            await subscriber.subscribe(f"{{{prefix}}}:changes")
        flow = await flow_with_versions(store, 1)
        await store.create_alias(an_alias(flow))
        for subscriber in subscribers:
            message = None
            for _ in range(50):
                message = await subscriber.get_message(timeout=0.1)
                if message is not None:
                    break
            assert message is not None and message["data"] == flow.id.encode()
    finally:
        for subscriber in subscribers:
            await subscriber.aclose()  # type: ignore[no-untyped-call]
        for node in nodes:
            await node.aclose()
        await store.close()


async def test_unreachable_sentinel_and_cluster_raise_unavailable() -> None:
    for url in (
        f"redis+sentinel://127.0.0.1:{free_port()}/mymaster",
        f"redis+cluster://127.0.0.1:{free_port()}",
    ):
        store = RedisStore.from_url(url, "fr")
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(Unavailable):
                await store.ping()
            with pytest.raises(Unavailable):
                await store.create_flow(a_flow())
            assert loop.time() - started < 3
        finally:
            await store.close()


# -- what an unreachable store tells whom ------------------------------------------


def test_failures_are_logged_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    failures = FailureLog(logging.getLogger("test.failures"), interval_s=10.0, clock=lambda: now[0])
    error = ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    with caplog.at_level(logging.WARNING, logger="test.failures"):
        for _ in range(5):
            failures.failed("get_flow", error)
        now[0] += 10.0
        failures.failed("ping", error)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "store unavailable: get_flow failed: ConnectionError: Error 111 connecting to "
        "127.0.0.1:1. Connection refused.",
        "store unavailable: ping failed: ConnectionError: Error 111 connecting to "
        "127.0.0.1:1. Connection refused. (and 4 more since the last report)",
    ]


async def test_an_unreachable_store_says_only_store_unavailable() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5")
    try:
        with pytest.raises(Unavailable) as raised:
            await store.get_flow("orders")
        assert raised.value.message == "store unavailable"
    finally:
        await store.close()
