"""The abort rule's statistics: an e-process on the side each failure came from.

Condition on failures. While the canary gets a fraction ``p0`` of the executions
and is no worse than the baseline (same failure ratio or lower, at every moment),
each failure is a canary failure with probability ``q <= p0``, independently of
the failures before it: the router sends each execution to the canary with a
fresh ``random()`` draw, whatever the traffic volume or the failure ratios do
over time. A bad canary (failure ratio ``rho`` times the baseline's) raises it to
``q = rho p0 / (rho p0 + 1 - p0)``.

After ``m`` failures of which ``k`` are canary-side, the evidence is the mixture
likelihood ratio of the sides against ``p0``, with a Beta(a, b) prior restricted
to the alternatives ``p > p0``::

    E = int_{p0}^{1} (p/p0)^k ((1-p)/(1-p0))^(m-k) dBeta(p; a, b) / P_Beta(p > p0)
      = B(a+k, b+m-k) / B(a, b) * Q(a+k, b+m-k; p0) / Q(a, b; p0) / (p0^k (1-p0)^(m-k))

where ``Q(x, y; p0) = 1 - I_p0(x, y)`` is the upper regularised incomplete beta
function. For each fixed ``p > p0`` the ratio's factor for one more failure has
expectation ``q p/p0 + (1-q)(1-p)/(1-p0) <= 1`` when ``q <= p0``; a mixture of
such supermartingales is one too, it starts at 1 and is never negative. Ville's
inequality then bounds the chance that it *ever* reaches ``1/alpha`` by ``alpha``:
the test may be looked at after every failure, every second or once an hour,
and stopped whenever the driver likes, without changing its level. Restricting
the prior to ``p > p0`` is what makes it a test of "no worse" (a composite null):
a plain Beta mixture over all of [0, 1] also grows when the canary is *better*.

Only math.lgamma and a continued fraction: no scipy in the router.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Prior on the canary's share of failures: uniform over (p0, 1]. It spreads its
# mass over every odds ratio from "slightly worse" to "everything fails"; the
# bench (bench/rollout.py) shows it within 2x of the oracle from 5x upwards.
PRIOR_A = 1.0
PRIOR_B = 1.0

_EPS = 1e-15
_TINY = 1e-300
# The continued fraction needs O(sqrt(max(a, b))) terms; this bounds the loop far
# above what a step's counts (even 10^8 failures) can need.
_MAX_TERMS = 200_000


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _log_ibeta_direct(a: float, b: float, x: float) -> float:
    """log I_x(a, b) by the continued fraction; accurate for x < (a+1)/(a+b+2)."""
    front = a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b) - math.log(a)
    return front + math.log(_beta_cf(a, b, x))


def log_upper_ibeta(a: float, b: float, x: float) -> float:
    """log(1 - I_x(a, b)), the log of P(p > x) for p ~ Beta(a, b), accurate in both tails."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return -math.inf
    if x < (a + 1.0) / (a + b + 2.0):
        # I_x is the smaller side: take it directly and subtract from one.
        return math.log1p(-math.exp(_log_ibeta_direct(a, b, x)))
    # The upper tail is the smaller side: 1 - I_x(a, b) = I_{1-x}(b, a).
    return _log_ibeta_direct(b, a, 1.0 - x)


def step_log_evidence(canary_failures: int, failures: int, p0: float) -> float:
    """log E for ``canary_failures`` of ``failures`` against a canary share ``p0``.

    Zero failures give 0 (E = 1, no evidence either way). ``p0`` of 1 or more means
    there is no baseline to compare with: also 0. Increasing in ``canary_failures``
    for a fixed total (a likelihood ratio for larger ``p`` rises with ``k``).
    """
    k, m = canary_failures, failures
    if not 0 <= k <= m:
        raise ValueError(f"canary failures {k} must be between 0 and the {m} failures")
    if m == 0 or p0 >= 1.0:
        return 0.0
    if p0 <= 0.0:
        # No canary share at all: a canary failure is impossible under the null.
        return math.inf if k > 0 else 0.0
    a, b = PRIOR_A + k, PRIOR_B + (m - k)
    return (
        _log_beta(a, b)
        - _log_beta(PRIOR_A, PRIOR_B)
        + log_upper_ibeta(a, b, p0)
        - log_upper_ibeta(PRIOR_A, PRIOR_B, p0)
        - k * math.log(p0)
        - (m - k) * math.log1p(-p0)
    )


def combine_steps(step_logs: Sequence[float], total_steps: int) -> float:
    """log of the rollout's evidence from each step's log e-value, current step last.

    Each step restarts the canary share, so each step has its own e-process. Their
    product over steps ``j..i`` is a test supermartingale for the whole rollout
    (a step ends at a stopping time and the next factor starts at 1), and so is
    the average over the start ``j`` with weight ``1/total_steps`` each (steps not
    yet started contribute 1). Ville then holds for the whole rollout at ``alpha``,
    not per step. The average keeps a healthy early step (whose e-value drifts
    below 1) from slowing the detection of a canary that only fails at a higher
    weight: the restart at the current step always counts, at the price of a
    factor ``total_steps`` at most.
    """
    if not step_logs:
        return 0.0
    if total_steps < len(step_logs):
        raise ValueError("more step e-values than steps")
    suffixes: list[float] = []
    acc = 0.0
    for value in reversed(step_logs):
        acc += value
        suffixes.append(acc)
    not_started = total_steps - len(step_logs)
    top = max([*suffixes, 0.0])
    if top == math.inf:
        return math.inf
    total = sum(math.exp(s - top) for s in suffixes) + not_started * math.exp(-top)
    return top + math.log(total) - math.log(total_steps)
