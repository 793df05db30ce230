"""A batched journal: writes leave the request path and reach the store in batches.

The request path calls :meth:`Journal.append`, which only appends to a deque
(no await, no I/O, O(1)). A background task, :meth:`Journal.run`, owned by the
app, hands the items to ``flush`` (one pipelined store write per batch):

* ``interval_s`` after the first item of a batch arrived, or at once when
  ``max_batch`` items are queued, whichever comes first; a busy journal so
  writes full batches back to back, an idle one wakes no timer at all;
* a batch whose flush raises is kept and flushed again after a backoff
  (``retry``), in order, before anything queued after it; the request path
  never waits for it;
* at most ``max_pending`` items are held (queued plus the batch being
  written). Beyond that, :meth:`append` drops the oldest queued item and
  counts it in ``dropped``: while the store is down memory stays bounded, and
  the newest records, those a caller is most likely to ask about, survive;
* :meth:`close` flushes what remains (trying a failing flush at most
  ``close_attempts`` more times, then dropping and counting the rest) and
  returns when done; items appended after it returned are dropped and counted.

**What a crash loses.** A process that dies without :meth:`close` (SIGKILL,
OOM) loses what was appended and not yet flushed: with a reachable store, at
most the items of one flush window (``interval_s`` plus one flush); while the
store is failing, up to ``max_pending`` items. ``flush`` must therefore be
idempotent per item: a batch whose flush failed after it was (partly) applied
is sent again. It must also bound its own time (the Redis client's socket
timeouts do): :meth:`close` waits for the flush in progress.

Counters for metrics: ``flushed`` (items written), ``batches``, ``failures``
(flush calls that raised) and ``dropped``. Cancelling :meth:`run` instead of
calling :meth:`close` loses the pending items; the app must call close().
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from router.lifecycle.backoff import Backoff

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger("flow_router.journal")

RETRY = Backoff(base_s=0.05, cap_s=5.0, jitter=0.2)


class Journal(Generic[T]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[None]],
        *,
        max_batch: int = 512,
        interval_s: float = 0.005,
        max_pending: int = 100_000,
        retry: Backoff = RETRY,
        close_attempts: int = 3,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_pending < max_batch:
            raise ValueError("max_pending must be at least max_batch")
        if interval_s < 0:
            raise ValueError("interval_s must not be negative")
        if close_attempts < 1:
            raise ValueError("close_attempts must be at least 1")
        self._flush = flush
        self.max_batch = max_batch
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._retry = retry
        self._close_attempts = close_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._queue: deque[T] = deque()
        self._writing = 0  # items in the batch being flushed
        self._wake = asyncio.Event()  # the queue is not empty (or closing)
        self._full = asyncio.Event()  # max_batch items are queued (or closing)
        self._closing_event = asyncio.Event()
        self._closing = False
        self._closed = False
        self._running = False
        self._done = asyncio.Event()
        self.flushed = 0
        self.batches = 0
        self.failures = 0
        self.dropped = 0
        self.appended = 0
        self._progress = asyncio.Event()  # set after every batch written or given up

    @property
    def pending(self) -> int:
        """Items appended and not yet flushed (queued plus the batch being written)."""
        return len(self._queue) + self._writing

    def append(self, item: T) -> None:
        """Queue one item; never waits. Drops the oldest queued one beyond max_pending."""
        if self._closed:
            self.dropped += 1
            return
        queue = self._queue
        queue.append(item)
        self.appended += 1
        if len(queue) + self._writing > self.max_pending:
            queue.popleft()
            self.dropped += 1
        self._wake.set()
        if len(queue) >= self.max_batch:
            self._full.set()

    async def run(self) -> None:
        """Flush until :meth:`close`; run it as the app's background task."""
        if self._running:
            raise RuntimeError("Journal.run() is already running")
        self._running = True
        self._done.clear()
        try:
            while not self._closing:
                await self._wake.wait()
                if not self._queue and not self._closing:
                    self._wake.clear()  # never spin on an empty queue
                    continue
                if not self._closing and len(self._queue) < self.max_batch:
                    await self._race(self._full, self.interval_s)
                # Only what is queued now: items that arrive during the flush wait for
                # the next window, so a busy journal still writes few, large batches.
                await self._drain(len(self._queue))
            await self._drain(None)
        finally:
            self._running = False
            self._done.set()

    async def close(self) -> None:
        """Flush what remains and stop :meth:`run`; later appends are dropped."""
        self._closing = True
        self._closing_event.set()
        self._wake.set()
        self._full.set()
        if self._running:
            await self._done.wait()
        else:
            await self._drain(None)
        self._closed = True

    async def settled(self, timeout_s: float = 0.5) -> None:
        """Return once everything appended before the call is flushed (or dropped), at
        most ``timeout_s`` later: read-your-writes for a caller that lists right after
        it started something. Asks for the flush now rather than at the window's end."""
        target = self.appended
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.flushed + self.dropped < target and self._running:
            self._progress.clear()
            self._full.set()
            self._wake.set()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - loop.time())
            except TimeoutError:
                return

    # ------------------------------------------------------------------------------------
    async def _drain(self, limit: int | None) -> None:
        """Flush ``limit`` queued items (or everything, also what arrives meanwhile)."""
        queue = self._queue
        left: float = math.inf if limit is None else limit
        while queue and left > 0:
            size = int(min(self.max_batch, len(queue), left))
            left -= size
            batch = [queue.popleft() for _ in range(size)]
            if len(queue) < self.max_batch:
                self._full.clear()
            if not queue and not self._closing:
                self._wake.clear()
            self._writing = len(batch)
            try:
                written = await self._write(batch)
            finally:
                self._writing = 0
            if not written:  # closing, and the store kept failing: give the rest up
                self.dropped += len(batch) + len(queue)
                log.error(
                    "journal closed with %d items it could not flush",
                    len(batch) + len(queue),
                )
                queue.clear()
                self._progress.set()
                return

    async def _write(self, batch: list[T]) -> bool:
        """Flush one batch, retrying while it fails; False: gave up while closing."""
        attempt = 0
        failed_closing = 0
        while True:
            try:
                await self._flush(batch)
            except Exception as e:  # any failure of the injected I/O: keep the batch, retry
                self.failures += 1
                if self._closing:
                    failed_closing += 1
                    if failed_closing >= self._close_attempts:
                        return False
                # One line, no traceback: a store outage must not flood the log.
                log.warning(
                    "journal flush of %d items failed (attempt %d): %s; retrying",
                    len(batch), attempt + 1, e or type(e).__name__,
                )  # fmt: skip
                delay = self._retry.delay(attempt, self._rng)
                attempt += 1
                if self._closing:
                    await self._sleep(delay)
                else:
                    await self._race(self._closing_event, delay)
                continue
            self.flushed += len(batch)
            self.batches += 1
            self._progress.set()
            return True

    async def _race(self, event: asyncio.Event, seconds: float) -> None:
        """Wait until ``event`` is set or ``seconds`` have passed on the injected clock."""
        if event.is_set():
            return
        waiter = asyncio.ensure_future(event.wait())
        timer = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
