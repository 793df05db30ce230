"""The driver: one holder of the lease reconciles, another takes over when it lapses or
is given up, and only the holder exports the rollout gauges."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from router.rollout.controller import Rollouts
from router.rollout.driver import Driver
from router.rollout.metrics import RolloutMetrics
from router.store.memory import MemoryStore
from tests.plugin import FakeClock
from tests.rollout.test_controller import FAST, Clock, run
from tests.store.test_contract import an_alias, flow_with_versions


def _gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_one_driver_at_a_time_and_a_lapsed_lease_is_taken_over() -> None:
    store_clock = FakeClock()
    store = MemoryStore(clock=store_clock)
    flow = await flow_with_versions(store, 2)
    await store.create_alias(an_alias(flow, "live", (1, 100)))
    clock = Clock()
    registries = [CollectorRegistry(), CollectorRegistry()]
    drivers = [
        Driver(Rollouts(store, clock), RolloutMetrics(registry), lease_ms=5000)
        for registry in registries
    ]
    await drivers[0].rollouts.start("orders", "live", {"targetVersion": "2", **FAST})
    await drivers[0].tick()
    await drivers[1].tick()
    assert (drivers[0].held, drivers[1].held) == (True, False)
    weight = "flow_router_rollout_canary_weight"
    labels = {"flow": "orders", "alias": "live", "version": "2"}
    assert _gauge(registries[0], weight, **labels) == 10
    assert _gauge(registries[1], weight, **labels) is None
    result = {"flow": "orders", "alias": "live", "result": "RolledBack"}
    assert _gauge(registries[0], "flow_router_rollouts_total", **result) == 0  # exported early

    await run(store, flow.id, "live", "2", 20, 0)
    clock.t += 30
    await drivers[1].tick()  # not the holder: decides nothing
    assert (await store.get_alias(flow.id, "live")).routes[-1].weight == 10

    store_clock.skipped += 5.0  # the holder died: its lease lapses
    await drivers[1].tick()
    assert drivers[1].held
    assert (await store.get_alias(flow.id, "live")).routes[-1].weight == 50
    assert _gauge(registries[1], weight, **labels) == 50
    await drivers[0].tick()  # the old holder finds the lease taken and stops exporting
    assert not drivers[0].held
    assert _gauge(registries[0], weight, **labels) is None


async def test_a_cancelled_driver_gives_the_lease_up_at_once() -> None:
    store = MemoryStore()
    flow = await flow_with_versions(store, 2)
    await store.create_alias(an_alias(flow, "live", (1, 100)))
    driver = Driver(Rollouts(store), RolloutMetrics(CollectorRegistry()), tick_s=60)
    other = Driver(Rollouts(store), RolloutMetrics(CollectorRegistry()))
    await other.tick()
    assert not other.held  # idle: no rollout, so nobody takes the lease
    await driver.rollouts.start("orders", "live", {"targetVersion": "2"})
    task = asyncio.create_task(driver.run())
    for _ in range(100):
        if driver.held:
            break
        await asyncio.sleep(0)
    assert driver.held
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await other.tick()
    assert other.held
