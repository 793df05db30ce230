"""What a step routes, and what it has counted.

Routes: during a step the target gets ``canary_weight``% and the baseline
versions share the rest in their original ratio. Weights are integers, so the
total is the smallest of 100, 1,000 and 10,000 at which every share is exact
(a 1:1 baseline at 5% is 95 → 47.5 %: total 1,000 gives 475/475/50); if none
is, 10,000 with the remainders given by largest fraction (an error below 0.01
percentage point).

Counts: the store's outcome counters are per (alias, revision, version,
status); a step is one alias revision, so its counts are exact and need no
snapshot. Executions are those with a final status; failed are those whose
final status is not Succeeded (executor errors are recorded as Failed) and,
while the rollout has ``slowSeconds``, the Succeeded ones that ran longer; slow
are all that ran longer, whatever their status (the store counts them against
the threshold the rollout set: ``Store.set_slow_threshold``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from router.lifecycle.status import Status
from router.model import Route
from router.rollout.decision import StepCounts
from router.rollout.state import VersionCounts
from router.store.base import SLOW, SLOW_SUCCEEDED, OutcomeKey

SCALES = (100, 1000, 10_000)
FINAL = frozenset(s.value for s in Status if s.is_final)


def baseline_of(routes: Sequence[Route], target: int) -> tuple[Route, ...]:
    """The routes that share the non-canary traffic: every route but the target's."""
    return tuple(r for r in routes if r.version != target)


def step_routes(baseline: Sequence[Route], target: int, canary_weight: int) -> tuple[Route, ...]:
    """The alias's routes at ``canary_weight``% (0 < weight < 100) for the target."""
    others = baseline_of(baseline, target)
    total = sum(r.weight for r in others)
    if total <= 0:
        raise ValueError("the baseline has no weight to share")
    for scale in SCALES:
        rest = (100 - canary_weight) * scale // 100
        if all(r.weight * rest % total == 0 for r in others):
            shares = [r.weight * rest // total for r in others]
            break
    else:
        scale = SCALES[-1]
        rest = (100 - canary_weight) * scale // 100
        exact = [r.weight * rest / total for r in others]
        shares = [int(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: exact[i] - shares[i], reverse=True)
        for i in order[: rest - sum(shares)]:
            shares[i] += 1
    canary = Route(target, canary_weight * scale // 100)
    return (*(Route(r.version, w) for r, w in zip(others, shares, strict=True)), canary)


def promoted_routes(target: int) -> tuple[Route, ...]:
    return (Route(target, 100),)


def version_counts(
    outcomes: Mapping[OutcomeKey, int], alias: str, revision: int
) -> dict[str, VersionCounts]:
    """Per version: executions of the step with a final outcome, the failed and the slow."""
    found: dict[str, list[int]] = {}
    for key, n in outcomes.items():
        if key.alias != alias or key.revision != revision:
            continue
        counts = found.setdefault(key.version, [0, 0, 0])
        if key.status in FINAL:
            counts[0] += n
            if key.status != Status.SUCCEEDED.value:
                counts[1] += n
        elif key.status == SLOW_SUCCEEDED:
            counts[1] += n
        elif key.status == SLOW:
            counts[2] += n
    return {v: VersionCounts(e, f, s) for v, (e, f, s) in sorted(found.items()) if e}


def step_counts(per_version: Mapping[str, VersionCounts], target: str) -> StepCounts:
    """The decision's view: the canary (the target version) against everything else."""
    canary = per_version.get(target, VersionCounts())
    base_n = sum(c.executions for v, c in per_version.items() if v != target)
    base_f = sum(c.failed for v, c in per_version.items() if v != target)
    return StepCounts(canary.executions, canary.failed, base_n, base_f)
