"""The rollout metrics, registered on the app's registry (router.metrics.Metrics).

The gauges are exported by the replica that holds the driver's lease (it reads
every active rollout each tick) and cleared when it loses the lease, so summing
or taking the max over replicas shows one value. ``flow_router_rollouts_total``
is counted by the replica whose write finished the rollout: exactly once.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from router.rollout.decision import ACTIVE_PHASES, Phase
from router.rollout.state import Rollout

FINISHED = tuple(p for p in Phase if p not in ACTIVE_PHASES)


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.canary_weight = Gauge(
            "flow_router_rollout_canary_weight",
            "Percentage of the alias's traffic routed to the rollout's target version.",
            ["flow", "alias", "version"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.phase = Gauge(
            "flow_router_rollout_phase",
            "1 for the rollout's current phase, 0 for the others.",
            ["flow", "alias", "phase"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.evidence = Gauge(
            "flow_router_rollout_evidence",
            "The rollout's evidence against the canary (rolls back at 1/alpha).",
            ["flow", "alias"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.finished = Counter(
            "flow_router_rollouts",
            "Rollouts finished, by result (Succeeded, RolledBack, Aborted).",
            ["flow", "alias", "result"],
            registry=registry,
        )
        self._shown: dict[tuple[str, str], str] = {}  # (flow, alias) -> target version

    def show(self, r: Rollout, evidence: float) -> None:
        key = (r.flow, r.alias)
        shown = self._shown.get(key)
        if shown is not None and shown != r.target:
            with contextlib.suppress(KeyError):
                self.canary_weight.remove(r.flow, r.alias, shown)
        self._shown[key] = r.target
        self.canary_weight.labels(r.flow, r.alias, r.target).set(r.canary_weight)
        for phase in Phase:
            self.phase.labels(r.flow, r.alias, phase.value).set(1 if phase is r.phase else 0)
        self.evidence.labels(r.flow, r.alias).set(evidence)

    def clear(self) -> None:
        """Stop exporting the gauges (this replica no longer drives)."""
        for (flow, alias), target in self._shown.items():
            with contextlib.suppress(KeyError):
                self.canary_weight.remove(flow, alias, target)
                self.evidence.remove(flow, alias)
            for phase in Phase:
                with contextlib.suppress(KeyError):
                    self.phase.remove(flow, alias, phase.value)
        self._shown.clear()

    def prepare(self, r: Rollout) -> None:
        """Export 0 for every result of an active rollout, so the first count is an
        increase that ``increase()`` and ``rate()`` see (a series born at 1 is not)."""
        for phase in FINISHED:
            self.finished.labels(r.flow, r.alias, phase.value)

    def count_finished(self, before: Rollout | None, after: Rollout, _status: object) -> None:
        """A ``Rollouts`` listener: count each rollout once, when its write finished it."""
        if after.active:
            self.prepare(after)
        elif before is None or before.active:
            self.finished.labels(after.flow, after.alias, after.phase.value).inc()
