"""router/lifecycle/journal.py: batching, retries, bounds and close, on a fake clock.

Time only moves when a test advances :class:`FakeClock`, and every wait is on
an event: the sink's (a flush happened) or the clock's (the journal is
sleeping). ``asyncio.timeout`` only bounds a test that would otherwise hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from router.lifecycle.backoff import Backoff
from router.lifecycle.journal import Journal

INTERVAL = 0.005
RETRY = Backoff(base_s=0.05, cap_s=1.0)


class Changes:
    """Futures resolved when a predicate holds, checked after every change."""

    def __init__(self) -> None:
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def changed(self) -> None:
        keep = []
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)
            elif not future.done():
                keep.append((predicate, future))
        self._waiters = keep

    async def until(self, predicate: Callable[[], bool]) -> None:
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        async with asyncio.timeout(10):
            await future


class FakeClock(Changes):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, future)
        self.sleepers.append(entry)
        self.slept.append(seconds)
        self.changed()
        try:
            await future
        finally:
            self.sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, future in self.sleepers:
            if due <= self.now and not future.done():
                future.set_result(None)

    def sleeping(self) -> bool:
        return any(not f.done() for _, f in self.sleepers)


class Sink(Changes):
    """The flush function: records batches; fails the next ``fail`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []
        self.calls = 0
        self.fail = 0
        self.gate: asyncio.Event | None = None  # when set, a flush waits for it

    async def __call__(self, batch: list[int]) -> None:
        self.calls += 1
        self.changed()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            self.changed()
            raise ConnectionError("store down")
        self.batches.append(list(batch))
        self.changed()

    @property
    def items(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> Sink:
    return Sink()


def make(
    sink: Sink, clock: FakeClock, max_batch: int = 4, max_pending: int = 10, close_attempts: int = 3
) -> Journal[int]:
    return Journal(
        sink, interval_s=INTERVAL, retry=RETRY, sleep=clock.sleep, max_batch=max_batch,
        max_pending=max_pending, close_attempts=close_attempts,
    )  # fmt: skip


@pytest.fixture
async def running(sink: Sink, clock: FakeClock) -> AsyncIterator[Journal[int]]:
    journal = make(sink, clock)
    task = asyncio.create_task(journal.run())
    yield journal
    if not task.done():
        sink.fail, sink.gate = 0, None
        await journal.close()
    await task


async def test_append_is_synchronous_and_a_window_batches(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    assert not asyncio.iscoroutinefunction(Journal.append)
    running.append(1)
    running.append(2)
    await clock.until(clock.sleeping)  # the journal waits out the flush window
    assert sink.calls == 0 and running.pending == 2
    clock.advance(INTERVAL)
    await sink.until(lambda: sink.batches == [[1, 2]])
    assert (running.flushed, running.batches, running.pending) == (2, 1, 0)


async def test_a_full_batch_is_flushed_without_waiting_for_the_window(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    for item in range(6):
        running.append(item)
    await sink.until(lambda: len(sink.batches) == 2)
    assert sink.batches == [[0, 1, 2, 3], [4, 5]]  # what was queued, in max_batch pieces
    assert clock.slept == []


async def test_items_arriving_during_a_flush_wait_for_the_next_window(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    sink.gate = asyncio.Event()
    running.append(1)
    await clock.until(clock.sleeping)
    clock.advance(INTERVAL)
    await sink.until(lambda: sink.calls == 1)  # the flush of [1] is in progress
    running.append(2)
    running.append(3)
    sink.gate.set()
    await sink.until(lambda: sink.batches == [[1]])
    await clock.until(clock.sleeping)  # not flushed at once: a busy journal batches
    assert sink.calls == 1
    clock.advance(INTERVAL)
    await sink.until(lambda: sink.batches == [[1], [2, 3]])


async def test_a_failed_flush_is_retried_in_order_with_backoff(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    sink.fail = 2
    running.append(1)
    running.append(2)
    await clock.until(clock.sleeping)
    clock.advance(INTERVAL)
    await clock.until(lambda: sink.calls == 1 and clock.sleeping())
    running.append(3)  # queued behind the batch being retried
    clock.advance(RETRY.delay(0))
    await clock.until(lambda: sink.calls == 2 and clock.sleeping())
    clock.advance(RETRY.delay(1))
    await sink.until(lambda: sink.batches == [[1, 2]])
    assert clock.slept[:3] == [INTERVAL, RETRY.delay(0), RETRY.delay(1)]
    await clock.until(clock.sleeping)
    clock.advance(INTERVAL)
    await sink.until(lambda: sink.items == [1, 2, 3])
    assert (running.failures, running.dropped, running.flushed) == (2, 0, 3)


async def test_beyond_max_pending_the_oldest_queued_items_are_dropped(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    sink.fail = 1
    for item in range(4):  # a full batch: flushed at once, and it fails
        running.append(item)
    await clock.until(lambda: sink.calls == 1 and clock.sleeping())
    for item in range(4, 12):  # 4 being written + 8 queued > 10
        running.append(item)
    assert (running.pending, running.dropped) == (10, 2)
    clock.advance(RETRY.delay(0))
    await sink.until(lambda: sink.items[:4] == [0, 1, 2, 3])
    await running.close()
    assert sink.items == [0, 1, 2, 3, 6, 7, 8, 9, 10, 11]  # 4 and 5 were the oldest queued
    assert (running.flushed, running.dropped) == (10, 2)


async def test_close_flushes_what_remains_then_drops_late_appends(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    for item in range(7):
        running.append(item)
    await running.close()  # no clock advance: close does not wait for the window
    assert sink.items == list(range(7)) and running.pending == 0
    running.append(99)
    assert (running.dropped, sink.items[-1]) == (1, 6)


async def test_close_gives_up_on_a_store_that_keeps_failing(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    sink.fail = 1_000
    for item in range(6):
        running.append(item)
    await clock.until(lambda: sink.calls == 1 and clock.sleeping())  # waiting to retry
    closing = asyncio.create_task(running.close())
    for _ in range(10):  # each failed attempt sleeps its backoff on the fake clock
        sleeping = asyncio.ensure_future(clock.until(clock.sleeping))
        await asyncio.wait((closing, sleeping), return_when=asyncio.FIRST_COMPLETED)
        sleeping.cancel()
        if closing.done():
            break
        clock.advance(RETRY.cap_s)
    assert closing.done()
    await closing
    assert sink.calls == 1 + 3  # the failure before close, then close_attempts
    assert sink.batches == [] and running.dropped == 6 and running.pending == 0


async def test_close_without_run_flushes_directly(sink: Sink, clock: FakeClock) -> None:
    journal = make(sink, clock)
    for item in range(5):
        journal.append(item)
    await journal.close()
    assert sink.batches == [[0, 1, 2, 3], [4]]
    await journal.close()  # twice is harmless
    assert journal.batches == 2


async def test_an_idle_journal_sleeps_on_nothing(
    running: Journal[int], sink: Sink, clock: FakeClock
) -> None:
    running.append(1)
    await clock.until(clock.sleeping)
    clock.advance(INTERVAL)
    await sink.until(lambda: sink.batches == [[1]])
    await asyncio.sleep(0)
    assert not clock.sleeping()  # waiting for the next item, not polling a timer


@pytest.mark.parametrize(
    "kwargs", [{"max_batch": 0}, {"max_batch": 8, "max_pending": 4}, {"close_attempts": 0}]
)
def test_invalid_settings_are_refused(sink: Sink, clock: FakeClock, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        make(sink, clock, **kwargs)
