"""The poller: one background task per replica, sharing the store's poll schedule.

Each round claims up to :data:`CLAIM_LIMIT` due executions
(``Store.claim_polls``, leased for ``lease_ms``: the app gives ``--timeout`` plus
5 s, longer than one describe can take; a replica that dies holding them
orphans nothing, they come due again for the others after the lease), describes each one
at its executor, and applies the pure decision of :mod:`router.lifecycle.poll`:
the transition (through ``Executions.finish``, counted only if this write made
it), the next poll, or neither. With nothing due it waits :data:`IDLE_S`, doubling
up to :data:`IDLE_MAX_S` while nothing comes due, so an idle replica costs the
store 2 claim round trips a second (on Redis, each a pipeline of 16 ZCOUNTs, one
per schedule shard: 32 commands/s). A poll this replica schedules itself (the
first poll of an execution it started) wakes it at once, and the wait starts
again from :data:`IDLE_S`, so polls of a busy replica are never late by more than
that; only polls scheduled by another replica can be up to :data:`IDLE_MAX_S`
late, and only on an otherwise idle replica.
"""

from __future__ import annotations

import asyncio
import logging

from router.errors import ExecutionNotFound, ExecutorError, NotFound, RouterError
from router.lifecycle import poll
from router.lifecycle.driver import Executions, bounded
from router.lifecycle.journal import Sleep
from router.lifecycle.record import ExecutionRecord
from router.lifecycle.replies import reported_stop_of

log = logging.getLogger("flow_router.poller")

CLAIM_LIMIT = 64
LEASE_MS = 30_000
IDLE_S = 0.05
IDLE_MAX_S = 0.5
FAILURE_S = 1.0  # after the store failed to answer a claim
# A journal flush schedules the first poll before it writes the record: polls of a
# record not found are tried this many times (0.1 s, 0.2 s, 0.4 s apart) before dropped.
MISSING_RETRIES = 3


class Poller:
    def __init__(
        self, executions: Executions, lease_ms: int = LEASE_MS, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.executions = executions
        self.lease_ms = lease_ms
        self._sleep = sleep
        self.polls = 0  # describe calls made (for tests and the bench)

    async def run(self) -> None:
        """Poll until cancelled."""
        executions = self.executions
        failing = False
        idle = IDLE_S
        while True:
            try:
                claimed = await executions.store.claim_polls(
                    executions.clock(), CLAIM_LIMIT, self.lease_ms
                )
            except RouterError as e:
                # One line per failure streak, no traceback: the store logs the details.
                if not failing:
                    log.warning("could not claim due polls (%s); retrying every %gs", e, FAILURE_S)
                failing = True
                await self._sleep(FAILURE_S)
                continue
            if failing:
                log.info("claiming due polls works again")
            failing = False
            if not claimed:
                # back to the shortest wait once this replica has scheduled a poll
                idle = IDLE_S if await self._idle(idle) else min(idle * 2, IDLE_MAX_S)
                continue
            idle = IDLE_S
            await bounded((self._safe(*entry) for entry in claimed), CLAIM_LIMIT)

    async def _idle(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if this replica schedules a poll; true if it did."""
        scheduled = self.executions.scheduled
        if not scheduled.is_set():
            waiters = [
                asyncio.ensure_future(scheduled.wait()),
                asyncio.ensure_future(self._sleep(seconds)),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        woke = scheduled.is_set()
        scheduled.clear()
        return woke

    async def _safe(self, flow_id: str, name: str, attempt: int) -> None:
        try:
            await self.poll_one(flow_id, name, attempt)
        except RouterError as e:  # the store failed: the lease brings the entry back
            log.warning("poll of execution %s failed: %s", name, e)

    async def poll_one(self, flow_id: str, name: str, attempt: int) -> None:
        """Describe one claimed execution and act on the answer."""
        executions = self.executions
        store = executions.store
        try:
            record = await store.get_execution(flow_id, name)
            flow_name = record.flow or (await store.get_flow_by_id(flow_id)).name
        except ExecutionNotFound:
            if attempt < MISSING_RETRIES:  # its journal flush may not have written it yet
                due = executions.clock() + round(executions.backoff.delay(attempt + 1) * 1000)
                await store.schedule_poll(flow_id, name, due, attempt + 1)
            else:  # expired, or lost with a crashed replica's journal window
                await store.cancel_poll(flow_id, name)
            return
        except NotFound:  # its flow was deleted
            await store.cancel_poll(flow_id, name)
            return
        if record.is_final:
            await store.cancel_poll(flow_id, name)
            return
        url = executions.upstream.url(flow_name, flow_id, record.version, record.alias)
        self.polls += 1
        try:
            reply = await executions.forwarder.describe(url, name, record.version)
        except ExecutionNotFound as e:
            step = self._failed(record, "lost", e.message, attempt)
        except ExecutorError as e:
            step = self._failed(record, "unreachable", e.message, attempt)
        else:
            step = poll.after_reply(
                record, reply.status, reply.output, reply.error, reply.cause,
                attempt=attempt, now_ms=executions.clock(), retention_ms=executions.retention_ms,
                backoff=executions.backoff, rng=executions.rng,
                stopped_at=reported_stop_of(reply.body, name),
            )  # fmt: skip
        await self._apply(record, step)

    def _failed(
        self, record: ExecutionRecord, failure: poll.Failure, message: str, attempt: int
    ) -> poll.Step:
        executions = self.executions
        return poll.after_failure(
            record, failure, message,
            attempt=attempt, now_ms=executions.clock(), retention_ms=executions.retention_ms,
            backoff=executions.backoff, rng=executions.rng,
        )  # fmt: skip

    async def _apply(self, record: ExecutionRecord, step: poll.Step) -> None:
        executions = self.executions
        done = step.finished
        if done is not None:
            assert done.stopped_at is not None
            await executions.finish(
                done.flow_id, done.name, done.status, done.output, done.error, done.cause,
                done.stopped_at,
            )  # fmt: skip
        elif step.next_due_ms is not None:
            await executions.store.schedule_poll(
                record.flow_id, record.name, step.next_due_ms, step.attempt
            )
        else:
            log.info("%s", step.reason)
            await executions.store.cancel_poll(record.flow_id, record.name)
