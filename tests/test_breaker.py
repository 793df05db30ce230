"""router/breaker.py on its own: slot accounting under waiting, cancellation and deadlines,
and the circuit's states. End-to-end behaviour with a real executor is in
test_executor_faults.py."""

from __future__ import annotations

import asyncio

import pytest

from router.breaker import Guard, VersionGuards, VersionLimits
from router.errors import CircuitOpen, ExecutorOverloaded
from router.metrics import Metrics


def guards(**limits: float) -> tuple[VersionGuards, Guard, Metrics]:
    metrics = Metrics()
    g = VersionGuards(VersionLimits(**limits), metrics)  # type: ignore[arg-type]
    return g, g.guard("id", "f", "1"), metrics


def rejected(metrics: Metrics, reason: str) -> float:
    labels = {"flow": "f", "version": "1", "reason": reason}
    return metrics.registry.get_sample_value("flow_router_executor_rejected_total", labels) or 0


def circuit_open(metrics: Metrics) -> float | None:
    labels = {"flow": "f", "version": "1"}
    return metrics.registry.get_sample_value("flow_router_circuit_open", labels)


async def settle(turns: int = 20) -> None:
    """Let every task that can run, run, and block again: a few turns of the loop.

    Nothing here waits on a timer, so a handful of turns reach the point a 10 ms
    sleep would, without depending on the wall clock (a waiter needs two: its
    future's callback, then the task itself)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def enter(g: VersionGuards, guard: Guard, wait_s: float = 5) -> bool:
    loop = asyncio.get_running_loop()
    probe = g.try_enter(guard, loop.time())
    if probe is None:
        probe = await g.wait(guard, loop.time() + wait_s)
    return probe


async def test_slots_pass_to_waiters_in_order() -> None:
    g, guard, _ = guards(max_inflight=2, breaker_failures=0)
    await enter(g, guard)
    await enter(g, guard)
    order: list[int] = []

    async def waiter(i: int) -> None:
        await enter(g, guard)
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await settle()
    assert (guard.inflight, len(guard.waiters), order) == (2, 3, [])
    for expected in ([0], [0, 1], [0, 1, 2]):
        g.leave(guard, False, True)
        await settle()
        assert order == expected
        assert guard.inflight == 2
    await asyncio.gather(*tasks)
    g.leave(guard, False, True)
    g.leave(guard, False, True)
    assert (guard.inflight, len(guard.waiters)) == (0, 0)


async def test_a_cancelled_waiter_leaks_no_slot() -> None:
    g, guard, _ = guards(max_inflight=1, breaker_failures=0)
    await enter(g, guard)
    gone = asyncio.create_task(enter(g, guard))
    kept = asyncio.create_task(enter(g, guard))
    await settle()
    gone.cancel()
    await settle()
    g.leave(guard, False, True)
    assert await kept is False
    g.leave(guard, False, True)
    assert (guard.inflight, len(guard.waiters)) == (0, 0)


async def test_a_slot_handed_to_a_waiter_cancelled_in_the_same_turn_passes_on() -> None:
    g, guard, _ = guards(max_inflight=1, breaker_failures=0)
    await enter(g, guard)
    first = asyncio.create_task(enter(g, guard))
    second = asyncio.create_task(enter(g, guard))
    await settle()
    g.leave(guard, False, True)  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second is False
    assert guard.inflight == 1
    g.leave(guard, False, True)
    assert guard.inflight == 0


async def test_waiting_ends_at_the_deadline_unsent() -> None:
    g, guard, metrics = guards(max_inflight=1, breaker_failures=0)
    await enter(g, guard)
    with pytest.raises(ExecutorOverloaded, match="was not sent"):
        await enter(g, guard, wait_s=0.05)
    assert (guard.inflight, len(guard.waiters)) == (1, 0)
    assert rejected(metrics, "overloaded") == 1


async def test_circuit_states() -> None:
    g, guard, metrics = guards(breaker_failures=3, breaker_reset_s=10)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        probe = await enter(g, guard)
        g.leave(guard, probe, False)
    assert guard.opened_at is not None and circuit_open(metrics) == 1
    with pytest.raises(CircuitOpen, match="failed 3 times in a row"):
        g.try_enter(guard, loop.time())
    later = loop.time() + 10.5
    assert g.try_enter(guard, later) is True  # the probe
    with pytest.raises(CircuitOpen):  # one probe at a time
        g.try_enter(guard, later)
    g.leave(guard, True, None)  # cancelled: says nothing, the next one probes
    assert g.try_enter(guard, later) is True
    g.leave(guard, True, True)
    assert guard.opened_at is None and circuit_open(metrics) == 0
    assert g.try_enter(guard, loop.time()) is False
    g.leave(guard, False, True)
    assert rejected(metrics, "circuit_open") == 2
    assert guard.inflight == 0


async def test_failures_must_be_consecutive() -> None:
    g, guard, _ = guards(breaker_failures=3)
    for healthy in (False, False, True, False, False, True, False, False):
        g.leave(guard, await enter(g, guard), healthy)
    assert guard.opened_at is None


def test_limits_are_checked() -> None:
    for bad in ({"max_inflight": -1}, {"breaker_failures": -1}, {"breaker_reset_s": 0}):
        with pytest.raises(ValueError):
            VersionLimits(**bad)  # type: ignore[arg-type]
