"""Tests of the abort rule's statistics (router/rollout/evidence.py).

* numerics: the incomplete beta and the mixture e-value against scipy, and huge counts;
* properties (hypothesis): no canary failure is never evidence, the evidence rises
  with canary failures, the realised share only ever lowers it;
* statistics, fixed seeds: a healthy canary checked after every failure is rolled
  back at most ``alpha`` of the time (with a stated tolerance), while the same
  simulation catches a naive repeated test; a 20x canary is rolled back fast.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from router.rollout.decision import (
    Action,
    RolloutSpec,
    RolloutState,
    StepCounts,
    decide,
    step_evidence,
)
from router.rollout.evidence import combine_steps, log_upper_ibeta, step_log_evidence

T0 = 1_000_000.0


def counts(nc: int = 0, fc: int = 0, nb: int = 0, fb: int = 0) -> StepCounts:
    return StepCounts(nc, fc, nb, fb)


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


@settings(max_examples=300)
@given(
    nc=st.integers(1, 10_000),
    nb=st.integers(0, 10_000),
    data=st.data(),
    weight=st.integers(1, 99),
)
def test_a_canary_success_turned_failure_never_lowers_the_step_evidence(
    nc: int, nb: int, data: st.DataObject, weight: int
) -> None:
    fc = data.draw(st.integers(0, nc - 1))
    fb = data.draw(st.integers(0, nb))
    before = step_evidence(weight, counts(nc, fc, nb, fb))
    assert step_evidence(weight, counts(nc, fc + 1, nb, fb)) >= before - 1e-9


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
