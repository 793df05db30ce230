"""Tests of the rollout's pure decision (router/rollout/decision.py, evidence.py).

* numerics: the incomplete beta and the mixture e-value against scipy;
* properties (hypothesis): no data is never evidence, the evidence rises with
  canary failures, the realised share only ever lowers it;
* statistics, fixed seeds: a healthy canary checked after every failure is rolled
  back at most ``alpha`` of the time (with a stated tolerance), while the same
  simulation catches a naive repeated test; a 20x canary is rolled back fast;
* rules: advancing, promotion, approval, pause, inconclusive steps, guardrail,
  and the sentence each verdict carries.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

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
    step_evidence,
)
from router.rollout.evidence import combine_steps, log_upper_ibeta, step_log_evidence

SPEC = RolloutSpec(target_version="3")  # defaults: steps 5/25/50, 60 s, 200 samples, 1 h
T0 = 1_000_000.0


def counts(nc: int = 0, fc: int = 0, nb: int = 0, fb: int = 0) -> StepCounts:
    return StepCounts(nc, fc, nb, fb)


def at(step: int, phase: Phase = Phase.PROGRESSING) -> RolloutState:
    # Earlier steps closed healthy: 1000 executions a side-weighted split, no failures.
    finished = tuple(counts(10 * w, 0, 10 * (100 - w), 0) for w in SPEC.step_weights[:step])
    return RolloutState(phase=phase, step=step, step_started_at=T0, finished=finished)


# -- numerics ------------------------------------------------------------------


@pytest.mark.parametrize("a", [1.0, 2.5, 31.0, 400.0, 20_000.0])
@pytest.mark.parametrize("b", [1.0, 7.0, 250.0, 30_000.0])
@pytest.mark.parametrize("x", [0.001, 0.05, 0.2, 0.5, 0.93])
def test_upper_incomplete_beta_matches_scipy(a: float, b: float, x: float) -> None:
    expected = special.betaincc(a, b, x)
    got = log_upper_ibeta(a, b, x)
    if expected > 1e-250:
        assert got == pytest.approx(math.log(expected), rel=1e-9, abs=1e-12)
    else:  # beyond double precision for scipy; ours stays finite and very negative
        assert got < -500


@pytest.mark.parametrize(
    ("k", "m", "p0"),
    [(5, 10, 0.2), (0, 10, 0.2), (10, 10, 0.05), (44, 50, 0.2), (3, 100, 0.5), (30, 60, 0.25)],
)
def test_evidence_is_the_truncated_beta_mixture(k: int, m: int, p0: float) -> None:
    def ratio(p: float) -> float:
        return (p / p0) ** k * ((1 - p) / (1 - p0)) ** (m - k) / (1 - p0)

    expected, _ = integrate.quad(ratio, p0, 1.0, points=[k / m] if k / m > p0 else None)
    assert math.exp(step_log_evidence(k, m, p0)) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("m", [10**6, 10**8, 10**9])
@pytest.mark.parametrize("share", [0.199, 0.2, 0.2005, 0.5])
def test_huge_counts_stay_finite(m: int, share: float) -> None:
    value = step_log_evidence(int(m * share), m, 0.2)
    assert math.isfinite(value)
    if share != 0.2005:  # 0.05 points above the share: noise at 10^6, evidence at 10^8
        assert (value > 0) == (share > 0.2)


# -- properties ----------------------------------------------------------------

shares = st.floats(min_value=0.01, max_value=0.99)


@given(m=st.integers(0, 5000), p0=shares)
def test_no_canary_failure_is_never_evidence(m: int, p0: float) -> None:
    assert step_log_evidence(0, m, p0) <= 0.0


@settings(max_examples=300)
@given(k=st.integers(0, 3000), extra=st.integers(0, 3000), p0=shares)
def test_evidence_rises_with_canary_failures(k: int, extra: int, p0: float) -> None:
    m = k + 1 + extra
    # one more of the m failures on the canary side ...
    assert step_log_evidence(k + 1, m, p0) >= step_log_evidence(k, m, p0) - 1e-9
    # ... or one more failure, on the canary side
    assert step_log_evidence(k + 1, m, p0) >= step_log_evidence(k, m - 1, p0) - 1e-9


@settings(max_examples=300)
@given(
    nc=st.integers(0, 10_000),
    nb=st.integers(0, 10_000),
    data=st.data(),
    weight=st.integers(1, 99),
)
def test_realised_share_never_raises_the_evidence(
    nc: int, nb: int, data: st.DataObject, weight: int
) -> None:
    c = counts(nc, data.draw(st.integers(0, nc)), nb, data.draw(st.integers(0, nb)))
    assert (
        step_evidence(weight, c)
        <= step_log_evidence(c.canary_failures, c.failures, weight / 100) + 1e-12
    )


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


def test_combined_evidence_starts_at_one_and_keeps_a_fresh_restart() -> None:
    assert combine_steps([], 3) == 0.0
    assert combine_steps([0.0], 3) == pytest.approx(0.0)
    assert combine_steps([5.0], 1) == pytest.approx(5.0)
    # A healthy first step (log e -3) cannot hide a bad second one: the restart at
    # step 2 alone gives at least E_2 / 3.
    assert combine_steps([-3.0, 8.0], 3) >= 8.0 - math.log(3)
    # ... and evidence carried over from step 1 adds up.
    assert combine_steps([2.0, 3.0], 2) > combine_steps([0.0, 3.0], 2)


# -- statistics ----------------------------------------------------------------


def critical_counts(p0: float, alpha: float, m_max: int) -> list[int]:
    """k*(m): the fewest canary failures among m at which the evidence reaches 1/alpha."""
    out, k, log_t = [m_max + 1], 0, math.log(1 / alpha)
    for m in range(1, m_max + 1):
        while k <= m and step_log_evidence(k, m, p0) < log_t:
            k += 1
        out.append(k)
    return out


@pytest.mark.parametrize(("p0", "alpha"), [(0.05, 0.05), (0.2, 0.05), (0.5, 0.05), (0.2, 0.01)])
def test_healthy_canary_false_rollbacks_at_most_alpha(p0: float, alpha: float) -> None:
    """Checked after every one of 400 failures (the most often the evidence can move).

    Failures fall on the canary with probability p0 (a canary exactly as good as the
    baseline, the worst case of the null). 2000 rollouts, seed fixed: the count
    must stay below alpha * n plus 3 binomial standard deviations.
    """
    rng = random.Random(1201)
    n, m_max = 2000, 400
    kstar = critical_counts(p0, alpha, m_max)
    rejected = 0
    for _ in range(n):
        k = 0
        for m in range(1, m_max + 1):
            k += rng.random() < p0
            if k >= kstar[m]:
                rejected += 1
                break
    tolerance = 3 * math.sqrt(n * alpha * (1 - alpha))
    assert rejected <= n * alpha + tolerance, (rejected, n * alpha)


def test_the_simulation_catches_a_naive_repeated_test() -> None:
    """Negative control: a one-sided z-test at alpha 0.05, repeated after every failure."""
    rng = random.Random(1201)
    n, m_max, p0 = 2000, 400, 0.2
    rejected = 0
    for _ in range(n):
        k = 0
        for m in range(1, m_max + 1):
            k += rng.random() < p0
            if m >= 10 and (k - m * p0) / math.sqrt(m * p0 * (1 - p0)) > 1.645:
                rejected += 1
                break
    assert rejected > 0.05 * n + 3 * math.sqrt(n * 0.05 * 0.95)


def test_bad_canary_at_20x_is_rolled_back_within_tens_of_executions() -> None:
    """Canary 20% weight, failure ratio 20% vs the baseline's 1%: decide after every failure."""
    spec = RolloutSpec(
        target_version="3", step_weights=(20,), min_step_seconds=1e9, max_step_seconds=1e9
    )
    rng = random.Random(7)
    needed = []
    for _ in range(100):
        nc = fc = nb = fb = 0
        for i in range(10_000):
            if rng.random() < 0.2:
                nc += 1
                failed = rng.random() < 0.2
                fc += failed
            else:
                nb += 1
                failed = rng.random() < 0.01
                fb += failed
            if failed:
                v = decide(spec, RolloutState(step_started_at=T0), counts(nc, fc, nb, fb), T0 + i)
                if v.action is Action.ROLLBACK:
                    needed.append(nc)
                    break
    assert len(needed) == 100
    needed.sort()
    assert needed[50] <= 40  # the oracle (Wald SPRT knowing both ratios) needs ~10
    assert needed[90] <= 80


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
