"""The Store contract, run identically on every store kind (see tests/plugin.py).

MemoryStore is the reference: whatever it does, every other store must do too.
The last section holds what only a Redis store has: its key layout and how it
fails when Redis is unreachable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
from redis.crc import key_slot

from router.errors import (
    AliasAlreadyExists,
    AliasNotFound,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    FlowAlreadyExists,
    FlowNotFound,
    InvalidToken,
    QuotaExceeded,
    ResourceInUse,
    Unavailable,
    VersionNotFound,
)
from router.lifecycle.record import ExecutionRecord
from router.model import Alias, AliasUpdate, Flow, FlowUpdate, Route, new_id
from router.store import MemoryStore, open_store
from router.store.base import IdempotencyRecord, Store
from router.store.redis import RedisStore
from tests.harness import free_port
from tests.plugin import StoreBackend

DEFINITION = {"StartAt": "Hello", "States": {"Hello": {"Type": "Pass", "End": True}}}


def a_flow(name: str = "orders", **fields: Any) -> Flow:
    fields.setdefault("definition", DEFINITION)
    return Flow(id=new_id(), name=name, created_at=1, updated_at=1, **fields)


def an_alias(flow: Flow, name: str = "live", *routes: tuple[int, int]) -> Alias:
    return Alias(
        flow_id=flow.id,
        id=new_id(),
        name=name,
        routes=tuple(Route(v, w) for v, w in routes or [(1, 100)]),
        description="d",
        tags={"team": "payments"},
        created_at=5,
        updated_at=5,
    )


async def flow_with_versions(store: Store, n: int = 1, name: str = "orders") -> Flow:
    flow = a_flow(name)
    await store.create_flow(flow)
    for i in range(n):
        await store.publish_version(flow.id, f"v{i + 1}", 10 + i)
    return flow


async def all_pages(list_page: Any, limit: int) -> tuple[list[Any], list[str | None]]:
    items: list[Any] = []
    tokens: list[str | None] = []
    token = None
    while True:
        page = await list_page(limit, token)
        assert len(page.items) <= limit
        items += page.items
        tokens.append(page.next_token)
        token = page.next_token
        if token is None:
            return items, tokens


# -- flows -------------------------------------------------------------------------


async def test_create_and_get_flow(store: Store) -> None:
    flow = a_flow(
        description="ü nicode",
        role_arn="acs:ram::1:role/r",
        environment={"Variables": [{"Name": "A", "Value": "1"}]},
        tags={"env": "prod", "owner": "me"},
        status="Prepared",
    )
    await store.create_flow(flow)
    assert await store.get_flow("orders") == flow
    assert await store.get_flow_by_id(flow.id) == flow
    with pytest.raises(FlowNotFound) as e:
        await store.get_flow("nope")
    assert e.value.name == "nope"
    with pytest.raises(FlowNotFound) as e:
        await store.get_flow_by_id("NOPE")
    assert e.value.name == "NOPE"


async def test_definition_may_be_any_json_value(store: Store) -> None:
    for i, definition in enumerate(["Type: Pass\n", [1, "two", None], 3.5, {"a": {"b": []}}]):
        flow = a_flow(f"f{i}", definition=definition)
        await store.create_flow(flow)
        assert (await store.get_flow_by_id(flow.id)).definition == definition


async def test_create_flow_with_taken_name_fails(store: Store) -> None:
    first = a_flow()
    await store.create_flow(first)
    with pytest.raises(FlowAlreadyExists) as e:
        await store.create_flow(a_flow())
    assert e.value.name == "orders"
    assert await store.get_flow("orders") == first
    assert [f.id for f in (await store.list_flows(10)).items] == [first.id]


async def test_list_flows_pages_in_name_byte_order(store: Store) -> None:
    names = ["orders", "Zeta", "_private", "a-b", "a_b", "ab", "A1", "billing", "z9", "a"]
    for name in names:
        await store.create_flow(a_flow(name))
    flows, tokens = await all_pages(store.list_flows, 3)
    assert [f.name for f in flows] == sorted(names, key=lambda n: n.encode())
    assert tokens == [flows[3].name, flows[6].name, flows[9].name, None]
    # a token is the first name of the next page, and any name works as one
    page = await store.list_flows(2, "a_")
    assert [f.name for f in page.items] == ["a_b", "ab"]
    assert page.next_token == "billing"
    assert (await store.list_flows(5, "zz")).items == []
    everything = await store.list_flows(100)
    assert len(everything.items) == len(names)
    assert everything.next_token is None


async def test_list_flows_when_empty(store: Store) -> None:
    page = await store.list_flows(10)
    assert list(page.items) == []
    assert page.next_token is None


async def test_update_flow(store: Store) -> None:
    flow = a_flow(tags={"a": "1"})
    await store.create_flow(flow)
    new = await store.update_flow(
        flow.id, FlowUpdate(description="new", definition={"x": 1}, tags={"b": "2"}), 99
    )
    assert new.description == "new"
    assert new.definition == {"x": 1}
    assert new.tags == {"b": "2"}
    assert new.updated_at == 99
    assert new.role_arn == flow.role_arn and new.created_at == flow.created_at
    assert await store.get_flow_by_id(flow.id) == new
    assert await store.get_flow("orders") == new
    with pytest.raises(FlowNotFound):
        await store.update_flow("NOPE", FlowUpdate(description="x"), 1)


async def test_rename_flow(store: Store) -> None:
    flow = a_flow("orders")
    await store.create_flow(flow)
    renamed = await store.update_flow(flow.id, FlowUpdate(name="purchases"), 2)
    assert renamed.name == "purchases"
    assert await store.get_flow("purchases") == renamed
    with pytest.raises(FlowNotFound):
        await store.get_flow("orders")
    assert [f.name for f in (await store.list_flows(10)).items] == ["purchases"]
    # the old name is free again
    await store.create_flow(a_flow("orders"))
    assert [f.name for f in (await store.list_flows(10)).items] == ["orders", "purchases"]
    # renaming to its own name is not a clash
    same = await store.update_flow(flow.id, FlowUpdate(name="purchases"), 3)
    assert same.name == "purchases"


async def test_rename_flow_to_taken_name_fails(store: Store) -> None:
    first, second = a_flow("first"), a_flow("second")
    await store.create_flow(first)
    await store.create_flow(second)
    with pytest.raises(FlowAlreadyExists) as e:
        await store.update_flow(second.id, FlowUpdate(name="first", description="x"), 2)
    assert e.value.name == "first"
    assert await store.get_flow("first") == first
    assert await store.get_flow("second") == second


async def test_delete_flow_without_aliases(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    assert await store.delete_flow(flow.id, force=False) == flow
    with pytest.raises(FlowNotFound):
        await store.get_flow_by_id(flow.id)
    with pytest.raises(FlowNotFound):
        await store.delete_flow(flow.id, force=True)


async def test_delete_flow_with_aliases_needs_force(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    await store.create_alias(an_alias(flow, "live", (1, 90), (2, 10)))
    await store.claim_execution(ExecutionRecord(flow.id, "", "run-1", "1", "live", 7), 60)
    with pytest.raises(ResourceInUse):
        await store.delete_flow(flow.id, force=False)
    assert await store.get_flow("orders") == flow
    assert (await store.get_alias(flow.id, "live")).name == "live"

    assert (await store.delete_flow(flow.id, force=True)).id == flow.id
    for read in (
        store.get_flow("orders"),
        store.get_flow_by_id(flow.id),
        store.get_version(flow.id, 1),
        store.latest_version(flow.id),
        store.list_versions(flow.id, 10),
        store.get_alias(flow.id, "live"),
        store.list_aliases(flow.id, 10),
        store.get_execution(flow.id, "run-1"),
    ):
        with pytest.raises(FlowNotFound):
            await read
    assert (await store.list_flows(10)).items == []

    # the name is free and the new flow starts from nothing
    again = a_flow("orders")
    await store.create_flow(again)
    assert await store.get_flow("orders") == again
    assert await store.latest_version(again.id) is None
    assert (await store.publish_version(again.id, "", 1)).version == 1
    assert (await store.list_aliases(again.id, 10)).items == []


# -- versions ------------------------------------------------------------------------


async def test_publish_version_snapshots_the_definition(store: Store) -> None:
    flow = a_flow(role_arn="role-1")
    await store.create_flow(flow)
    assert await store.latest_version(flow.id) is None
    v1 = await store.publish_version(flow.id, "first", 100)
    assert (v1.flow_id, v1.version, v1.description, v1.created_at) == (flow.id, 1, "first", 100)
    assert (v1.definition, v1.role_arn) == (DEFINITION, "role-1")
    await store.update_flow(flow.id, FlowUpdate(definition={"v": 2}, role_arn="role-2"), 101)
    v2 = await store.publish_version(flow.id, "second", 102)
    v3 = await store.publish_version(flow.id, "", 103)
    assert [v2.version, v3.version] == [2, 3]
    assert (v2.definition, v2.role_arn) == ({"v": 2}, "role-2")
    assert await store.get_version(flow.id, 1) == v1
    assert await store.get_version(flow.id, 2) == v2
    assert await store.latest_version(flow.id) == v3
    with pytest.raises(VersionNotFound) as e:
        await store.get_version(flow.id, 4)
    assert e.value.name == "4"
    with pytest.raises(FlowNotFound):
        await store.publish_version("NOPE", "", 1)
    with pytest.raises(FlowNotFound):
        await store.get_version("NOPE", 1)


async def test_version_numbers_are_never_reused(store: Store) -> None:
    flow = await flow_with_versions(store, 3)
    await store.delete_version(flow.id, 3, force=False)
    assert (await store.latest_version(flow.id)).version == 2  # type: ignore[union-attr]
    assert (await store.publish_version(flow.id, "", 1)).version == 4
    await store.delete_version(flow.id, 1, force=False)
    await store.delete_version(flow.id, 2, force=False)
    await store.delete_version(flow.id, 4, force=False)
    assert await store.latest_version(flow.id) is None
    assert (await store.publish_version(flow.id, "", 1)).version == 5


async def test_list_versions_pages_in_number_order(store: Store) -> None:
    flow = await flow_with_versions(store, 11)
    await store.delete_version(flow.id, 5, force=False)
    versions, tokens = await all_pages(lambda n, t: store.list_versions(flow.id, n, t), 4)
    assert [v.version for v in versions] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert tokens == ["6", "10", None]
    assert versions[3] == await store.get_version(flow.id, 4)
    page = await store.list_versions(flow.id, 2, "5")  # a deleted number works as a token
    assert [v.version for v in page.items] == [6, 7]
    assert page.next_token == "8"
    with pytest.raises(FlowNotFound):
        await store.list_versions("NOPE", 10)


async def test_list_versions_rejects_a_malformed_token(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    for token in ("abc", "1.5", "2x"):
        # The store does not know what a dialect calls its token; the service names it.
        with pytest.raises(InvalidToken):
            await store.list_versions(flow.id, 10, token)


async def test_delete_version(store: Store) -> None:
    flow = await flow_with_versions(store, 3)
    await store.create_alias(an_alias(flow, "live", (1, 50), (2, 50)))
    with pytest.raises(ResourceInUse):
        await store.delete_version(flow.id, 2, force=False)
    assert (await store.get_version(flow.id, 2)).version == 2
    await store.delete_version(flow.id, 3, force=False)  # not routed to
    await store.delete_version(flow.id, 2, force=True)
    with pytest.raises(VersionNotFound):
        await store.get_version(flow.id, 2)
    with pytest.raises(VersionNotFound) as e:
        await store.delete_version(flow.id, 2, force=True)
    assert e.value.name == "2"
    with pytest.raises(FlowNotFound):
        await store.delete_version("NOPE", 1, force=True)
    await store.delete_alias(flow.id, "live")
    await store.delete_version(flow.id, 1, force=False)


# -- aliases -------------------------------------------------------------------------


async def test_create_and_get_alias(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    alias = an_alias(flow, "live", (1, 70), (2, 30))
    await store.create_alias(alias)
    assert await store.get_alias(flow.id, "live") == alias
    assert await store.get_alias_by_id(flow.id, alias.id) == alias
    with pytest.raises(AliasNotFound) as e:
        await store.get_alias(flow.id, "nope")
    assert e.value.name == "nope"
    with pytest.raises(AliasNotFound) as e:
        await store.get_alias_by_id(flow.id, "NOPE")
    assert e.value.name == "NOPE"
    with pytest.raises(FlowNotFound):
        await store.get_alias("NOPE", "live")
    with pytest.raises(FlowNotFound):
        await store.get_alias_by_id("NOPE", alias.id)


async def test_create_alias_with_taken_name_fails(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    first = an_alias(flow, "live", (1, 100))
    await store.create_alias(first)
    with pytest.raises(AliasAlreadyExists) as e:
        await store.create_alias(an_alias(flow, "live", (2, 100)))
    assert e.value.name == "live"
    assert await store.get_alias(flow.id, "live") == first


async def test_create_alias_to_missing_version_writes_nothing(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    revision = (await store.revisions([flow.id]))[0]  # type: ignore[attr-defined]
    alias = an_alias(flow, "live", (1, 50), (3, 25), (4, 25))
    with pytest.raises(VersionNotFound) as e:
        await store.create_alias(alias)
    assert e.value.name == "3"
    with pytest.raises(AliasNotFound):
        await store.get_alias(flow.id, "live")
    with pytest.raises(AliasNotFound):
        await store.get_alias_by_id(flow.id, alias.id)
    assert (await store.list_aliases(flow.id, 10)).items == []
    assert (await store.revisions([flow.id]))[0] == revision  # type: ignore[attr-defined]
    await store.delete_flow(flow.id, force=False)  # no alias holds it


async def test_create_alias_on_missing_flow_fails(store: Store) -> None:
    flow = a_flow()
    with pytest.raises(FlowNotFound) as e:
        await store.create_alias(an_alias(flow))
    assert e.value.name == flow.id


async def test_list_aliases_pages_in_name_order(store: Store) -> None:
    flow = await flow_with_versions(store, 1)
    names = ["live", "Beta", "canary", "_old", "a-1", "a_1", "zz"]
    for name in names:
        await store.create_alias(an_alias(flow, name))
    aliases, tokens = await all_pages(lambda n, t: store.list_aliases(flow.id, n, t), 2)
    assert [a.name for a in aliases] == sorted(names)
    assert tokens == [aliases[2].name, aliases[4].name, aliases[6].name, None]
    page = await store.list_aliases(flow.id, 10, "b")
    assert [a.name for a in page.items] == ["canary", "live", "zz"]
    with pytest.raises(FlowNotFound):
        await store.list_aliases("NOPE", 10)


async def test_update_alias(store: Store) -> None:
    flow = await flow_with_versions(store, 3)
    alias = an_alias(flow, "live", (1, 100))
    await store.create_alias(alias)
    new = await store.update_alias(
        flow.id, "live", AliasUpdate(routes=(Route(2, 60), Route(3, 40))), 50
    )
    assert new.revision == 2
    assert new.routes == (Route(2, 60), Route(3, 40))
    assert (new.description, new.tags, new.id, new.created_at) == ("d", alias.tags, alias.id, 5)
    assert new.updated_at == 50
    assert await store.get_alias(flow.id, "live") == new
    newer = await store.update_alias(
        flow.id, "live", AliasUpdate(description="", sticky_execution_name=True), 51
    )
    assert (newer.revision, newer.description, newer.sticky_execution_name) == (3, "", True)
    assert newer.routes == new.routes
    assert await store.get_alias_by_id(flow.id, alias.id) == newer


async def test_rename_alias(store: Store) -> None:
    flow = await flow_with_versions(store, 1)
    alias = an_alias(flow, "live")
    await store.create_alias(alias)
    await store.create_alias(an_alias(flow, "beta"))
    renamed = await store.update_alias(flow.id, "live", AliasUpdate(name="prod"), 9)
    assert (renamed.name, renamed.revision, renamed.id) == ("prod", 2, alias.id)
    assert await store.get_alias(flow.id, "prod") == renamed
    assert await store.get_alias_by_id(flow.id, alias.id) == renamed
    with pytest.raises(AliasNotFound):
        await store.get_alias(flow.id, "live")
    assert [a.name for a in (await store.list_aliases(flow.id, 10)).items] == ["beta", "prod"]

    with pytest.raises(AliasAlreadyExists) as e:
        await store.update_alias(flow.id, "prod", AliasUpdate(name="beta"), 10)
    assert e.value.name == "beta"
    assert await store.get_alias(flow.id, "prod") == renamed
    same = await store.update_alias(flow.id, "prod", AliasUpdate(name="prod"), 11)
    assert same.revision == 3


async def test_update_alias_to_missing_version_leaves_it_unchanged(store: Store) -> None:
    flow = await flow_with_versions(store, 2)
    alias = an_alias(flow, "live", (1, 100))
    await store.create_alias(alias)
    with pytest.raises(VersionNotFound) as e:
        await store.update_alias(
            flow.id, "live", AliasUpdate(routes=(Route(2, 1), Route(9, 1)), name="x"), 9
        )
    assert e.value.name == "9"
    assert await store.get_alias(flow.id, "live") == alias
    with pytest.raises(AliasNotFound):
        await store.get_alias(flow.id, "x")


async def test_update_missing_alias_fails(store: Store) -> None:
    flow = await flow_with_versions(store, 1)
    with pytest.raises(AliasNotFound) as e:
        await store.update_alias(flow.id, "nope", AliasUpdate(description="x"), 1)
    assert e.value.name == "nope"
    with pytest.raises(FlowNotFound):
        await store.update_alias("NOPE", "live", AliasUpdate(description="x"), 1)


async def test_delete_alias(store: Store) -> None:
    flow = await flow_with_versions(store, 1)
    alias = an_alias(flow, "live")
    await store.create_alias(alias)
    assert await store.delete_alias(flow.id, "live") == alias
    with pytest.raises(AliasNotFound):
        await store.get_alias(flow.id, "live")
    with pytest.raises(AliasNotFound):
        await store.get_alias_by_id(flow.id, alias.id)
    with pytest.raises(AliasNotFound) as e:
        await store.delete_alias(flow.id, "live")
    assert e.value.name == "live"
    with pytest.raises(FlowNotFound):
        await store.delete_alias("NOPE", "live")
    again = an_alias(flow, "live")
    await store.create_alias(again)
    assert await store.get_alias(flow.id, "live") == again


# -- executions and tokens -------------------------------------------------------------


async def test_record_and_get_execution(store: Store) -> None:
    flow = await flow_with_versions(store, 1)
    record = ExecutionRecord(flow.id, "", "run-1", "1", "live", 1234)
    await store.claim_execution(record, 60)
    assert await store.get_execution(flow.id, "run-1") == record
    with pytest.raises(ExecutionAlreadyExists) as e:
        await store.claim_execution(ExecutionRecord(flow.id, "", "run-1", "2", "", 5), 60)
    assert e.value.name == "run-1"
    assert await store.get_execution(flow.id, "run-1") == record
    with pytest.raises(ExecutionNotFound) as e2:
        await store.get_execution(flow.id, "run-2")
    assert e2.value.name == "run-2"
    with pytest.raises(FlowNotFound):
        await store.claim_execution(ExecutionRecord("NOPE", "", "run-1", "1", "", 1), 60)
    with pytest.raises(FlowNotFound):
        await store.get_execution("NOPE", "run-1")


async def test_put_token_keeps_the_first_record(store: Store) -> None:
    first = IdempotencyRecord("fp-1", "FLOW1")
    assert await store.get_token("create-flow", "tok") is None
    assert await store.put_token("create-flow", "tok", first, 60) == first
    assert await store.put_token("create-flow", "tok", IdempotencyRecord("fp-2", "X"), 60) == first
    assert await store.get_token("create-flow", "tok") == first
    # scope and token are one key together, without ambiguity
    other = IdempotencyRecord("fp-3", "Y")
    assert await store.put_token("a:b", "c", other, 60) == other
    assert await store.get_token("a", "b:c") is None
    assert await store.get_token("create-flow", "other") is None


@pytest.mark.redis_clock
async def test_executions_and_tokens_expire(store: Store, store_backend: StoreBackend) -> None:
    flow = await flow_with_versions(store, 1)
    await store.claim_execution(ExecutionRecord(flow.id, "", "run-1", "1", "", 1), 1)
    await store.put_token("s", "t", IdempotencyRecord("fp", "r"), 1)
    await store_backend.pass_time(1.2)
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(flow.id, "run-1")
    assert await store.get_token("s", "t") is None
    # an expired name is free again
    again = ExecutionRecord(flow.id, "", "run-1", "1", "", 2)
    await store.claim_execution(again, 60)
    assert await store.get_execution(flow.id, "run-1") == again
    fresh = IdempotencyRecord("fp2", "r2")
    assert await store.put_token("s", "t", fresh, 60) == fresh


# -- route-cache support: snapshot, revisions, change feed ------------------------------
# Not (yet) in the Store protocol, but RouteCache calls them on every store.


async def test_snapshot_and_revisions(store: Any) -> None:
    flow = await flow_with_versions(store, 2)
    snap = await store.snapshot("orders", by_id=False)
    assert (snap.flow, snap.aliases) == (flow, ())
    assert await store.revisions([flow.id, "NOPE"]) == [snap.revision, None]

    await store.create_alias(an_alias(flow, "live"))
    await store.create_alias(an_alias(flow, "beta", (2, 1)))
    await store.publish_version(flow.id, "", 1)  # does not change what routes
    snap2 = await store.snapshot(flow.id, by_id=True)
    assert snap2.revision == snap.revision + 2
    assert sorted(a.name for a in snap2.aliases) == ["beta", "live"]
    await store.update_alias(flow.id, "live", AliasUpdate(description="x"), 2)
    await store.delete_alias(flow.id, "beta")
    await store.update_flow(flow.id, FlowUpdate(name="renamed"), 3)
    snap3 = await store.snapshot("renamed", by_id=False)
    assert snap3.revision == snap.revision + 5
    assert [a.description for a in snap3.aliases] == ["x"]
    assert await store.revisions([flow.id]) == [snap3.revision]
    for ref, by_id in (("orders", False), ("NOPE", True)):
        with pytest.raises(FlowNotFound):
            await store.snapshot(ref, by_id=by_id)
    await store.delete_flow(flow.id, force=True)
    assert await store.revisions([flow.id]) == [None]


async def test_listen_announces_every_change(store: Any) -> None:
    changes: list[str] = []
    resynced = asyncio.Event()
    follower = asyncio.create_task(store.listen(changes.append, resynced.set))
    try:
        await asyncio.wait_for(resynced.wait(), 5)
        flow = await flow_with_versions(store, 1)
        await store.create_alias(an_alias(flow, "live"))
        await store.update_alias(flow.id, "live", AliasUpdate(description="x"), 2)
        await store.delete_alias(flow.id, "live")
        await store.update_flow(flow.id, FlowUpdate(description="y"), 3)
        await store.delete_flow(flow.id, force=False)
        for _ in range(100):
            if len(changes) >= 5:
                break
            await asyncio.sleep(0.02)
        assert changes == [flow.id] * 5
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


async def test_listen_ends_when_cancelled_at_any_point(store: Any) -> None:
    # Cancelling while it subscribes used to be lost on Python 3.11 (see
    # router.store.redis_feed._honour_cancellation) and hung the gateway's shutdown.
    for delay in [0, 0.0003, 0.0006, 0.001, 0.002, 0.005] * 5:
        follower = asyncio.create_task(store.listen(lambda flow_id: None, lambda: None))
        await asyncio.sleep(delay)
        follower.cancel()
        done, _ = await asyncio.wait([follower], timeout=3)
        assert done == {follower}, f"listen still running 3s after cancel at {delay}s"
        assert follower.cancelled()


# -- concurrency: one winner per conflict ------------------------------------------------


async def _race(calls: list[Any]) -> tuple[list[Any], list[BaseException]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return [r for r in results if not isinstance(r, BaseException)], errors


async def test_concurrent_create_alias_has_one_winner(store_backend: StoreBackend) -> None:
    # One handle per caller: on Redis each has its own connections, so the
    # scripts really interleave on the server.
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0], 1)
    aliases = [an_alias(flow, "live") for _ in stores]
    wins, errors = await _race([s.create_alias(a) for s, a in zip(stores, aliases, strict=True)])
    assert len(wins) == 1
    assert len(errors) == 19
    assert all(isinstance(e, AliasAlreadyExists) for e in errors)
    stored = await stores[0].get_alias(flow.id, "live")
    assert stored in aliases
    assert len((await stores[0].list_aliases(flow.id, 100)).items) == 1


async def test_concurrent_create_flow_has_one_winner(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flows = [a_flow("orders") for _ in stores]
    wins, errors = await _race([s.create_flow(f) for s, f in zip(stores, flows, strict=True)])
    assert len(wins) == 1
    assert len(errors) == 19
    assert all(isinstance(e, FlowAlreadyExists) for e in errors)
    listed = (await stores[0].list_flows(100)).items
    assert len(listed) == 1
    assert listed[0] in flows
    assert await stores[0].get_flow("orders") == listed[0]


async def test_concurrent_publish_version_gives_distinct_numbers(
    store_backend: StoreBackend,
) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0], 0)
    versions, errors = await _race([s.publish_version(flow.id, "", 1) for s in stores])
    assert errors == []
    assert sorted(v.version for v in versions) == list(range(1, 21))
    assert (await stores[0].latest_version(flow.id)).version == 20  # type: ignore[union-attr]


async def test_concurrent_alias_updates_all_apply(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0], 1)
    await stores[0].create_alias(an_alias(flow, "live"))
    updates = [
        s.update_alias(flow.id, "live", AliasUpdate(tags={"writer": str(i)}), i)
        for i, s in enumerate(stores)
    ]
    results, errors = await _race(updates)
    assert errors == []
    assert sorted(a.revision for a in results) == list(range(2, 22))
    final = await stores[0].get_alias(flow.id, "live")
    assert final.revision == 21
    assert final in results


async def test_concurrent_flow_updates_lose_nothing(store_backend: StoreBackend) -> None:
    # Each writer sets one field: once all have returned, every field must
    # have moved from its initial value, whatever order they were applied in.
    fields = ["description", "role_arn", "type", "execution_mode", "encryption_key_arn"]
    fields += ["status", "environment", "definition", "tags"]
    stores = [store_backend.open() for _ in range(2 * len(fields))]
    flow = a_flow(**{f: "initial" for f in fields if f != "tags"}, tags={"t": "initial"})
    await stores[0].create_flow(flow)
    updates = []
    for i, s in enumerate(stores):
        name = fields[i % len(fields)]
        value: Any = {"t": str(i)} if name == "tags" else f"{name}-{i}"
        updates.append(s.update_flow(flow.id, FlowUpdate(**{name: value}), i))
    results, errors = await _race(updates)
    assert errors == []
    final = await stores[0].get_flow_by_id(flow.id)
    assert final in results
    lost = [f for f in fields if getattr(final, f) == getattr(flow, f)]
    assert lost == []


# -- quotas: checked in the same atomic write as the create -----------------------------


async def test_flow_quota_allows_exactly_the_limit(store: Store) -> None:
    for i in range(3):
        await store.create_flow(a_flow(f"f{i}"), max_flows=3)
    with pytest.raises(QuotaExceeded, match="max-flows") as e:
        await store.create_flow(a_flow("f3"), max_flows=3)
    assert "at most 3 flows" in e.value.message
    with pytest.raises(FlowNotFound):
        await store.get_flow("f3")
    assert [f.name for f in (await store.list_flows(10)).items] == ["f0", "f1", "f2"]
    with pytest.raises(FlowAlreadyExists):  # a taken name is the first answer
        await store.create_flow(a_flow("f0"), max_flows=3)
    await store.create_flow(a_flow("f3"), max_flows=4)
    await store.create_flow(a_flow("f4"))  # no limit given: none applies
    flow = await store.get_flow("f0")
    await store.delete_flow(flow.id, force=True)
    with pytest.raises(QuotaExceeded):
        await store.create_flow(a_flow("f5"), max_flows=4)
    await store.create_flow(a_flow("f5"), max_flows=5)


async def test_version_quota_counts_existing_versions(store: Store) -> None:
    flow = await flow_with_versions(store, 0)
    for i in range(2):
        await store.publish_version(flow.id, f"v{i}", 1, max_versions=2)
    with pytest.raises(QuotaExceeded, match="max-versions-per-flow") as e:
        await store.publish_version(flow.id, "v3", 1, max_versions=2)
    assert "at most 2 versions per flow" in e.value.message
    assert [v.version for v in (await store.list_versions(flow.id, 10)).items] == [1, 2]
    assert (await store.latest_version(flow.id)).version == 2  # type: ignore[union-attr]
    # Deleting one makes room; numbers are still never reused.
    await store.delete_version(flow.id, 1, force=False)
    assert (await store.publish_version(flow.id, "v3", 1, max_versions=2)).version == 3
    with pytest.raises(FlowNotFound):
        await store.publish_version("NOPE", "", 1, max_versions=0)


async def test_alias_quota_writes_nothing_when_reached(store: Store) -> None:
    flow = await flow_with_versions(store, 1)
    for name in ("a", "b"):
        await store.create_alias(an_alias(flow, name), max_aliases=2)
    (revision,) = await store.revisions([flow.id])
    with pytest.raises(QuotaExceeded, match="max-aliases-per-flow") as e:
        await store.create_alias(an_alias(flow, "c"), max_aliases=2)
    assert "at most 2 aliases per flow" in e.value.message
    with pytest.raises(AliasAlreadyExists):
        await store.create_alias(an_alias(flow, "a"), max_aliases=2)
    assert [a.name for a in (await store.list_aliases(flow.id, 10)).items] == ["a", "b"]
    with pytest.raises(AliasNotFound):
        await store.get_alias(flow.id, "c")
    assert await store.revisions([flow.id]) == [revision]  # nothing announced either
    await store.delete_alias(flow.id, "b")
    await store.create_alias(an_alias(flow, "c"), max_aliases=2)


async def test_concurrent_flow_creates_stop_at_the_quota(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    for i in range(10):
        await stores[0].create_flow(a_flow(f"old{i:02}"))
    calls = [s.create_flow(a_flow(f"new{i:02}"), max_flows=15) for i, s in enumerate(stores)]
    wins, errors = await _race(calls)
    assert (len(wins), len(errors)) == (5, 15)
    assert [e for e in errors if not isinstance(e, QuotaExceeded)] == []
    assert len((await stores[0].list_flows(100)).items) == 15


async def test_concurrent_publishes_stop_at_the_quota(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0], 10)
    wins, errors = await _race([s.publish_version(flow.id, "", 1, max_versions=15) for s in stores])
    assert (len(wins), len(errors)) == (5, 15)
    assert [e for e in errors if not isinstance(e, QuotaExceeded)] == []
    assert sorted(v.version for v in wins) == list(range(11, 16))
    assert len((await stores[0].list_versions(flow.id, 100)).items) == 15


async def test_concurrent_alias_creates_stop_at_the_quota(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(20)]
    flow = await flow_with_versions(stores[0], 1)
    for i in range(10):
        await stores[0].create_alias(an_alias(flow, f"old{i:02}"))
    calls = [
        s.create_alias(an_alias(flow, f"new{i:02}"), max_aliases=15) for i, s in enumerate(stores)
    ]
    wins, errors = await _race(calls)
    assert (len(wins), len(errors)) == (5, 15)
    assert [e for e in errors if not isinstance(e, QuotaExceeded)] == []
    assert len((await stores[0].list_aliases(flow.id, 100)).items) == 15


# -- Redis only: key layout and failure ---------------------------------------------------


async def test_redis_keys_of_a_flow_share_its_hash_tag(redis_server: Any) -> None:
    prefix = f"layout{new_id()}"
    store = RedisStore.from_url(redis_server.url, prefix)
    client = redis.asyncio.from_url(redis_server.url)
    try:
        flow = await flow_with_versions(store, 2)
        await store.create_alias(an_alias(flow, "live", (1, 1), (2, 1)))
        await store.claim_execution(ExecutionRecord(flow.id, "", "run-1", "1", "live", 1), 60)
        await store.put_token("scope", "tok", IdempotencyRecord("fp", flow.id), 60)
        keys = {k.decode() async for k in client.scan_iter(match="*")}
        ours = {k for k in keys if k.startswith(f"{prefix}:")}
        assert not {k for k in keys if prefix in k} - ours
        tag = f"{{flow:{flow.id}}}"
        per_flow = {k for k in ours if tag in k}
        # executions carry a hash tag of their own, the bare flow id (a cluster
        # spreads them over its masters, see redis_codec)
        executions = {k for k in ours if k.startswith(f"{prefix}:x:{{{flow.id}}}:")}
        assert executions == {
            f"{prefix}:x:{{{flow.id}}}:exec:run-1",
            f"{prefix}:x:{{{flow.id}}}:execs",
            f"{prefix}:x:{{{flow.id}}}:outcomes",
        }
        assert ours - per_flow - executions == {
            f"{prefix}:flow_names",
            f"{prefix}:flow_index",
            f"{prefix}:token:5:scope:tok",
        }
        assert all(k.startswith(f"{prefix}:{tag}:") for k in per_flow)
        assert len(per_flow) >= 5
        assert len({key_slot(k.encode()) for k in per_flow}) == 1
        assert len({key_slot(k.encode()) for k in executions}) == 1

        await store.delete_flow(flow.id, force=True)
        left = {k.decode() async for k in client.scan_iter(match=f"{prefix}:*")}
        # the tombstone stops a late journal flush from writing the flow's executions
        assert left == {f"{prefix}:token:5:scope:tok", f"{prefix}:x:{{{flow.id}}}:gone"}
    finally:
        await store.close()
        await client.aclose()


async def test_open_store_picks_the_store_by_url_scheme(redis_server: Any) -> None:
    for url in ("", "memory://"):
        assert isinstance(await open_store(url), MemoryStore)
    store = await open_store(redis_server.url, "opened")
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
    finally:
        await store.close()
    for url in ("mysql://localhost/db", "redis:/x", "http://127.0.0.1:6379"):
        with pytest.raises(ValueError, match="unsupported store URL"):
            await open_store(url)


async def test_unreachable_redis_raises_unavailable() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "fr")
    try:
        with pytest.raises(Unavailable):
            await store.ping()
        with pytest.raises(Unavailable):
            await store.get_flow("orders")
        with pytest.raises(Unavailable):
            await store.create_flow(a_flow())
    finally:
        await store.close()


async def test_redis_restart_is_unavailable_then_recovers(redis_server: Any) -> None:
    store = RedisStore.from_url(redis_server.url, f"restart{new_id()}")
    changes: list[str] = []
    resyncs: list[None] = []
    follower = asyncio.create_task(store.listen(changes.append, lambda: resyncs.append(None)))
    try:
        await _until(lambda: len(resyncs) == 1)
        await store.ping()
        redis_server.stop()
        try:
            with pytest.raises(Unavailable):
                await store.ping()
            with pytest.raises(Unavailable):
                await store.create_flow(a_flow())
        finally:
            redis_server.start()
        await store.ping()
        # the change feed came back, and asked for a resync for what it missed
        await _until(lambda: len(resyncs) >= 2)
        flow = await flow_with_versions(store, 1)
        await store.create_alias(an_alias(flow))
        await _until(lambda: changes == [flow.id])
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        await store.close()


async def _until(condition: Any, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
