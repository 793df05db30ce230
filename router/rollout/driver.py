"""The rollout driver: one replica at a time reconciles every active rollout.

Thin by design: the lease, the loop and the metrics. An idle tick (no active
rollout) is one read. Otherwise the replica that holds the lease
(``Store.acquire_lease``, renewed every tick, taken over by another replica once
it lapses) calls ``Rollouts.reconcile`` on each active rollout. A reconcile
reads only persisted state (the step's start time among it) and writes with a
compare-and-set, so a driver killed at any point, or two drivers for a moment
after a lease lapsed under a slow tick, neither restart a step nor advance one
early nor apply a verdict twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from router.errors import RouterError, Unavailable
from router.rollout.controller import Rollouts
from router.rollout.metrics import RolloutMetrics

log = logging.getLogger("flow_router.rollout")

LEASE = "rollout-driver"
TICK_S = 1.0
LEASE_MS = 5000  # a killed driver's rollouts wait at most this long for another


class Driver:
    def __init__(
        self,
        rollouts: Rollouts,
        metrics: RolloutMetrics,
        tick_s: float = TICK_S,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.rollouts = rollouts
        self.metrics = metrics
        self.tick_s = tick_s
        self.lease_ms = lease_ms
        self.holder = uuid.uuid4().hex
        self.held = False
        self._watched: set[tuple[str, str]] = set()

    async def run(self) -> None:
        """Tick until cancelled; then give the lease up so another replica takes over at once."""
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self.tick_s)
        finally:
            self.metrics.clear()
            if self.held:
                # If this fails, the lease lapses by itself after lease_ms.
                with contextlib.suppress(RouterError, asyncio.CancelledError):
                    await asyncio.shield(self.rollouts.store.release_lease(LEASE, self.holder))

    async def tick(self) -> None:
        store = self.rollouts.store
        try:
            active = await store.active_rollouts()
            if not active and not self._watched:
                return  # idle: one read a tick, and the lease lapses by itself
            held = await store.acquire_lease(LEASE, self.holder, self.lease_ms)
        except Unavailable:
            held, active = False, []
        if not held:
            if self.held:
                log.info("rollout driver lease lost: another replica drives")
                self.metrics.clear()
                self._watched.clear()
            self.held = False
            return
        if not self.held:
            log.info("rollout driver lease taken: this replica drives the rollouts")
        self.held = True
        # Rollouts that finished since the last tick: show their final phase once more.
        keys = set(active) | self._watched
        await asyncio.gather(*(self._reconcile(flow_id, alias) for flow_id, alias in keys))
        self._watched = set(active)

    async def _reconcile(self, flow_id: str, alias: str) -> None:
        if (flow_id, alias) not in self._watched:
            # First sight: export the zero counts before any verdict (RolloutMetrics.prepare).
            with contextlib.suppress(RouterError):
                self.metrics.prepare((await self.rollouts.observe(flow_id, alias)).rollout)
        try:
            o = await self.rollouts.reconcile(flow_id, alias)
        except RouterError as e:  # Unavailable, a concurrent change: next tick
            log.warning("rollout of %s/%s not reconciled: %s", flow_id, alias, e.message)
            return
        except Exception:  # a bug: logged, and the other rollouts still move
            log.exception("rollout of %s/%s failed to reconcile", flow_id, alias)
            return
        if o is not None:
            evidence = o.verdict.evidence if o.verdict else o.rollout.evidence
            self.metrics.show(o.rollout, evidence)
