"""Tests of the rollout's rules (router/rollout/decision.py).

Advancing, promotion, approval, pause, inconclusive steps, the guardrail, the
sentence each verdict carries, no rollback without canary data, and the spec's
validation. The statistics of the abort rule are in test_evidence.py.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import InvalidArgument
from router.rollout.decision import (
    Action,
    Analysis,
    OnInconclusive,
    Phase,
    RolloutSpec,
    RolloutState,
    StepCounts,
    decide,
    rollout_evidence,
)

SPEC = RolloutSpec(target_version="3")  # defaults: steps 5/25/50, 60 s, 200 samples, 1 h
T0 = 1_000_000.0


def counts(nc: int = 0, fc: int = 0, nb: int = 0, fb: int = 0) -> StepCounts:
    return StepCounts(nc, fc, nb, fb)


def at(step: int, phase: Phase = Phase.PROGRESSING) -> RolloutState:
    # Earlier steps closed healthy: 1000 executions split by weight, no failures.
    finished = tuple(counts(10 * w, 0, 10 * (100 - w), 0) for w in SPEC.step_weights[:step])
    return RolloutState(phase=phase, step=step, step_started_at=T0, finished=finished)


# -- no data ------------------------------------------------------------------


@settings(max_examples=200)
@given(
    step=st.integers(0, 2),
    nb=st.integers(0, 100_000),
    fb=st.integers(0, 1000),
    elapsed=st.floats(-1e6, 1e7),
    phase=st.sampled_from([Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING_PROMOTION]),
    on_inconclusive=st.sampled_from([OnInconclusive.PAUSE, OnInconclusive.PROMOTE]),
)
def test_no_canary_data_never_rolls_back(
    step: int, nb: int, fb: int, elapsed: float, phase: Phase, on_inconclusive: OnInconclusive
) -> None:
    spec = RolloutSpec(target_version="3", on_inconclusive=on_inconclusive)
    for c in (counts(), counts(0, 0, max(nb, fb), fb)):
        v = decide(spec, at(step, phase), c, T0 + elapsed)
        assert v.action is not Action.ROLLBACK
        assert v.evidence <= 1.0


# -- rules ---------------------------------------------------------------------


def healthy(nc: int) -> StepCounts:
    return counts(nc, nc // 100, 4 * nc, 4 * nc // 100)


def test_holds_until_both_min_step_seconds_and_min_samples() -> None:
    v = decide(SPEC, at(0), healthy(500), T0 + 59)
    assert v.action is Action.HOLD and v.canary_weight == 5
    assert "59 s of 60 s" in v.message
    v = decide(SPEC, at(0), healthy(199), T0 + 600)
    assert v.action is Action.HOLD
    assert "199 of 200 canary executions" in v.message
    v = decide(SPEC, at(0), healthy(200), T0 + 60)
    assert (v.action, v.step, v.canary_weight) == (Action.ADVANCE, 1, 25)
    assert v.message.startswith("advanced to 25%: step 1/3 (5%) passed")


def test_clock_behind_the_step_start_holds() -> None:
    v = decide(SPEC, at(1), healthy(10_000), T0 - 3600)
    assert v.action is Action.HOLD and "0 s of 60 s" in v.message


def test_last_step_promotes_or_waits_for_approval() -> None:
    v = decide(SPEC, at(2), healthy(300), T0 + 61)
    assert (v.action, v.canary_weight) == (Action.PROMOTE, 100)
    assert v.message.startswith("promoted: step 3/3 (50%) passed")
    gated = RolloutSpec(target_version="3", require_approval=True)
    v = decide(gated, at(2), healthy(300), T0 + 61)
    assert (v.action, v.canary_weight) == (Action.WAIT_PROMOTION, 50)
    v = decide(gated, at(2, Phase.WAITING_PROMOTION), healthy(300), T0 + 1e6)
    assert v.action is Action.WAIT_PROMOTION and "waiting for promotion" in v.message


BAD = counts(142, 44, 600, 6)


@pytest.mark.parametrize("phase", [Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING_PROMOTION])
def test_evidence_rolls_back_in_every_active_phase_and_blocks_advancing(phase: Phase) -> None:
    v = decide(SPEC, at(1, phase), BAD, T0 + 3600)
    assert (v.action, v.canary_weight) == (Action.ROLLBACK, 0)
    assert v.evidence >= 100


def test_rollback_sentence_carries_the_numbers() -> None:
    spec = RolloutSpec(target_version="3", step_weights=(20,))
    state = RolloutState(step_started_at=T0)
    bad = counts(26, 8, 100, 1)
    v = decide(spec, state, bad, T0 + 10)
    e = rollout_evidence(spec, state, bad)
    assert v.action is Action.ROLLBACK and 1000 < e < 1e6
    assert v.evidence == e
    assert v.message == (
        f"rolled back: canary failure ratio 31% (8 of 26) vs baseline 1.0% (1 of 100); "
        f"evidence {math.floor(e)} ≥ 100"
    )
    assert "\n" not in v.message and ". " not in v.message  # one sentence


def test_finished_phases_hold() -> None:
    for phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED):
        v = decide(SPEC, at(1, phase), BAD, T0)
        assert v.action is Action.HOLD and phase.value in v.message


def test_paused_holds_without_advancing() -> None:
    v = decide(SPEC, at(0, Phase.PAUSED), healthy(10_000), T0 + 1e5)
    assert v.action is Action.HOLD and v.message.startswith("paused at step 1/3 (5%)")


@pytest.mark.parametrize(
    ("policy", "action", "weight"),
    [
        (OnInconclusive.PAUSE, Action.PAUSE, 25),
        (OnInconclusive.ROLLBACK, Action.ROLLBACK, 0),
        (OnInconclusive.PROMOTE, Action.PROMOTE, 100),
    ],
)
def test_inconclusive_step_applies_on_inconclusive(
    policy: OnInconclusive, action: Action, weight: int
) -> None:
    spec = RolloutSpec(target_version="3", on_inconclusive=policy)
    v = decide(spec, at(1), counts(37, 0, 110, 1), T0 + 3599)
    assert v.action is Action.HOLD
    v = decide(spec, at(1), counts(37, 0, 110, 1), T0 + 3600)
    assert (v.action, v.canary_weight) == (action, weight)
    assert "37 canary executions in 3600 s, fewer than minSamples 200" in v.message


def test_inconclusive_promote_still_asks_for_approval() -> None:
    spec = RolloutSpec(
        target_version="3", on_inconclusive=OnInconclusive.PROMOTE, require_approval=True
    )
    v = decide(spec, at(0), counts(), T0 + 3600)
    assert v.action is Action.WAIT_PROMOTION


def test_guardrail_waits_for_min_samples() -> None:
    spec = RolloutSpec(target_version="3", analysis=Analysis(max_failure_ratio=0.1))
    # No baseline executions: no comparison possible, so the evidence stays at 1.
    v = decide(spec, at(0), counts(199, 100, 0, 0), T0 + 10)
    assert v.action is Action.HOLD and v.evidence <= 1.0
    v = decide(spec, at(0), counts(200, 21, 0, 0), T0 + 10)
    assert v.action is Action.ROLLBACK
    assert v.message == (
        "rolled back: canary failure ratio 10% (21 of 200) above maxFailureRatio 10%"
    )
    v = decide(spec, at(0), counts(200, 20, 0, 0), T0 + 10)
    assert v.action is Action.HOLD


def test_verdict_is_a_pure_function_of_its_inputs() -> None:
    state = at(1)
    first = decide(SPEC, state, healthy(150), T0 + 30)
    assert decide(SPEC, state, healthy(150), T0 + 30) == first
    assert state == at(1)


# -- the spec ------------------------------------------------------------------


def test_defaults() -> None:
    s = RolloutSpec(target_version="3")
    assert s.step_weights == (5, 25, 50)
    assert (s.min_step_seconds, s.min_samples, s.max_step_seconds) == (60.0, 200, 3600.0)
    assert s.on_inconclusive is OnInconclusive.PAUSE and not s.require_approval
    assert s.analysis == Analysis(alpha=0.01, max_failure_ratio=None, slow_seconds=None)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_version": ""}, "targetVersion"),
        ({"step_weights": ()}, "stepWeights"),
        ({"step_weights": (5, 5)}, "stepWeights"),
        ({"step_weights": (0, 50)}, "stepWeights"),
        ({"step_weights": (50, 100)}, "stepWeights"),
        ({"step_weights": (True,)}, "stepWeights"),
        ({"min_samples": 0}, "minSamples"),
        ({"min_step_seconds": -1.0}, "minStepSeconds"),
        ({"min_step_seconds": math.nan}, "minStepSeconds"),
        ({"max_step_seconds": 30.0}, "maxStepSeconds"),
    ],
)
def test_bad_spec_fields_are_named(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"target_version": "3", **kwargs}
    with pytest.raises(InvalidArgument) as err:
        RolloutSpec(**args)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "analysis.alpha"),
        ({"alpha": 1.0}, "analysis.alpha"),
        ({"max_failure_ratio": 0.0}, "analysis.maxFailureRatio"),
        ({"max_failure_ratio": 1.5}, "analysis.maxFailureRatio"),
        ({"slow_seconds": 0.0}, "analysis.slowSeconds"),
    ],
)
def test_bad_analysis_fields_are_named(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Analysis(**kwargs)
    assert err.value.field == field


def test_counts_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="canary"):
        StepCounts(1, 2, 0, 0)
    with pytest.raises(ValueError, match="baseline"):
        StepCounts(0, 0, 3, -1)
    with pytest.raises(ValueError, match="finished steps"):
        decide(SPEC, RolloutState(step=1), counts(), T0)
