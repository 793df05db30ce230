"""Tests of the pure alias-method sampler (router/sampler.py).

Three layers, from strongest to weakest:

* exact: the integer table realises ``w_i / W`` exactly (Fractions), and
  ``sample_int`` hits every outcome exactly ``n * w_i`` times over its domain;
* float path: the probabilities the ``random()`` fast path realises are computed
  exactly over all 2**53 possible ``random()`` outputs and bounded by
  ``n * 2**-50`` per outcome, as the module docstring promises;
* statistical: chi-square goodness of fit of actual draws, with fixed seeds
  and a stated significance level, plus a negative control showing that the
  test does reject a wrong distribution.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from router.sampler import AliasTable, KeyedTable, realized_probabilities

MAX_INT32 = 2**31 - 1
# random.random() returns k / 2**53 for an integer k in [0, 2**53).
ONE = 2**53
# Chi-square significance level for every goodness-of-fit test below. Seeds are
# fixed, so each test is deterministic; alpha bounds how unlucky a seed could be.
ALPHA = 0.001
N_DRAWS = 200_000

weight_lists = st.lists(st.integers(0, 10**9) | st.integers(0, 5), min_size=1, max_size=50).filter(
    any
)


def _random_weights(n: int, seed: int, low: int = 0, high: int = 10**9) -> list[int]:
    rng = random.Random(seed)
    weights = [rng.randint(low, high) for _ in range(n)]
    if not any(weights):
        weights[0] = 1
    return weights


def _check_exact(weights: Sequence[int]) -> AliasTable:
    table = AliasTable(weights)
    total = sum(weights)
    n = len(weights)
    assert table.n == n
    assert table.total == total
    assert len(table.cut) == n
    assert len(table.alias) == n
    assert len(table.limit) == n
    for c in range(n):
        assert 0 <= table.cut[c] <= total
        assert 0 <= table.alias[c] < n
        # Column c's keeper is outcome c: a zero-weight outcome keeps nothing.
        if weights[c] == 0:
            assert table.cut[c] == 0
        # Never alias into a zero-weight outcome (a full column aliases to itself).
        assert weights[table.alias[c]] > 0
    assert realized_probabilities(table) == [Fraction(w, total) for w in weights]
    return table


# -- exactness of the integer table --------------------------------------------


@given(weight_lists)
@settings(max_examples=300, deadline=None)
def test_realized_probabilities_are_exact(weights: list[int]) -> None:
    _check_exact(weights)


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([1], id="single"),
        pytest.param([7], id="single-7"),
        pytest.param([0, 0, 3, 0], id="single-positive-among-zeros"),
        pytest.param([0, 5, 0, 5, 0], id="zeros-mixed-in"),
        pytest.param([100, 0], id="100-0"),
        pytest.param([20, 30], id="relative-20-30"),
        pytest.param([1, 2, 3, 4, 90], id="skewed"),
        pytest.param([MAX_INT32, MAX_INT32, MAX_INT32], id="huge-equal"),
        pytest.param([MAX_INT32, 1, 0, MAX_INT32 - 1], id="huge-mixed"),
        pytest.param([MAX_INT32] + [1] * 999, id="huge-and-tiny"),
        pytest.param([1] * 1000, id="uniform-1000"),
        pytest.param(_random_weights(10_000, seed=1), id="random-10000"),
        pytest.param(_random_weights(10_000, seed=2, high=3), id="random-small-10000"),
        pytest.param([0] * 9_999 + [1], id="last-of-10000"),
    ],
)
def test_realized_probabilities_edge_cases(weights: list[int]) -> None:
    _check_exact(weights)


def test_single_outcome_always_chosen() -> None:
    table = AliasTable([5])
    assert {table.sample(u) for u in (0.0, 0.5, 1 - 2**-53)} == {0}
    assert {table.sample_int(x) for x in range(5)} == {0}


# -- sample_int over its whole domain ------------------------------------------

small_weight_lists = (
    st.lists(st.integers(0, 60), min_size=1, max_size=12)
    .filter(any)
    .filter(lambda w: len(w) * sum(w) <= 5000)
)


def _check_sample_int_exhaustive(weights: Sequence[int]) -> None:
    table = AliasTable(weights)
    n, total = len(weights), sum(weights)
    counts = Counter(table.sample_int(x) for x in range(n * total))
    assert {i: counts[i] for i in range(n)} == {i: n * w for i, w in enumerate(weights)}
    assert set(counts) <= set(range(n))


@given(small_weight_lists)
@settings(max_examples=200, deadline=None)
def test_sample_int_exhaustive(weights: list[int]) -> None:
    _check_sample_int_exhaustive(weights)


@pytest.mark.parametrize(
    "weights", [[1], [0, 1], [1, 0, 0], [20, 30], [1, 2, 3, 4, 90], [0, 7, 0, 7, 1], [3] * 40]
)
def test_sample_int_exhaustive_examples(weights: list[int]) -> None:
    _check_sample_int_exhaustive(weights)


# -- float fast path: exact realized probabilities over all 2**53 inputs ---------


def _first_k_at_or_above(t: float, n: int) -> int:
    """Smallest k in [0, 2**53] with ``(k / 2**53) * n >= t`` (2**53 if none).

    ``u * n`` is rounded monotonically, so the predicate is monotone in k and
    binary search finds the boundary in 53 steps.
    """
    lo, hi = 0, ONE
    while lo < hi:
        mid = (lo + hi) // 2
        if (mid / ONE) * n < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _float_path_counts(table: AliasTable) -> list[int]:
    """Number of k in [0, 2**53) for which ``table.sample(k / 2**53)`` returns each outcome.

    Column c is the contiguous range of k with ``c <= (k/2**53)*n < c + 1``;
    within it, k below the first k with ``(k/2**53)*n >= limit[c]`` keeps c,
    the rest go to ``alias[c]``. Every boundary found is checked against
    ``table.sample`` itself, so the counts describe the real code path.
    """
    n = table.n
    # The largest random() output must land in a real column: no IndexError.
    assert int(((ONE - 1) / ONE) * n) <= n - 1
    assert _first_k_at_or_above(float(n), n) == ONE

    counts = [0] * n
    start = 0
    for c in range(n):
        limit = table.limit[c]
        assert c <= limit <= c + 1
        split = _first_k_at_or_above(limit, n)
        end = _first_k_at_or_above(float(c + 1), n)
        assert start <= split <= end
        alias = table.alias[c]
        if start < split:
            assert table.sample(start / ONE) == c
            assert table.sample((split - 1) / ONE) == c
        if split < end:
            assert table.sample(split / ONE) == alias
            assert table.sample((end - 1) / ONE) == alias
        if start < end:
            assert int((start / ONE) * n) == c
            assert int(((end - 1) / ONE) * n) == c
        counts[c] += split - start
        counts[alias] += end - split
        start = end
    assert start == ONE
    assert sum(counts) == ONE
    return counts


def _check_float_bound(weights: Sequence[int]) -> None:
    table = AliasTable(weights)
    n, total = len(weights), sum(weights)
    counts = _float_path_counts(table)
    bound = Fraction(n, 2**50)
    for i, w in enumerate(weights):
        error = abs(Fraction(counts[i], ONE) - Fraction(w, total))
        assert error <= bound, (i, w, float(error), float(bound))
        if w == 0:
            # A zero-weight version is never chosen, not even by float rounding.
            assert counts[i] == 0


@given(st.lists(st.integers(0, 10**9) | st.integers(0, 5), min_size=1, max_size=64).filter(any))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_float_path_within_documented_bound(weights: list[int]) -> None:
    _check_float_bound(weights)


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([1], id="single"),
        pytest.param([1, 1, 1], id="thirds"),
        pytest.param([30, 70], id="30-70"),
        pytest.param([MAX_INT32, 1, 0, MAX_INT32 - 1], id="huge-mixed"),
        pytest.param(_random_weights(1000, seed=3), id="random-1000"),
        pytest.param([10**9] + [1] * 999, id="one-alias-target-1000"),
        pytest.param(_random_weights(10_000, seed=4), id="random-10000"),
        # One outcome is the alias of ~10_000 columns, so per-column rounding
        # errors all accumulate on it: the worst case for the bound.
        pytest.param([10**9] + [1] * 9_999, id="one-alias-target-10000"),
        pytest.param([MAX_INT32 - i for i in range(10_000)], id="near-uniform-10000"),
    ],
)
def test_float_path_within_documented_bound_large(weights: list[int]) -> None:
    _check_float_bound(weights)


def test_float_path_harness_detects_a_biased_table() -> None:
    """Negative control for the proof harness: nudging one float limit by 1e-9 is caught."""
    weights = [30, 70]
    table = AliasTable(weights)
    c = next(i for i, limit in enumerate(table.limit) if limit % 1)
    table.limit = tuple(x + 1e-9 if i == c else x for i, x in enumerate(table.limit))
    counts = _float_path_counts(table)
    errors = [
        abs(Fraction(k, ONE) - Fraction(w, sum(weights)))
        for k, w in zip(counts, weights, strict=True)
    ]
    assert max(errors) > Fraction(len(weights), 2**50)


def test_float_path_largest_random_output_is_a_valid_column() -> None:
    largest = (ONE - 1) / ONE
    assert largest == 1 - 2**-53
    for n in [*range(1, 300), 1000, 9_999, 10_000, 65_537, 2**20 - 1]:
        assert int(largest * n) == n - 1
        table = AliasTable([1] * n)
        assert 0 <= table.sample(largest) < n


# -- chi-square goodness of fit ----------------------------------------------------


def _draw_counts(weights: Sequence[int], seed: int = 12345, draws: int = N_DRAWS) -> list[int]:
    table = AliasTable(weights)
    rng = random.Random(seed)
    counts = Counter(table.sample(rng.random()) for _ in range(draws))
    assert set(counts) <= set(range(len(weights)))
    return [counts[i] for i in range(len(weights))]


def _chisquare_pvalue(counts: Sequence[int], weights: Sequence[int]) -> float:
    """p-value of ``counts`` against ``weights``; zero-weight outcomes must be empty."""
    draws = sum(counts)
    total = sum(weights)
    for c, w in zip(counts, weights, strict=True):
        if w == 0:
            assert c == 0
    observed = [c for c, w in zip(counts, weights, strict=True) if w]
    expected = [draws * w / total for w in weights if w]
    if len(observed) == 1:
        return 1.0
    return float(chisquare(observed, expected).pvalue)


CHI_SQUARE_WEIGHTS = [
    pytest.param([30, 70], id="30-70"),
    pytest.param([20, 30], id="20-30"),
    pytest.param([1, 2, 3, 4, 90], id="skewed"),
    pytest.param([0, 5, 0, 5], id="zeros"),
    # Weights >= 100 keep every expected count >= 5 for the chi-square approximation.
    pytest.param(_random_weights(50, seed=5, low=100, high=10_000), id="random-50"),
]


@pytest.mark.parametrize("weights", CHI_SQUARE_WEIGHTS)
def test_float_sampling_goodness_of_fit(weights: list[int]) -> None:
    counts = _draw_counts(weights)
    assert _chisquare_pvalue(counts, weights) > ALPHA


@pytest.mark.parametrize(
    ("weights", "wrong"),
    [
        ([30, 70], [35, 65]),
        ([20, 30], [50, 50]),
        ([1, 2, 3, 4, 90], [2, 2, 3, 4, 89]),
    ],
)
def test_goodness_of_fit_rejects_wrong_distribution(weights: list[int], wrong: list[int]) -> None:
    """Negative control: the same draws against wrong weights must be rejected."""
    counts = _draw_counts(weights)
    assert _chisquare_pvalue(counts, wrong) < 1e-6


# -- keyed sampling (KeyedTable: what X-Routing-Key uses) -----------------------------------


def test_sample_key_is_deterministic() -> None:
    weights = [1, 2, 3, 4, 90]
    table = KeyedTable(weights)
    rebuilt = KeyedTable(list(weights))
    keys = [f"execution-{i}".encode() for i in range(1000)]
    first = [table.sample_key(k) for k in keys]
    assert first == [table.sample_key(k) for k in keys]
    assert first == [rebuilt.sample_key(k) for k in keys]
    assert all(0 <= o < len(weights) for o in first)


@given(weight_lists, st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_sample_key_property(weights: list[int], key: bytes) -> None:
    table = KeyedTable(weights)
    outcome = table.sample_key(key)
    assert outcome == KeyedTable(weights).sample_key(key)
    assert weights[outcome] > 0


@pytest.mark.parametrize("weights", CHI_SQUARE_WEIGHTS)
def test_sample_key_goodness_of_fit(weights: list[int]) -> None:
    table = KeyedTable(weights)
    counts = Counter(table.sample_key(f"execution-{i}".encode()) for i in range(100_000))
    assert _chisquare_pvalue([counts[i] for i in range(len(weights))], weights) > ALPHA


# -- constructor errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([], id="empty"),
        pytest.param([1, -1], id="negative"),
        pytest.param([-5], id="only-negative"),
        pytest.param([True], id="bool-true"),
        pytest.param([1, False], id="bool-false"),
        pytest.param([1.0], id="float"),
        pytest.param([1, 0.5], id="float-fraction"),
        pytest.param(["1"], id="string"),
        pytest.param([None], id="none"),
        pytest.param([0], id="single-zero"),
        pytest.param([0, 0, 0], id="all-zero"),
    ],
)
def test_constructor_rejects(weights: list[object]) -> None:
    with pytest.raises(ValueError):
        AliasTable(weights)  # type: ignore[arg-type]
