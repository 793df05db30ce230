"""The rollout metrics, registered on the app's registry (router.metrics.Metrics).

The gauges are exported by the replica that holds the driver's lease (it reads
every active rollout each tick) and cleared when it loses the lease, so summing
or taking the max over replicas shows one value. ``flow_router_rollouts_total``
is counted by the replica whose write finished the rollout: exactly once.

With several workers (``PROMETHEUS_MULTIPROC_DIR``) a gauge cannot be removed:
the client library keeps every value in its per-process files, and ``remove()``
only forgets the in-process child, so the last value would be exported for as
long as the worker lives. There, clearing sets the gauges to 0 instead, which
keeps ``max`` and ``sum`` over replicas right.
"""

from __future__ import annotations

import contextlib
import os

from prometheus_client import CollectorRegistry, Counter, Gauge

from router.metrics import MULTIPROCESS_ENV
from router.rollout.decision import ACTIVE_PHASES, Phase
from router.rollout.state import Rollout

FINISHED = tuple(p for p in Phase if p not in ACTIVE_PHASES)


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry, multiprocess: bool | None = None) -> None:
        self.multiprocess = (
            bool(os.environ.get(MULTIPROCESS_ENV)) if multiprocess is None else multiprocess
        )
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
            if self.multiprocess:
                self.canary_weight.labels(r.flow, r.alias, shown).set(0)
            with contextlib.suppress(KeyError):
                self.canary_weight.remove(r.flow, r.alias, shown)
        self._shown[key] = r.target
        self.canary_weight.labels(r.flow, r.alias, r.target).set(r.canary_weight)
        for phase in Phase:
            self.phase.labels(r.flow, r.alias, phase.value).set(1 if phase is r.phase else 0)
        self.evidence.labels(r.flow, r.alias).set(evidence)

    def clear(self) -> None:
        """Stop exporting the gauges (this replica no longer drives): remove them, or
        with several workers set them to 0 (module docstring)."""
        for (flow, alias), target in self._shown.items():
            if self.multiprocess:
                self.canary_weight.labels(flow, alias, target).set(0)
                self.evidence.labels(flow, alias).set(0)
                for phase in Phase:
                    self.phase.labels(flow, alias, phase.value).set(0)
                continue
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
