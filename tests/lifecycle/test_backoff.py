"""router/lifecycle/backoff.py: the polling schedule and the polls it costs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.lifecycle.backoff import Backoff, next_delay, polls_for


def test_default_schedule_doubles_from_100ms_to_a_30s_cap() -> None:
    delays = [next_delay(n) for n in range(12)]
    assert delays[:9] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6])
    assert delays[9:] == [30.0, 30.0, 30.0]
    assert next_delay(10**6) == 30.0  # no overflow however long it ran


def test_jitter_only_shortens_and_is_reproducible() -> None:
    backoff = Backoff(jitter=0.2)
    first = [backoff.delay(n, random.Random(7)) for n in range(20)]
    again = [backoff.delay(n, random.Random(7)) for n in range(20)]
    assert first == again
    for n, d in enumerate(first):
        exact = Backoff().delay(n)
        assert 0.8 * exact <= d <= exact
    assert backoff.delay(3) == Backoff().delay(3)  # no random source: no jitter


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": 0}, {"base_s": 2, "cap_s": 1}, {"factor": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_invalid_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        next_delay(-1)


def simulated_polls(duration_s: float, backoff: Backoff) -> int:
    """Walk the schedule poll by poll (bounded) until one sees the end."""
    elapsed, polls = 0.0, 0
    while duration_s > 0 and polls < 1_000_000:
        elapsed += backoff.delay(polls)
        polls += 1
        if elapsed >= duration_s:
            break
    return polls


@pytest.mark.parametrize(
    ("duration_s", "polls"),
    [(0, 0), (-1, 0), (0.05, 1), (0.1, 1), (0.11, 2), (0.3, 2), (1.0, 4), (60, 10), (3600, 128)],
)
def test_polls_for_known_durations(duration_s: float, polls: int) -> None:
    # 9 doubling polls cover 51.1 s; then one every 30 s: 60 s -> 10, 1 h -> 9 + 119.
    assert polls_for(duration_s) == polls


@given(
    st.floats(min_value=0, max_value=86_400, allow_nan=False),
    st.sampled_from(
        [Backoff(), Backoff(base_s=0.5, cap_s=5), Backoff(factor=1, base_s=1, cap_s=1)]
    ),
)
def test_polls_for_counts_what_the_schedule_does(duration_s: float, backoff: Backoff) -> None:
    assert polls_for(duration_s, backoff) == simulated_polls(duration_s, backoff)
