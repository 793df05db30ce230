"""The execution lifecycle driver: starts, transitions, waits (what ``Gateway`` delegates to).

Every execution gets a record (:mod:`router.lifecycle.record`):

* **Unnamed** (the gateway makes the name up, :mod:`router.execution_names`):
  the record goes to the :class:`~router.lifecycle.journal.Journal` with the
  start reply's status, so the request path awaits no store call of its own.
  A final one is counted here, at once: nobody else can transition it.
* **Caller-named**: the name is claimed in the store (Running) before the
  executor is called, since names are unique per flow; a final start reply is
  then the record's transition (:meth:`Executions.finish`).

A Running record is put in the store's shared poll schedule (poll 0 after
0.1 s, :mod:`router.lifecycle.poll`); with callbacks on, only a safety poll at
the backoff cap (30 s), cancelled when the callback finishes it first. A start
the executor refused or never answered is recorded ``Failed`` with the error's
class as ``error`` and its message as ``cause``.

Every transition goes through :meth:`Executions.finish`: the store's atomic
write decides who made it, and only that caller counts it in
``flow_router_execution_results_total`` and ``_run_seconds``, and wakes the
local waiters (:meth:`Executions.wait_final`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from router import errors, model
from router.errors import ExecutionNotFound, ExecutionWaitTimeout, ExecutorError, RouterError
from router.execution_names import generated, parse_generated
from router.forward import ExecutionFinished, Forwarder, UpstreamTemplate
from router.lifecycle import poll
from router.lifecycle.backoff import DEFAULT, Backoff, cap_attempt
from router.lifecycle.callback import Callbacks
from router.lifecycle.executions import Execution, ExecutionQuery, scan
from router.lifecycle.journal import Journal
from router.lifecycle.record import ExecutionRecord
from router.lifecycle.replies import record_from_reply
from router.lifecycle.status import Status
from router.metrics import Metrics
from router.model import Flow
from router.store.base import Page, PollEntry, Store

log = logging.getLogger("flow_router.executions")

JOURNAL_INTERVAL_S = 0.01  # a SIGKILL loses at most the records of one window
JOURNAL_BATCH = 256
WAIT_FIRST_S = 0.1  # wait_final re-reads the record after this, doubling...
WAIT_CAP_S = 1.0  # ...up to this


class Executions:
    """Owned by the Gateway; ``journal`` and the poller are run by the app."""

    def __init__(
        self,
        store: Store,
        forwarder: Forwarder,
        metrics: Metrics,
        upstream: UpstreamTemplate,
        *,
        retention_s: int,
        callbacks: Callbacks | None = None,
        backoff: Backoff = DEFAULT,
        rng: random.Random | None = None,
        clock: Callable[[], int] = model.now_ms,
    ) -> None:
        self.store = store
        self.forwarder = forwarder
        self.metrics = metrics
        self.upstream = upstream
        self.retention_s = retention_s
        self.callbacks = callbacks
        self.scheduled = asyncio.Event()  # set when this replica schedules a poll
        self.backoff = backoff
        self.rng = rng or random.Random()
        self.clock = clock
        self.journal: Journal[ExecutionRecord] = Journal(
            self._flush, max_batch=JOURNAL_BATCH, interval_s=JOURNAL_INTERVAL_S
        )
        self._waiters: dict[tuple[str, str], list[asyncio.Event]] = {}
        self._safety = cap_attempt(backoff)
        self._background: set[asyncio.Task[None]] = set()

    @property
    def retention_ms(self) -> int:
        return self.retention_s * 1000

    # -- start ------------------------------------------------------------------------------
    async def start(
        self,
        flow: Flow,
        version: str,
        alias: str,
        name: str | None,
        input: Any,
        revision: int = 0,
        *,
        unnamed: bool = False,
    ) -> Execution:
        """Forward one execution to ``version``'s executor, record and count it.

        ``unnamed``: ``name`` is one :func:`~router.execution_names.generated` made
        (the caller chose none); no name at all gets one made here.
        """
        started = self.clock()
        unnamed = unnamed or not name
        if not name:
            name = generated(version, alias)
        elif not unnamed:
            model.validate_execution_name(name)
            claim = ExecutionRecord(
                flow.id, flow.name, name, version, alias, started, input=input, revision=revision
            )
            await self.store.claim_execution(claim, self.retention_s)
        payload = {
            "flow": flow.name,
            "flowId": flow.id,
            "version": version,
            "alias": alias,
            "execution": name,
            "input": input,
        }
        if self.callbacks is not None:
            payload["callback"] = self.callbacks.url(flow.id, name)
        url = self.upstream.url(flow.name, flow.id, version, alias)
        path = self.metrics.path(flow.name, alias, version)
        t0 = time.perf_counter()
        try:
            reply = await self.forwarder.execute(url, payload, version)
        except asyncio.CancelledError:  # the request was cancelled (shutdown past the drain)
            running = ExecutionRecord(
                flow.id, flow.name, name, version, alias, started, input=input,
                generated=unnamed, revision=revision,
            )  # fmt: skip
            self._orphaned(running, unnamed)
            raise
        except ExecutorError as e:
            path.duration.observe(time.perf_counter() - t0)
            path.failed.inc()
            record = ExecutionRecord(
                flow.id, flow.name, name, version, alias, started,
                Status.FAILED, max(self.clock(), started), input, None,
                type(e).__name__, e.message, unnamed, revision,
            )  # fmt: skip
            try:
                await self._started(record, unnamed)
            except RouterError as store:  # the store failed too: the caller learns of the executor
                log.warning("could not record the failed start of %s: %s", name, store)
            raise
        path.duration.observe(time.perf_counter() - t0)
        path.ok.inc()
        status = reply.status
        record = ExecutionRecord(
            flow.id, flow.name, name, version, alias, started,
            status, max(self.clock(), started) if status.is_final else None, input,
            reply.output, reply.error, reply.cause, unnamed, revision,
        )  # fmt: skip
        if unnamed:  # the hot path: no store call of its own
            self.journal.append(record)
            if record.stopped_at is not None:
                self._count(record)
            return Execution(flow, record)
        return Execution(flow, await self._started(record, unnamed))

    async def _started(self, record: ExecutionRecord, unnamed: bool) -> ExecutionRecord:
        """Persist what the start reply said; the record as the store will hold it."""
        if unnamed:
            self.journal.append(record)
            if record.stopped_at is not None:
                self._count(record)
            return record
        if record.stopped_at is None:
            await self._schedule_first(record)
            return record
        done = await self.finish(
            record.flow_id, record.name, record.status, record.output,
            record.error, record.cause, record.stopped_at, cancel=False,
        )  # fmt: skip
        return done or await self.store.get_execution(record.flow_id, record.name)

    def _orphaned(self, record: ExecutionRecord, unnamed: bool) -> None:
        """A start whose answer nobody awaits any more: the executor may be running it,
        so it is recorded Running and polled, and the poller learns how it ended."""
        if unnamed:
            self.journal.append(record)
            return
        task = asyncio.get_running_loop().create_task(self._schedule_first(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _schedule_first(self, record: ExecutionRecord) -> None:
        await self._schedule_firsts([record])

    async def _schedule_firsts(self, records: Sequence[ExecutionRecord]) -> None:
        """The first poll of each Running record (with callbacks: the safety poll)."""
        now = self.clock()
        entries: list[PollEntry] = []
        for record in records:
            if self.callbacks is not None:
                due = now + round(self.backoff.cap_s * 1000)
                entries.append((record.flow_id, record.name, due, self._safety))
                continue
            step = poll.first_poll(record, now, self.backoff, self.rng)
            assert step.next_due_ms is not None
            entries.append((record.flow_id, record.name, step.next_due_ms, step.attempt))
        await self.store.schedule_polls(entries)
        if self.callbacks is None:
            self.scheduled.set()

    async def _flush(self, batch: list[ExecutionRecord]) -> None:
        """The journal's flush: the first polls of the Running records, then the records.

        In that order, so a crash between the two leaves a poll without a record
        (the poller drops it after a few tries: see router/lifecycle/poller.py),
        never a Running record that nobody polls.
        """
        running = [r for r in batch if r.stopped_at is None]
        if running:
            await self._schedule_firsts(running)
        await self.store.put_executions(batch, self.retention_s)

    async def list(
        self, flow_id: str, query: ExecutionQuery, limit: int, token: str | None
    ) -> Page[ExecutionRecord]:
        """Newest first, what this process started a moment ago included: its journal
        is flushed first (for at most half a second)."""
        await self.journal.settled()
        return await scan(self.store, flow_id, query, limit, token)

    # -- transitions --------------------------------------------------------------------------
    async def finish(
        self,
        flow_id: str,
        name: str,
        status: Status,
        output: Any,
        error: str | None,
        cause: str | None,
        at: int | None = None,
        *,
        cancel: bool = True,
    ) -> ExecutionRecord | None:
        """The record's one transition; counted here only if this call made it.

        ``cancel``: also take the execution out of the poll schedule.
        """
        done = await self.store.finish_execution(
            flow_id, name, status, output, error, cause, self.clock() if at is None else at
        )
        if done is not None:
            self._count(done)
        self._wake(flow_id, name)
        if cancel:
            await self.store.cancel_poll(flow_id, name)
        return done

    def _count(self, record: ExecutionRecord) -> None:
        outcome = self.metrics.outcome(record.flow or record.flow_id, record.alias, record.version)
        outcome.result(record.status.value).inc()
        seconds = record.run_seconds
        if seconds is not None:
            outcome.run_seconds.observe(seconds)

    def _wake(self, flow_id: str, name: str) -> None:
        for event in self._waiters.get((flow_id, name), ()):
            event.set()

    # -- describe and stop ---------------------------------------------------------------
    async def lookup(self, flow: Flow, name: str) -> tuple[ExecutionRecord, bool]:
        """The record and True if the store holds it; for a generated name it lacks (a
        journal window lost in a crash, a v1 gateway's name), what the executor says."""
        try:
            return await self.store.get_execution(flow.id, name), True
        except ExecutionNotFound:
            parsed = parse_generated(flow.id, name)
            if parsed is None:
                raise
        url = self.upstream.url(flow.name, flow.id, parsed.version, parsed.alias)
        reply = await self.forwarder.describe(url, name, parsed.version)
        return record_from_reply(flow, parsed, reply, self.clock()), False

    async def describe(self, flow: Flow, name: str) -> Execution:
        """The record; while it is Running, its executor is asked and a final answer
        is the transition."""
        record, stored = await self.lookup(flow, name)
        if record.is_final or not stored:
            return Execution(flow, record)
        url = self.upstream.url(flow.name, flow.id, record.version, record.alias)
        try:
            reply = await self.forwarder.describe(url, name, record.version)
        except (ExecutorError, ExecutionNotFound):
            return Execution(flow, record)  # the poller decides what a failure means
        if not reply.status.is_final:
            return Execution(flow, record)
        done = await self.finish(
            flow.id, name, reply.status, reply.output, reply.error, reply.cause
        )
        return Execution(flow, done or await self.store.get_execution(flow.id, name))

    async def stop(self, flow: Flow, name: str, error: str | None, cause: str | None) -> Execution:
        """Forward the stop; the executor's answer (normally Aborted) is the transition.

        Raises ExecutionFinished (a Conflict) for an execution already final, the
        executor's 409 included (its final status is recorded first).
        """
        record, stored = await self.lookup(flow, name)
        if record.is_final:
            raise _finished(name, record.status)
        url = self.upstream.url(flow.name, flow.id, record.version, record.alias)
        try:
            reply = await self.forwarder.stop(url, name, record.version, error, cause)
        except ExecutionFinished as e:
            final = e.reply
            if final is None or not final.status.is_final:
                final = await self.forwarder.describe(url, name, record.version)
            if final.status.is_final and stored:
                await self.finish(
                    flow.id, name, final.status, final.output, final.error, final.cause
                )
            raise _finished(name, final.status) from None
        if not reply.status.is_final:  # the executor is stopping it: the poller sees the end
            return Execution(flow, record)
        if not stored:
            return Execution(flow, record_from_reply(flow, record, reply, self.clock()))
        done = await self.finish(
            flow.id, name, reply.status, reply.output, reply.error or error, reply.cause or cause
        )
        return Execution(flow, done or await self.store.get_execution(flow.id, name))

    async def wait_final(self, flow: Flow, name: str, version: str, timeout_s: float) -> Execution:
        """The execution once final: woken by a local finish, else by re-reading the
        record (0.1 s doubling to 1 s; how another replica's finish is learnt).
        Raises ExecutionWaitTimeout after ``timeout_s``."""
        key = (flow.id, name)
        event = asyncio.Event()
        self._waiters.setdefault(key, []).append(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = WAIT_FIRST_S
        try:
            while True:
                event.clear()
                try:
                    record = await self.store.get_execution(flow.id, name)
                except ExecutionNotFound:  # an unnamed one still in the journal
                    record = None
                if record is not None and record.is_final:
                    return Execution(flow, record)
                left = deadline - loop.time()
                if left <= 0:
                    raise ExecutionWaitTimeout(name, timeout_s, version)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(delay, left))
                delay = min(delay * 2, WAIT_CAP_S)
        finally:
            waiters = self._waiters[key]
            waiters.remove(event)
            if not waiters:
                del self._waiters[key]


async def bounded(calls: Iterable[Awaitable[None]], limit: int) -> None:
    """Await every one of ``calls``, at most ``limit`` in flight; raises the first error."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Awaitable[None]) -> None:
        async with semaphore:
            await call

    await asyncio.gather(*(one(c) for c in calls))


def _finished(name: str, status: Status) -> errors.ExecutionFinished:
    return errors.ExecutionFinished(name, f"execution {name} has already finished ({status.value})")
