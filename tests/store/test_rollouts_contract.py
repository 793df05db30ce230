"""The Store's rollout and lease methods, run identically on every store kind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router.errors import AliasNotFound, RolloutActive, VersionNotFound
from router.model import AliasUpdate, Route
from router.store.base import RolloutWrite, Store
from tests.plugin import StoreBackend
from tests.store.test_contract import an_alias, flow_with_versions

CANARY = (Route(1, 80), Route(2, 20))


async def _started(store: Store, routes: tuple[Route, ...] = CANARY) -> tuple[str, int]:
    flow = await flow_with_versions(store, 2)
    await store.create_alias(an_alias(flow, "live", (1, 100)))
    alias, none = await store.get_rollout(flow.id, "live")
    assert none is None
    write = RolloutWrite("live", 0, alias.revision, b'{"n":1}', True, routes)
    written = await store.write_rollout(flow.id, write, 7)
    assert written is not None
    return flow.id, alias.revision


async def test_start_writes_the_routes_and_the_rollout_at_once(store: Store) -> None:
    flow_id, revision = await _started(store)
    alias, rollout = await store.get_rollout(flow_id, "live")
    assert alias.routes == CANARY
    assert alias.revision == revision + 1
    assert alias.updated_at == 7
    assert rollout is not None
    assert (rollout.doc, rollout.seq, rollout.active) == (b'{"n":1}', 1, True)
    assert await store.active_rollouts() == [(flow_id, "live")]
    snapshot = await store.snapshot(flow_id, by_id=True)
    assert snapshot.aliases[0].routes == CANARY  # what every route cache loads


async def test_a_stale_write_writes_nothing(store: Store) -> None:
    flow_id, revision = await _started(store)
    stale_seq = RolloutWrite("live", 0, revision + 1, b"x", True, (Route(2, 100),))
    stale_rev = RolloutWrite("live", 1, revision, b"x", True, (Route(2, 100),))
    assert await store.write_rollout(flow_id, stale_seq, 8) is None
    assert await store.write_rollout(flow_id, stale_rev, 8) is None
    alias, rollout = await store.get_rollout(flow_id, "live")
    assert alias.routes == CANARY
    assert rollout is not None and (rollout.doc, rollout.seq) == (b'{"n":1}', 1)


async def test_a_write_without_routes_keeps_the_alias(store: Store) -> None:
    flow_id, revision = await _started(store)
    written = await store.write_rollout(
        flow_id, RolloutWrite("live", 1, revision + 1, b"paused", True), 9
    )
    assert written is not None and written.revision == revision + 1
    alias, rollout = await store.get_rollout(flow_id, "live")
    assert alias.revision == revision + 1 and alias.updated_at == 7
    assert rollout is not None and (rollout.doc, rollout.seq) == (b"paused", 2)


async def test_routes_to_a_missing_version_write_nothing(store: Store) -> None:
    flow_id, revision = await _started(store)
    write = RolloutWrite("live", 1, revision + 1, b"x", False, (Route(9, 100),))
    with pytest.raises(VersionNotFound):
        await store.write_rollout(flow_id, write, 8)
    alias, rollout = await store.get_rollout(flow_id, "live")
    assert alias.routes == CANARY and rollout is not None and rollout.active


async def test_alias_writes_are_refused_while_a_rollout_is_active(store: Store) -> None:
    flow_id, revision = await _started(store)
    with pytest.raises(RolloutActive):
        await store.update_alias(flow_id, "live", AliasUpdate(description="x"), 8)
    with pytest.raises(RolloutActive):
        await store.delete_alias(flow_id, "live")
    restore = RolloutWrite("live", 1, revision + 1, b"done", False, (Route(1, 100),))
    finished = await store.write_rollout(flow_id, restore, 9)
    assert finished is not None and finished.routes == (Route(1, 100),)
    assert await store.active_rollouts() == []
    _, rollout = await store.get_rollout(flow_id, "live")
    assert rollout is not None and not rollout.active and rollout.doc == b"done"  # stays readable
    await store.update_alias(flow_id, "live", AliasUpdate(description="x"), 10)
    await store.delete_alias(flow_id, "live")
    with pytest.raises(AliasNotFound):
        await store.get_rollout(flow_id, "live")
    await store.create_alias(an_alias(await store.get_flow_by_id(flow_id), "live", (1, 100)))
    _, gone = await store.get_rollout(flow_id, "live")
    assert gone is None  # the deleted alias's rollout went with it


async def test_deleting_the_flow_drops_its_rollouts(store: Store) -> None:
    flow_id, _ = await _started(store)
    await store.delete_flow(flow_id, force=True)
    assert await store.active_rollouts() == []


async def test_concurrent_writes_of_one_rollout_have_one_winner(
    store_backend: StoreBackend,
) -> None:
    first = store_backend.open()
    flow_id, revision = await _started(first)
    stores = [store_backend.open() for _ in range(4)]
    writes = [
        s.write_rollout(flow_id, RolloutWrite("live", 1, revision + 1, b"%d" % i, True), 8)
        for i, s in enumerate(stores)
    ]
    results = await asyncio.gather(*writes)
    assert sum(r is not None for r in results) == 1


async def test_a_lease_has_one_holder_until_released(store: Store) -> None:
    assert await store.acquire_lease("driver", "a", 60_000)
    assert await store.acquire_lease("driver", "a", 60_000)  # renewed
    assert not await store.acquire_lease("driver", "b", 60_000)
    await store.release_lease("driver", "b")  # not b's: nothing happens
    assert not await store.acquire_lease("driver", "b", 60_000)
    await store.release_lease("driver", "a")
    assert await store.acquire_lease("driver", "b", 60_000)


async def test_a_lapsed_lease_is_taken_over(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    assert await store.acquire_lease("driver", "a", 1)
    clock: Any = store_backend.clock
    if clock is not None:
        clock.skipped += 1.0
    for _ in range(1000):  # Redis expires the key by its own clock, within ms
        if await store.acquire_lease("driver", "b", 60_000):
            break
        await asyncio.sleep(0.005)
    else:
        pytest.fail("the lapsed lease was never taken over")
    assert not await store.acquire_lease("driver", "a", 60_000)


async def test_a_renamed_alias_leaves_its_finished_rollout_behind(store: Store) -> None:
    flow_id, revision = await _started(store)
    done = RolloutWrite("live", 1, revision + 1, b"done", False, (Route(1, 100),))
    assert await store.write_rollout(flow_id, done, 8) is not None
    await store.update_alias(flow_id, "live", AliasUpdate(name="prod"), 9)
    _, moved = await store.get_rollout(flow_id, "prod")
    assert moved is None
    await store.create_alias(an_alias(await store.get_flow_by_id(flow_id), "live", (1, 100)))
    _, fresh = await store.get_rollout(flow_id, "live")
    assert fresh is None  # a new alias of the old name has no rollout of its own yet
