"""``analysis.slowSeconds`` on every store kind: a canary that succeeds, but slower than
that, is a failing canary; without it, run time never counts."""

from __future__ import annotations

import itertools

from router.lifecycle.record import ExecutionRecord
from router.lifecycle.status import Status
from router.rollout.controller import Rollouts, slow_threshold_ms
from router.rollout.decision import Analysis, RolloutSpec
from router.store.base import SLOW, Store
from tests.rollout.test_controller import FAST, setup

_names = itertools.count()
START_MS = 1_900_000_000_000


async def run(
    store: Store, flow_id: str, version: str, n: int, run_ms: int, status: Status
) -> None:
    """``n`` executions of ``version`` through "live" (at its current revision),
    each final ``run_ms`` after it started: written final, as a synchronous
    executor's are, and half of them Running first, then finished."""
    revision = (await store.get_alias(flow_id, "live")).revision
    records = [
        ExecutionRecord(
            flow_id, "orders", f"s{next(_names)}", version, "live", START_MS, revision=revision
        )
        for _ in range(n)
    ]
    running, synchronous = records[: n // 2], records[n // 2 :]
    await store.put_executions(running, 3600)
    await store.put_executions(
        [r._replace(status=status, stopped_at=START_MS + run_ms) for r in synchronous], 3600
    )
    for r in running:
        await store.finish_execution(flow_id, r.name, status, None, None, None, START_MS + run_ms)


async def _start(rollouts: Rollouts, slow_seconds: float | None) -> None:
    analysis = {"slowSeconds": slow_seconds}
    await rollouts.start("orders", "live", {"targetVersion": "3", **FAST, "analysis": analysis})


async def test_a_slow_canary_is_rolled_back(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store, ((1, 100),))
    before = (await store.get_alias(flow_id, "live")).routes
    await _start(rollouts, 2.0)
    await run(store, flow_id, "1", 300, 400, Status.SUCCEEDED)
    await run(store, flow_id, "1", 4, 2_500, Status.SUCCEEDED)  # the baseline is slow at times
    await run(store, flow_id, "3", 10, 300, Status.SUCCEEDED)
    await run(store, flow_id, "3", 16, 2_001, Status.SUCCEEDED)  # just over 2 s
    await run(store, flow_id, "3", 2, 9_000, Status.FAILED)  # failed, and slow
    clock.t += 1
    after = await rollouts.reconcile(flow_id, "live")
    assert after is not None
    status = after.status()
    assert status["phase"] == "RolledBack", status["message"]
    assert status["counts"] == {
        "1": {"executions": 304, "failed": 4, "slow": 4},
        "3": {"executions": 28, "failed": 18, "slow": 18},
    }
    assert (await store.get_alias(flow_id, "live")).routes == before
    # finished: the threshold is gone, so run time no longer counts anywhere
    await run(store, flow_id, "1", 2, 60_000, Status.SUCCEEDED)
    counts = await store.outcome_counts(flow_id)
    assert sum(n for k, n in counts.items() if k.status == SLOW) == 4 + 18


async def test_without_slow_seconds_run_time_never_counts(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store, ((1, 100),))
    await _start(rollouts, None)
    await run(store, flow_id, "1", 300, 100, Status.SUCCEEDED)
    await run(store, flow_id, "3", 40, 3_600_000, Status.SUCCEEDED)  # an hour each
    clock.t += 1
    after = await rollouts.reconcile(flow_id, "live")
    assert after is not None
    status = after.status()
    assert status["phase"] == "Progressing"
    assert status["counts"]["3"] == {"executions": 40, "failed": 0, "slow": 0}


async def test_a_slow_baseline_does_not_fail_an_equally_slow_canary(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store, ((1, 100),))
    await _start(rollouts, 1.0)
    await run(store, flow_id, "1", 270, 500, Status.SUCCEEDED)
    await run(store, flow_id, "1", 30, 1_500, Status.SUCCEEDED)  # 10% slow
    await run(store, flow_id, "3", 36, 500, Status.SUCCEEDED)
    await run(store, flow_id, "3", 4, 1_500, Status.SUCCEEDED)  # 10% slow too
    clock.t += 31  # past minStepSeconds, minSamples reached: the step advances
    after = await rollouts.reconcile(flow_id, "live")
    assert after is not None
    status = after.status()
    assert (status["phase"], status["step"]) == ("Progressing", 2), status["message"]


def test_the_threshold_in_whole_milliseconds() -> None:
    def spec(slow: float | None) -> RolloutSpec:
        return RolloutSpec("3", analysis=Analysis(slow_seconds=slow))

    # a run of n ms is longer than x s exactly when n > floor(1000 x)
    assert slow_threshold_ms(spec(None)) is None
    assert slow_threshold_ms(spec(2.0)) == 2_000
    assert slow_threshold_ms(spec(0.0015)) == 1
    assert slow_threshold_ms(spec(1.9999)) == 1_999
