"""The rollout's decision: counts and times in, one verdict out. No I/O, no clock.

A driver (lease, store, timers) calls :func:`decide` on every tick with the
persisted :class:`RolloutState`, the current step's :class:`StepCounts` and the
time, and applies the :class:`Verdict`. Calling it twice with the same inputs
gives the same verdict, so a restarted driver resumes exactly where it was.

The rules, in the order they are applied:

1. **Abort rule.** ``evidence >= 1/alpha`` rolls back, whatever the phase (a
   paused or waiting canary still takes traffic). The evidence is an e-process on
   the side each failure came from (:mod:`router.rollout.evidence`): valid at
   level ``alpha`` for the whole rollout however often it is checked.
2. **Guardrail.** With ``maxFailureRatio`` set, a canary failure ratio above it
   rolls back, checked only once the step has ``minSamples`` canary executions.
3. **Advance** only in phase Progressing, after ``minStepSeconds`` *and* at least
   ``minSamples`` canary executions: to the next step's weight; after the last
   step to 100% (promote), or to WaitingPromotion when ``requireApproval``.
4. **Inconclusive.** No or too little data is never a failure: the step holds
   until ``maxStepSeconds``, then ``onInconclusive`` (pause, rollback, promote).

Which canary share the evidence is judged against. Each execution goes to the
canary with probability ``w`` (the step's weight) by its own random draw, so the
e-process against ``p0 = w`` is a test supermartingale exactly (module docstring
of evidence.py). The realised share ``s = n_c / (n_c + n_b)`` also matters when
that assumption bends: sticky routing by key, a replica still on the previous
weights for a moment after a step change, or outcomes of one side arriving later
than the other's (the counts are of executions with a known outcome). When more
of the traffic really went to the canary than ``w``, its failures must be judged
against that larger share. So the step's evidence is ``min(E(p0=w), E(p0=s))``:
never above ``E(w)``, so Ville's bound is inherited unchanged, and never above
the plug-in ``E(s)`` when the split drifted towards the canary. The cost is
small: by chance ``s`` exceeds ``w`` by about ``sqrt(w(1-w)/n)``, far less than
the shift in failure share that a bad canary causes.

Steps: each step's counts start at zero, so each step has its own e-process at
its own weight; :func:`evidence.combine_steps` combines them into one e-process
for the rollout (level ``alpha`` overall, not per step). The driver keeps the
final counts of every finished step in ``RolloutState.finished``.
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass, field

from router.errors import InvalidArgument
from router.rollout.evidence import combine_steps, step_log_evidence


class Phase(enum.StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    WAITING_PROMOTION = "WaitingPromotion"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING_PROMOTION})


class OnInconclusive(enum.StrEnum):
    PAUSE = "pause"
    ROLLBACK = "rollback"
    PROMOTE = "promote"


class Action(enum.StrEnum):
    HOLD = "hold"  # nothing changes; keep routing as is
    ADVANCE = "advance"  # go to the next step's weight (Verdict.canary_weight)
    PROMOTE = "promote"  # route 100% to the target: Succeeded
    WAIT_PROMOTION = "wait_promotion"  # last step done; a person must promote
    ROLLBACK = "rollback"  # restore the routes from before the rollout
    PAUSE = "pause"  # inconclusive: stop moving, keep the current weight


@dataclass(frozen=True, slots=True)
class Analysis:
    """How the canary is judged. ``slow_seconds`` is applied by whoever counts failures."""

    alpha: float = 0.01
    max_failure_ratio: float | None = None
    slow_seconds: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise InvalidArgument("analysis.alpha must be between 0 and 1", "analysis.alpha")
        ratio = self.max_failure_ratio
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise InvalidArgument(
                "analysis.maxFailureRatio must be above 0 and at most 1",
                "analysis.maxFailureRatio",
            )
        if self.slow_seconds is not None and not self.slow_seconds > 0.0:
            raise InvalidArgument("analysis.slowSeconds must be positive", "analysis.slowSeconds")

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """What a person asked for. Defaults: see docs/rollouts-statistics.md."""

    target_version: str
    step_weights: tuple[int, ...] = (5, 25, 50)
    min_step_seconds: float = 60.0
    min_samples: int = 200
    max_step_seconds: float = 3600.0
    on_inconclusive: OnInconclusive = OnInconclusive.PAUSE
    require_approval: bool = False
    analysis: Analysis = field(default_factory=Analysis)

    def __post_init__(self) -> None:
        if not self.target_version:
            raise InvalidArgument("targetVersion is required", "targetVersion")
        weights = self.step_weights
        if not weights:
            raise InvalidArgument("stepWeights needs at least one step", "stepWeights")
        if any(isinstance(w, bool) or not isinstance(w, int) for w in weights):
            raise InvalidArgument("stepWeights must be integers", "stepWeights")
        if not all(0 < w < 100 for w in weights):
            raise InvalidArgument("stepWeights must be between 1 and 99", "stepWeights")
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise InvalidArgument("stepWeights must increase", "stepWeights")
        if not self.min_step_seconds >= 0.0:
            raise InvalidArgument("minStepSeconds must be 0 or more", "minStepSeconds")
        if isinstance(self.min_samples, bool) or self.min_samples < 1:
            raise InvalidArgument("minSamples must be at least 1", "minSamples")
        if not self.max_step_seconds >= self.min_step_seconds:
            raise InvalidArgument(
                "maxStepSeconds must be at least minStepSeconds", "maxStepSeconds"
            )


@dataclass(frozen=True, slots=True)
class StepCounts:
    """Executions with a known outcome that started in one step, per side.

    A failure is a final status other than Succeeded, an executor error, or (with
    ``slowSeconds``) an execution slower than that: the caller classifies.
    """

    canary_executions: int = 0
    canary_failures: int = 0
    baseline_executions: int = 0
    baseline_failures: int = 0

    def __post_init__(self) -> None:
        for side in ("canary", "baseline"):
            n = getattr(self, f"{side}_executions")
            f = getattr(self, f"{side}_failures")
            if not 0 <= f <= n:
                raise ValueError(f"{side}: need 0 <= failures ({f}) <= executions ({n})")

    @property
    def failures(self) -> int:
        return self.canary_failures + self.baseline_failures

    @property
    def executions(self) -> int:
        return self.canary_executions + self.baseline_executions


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What the driver persists: where the rollout is, since when, and past steps."""

    phase: Phase = Phase.PROGRESSING
    step: int = 0  # index into RolloutSpec.step_weights
    step_started_at: float = 0.0  # seconds, same clock as ``now``
    finished: tuple[StepCounts, ...] = ()  # final counts of steps 0 .. step-1


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    step: int  # step index after the verdict
    canary_weight: int  # canary weight after the verdict (0 after rollback)
    evidence: float  # the rollout's evidence, compare with 1/alpha
    message: str  # one sentence for a person


def step_evidence(weight: int, counts: StepCounts) -> float:
    """log e-value of one step: against the weight and the realised share, the smaller."""
    k, m = counts.canary_failures, counts.failures
    by_weight = step_log_evidence(k, m, weight / 100.0)
    if counts.executions == 0:
        return by_weight
    realised = counts.canary_executions / counts.executions
    return min(by_weight, step_log_evidence(k, m, realised))


def rollout_evidence(spec: RolloutSpec, state: RolloutState, counts: StepCounts) -> float:
    """The rollout's evidence (not its log): finished steps and the current one combined."""
    if len(state.finished) != state.step:
        raise ValueError(f"state has {len(state.finished)} finished steps at step {state.step}")
    logs = [step_evidence(spec.step_weights[j], c) for j, c in enumerate(state.finished)]
    logs.append(step_evidence(spec.step_weights[state.step], counts))
    log_e = combine_steps(logs, len(spec.step_weights))
    return math.exp(min(log_e, 700.0))


def decide(spec: RolloutSpec, state: RolloutState, counts: StepCounts, now: float) -> Verdict:
    """The verdict for this tick. Pure: same inputs, same verdict."""
    if not 0 <= state.step < len(spec.step_weights):
        raise ValueError(f"step {state.step} is not a step of {spec.step_weights}")
    weight = spec.step_weights[state.step]
    if state.phase not in ACTIVE_PHASES:
        return Verdict(Action.HOLD, state.step, weight, 1.0, f"rollout {state.phase.value}")
    analysis = spec.analysis
    evidence = rollout_evidence(spec, state, counts)
    ratios = _ratios(counts)

    def verdict(action: Action, message: str, step: int = state.step, to: int = weight) -> Verdict:
        return Verdict(action, step, to, evidence, message)

    if evidence >= analysis.threshold:
        return verdict(
            Action.ROLLBACK,
            f"rolled back: {ratios}; evidence {_num(evidence)} ≥ {_num(analysis.threshold)}",
            to=0,
        )
    cap = analysis.max_failure_ratio
    n_c, f_c = counts.canary_executions, counts.canary_failures
    if cap is not None and n_c >= spec.min_samples and f_c > cap * n_c:
        return verdict(
            Action.ROLLBACK,
            f"rolled back: canary failure ratio {_pct(f_c / n_c)} ({f_c} of {n_c}) "
            f"above maxFailureRatio {_pct(cap)}",
            to=0,
        )
    where = _where(spec, state.step)
    if state.phase is Phase.PAUSED:
        return verdict(Action.HOLD, f"paused at {where}; {ratios}; evidence {_num(evidence)}")
    if state.phase is Phase.WAITING_PROMOTION:
        return verdict(
            Action.WAIT_PROMOTION,
            f"waiting for promotion at {where}; {ratios}; evidence {_num(evidence)}",
        )

    elapsed = max(0.0, now - state.step_started_at)
    enough = n_c >= spec.min_samples
    if enough and elapsed >= spec.min_step_seconds:
        done = (
            f"{where} passed: {ratios}; evidence {_num(evidence)} "
            f"< {_num(analysis.threshold)} after {_secs(elapsed)}"
        )
        return _step_done(spec, state, evidence, done)
    if elapsed >= spec.max_step_seconds:
        short = (
            f"inconclusive at {where}: {n_c} canary executions in {_secs(elapsed)}, "
            f"fewer than minSamples {spec.min_samples}; evidence {_num(evidence)}"
        )
        if spec.on_inconclusive is OnInconclusive.ROLLBACK:
            return verdict(Action.ROLLBACK, f"rolled back: {short}", to=0)
        if spec.on_inconclusive is OnInconclusive.PROMOTE:
            return _finish(spec, state, evidence, short, inconclusive=True)
        return verdict(Action.PAUSE, f"paused: {short}")
    waiting = []
    if not enough:
        waiting.append(f"{n_c} of {spec.min_samples} canary executions")
    if elapsed < spec.min_step_seconds:
        waiting.append(f"{_secs(elapsed)} of {_secs(spec.min_step_seconds)}")
    return verdict(
        Action.HOLD,
        f"analysing {where}: {', '.join(waiting)}; {ratios}; evidence {_num(evidence)}",
    )


def _step_done(spec: RolloutSpec, state: RolloutState, evidence: float, done: str) -> Verdict:
    nxt = state.step + 1
    if nxt < len(spec.step_weights):
        to = spec.step_weights[nxt]
        return Verdict(Action.ADVANCE, nxt, to, evidence, f"advanced to {to}%: {done}")
    return _finish(spec, state, evidence, done, inconclusive=False)


def _finish(
    spec: RolloutSpec, state: RolloutState, evidence: float, why: str, *, inconclusive: bool
) -> Verdict:
    weight = spec.step_weights[state.step]
    if spec.require_approval:
        return Verdict(
            Action.WAIT_PROMOTION, state.step, weight, evidence, f"waiting for promotion: {why}"
        )
    how = "promoted (onInconclusive promote)" if inconclusive else "promoted"
    return Verdict(Action.PROMOTE, state.step, 100, evidence, f"{how}: {why}")


def _where(spec: RolloutSpec, step: int) -> str:
    return f"step {step + 1}/{len(spec.step_weights)} ({spec.step_weights[step]}%)"


def _ratios(c: StepCounts) -> str:
    return (
        f"canary failure ratio {_ratio(c.canary_failures, c.canary_executions)} vs baseline "
        f"{_ratio(c.baseline_failures, c.baseline_executions)}"
    )


def _ratio(failures: int, executions: int) -> str:
    if executions == 0:
        return "n/a (0 executions)"
    return f"{_pct(failures / executions)} ({failures} of {executions})"


def _pct(x: float) -> str:
    p = 100.0 * x
    if p == 0.0 or p >= 10.0:
        return f"{p:.0f}%"
    if p >= 1.0:
        return f"{p:.1f}%"
    return f"{p:.2g}%"


def _num(x: float) -> str:
    # Rounded down, so a held rollout never shows an evidence at its threshold.
    if x >= 1e6:
        return f"{x:.2e}"
    if x >= 10.0:
        return str(math.floor(x))
    if x >= 1.0:
        return f"{math.floor(x * 10) / 10:.1f}"
    return f"{x:.2g}"


def _secs(seconds: float) -> str:
    return f"{seconds:.0f} s"
