"""The memory store's execution table: bounded per flow, pruned from the front."""

from __future__ import annotations

import pytest

from router.lifecycle.record import ExecutionRecord
from router.store import memory_executions
from router.store.memory_executions import ExecutionTable


def _record(i: int) -> ExecutionRecord:
    return ExecutionRecord("F1", "f", f"e{i}", "1", "prod", 1_000 + i)


def test_a_flow_keeps_at_most_the_cap_dropping_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_executions, "MAX_RECORDS_PER_FLOW", 5)
    table = ExecutionTable()
    for i in range(8):
        assert table.put(_record(i), now=0.0, ttl_s=60)
    assert list(table.records) == ["e3", "e4", "e5", "e6", "e7"]
    assert sum(table.outcomes.values()) == 8  # counted when written, whatever is dropped later


def test_pruning_pops_what_expired_and_keeps_the_rest() -> None:
    table = ExecutionTable()
    for i in range(10):
        table.put(_record(i), now=float(i), ttl_s=5)  # e{i} expires at i + 5
    table.prune(now=8.0)  # e0..e3 expired (at 5, 6, 7, 8)
    assert list(table.records) == [f"e{i}" for i in range(4, 10)]
    assert table.live("e4", 8.0) is not None and table.live("e3", 8.0) is None
