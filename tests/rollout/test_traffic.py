"""What a step routes: the canary's exact percentage, the baseline's ratio kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.model import Route
from router.rollout.traffic import SCALES, baseline_of, step_routes


def test_the_smallest_exact_total_is_used() -> None:
    assert step_routes((Route(1, 100),), 2, 5) == (Route(1, 95), Route(2, 5))
    assert step_routes((Route(1, 1), Route(2, 1)), 3, 5) == (
        Route(1, 475), Route(2, 475), Route(3, 50),
    )  # fmt: skip
    # the target's own route in the baseline gives its weight to the canary step
    assert step_routes((Route(1, 70), Route(2, 30)), 2, 25) == (Route(1, 75), Route(2, 25))


def test_an_inexact_split_uses_the_largest_remainders() -> None:
    routes = step_routes((Route(1, 1), Route(2, 1), Route(4, 1)), 3, 5)  # 95 / 3
    assert routes[-1] == Route(3, 500)
    assert sorted(r.weight for r in routes[:-1]) == [3166, 3167, 3167]
    odd = step_routes((Route(1, 1), Route(2, 2), Route(4, 4)), 3, 7)
    assert sum(r.weight for r in odd) == 10_000 and odd[-1] == Route(3, 700)


@given(
    st.lists(st.integers(0, 1000), min_size=1, max_size=6).filter(lambda ws: sum(ws) > 0),
    st.integers(1, 99),
)
def test_canary_exact_and_baseline_ratio_within_one_unit(weights: list[int], w: int) -> None:
    baseline = tuple(Route(v + 1, x) for v, x in enumerate(weights))
    routes = step_routes(baseline, 99, w)
    total = sum(r.weight for r in routes)
    assert total in SCALES
    assert routes[-1] == Route(99, w * total // 100)
    rest = total - routes[-1].weight
    share = sum(weights)
    for route, original in zip(routes[:-1], baseline_of(baseline, 99), strict=True):
        assert route.version == original.version
        assert abs(route.weight - original.weight * rest / share) < 1.0
