"""What the console shows, as JSON: pure functions over what the store holds.

No I/O here: :mod:`router.console.api` reads the store (a flow's snapshot, its
statistics buckets, its rollouts) and these functions shape the answer. The
numbers come from the store's shared buckets (router/store/stats), so every
replica answers the same.

* ``routes``: the alias's configured weights, and each one's share of the total;
* ``realized``: the share of executions each version actually got in the window
  (those the alias started; counted when they started);
* per version: ``executions`` (started in the window), ``succeeded`` and
  ``failed`` (finals in the window; failed is every final status other than
  Succeeded), ``successRatio`` (succeeded / finals, ``null`` without finals),
  ``p50Ms``/``p99Ms`` (run time, start to final, from the run-time bins:
  interpolated inside the bin, so within one bin width, 4 per decade; ``null``
  without finals), and ``series``: per 10 s bucket of the window, oldest
  first, the executions started and the failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.lifecycle.status import Status
from router.model import Alias, Flow
from router.store.stats import (
    BUCKET_MS,
    RUN_BOUNDS_MS,
    STARTED,
    ExecutionStats,
    bucket_range,
)

WINDOW_MS = 5 * 60 * 1000  # the console's "last 5 minutes"
SUCCEEDED = Status.SUCCEEDED.value
FINALS = frozenset(s.value for s in Status if s.is_final)

Json = dict[str, Any]


def window(now_ms: int) -> range:
    """The buckets shown at ``now_ms``: the current one (partly filled) and those before
    it, WINDOW_MS in all."""
    return bucket_range(now_ms - WINDOW_MS + BUCKET_MS, now_ms)


def route_list(alias: Alias) -> list[Json]:
    total = sum(r.weight for r in alias.routes) or 1
    return [
        {"version": str(r.version), "weight": r.weight, "share": r.weight / total}
        for r in alias.routes
    ]


def flow_summary(flow: Flow, aliases: Sequence[Alias], active: Mapping[str, str]) -> Json:
    """One row of the flows list: the aliases' configured weights, and the phase of
    those in an active rollout (``active``: alias name -> phase)."""
    return {
        "name": flow.name,
        "id": flow.id,
        "aliases": [
            {"name": a.name, "routes": route_list(a), "rollout": active.get(a.name)}
            for a in sorted(aliases, key=lambda a: a.name)
        ],
    }


@dataclass
class _Version:
    """One version's counters through one alias, over the window."""

    buckets: int
    started: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    succeeded: int = 0
    bins: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = [0] * self.buckets
        self.failed = [0] * self.buckets

    def json(self, version: str) -> Json:
        finals = self.succeeded + sum(self.failed)
        return {
            "version": version,
            "executions": sum(self.started),
            "succeeded": self.succeeded,
            "failed": sum(self.failed),
            "successRatio": self.succeeded / finals if finals else None,
            "p50Ms": quantile(self.bins, 0.5),
            "p99Ms": quantile(self.bins, 0.99),
            "series": {"started": self.started, "failed": self.failed},
        }


def quantile(bins: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile of run times (ms) from bin counts, interpolated in its bin;
    a quantile in the last bin (over an hour) is the last bound."""
    total = sum(bins.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for i in sorted(bins):
        n = bins[i]
        if seen + n >= rank and n:
            if i >= len(RUN_BOUNDS_MS):
                return float(RUN_BOUNDS_MS[-1])
            low = RUN_BOUNDS_MS[i - 1] if i else 0
            high = RUN_BOUNDS_MS[i]
            return low + (high - low) * (rank - seen) / n
        seen += n
    return float(RUN_BOUNDS_MS[-1])


def flow_detail(
    flow: Flow,
    aliases: Sequence[Alias],
    stats: ExecutionStats,
    now_ms: int,
    rollouts: Mapping[str, Json],
) -> Json:
    """The alias view of one flow: per alias, configured and realised split, per
    version counts, ratios, run-time quantiles and series, and its rollout status."""
    buckets = window(now_ms)
    first = buckets.start
    per: dict[str, dict[str, _Version]] = {}
    for n, counts in stats.items():
        if n not in buckets:
            continue
        slot = n - first
        for key, count in counts.items():
            versions = per.setdefault(key.alias, {})
            v = versions.get(key.version)
            if v is None:
                v = versions[key.version] = _Version(len(buckets))
            if key.what == STARTED:
                v.started[slot] += count
            elif key.what == SUCCEEDED:
                v.succeeded += count
            elif key.what in FINALS:
                v.failed[slot] += count
            elif (b := key.run_bin) is not None:
                v.bins[b] = v.bins.get(b, 0) + count
    shown = []
    for alias in sorted(aliases, key=lambda a: a.name):
        versions = per.get(alias.name, {})
        for r in alias.routes:
            versions.setdefault(str(r.version), _Version(len(buckets)))
        rows = [versions[v].json(v) for v in sorted(versions, key=_version_order)]
        total = sum(row["executions"] for row in rows)
        shown.append(
            {
                "name": alias.name,
                "revision": alias.revision,
                "routes": route_list(alias),
                "realized": [
                    {
                        "version": row["version"],
                        "executions": row["executions"],
                        "share": row["executions"] / total if total else None,
                    }
                    for row in rows
                ],
                "versions": rows,
                "rollout": rollouts.get(alias.name),
            }
        )
    return {
        "name": flow.name,
        "id": flow.id,
        "now": now_ms,
        "windowMs": WINDOW_MS,
        "bucketMs": BUCKET_MS,
        "firstBucketAt": first * BUCKET_MS,
        "aliases": shown,
    }


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
