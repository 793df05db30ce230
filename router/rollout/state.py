"""The persisted rollout: one document per alias, stored next to it (Store.write_rollout).

It holds everything a driver needs to resume exactly after a restart: the spec,
the routes from before the rollout (restored byte for byte at rollback or
abort), the phase, the step, when the step started (wall-clock seconds, so
every replica reads the same timer), the alias revision each step was written
at (its executions are counted per revision: "executions count in the step in
which they started"), and the history. Encoded once with orjson.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from router.model import Route
from router.rollout.decision import (
    ACTIVE_PHASES,
    Analysis,
    OnInconclusive,
    Phase,
    RolloutSpec,
)

MAX_HISTORY = 200  # entries kept: the first (the start) and the latest ones


@dataclass(frozen=True, slots=True)
class Webhook:
    type: str  # "event" | "confirm-promotion"
    url: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: float
    phase: Phase
    step: int  # index into the spec's step weights
    canary_weight: int
    message: str


@dataclass(frozen=True, slots=True)
class VersionCounts:
    executions: int = 0  # with a final outcome
    failed: int = 0
    slow: int = 0


@dataclass(frozen=True, slots=True)
class Rollout:
    flow_id: str
    flow: str
    alias: str
    spec: RolloutSpec
    baseline: tuple[Route, ...]  # the alias's routes before the rollout, exactly
    phase: Phase
    step: int
    canary_weight: int
    step_started_at: float  # epoch seconds
    step_revisions: tuple[int, ...]  # alias revision of each step so far
    started_at: float
    updated_at: float
    message: str
    evidence: float = 1.0
    webhooks: tuple[Webhook, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    final_counts: dict[str, VersionCounts] = field(default_factory=dict)  # once finished

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def target(self) -> str:
        return self.spec.target_version

    @property
    def revision(self) -> int:
        """The alias revision of the current step."""
        return self.step_revisions[-1]

    def moved(
        self,
        at: float,
        phase: Phase,
        message: str,
        *,
        step: int | None = None,
        canary_weight: int | None = None,
        evidence: float | None = None,
    ) -> Rollout:
        """The rollout after a change, with a history entry when phase, step or weight moved."""
        new = replace(
            self,
            phase=phase,
            step=self.step if step is None else step,
            canary_weight=self.canary_weight if canary_weight is None else canary_weight,
            evidence=self.evidence if evidence is None else evidence,
            message=message,
            updated_at=at,
        )
        if (new.phase, new.step, new.canary_weight) == (self.phase, self.step, self.canary_weight):
            return new
        entry = HistoryEntry(at, new.phase, new.step, new.canary_weight, message)
        history = (*self.history, entry)
        if len(history) > MAX_HISTORY:
            history = (history[0], *history[len(history) - MAX_HISTORY + 1 :])
        return replace(new, history=history)


def now() -> float:
    return time.time()


def iso(t: float) -> str:
    """``2020-01-01T01:01:01.001Z``, as the dialects write times."""
    ms = round(t * 1000)
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def status_json(
    r: Rollout, counts: dict[str, VersionCounts], evidence: float, message: str
) -> dict[str, Any]:
    """The API's status: ``step`` counts from 1; ``counts`` are the current step's."""
    return {
        "flow": r.flow,
        "alias": r.alias,
        "targetVersion": r.target,
        "baseline": [{"version": str(x.version), "weight": x.weight} for x in r.baseline],
        "phase": r.phase.value,
        "step": r.step + 1,
        "canaryWeight": r.canary_weight,
        "counts": {
            v: {"executions": c.executions, "failed": c.failed, "slow": c.slow}
            for v, c in counts.items()
        },
        "evidence": evidence,
        "message": message,
        "startedAt": iso(r.started_at),
        "updatedAt": iso(r.updated_at),
        "history": [
            {
                "at": iso(h.at),
                "phase": h.phase.value,
                "step": h.step + 1,
                "canaryWeight": h.canary_weight,
                "message": h.message,
            }
            for h in r.history
        ],
    }


# -- encoding ---------------------------------------------------------------------


def encode(r: Rollout) -> bytes:
    s = r.spec
    return orjson.dumps(
        {
            "flowId": r.flow_id,
            "flow": r.flow,
            "alias": r.alias,
            "spec": {
                "targetVersion": s.target_version,
                "stepWeights": list(s.step_weights),
                "minStepSeconds": s.min_step_seconds,
                "minSamples": s.min_samples,
                "maxStepSeconds": s.max_step_seconds,
                "onInconclusive": s.on_inconclusive.value,
                "requireApproval": s.require_approval,
                "analysis": {
                    "alpha": s.analysis.alpha,
                    "maxFailureRatio": s.analysis.max_failure_ratio,
                    "slowSeconds": s.analysis.slow_seconds,
                },
            },
            "webhooks": [[w.type, w.url] for w in r.webhooks],
            "baseline": [[x.version, x.weight] for x in r.baseline],
            "phase": r.phase.value,
            "step": r.step,
            "canaryWeight": r.canary_weight,
            "stepStartedAt": r.step_started_at,
            "stepRevisions": list(r.step_revisions),
            "startedAt": r.started_at,
            "updatedAt": r.updated_at,
            "message": r.message,
            "evidence": r.evidence,
            "history": [
                [h.at, h.phase.value, h.step, h.canary_weight, h.message] for h in r.history
            ],
            "finalCounts": {v: [c.executions, c.failed, c.slow] for v, c in r.final_counts.items()},
        }
    )


def decode(raw: bytes) -> Rollout:
    d: dict[str, Any] = orjson.loads(raw)
    s = d["spec"]
    a = s["analysis"]
    spec = RolloutSpec(
        target_version=s["targetVersion"],
        step_weights=tuple(s["stepWeights"]),
        min_step_seconds=s["minStepSeconds"],
        min_samples=s["minSamples"],
        max_step_seconds=s["maxStepSeconds"],
        on_inconclusive=OnInconclusive(s["onInconclusive"]),
        require_approval=s["requireApproval"],
        analysis=Analysis(a["alpha"], a["maxFailureRatio"], a["slowSeconds"]),
    )
    return Rollout(
        flow_id=d["flowId"],
        flow=d["flow"],
        alias=d["alias"],
        spec=spec,
        baseline=tuple(Route(v, w) for v, w in d["baseline"]),
        phase=Phase(d["phase"]),
        step=d["step"],
        canary_weight=d["canaryWeight"],
        step_started_at=d["stepStartedAt"],
        step_revisions=tuple(d["stepRevisions"]),
        started_at=d["startedAt"],
        updated_at=d["updatedAt"],
        message=d["message"],
        evidence=d["evidence"],
        webhooks=tuple(Webhook(t, u) for t, u in d["webhooks"]),
        history=tuple(HistoryEntry(h[0], Phase(h[1]), h[2], h[3], h[4]) for h in d["history"]),
        final_counts={v: VersionCounts(*c) for v, c in d["finalCounts"].items()},
    )
