"""The rollout use cases and the driver's reconcile on every store kind, with a fake
clock and outcomes written as the lifecycle writes them (Store.put_executions)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from router.errors import (
    AliasNotFound,
    FlowNotFound,
    InvalidArgument,
    RolloutActive,
    RolloutFinished,
    RolloutNotFound,
    VersionNotFound,
)
from router.lifecycle.record import ExecutionRecord
from router.lifecycle.status import Status
from router.model import AliasUpdate, Route
from router.rollout.controller import Rollouts
from router.store.base import Store
from tests.store.test_contract import an_alias, flow_with_versions

BASE = 1_900_000_000.0
FAST = {"stepWeights": [10, 50], "minStepSeconds": 30, "minSamples": 20, "maxStepSeconds": 300}


class Clock:
    def __init__(self) -> None:
        self.t = BASE

    def __call__(self) -> float:
        return self.t


FTP = "ftp://example.com/hook"
_names = itertools.count()


async def run(store: Store, flow_id: str, alias: str, version: str, ok: int, failed: int) -> None:
    """``ok + failed`` finished executions of ``version`` at the alias's current revision."""
    revision = (await store.get_alias(flow_id, alias)).revision
    records = [
        ExecutionRecord(
            flow_id, "orders", f"e{next(_names)}", version, alias, 1, status, 2, revision=revision
        )
        for status in [Status.SUCCEEDED] * ok + [Status.FAILED] * failed
    ]
    await store.put_executions(records, 3600)


async def setup(
    store: Store, routes: tuple[tuple[int, int], ...] = ((1, 100),)
) -> tuple[str, Rollouts, Clock]:
    flow = await flow_with_versions(store, 3)
    await store.create_alias(an_alias(flow, "live", *routes))
    clock = Clock()
    return flow.id, Rollouts(store, clock), clock


async def test_start_routes_the_first_step_and_answers_the_status(store: Store) -> None:
    flow_id, rollouts, _ = await setup(store, ((1, 1), (2, 1)))
    status = await rollouts.start("orders", "live", {"targetVersion": "3"})
    alias = await store.get_alias(flow_id, "live")
    # 5% canary; 95% shared 1:1 needs a total of 1,000 to stay exact
    assert alias.routes == (Route(1, 475), Route(2, 475), Route(3, 50))
    assert status["phase"] == "Progressing" and status["step"] == 1
    assert status["canaryWeight"] == 5 and status["targetVersion"] == "3"
    assert status["baseline"] == [{"version": "1", "weight": 1}, {"version": "2", "weight": 1}]
    assert status["counts"] == {} and status["startedAt"].endswith("Z")
    assert [h["phase"] for h in status["history"]] == ["Progressing"]
    assert set(status) == {
        "flow", "alias", "targetVersion", "baseline", "phase", "step", "canaryWeight",
        "counts", "evidence", "message", "startedAt", "updatedAt", "history",
    }  # fmt: skip
    assert await rollouts.status("orders", "live") == status
    with pytest.raises(RolloutActive):
        await rollouts.start("orders", "live", {"targetVersion": "2"})
    with pytest.raises(RolloutActive):
        await store.update_alias(flow_id, "live", AliasUpdate(routes=(Route(1, 100),)), 5)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"targetVersion": "9"}, VersionNotFound),
        ({"targetVersion": "1"}, InvalidArgument),  # nothing else to roll out from
        ({}, InvalidArgument),
        ({"targetVersion": "2", "stepWeights": [50, 10]}, InvalidArgument),
        ({"targetVersion": "2", "colour": 1}, InvalidArgument),
        ({"targetVersion": "2", "analysis": {"alpha": 2}}, InvalidArgument),
        ({"targetVersion": "2", "webhooks": [{"type": "event", "url": FTP}]}, InvalidArgument),
    ],
)
async def test_bad_starts_write_nothing(store: Store, body: Any, error: type) -> None:
    flow_id, rollouts, _ = await setup(store)
    with pytest.raises(error):
        await rollouts.start("orders", "live", body)
    with pytest.raises(RolloutNotFound):
        await rollouts.status("orders", "live")
    assert (await store.get_alias(flow_id, "live")).routes == (Route(1, 100),)


async def test_unknown_flow_and_alias(store: Store) -> None:
    _, rollouts, _ = await setup(store)
    with pytest.raises(FlowNotFound):
        await rollouts.start("nope", "live", {"targetVersion": "2"})
    with pytest.raises(AliasNotFound):
        await rollouts.start("orders", "nope", {"targetVersion": "2"})


async def test_a_bad_canary_is_rolled_back_to_exactly_the_routes_before(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store, ((1, 3), (2, 1)))
    before = (await store.get_alias(flow_id, "live")).routes
    await rollouts.start("orders", "live", {"targetVersion": "3", **FAST})
    await run(store, flow_id, "live", "1", 300, 3)
    await run(store, flow_id, "live", "3", 10, 25)
    clock.t += 1
    after = await rollouts.reconcile(flow_id, "live")
    assert after is not None
    status = after.status()
    assert status["phase"] == "RolledBack" and status["canaryWeight"] == 0
    assert status["message"].startswith("rolled back: ")
    assert status["counts"]["3"] == {"executions": 35, "failed": 25, "slow": 0}
    assert (await store.get_alias(flow_id, "live")).routes == before
    assert await store.active_rollouts() == []
    with pytest.raises(RolloutFinished):
        await rollouts.abort("orders", "live")
    await store.update_alias(flow_id, "live", AliasUpdate(description="free again"), 9)


async def test_a_healthy_canary_is_promoted_step_by_step(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store)
    await rollouts.start("orders", "live", {"targetVersion": "2", **FAST})
    await run(store, flow_id, "live", "2", 20, 0)
    await run(store, flow_id, "live", "1", 180, 2)
    clock.t += 29
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.rollout.step == 0  # not before minStepSeconds
    clock.t += 1
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.rollout.step == 1 and o.rollout.canary_weight == 50
    assert (await store.get_alias(flow_id, "live")).routes == (Route(1, 50), Route(2, 50))
    assert o.status()["counts"] == {}  # a new step counts from zero
    await run(store, flow_id, "live", "2", 20, 0)
    await run(store, flow_id, "live", "1", 20, 0)
    clock.t += 30
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.status()["phase"] == "Succeeded"
    assert (await store.get_alias(flow_id, "live")).routes == (Route(2, 100),)
    phases = [(h["phase"], h["step"], h["canaryWeight"]) for h in o.status()["history"]]
    assert phases == [("Progressing", 1, 10), ("Progressing", 2, 50), ("Succeeded", 2, 100)]


async def test_a_restarted_driver_neither_restarts_nor_skips_a_step(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store)
    await rollouts.start("orders", "live", {"targetVersion": "2", **FAST})
    await run(store, flow_id, "live", "2", 20, 0)
    clock.t += 20
    other = Rollouts(store, clock)  # a new replica reading only what is persisted
    o = await other.reconcile(flow_id, "live")
    assert o is not None and o.rollout.step == 0
    clock.t += 10
    o = await other.reconcile(flow_id, "live")
    assert o is not None and o.rollout.step == 1


async def test_abort_restores_the_routes_at_once(store: Store) -> None:
    flow_id, rollouts, _ = await setup(store)
    await rollouts.start("orders", "live", {"targetVersion": "2"})
    status = await rollouts.abort("orders", "live")
    assert status["phase"] == "Aborted" and status["canaryWeight"] == 0
    assert (await store.get_alias(flow_id, "live")).routes == (Route(1, 100),)
    assert (await rollouts.status("orders", "live"))["phase"] == "Aborted"  # stays readable
    for action in (rollouts.pause, rollouts.resume, rollouts.abort):
        with pytest.raises(RolloutFinished):
            await action("orders", "live")
    # a new rollout may start once the last one finished
    await rollouts.start("orders", "live", {"targetVersion": "2"})


async def test_require_approval_waits_for_promote(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store)
    body = {"targetVersion": "2", **FAST, "stepWeights": [10], "requireApproval": True}
    await rollouts.start("orders", "live", body)
    await run(store, flow_id, "live", "2", 20, 0)
    clock.t += 30
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.status()["phase"] == "WaitingPromotion"
    clock.t += 3600
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.status()["phase"] == "WaitingPromotion"
    status = await rollouts.promote("orders", "live", full=False)
    assert status["phase"] == "Succeeded"
    assert (await store.get_alias(flow_id, "live")).routes == (Route(2, 100),)


async def test_no_traffic_pauses_and_never_rolls_back(store: Store) -> None:
    flow_id, rollouts, clock = await setup(store)
    await rollouts.start("orders", "live", {"targetVersion": "2", **FAST})
    clock.t += 299
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.status()["phase"] == "Progressing"
    clock.t += 1
    o = await rollouts.reconcile(flow_id, "live")
    assert o is not None and o.status()["phase"] == "Paused"
    assert "inconclusive" in o.status()["message"]
    assert (await store.get_alias(flow_id, "live")).routes == (Route(1, 90), Route(2, 10))
    status = await rollouts.resume("orders", "live")
    assert status["phase"] == "Progressing"
    o = await rollouts.reconcile(flow_id, "live")  # the step's timers start again
    assert o is not None and o.status()["phase"] == "Progressing"


async def test_pause_promote_full(store: Store) -> None:
    flow_id, rollouts, _ = await setup(store)
    await rollouts.start("orders", "live", {"targetVersion": "2", **FAST})
    assert (await rollouts.pause("orders", "live"))["phase"] == "Paused"
    assert (await rollouts.pause("orders", "live"))["phase"] == "Paused"
    status = await rollouts.promote("orders", "live", full=False)
    assert (status["phase"], status["step"], status["canaryWeight"]) == ("Progressing", 2, 50)
    status = await rollouts.promote("orders", "live", full=True)
    assert status["phase"] == "Succeeded"
    assert (await store.get_alias(flow_id, "live")).routes == (Route(2, 100),)
