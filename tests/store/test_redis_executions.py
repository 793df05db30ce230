"""What only the Redis store has for executions: round trips, cluster spread, TTLs.

Round trips are counted by a connection class that counts the packets it sends
(every command or pipeline is one ``send_packed_command``), and commands by
the server's own ``INFO commandstats``: instrumentation of the real client and
server, not a stand-in for either.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

from router.lifecycle.status import Status
from router.model import new_id
from router.store.redis import RedisStore
from tests.store.test_contract import flow_with_versions
from tests.store.test_executions_contract import a_record, key


def _counting_store(port: int, prefix: str, sent: list[int]) -> RedisStore:
    class Counting(redis.asyncio.Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent.append(1)
            await super().send_packed_command(command, check_health)

    pool = redis.asyncio.ConnectionPool(connection_class=Counting, host="127.0.0.1", port=port)
    return RedisStore(redis.asyncio.Redis(connection_pool=pool), prefix)


def _evalsha_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_journal_flush_is_one_round_trip(redis_server: Any) -> None:
    sent: list[int] = []
    store = _counting_store(redis_server.port, f"rt{new_id()}", sent)
    admin = redis.Redis(port=redis_server.port)
    try:
        flows = [await flow_with_versions(store, name=f"f{i}") for i in range(5)]
        await store.put_executions([a_record(flows[0].id, "warm")], 60)  # loads the script
        records = [a_record(flows[i % 5].id, f"g{i}", 1_000 + i) for i in range(200)]
        sent.clear()
        before = _evalsha_calls(admin)
        await store.put_executions(records, 60)
        assert len(sent) == 1  # 200 executions: one round trip
        assert _evalsha_calls(admin) - before == 5  # one script call per flow
        for i, flow in enumerate(flows):
            counts = await store.outcome_counts(flow.id)
            assert counts == {key("Started"): 40 + (i == 0)}
        # a retried flush (the journal's, after a failure) is one round trip too
        sent.clear()
        await store.put_executions(records, 60)
        assert len(sent) == 1
        assert (await store.outcome_counts(flows[1].id)) == {key("Started"): 40}
    finally:
        admin.close()
        await store.close()


async def test_a_batch_of_polls_is_one_round_trip(redis_server: Any) -> None:
    sent: list[int] = []
    store = _counting_store(redis_server.port, f"sp{new_id()}", sent)
    admin = redis.Redis(port=redis_server.port)
    try:
        await store.schedule_polls([("F", "warm", 1, 0)])  # loads the script
        entries = [(f"F{i % 9}", f"run-{i}", 1_000 + i, 0) for i in range(200)]
        sent.clear()
        before = _evalsha_calls(admin)
        await store.schedule_polls(entries)
        assert len(sent) == 1  # 200 entries over every shard: one round trip
        assert _evalsha_calls(admin) - before == 16  # one script call per shard
        claimed = await store.claim_polls(10_000, 500, 60_000)
        assert len(claimed) == 201
    finally:
        admin.close()
        await store.close()


async def test_a_flush_after_a_script_flush_reloads_and_writes_once(redis_server: Any) -> None:
    # A restarted or failed-over Redis knows no scripts: NOSCRIPT, load, send again.
    sent: list[int] = []
    store = _counting_store(redis_server.port, f"ns{new_id()}", sent)
    admin = redis.Redis(port=redis_server.port)
    try:
        flow = await flow_with_versions(store)
        admin.script_flush()
        await store.put_executions([a_record(flow.id, f"g{i}") for i in range(3)], 60)
        assert await store.outcome_counts(flow.id) == {key("Started"): 3}
    finally:
        admin.close()
        await store.close()


async def test_finishing_keeps_the_records_ttl(redis_server: Any) -> None:
    prefix = f"ttl{new_id()}"
    store = RedisStore.from_url(redis_server.url, prefix)
    admin = redis.Redis(port=redis_server.port)
    try:
        flow = await flow_with_versions(store)
        await store.put_executions([a_record(flow.id, "run-1")], 500)
        await store.finish_execution(flow.id, "run-1", Status.SUCCEEDED, 1, None, None, 5)
        exec_key = f"{prefix}:x:{{{flow.id}}}:exec:run-1"
        assert 0 < admin.ttl(exec_key) <= 500
        assert admin.ttl(f"{prefix}:x:{{{flow.id}}}:outcomes") == -1  # counters never expire
    finally:
        admin.close()
        await store.close()


async def test_cluster_spreads_executions_over_its_masters(redis_cluster: Any) -> None:
    prefix = f"spread{new_id()}"
    store = RedisStore.from_url(redis_cluster.url, prefix)
    try:
        flows = [await flow_with_versions(store, name=f"f{i}") for i in range(20)]
        await store.put_executions([a_record(f.id, "g1") for f in flows], 60)
        per_node = {}
        for node in redis_cluster.nodes:
            client = redis.Redis(port=node.port)
            try:
                per_node[node.port] = sum(1 for _ in client.scan_iter(match=f"{prefix}:x:*"))
                flow_keys = sum(1 for _ in client.scan_iter(match=f"{{{prefix}}}:*"))
            finally:
                client.close()
            if flow_keys:
                flow_node = node.port
        # 20 flows x (record, index, counters, statistics index and bucket): on more
        # than one master, while the flows themselves (and every alias write) stay in
        # the prefix's one slot
        assert sum(per_node.values()) == 100
        assert sum(1 for n in per_node.values() if n) > 1, per_node
        assert flow_node in per_node
        for flow in flows:
            assert await store.outcome_counts(flow.id) == {key("Started"): 1}
        await store.delete_flow(flows[0].id, force=True)
    finally:
        await store.close()
