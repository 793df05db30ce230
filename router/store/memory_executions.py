"""The memory store's executions, outcome counters and polling schedule.

Each method runs to completion without awaiting, so on one event loop each is
atomic, like the Redis scripts it mirrors (``router.store.redis_executions``).
Expiry times are on the store's clock (seconds); poll due times are whatever
milliseconds the callers pass.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from router.errors import ExecutionAlreadyExists, ExecutionNotFound
from router.lifecycle.record import ExecutionRecord, finish
from router.lifecycle.status import Status
from router.store.base import (
    SLOW,
    SLOW_SUCCEEDED,
    OutcomeKey,
    Page,
    execution_token,
    parse_execution_token,
)
from router.store.stats import (
    STARTED,
    StatKey,
    StatsTable,
    bin_field,
    bucket_of,
    final_keys,
)

# The memory store serves one process (trials, tests, small deployments): it keeps
# at most this many records per flow, dropping the oldest first, so a busy flow
# cannot grow the process without bound within --execution-retention.
MAX_RECORDS_PER_FLOW = 10_000


@dataclass
class ExecutionTable:
    """One flow's execution records (each with its expiry) and outcome counters.

    ``records`` is in insertion order, which is expiry order (one retention for
    all, on one clock), so pruning pops expired records from the front and stops
    at the first live one: its cost is what expired, not what is held.
    """

    # An OrderedDict: popping the oldest is O(1) (a dict leaves a hole at its front
    # for every deleted entry, and finding the first live one walks them all).
    records: OrderedDict[str, tuple[ExecutionRecord, float]] = field(default_factory=OrderedDict)
    outcomes: Counter[OutcomeKey] = field(default_factory=Counter)
    stats: StatsTable = field(default_factory=StatsTable)  # router.store.stats
    slow_ms: dict[str, int] = field(default_factory=dict)  # alias -> Store.set_slow_threshold

    def __len__(self) -> int:
        """The records held, expired ones not yet pruned included."""
        return len(self.records)

    def live(self, name: str, now: float) -> ExecutionRecord | None:
        found = self.records.get(name)
        return found[0] if found is not None and found[1] > now else None

    def put(self, record: ExecutionRecord, now: float, ttl_s: int) -> bool:
        """Write ``record`` iff its name is free; whether it was written (and counted)."""
        return self.put_many((record,), now, ttl_s) == 1

    def put_many(self, records: Iterable[ExecutionRecord], now: float, ttl_s: int) -> int:
        """:meth:`put` of each record, counting once per distinct counter rather than
        once per record (the journal's flush: hundreds of records, a few counters).
        Returns how many were written."""
        if ttl_s <= 0:
            return 0
        table, expiry = self.records, now + ttl_s
        outcomes: Counter[tuple[str, int, str, str]] = Counter()
        stats: Counter[tuple[int, tuple[str, int, str, str]]] = Counter()
        written = 0
        for record in records:
            found = table.get(record.name)
            if found is not None and found[1] > now:
                continue
            table[record.name] = (record, expiry)
            base = (record.alias, record.revision, record.version)
            outcomes[(*base, STARTED)] += 1
            stats[(bucket_of(record.started_at), (*base, STARTED))] += 1
            if record.stopped_at is not None:
                final = (*base, record.status.value)
                outcomes[final] += 1
                bucket = bucket_of(record.stopped_at)
                stats[(bucket, final)] += 1
                run_ms = record.stopped_at - record.started_at
                stats[(bucket, (*base, bin_field(run_ms)))] += 1
                for what in self._slow(record, run_ms):
                    outcomes[(*base, what)] += 1
            written += 1
        while len(table) > MAX_RECORDS_PER_FLOW:
            table.popitem(last=False)
        for key, n in outcomes.items():
            self.outcomes[OutcomeKey(*key)] += n
        for (bucket, key), n in stats.items():
            self.stats.add_count(bucket, StatKey(*key), n, now)
        return written

    def claim(self, record: ExecutionRecord, now: float, ttl_s: int) -> None:
        if self.live(record.name, now) is not None:
            raise ExecutionAlreadyExists(record.name)
        self.put(record, now, ttl_s)

    def finish(
        self,
        name: str,
        now: float,
        status: Status,
        output: Any,
        error: str | None,
        cause: str | None,
        at: int,
    ) -> ExecutionRecord | None:
        if not status.is_final:
            raise ValueError(f"execution {name}: {status.value} is not a final status")
        current = self.live(name, now)
        if current is None:
            raise ExecutionNotFound(name)
        done = finish(current, status, output, error, cause, at)
        if done is not None:
            self.records[name] = (done, self.records[name][1])
            self.outcomes[OutcomeKey.final(done)] += 1
            base = (done.alias, done.revision, done.version)
            for what in self._slow(done, (done.stopped_at or at) - done.started_at):
                self.outcomes[OutcomeKey(*base, what)] += 1
            self.stats.add(at, final_keys(done), now)
        return done

    def _slow(self, record: ExecutionRecord, run_ms: int) -> tuple[str, ...]:
        """The slow counters a final ``record`` that ran ``run_ms`` adds to."""
        threshold = self.slow_ms.get(record.alias) if self.slow_ms else None
        if threshold is None or run_ms <= threshold:
            return ()
        return (SLOW, SLOW_SUCCEEDED) if record.status is Status.SUCCEEDED else (SLOW,)

    def page(self, now: float, limit: int, token: str | None) -> Page[ExecutionRecord]:
        """Newest first: started_at descending, then name ascending."""
        start = parse_execution_token(token) if token else None
        ordered = sorted(
            (r for r, expiry in self.records.values() if expiry > now),
            key=lambda r: (-r.started_at, r.name),
        )
        if start is not None:
            after = (-start[0], start[1])
            ordered = [r for r in ordered if (-r.started_at, r.name) >= after]
        chunk = ordered[: max(limit, 0)]
        following = ordered[max(limit, 0) : max(limit, 0) + 1]
        return Page(chunk, execution_token(following[0]) if following else None)

    def prune(self, now: float) -> None:
        records = self.records
        while records and next(iter(records.values()))[1] <= now:
            records.popitem(last=False)
        self.stats.prune(now)


class PollSchedule:
    """(flow id, name) -> (due ms, attempt), shared by every poller of the process."""

    def __init__(self) -> None:
        self._due: dict[tuple[str, str], tuple[int, int]] = {}

    def schedule(self, flow_id: str, name: str, due_ms: int, attempt: int) -> None:
        self._due[(flow_id, name)] = (due_ms, attempt)

    def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[tuple[str, str, int]]:
        due = sorted(
            (entry for entry in self._due.items() if entry[1][0] <= now_ms),
            key=lambda entry: entry[1][0],
        )[: max(limit, 0)]
        for key, (_, attempt) in due:
            self._due[key] = (now_ms + lease_ms, attempt)
        return [(flow_id, name, attempt) for (flow_id, name), (_, attempt) in due]

    def cancel(self, flow_id: str, name: str) -> None:
        self._due.pop((flow_id, name), None)
