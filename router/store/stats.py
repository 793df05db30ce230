"""Time-bucketed execution statistics: what the operator console shows.

The outcome counters (``Store.outcome_counts``) add up a flow's whole life;
the console wants the last few minutes, the same on every replica. So the
same atomic writes that record and finish executions also count them in
10-second buckets (by the time of the event: ``started_at`` for a start,
the final time for an outcome), per (alias, alias revision, version):

* ``Started``: executions started;
* a final status value (``Succeeded``, ``Failed``, ``TimedOut``, ``Aborted``):
  executions that ended so;
* ``h<i>``: finals whose run time (start to final, ms) falls in bin ``i`` of
  :data:`RUN_BOUNDS_MS`: bin ``i`` holds run times ``<= RUN_BOUNDS_MS[i]``
  and above the bound before; the last bin, ``len(RUN_BOUNDS_MS)``, holds
  what ran longer than an hour.

A bucket lives :data:`STATS_TTL_S` after its last write (Redis: the key's TTL;
memory: pruned relative to the newest bucket); deleting the flow makes its
buckets unreachable (a new flow of the same name has a new id). Counting is
exact: each start and each transition is counted by the one write that made it.

Redis layout (the table in ``router.store.redis_codec``):
``R:x:{F}:stats:<n>``, a hash ``alias|revision|version|what`` -> count for
bucket ``n`` (``ms // BUCKET_MS``), in the flow's execution slot.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from router.lifecycle.record import ExecutionRecord

BUCKET_MS = 10_000
STATS_TTL_S = 3_600
MAX_BUCKETS = STATS_TTL_S * 1000 // BUCKET_MS + 1  # what one read may ask for
STARTED = "Started"

# Run-time bins, 4 per decade from 10 ms to 1 h (integers, so Lua and Python
# put a run time in the same bin).
RUN_BOUNDS_MS: tuple[int, ...] = tuple(
    sorted({round(10 * 10 ** (i / 4)) for i in range(23)} | {3_600_000})
)


@dataclass(frozen=True, slots=True)
class StatKey:
    """One counter of a bucket."""

    alias: str
    revision: int
    version: str
    what: str  # STARTED, a final status value, or "h<bin>"

    @property
    def run_bin(self) -> int | None:
        """The run-time bin this counter is, or ``None``."""
        if self.what.startswith("h") and self.what[1:].isdigit():
            return int(self.what[1:])
        return None


# bucket number (ms // BUCKET_MS) -> its counters
ExecutionStats = dict[int, dict[StatKey, int]]


def bucket_of(ms: int) -> int:
    return ms // BUCKET_MS


def run_bin(run_ms: int) -> int:
    """The bin of a run time: the first bound at or above it."""
    return bisect.bisect_left(RUN_BOUNDS_MS, max(run_ms, 0))


def bin_field(run_ms: int) -> str:
    return f"h{run_bin(run_ms)}"


def bucket_range(since_ms: int, until_ms: int) -> range:
    """The buckets from ``since_ms`` to ``until_ms`` (both in), at most MAX_BUCKETS (the newest)."""
    last = bucket_of(until_ms)
    first = max(bucket_of(since_ms), last - MAX_BUCKETS + 1)
    return range(first, last + 1)


def started_key(record: ExecutionRecord) -> StatKey:
    return StatKey(record.alias, record.revision, record.version, STARTED)


def final_keys(record: ExecutionRecord) -> tuple[StatKey, StatKey]:
    """The status and run-time bin counters of a final ``record``."""
    run_ms = (record.stopped_at or record.started_at) - record.started_at
    base = (record.alias, record.revision, record.version)
    return StatKey(*base, record.status.value), StatKey(*base, bin_field(run_ms))


def decode_field(field: bytes | str) -> StatKey:
    text = field.decode() if isinstance(field, bytes) else field
    alias, revision, version, what = text.rsplit("|", 3)
    return StatKey(alias, int(revision), version, what)


class StatsTable:
    """The memory store's buckets of one flow, each with its expiry (store clock, s)."""

    def __init__(self) -> None:
        self.buckets: dict[int, tuple[Counter[StatKey], float]] = {}

    def add(self, at_ms: int, keys: Iterable[StatKey], now: float) -> None:
        """Count ``keys`` in the bucket of ``at_ms``; like EXPIRE, it lives on a TTL."""
        n = bucket_of(at_ms)
        found = self.buckets.get(n)
        counts = found[0] if found is not None and found[1] > now else Counter()
        for key in keys:
            counts[key] += 1
        self.buckets[n] = (counts, now + STATS_TTL_S)

    def add_count(self, bucket: int, key: StatKey, n: int, now: float) -> None:
        """Count ``key`` ``n`` times in bucket number ``bucket``, as :meth:`add` does."""
        found = self.buckets.get(bucket)
        counts = found[0] if found is not None and found[1] > now else Counter()
        counts[key] += n
        self.buckets[bucket] = (counts, now + STATS_TTL_S)

    def read(self, since_ms: int, until_ms: int, now: float) -> ExecutionStats:
        found = ((n, self.buckets.get(n)) for n in bucket_range(since_ms, until_ms))
        return {n: dict(b[0]) for n, b in found if b is not None and b[1] > now and b[0]}

    def prune(self, now: float) -> None:
        self.buckets = {n: b for n, b in self.buckets.items() if b[1] > now}
