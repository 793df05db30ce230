"""Per-version guards on the executor hop: an in-flight limit and a circuit breaker.

Each (flow id, version) gets a guard of its own, so a slow or broken version
cannot take anything away from the others:

* **In-flight limit.** At most ``max_inflight`` executions of one version are
  in flight to its executor from one gateway process. Another one waits (first
  come, first served) until one of them finishes, but never beyond its own
  deadline (``--timeout`` counted from when it arrived): then it fails with
  :class:`~router.errors.ExecutorOverloaded`, a kind of ExecutorTimeout, and
  was never sent. The limit also bounds the connections, and so the file
  descriptors, that a slow version can hold open: the HTTP client shares no
  pool between requests in flight, only idle connections per host.
* **Circuit breaker.** After ``breaker_failures`` consecutive failed
  executions (connection refused or lost, timeout, a 3xx or 5xx answer, a
  reply that is not a JSON object) the circuit opens: executions fail at once
  with :class:`~router.errors.CircuitOpen`, a kind of ExecutorUnreachable, and
  nothing is sent. ``breaker_reset_s`` later one execution goes through as a
  probe (half-open) while the others still fail fast; if it succeeds the
  circuit closes, if it fails the circuit stays open for another
  ``breaker_reset_s``. A 4xx answer means the executor is up (it refused that
  one request), so it counts as a success, and so does the late success of an
  execution sent before the circuit opened.

The state lives in one process: each worker keeps its own, and the
``flow_router_circuit_open`` gauge reports 1 if any worker's circuit is open.
A rejected execution never reaches the executor, so the caller may retry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from router.errors import CircuitOpen, ExecutorOverloaded
from router.metrics import Metrics

log = logging.getLogger("flow_router.breaker")

_MAX_GUARDS = 10_000  # idle guards are dropped beyond this many (flows and versions come and go)


@dataclass(frozen=True, slots=True)
class VersionLimits:
    max_inflight: int = 256  # per (flow, version) and process; 0: no limit
    breaker_failures: int = 20  # consecutive failures that open the circuit; 0: no breaker
    breaker_reset_s: float = 10.0  # how long an open circuit waits before one probe

    def __post_init__(self) -> None:
        if self.max_inflight < 0:
            raise ValueError("--max-inflight-per-version must be 0 (no limit) or more")
        if self.breaker_failures < 0:
            raise ValueError("--breaker-failures must be 0 (no breaker) or more")
        if self.breaker_reset_s <= 0:
            raise ValueError("--breaker-reset must be positive")


class Guard:
    """The state of one (flow, version)."""

    __slots__ = ("failures", "flow", "inflight", "opened_at", "probing", "version", "waiters")

    def __init__(self, flow: str, version: str) -> None:
        self.flow = flow  # the name, for metric labels and messages
        self.version = version
        self.inflight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.failures = 0  # consecutive
        self.opened_at: float | None = None  # loop time the circuit opened; None: closed
        self.probing = False  # the half-open probe is in flight

    @property
    def idle(self) -> bool:
        return not self.inflight and not self.waiters and not self.failures


class VersionGuards:
    """The guards of one process, keyed by (flow id, version)."""

    def __init__(self, limits: VersionLimits, metrics: Metrics | None = None) -> None:
        self.limits = limits
        self._metrics = metrics
        self._guards: dict[tuple[str, str], Guard] = {}

    def guard(self, flow_id: str, flow: str, version: str) -> Guard:
        key = (flow_id, version)
        guard = self._guards.get(key)
        if guard is None:
            if len(self._guards) >= _MAX_GUARDS:
                self._guards = {k: g for k, g in self._guards.items() if not g.idle}
            guard = self._guards[key] = Guard(flow, version)
        return guard

    def try_enter(self, guard: Guard, now: float) -> bool | None:
        """Take a slot if one is free: ``True`` for the half-open probe, ``False`` for an
        ordinary execution; ``None`` when it must :meth:`wait`. Raises CircuitOpen."""
        probe = False
        if guard.opened_at is not None:
            probe = self._admit(guard, now)
        limit = self.limits.max_inflight
        if limit and (guard.inflight >= limit or guard.waiters):
            if probe:
                guard.probing = False  # it will be admitted again after waiting
            return None
        guard.inflight += 1
        return probe

    async def wait(self, guard: Guard, deadline: float) -> bool:
        """Wait for a slot until ``deadline`` (loop time); raises ExecutorOverloaded."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        guard.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self._free_slot(guard)  # handed over just as the deadline passed
            raise self._overloaded(guard) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._free_slot(guard)
            raise
        finally:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):
                    guard.waiters.remove(waiter)
        if loop.time() >= deadline:  # handed over too late to be worth sending
            self._free_slot(guard)
            raise self._overloaded(guard)
        # The slot was handed over; the circuit may have opened meanwhile.
        if guard.opened_at is not None:
            try:
                return self._admit(guard, loop.time())
            except CircuitOpen:
                self._free_slot(guard)
                raise
        return False

    def leave(self, guard: Guard, probe: bool, healthy: bool | None) -> None:
        """Give the slot back. ``healthy``: the executor answered (True), failed (False),
        or nothing is known (None: the call was cancelled)."""
        self._free_slot(guard)
        if probe:
            guard.probing = False
        if healthy:
            guard.failures = 0
            if guard.opened_at is not None:
                guard.opened_at = None
                self._set_open(guard, False)
                log.info("circuit of flow %s version %s closed", guard.flow, guard.version)
        elif healthy is not None and self.limits.breaker_failures:
            guard.failures += 1
            if guard.failures >= self.limits.breaker_failures and (
                guard.opened_at is None or probe
            ):
                was_open = guard.opened_at is not None
                guard.opened_at = asyncio.get_running_loop().time()
                if not was_open:
                    self._set_open(guard, True)
                log.warning(
                    "circuit of flow %s version %s open after %d consecutive failures; "
                    "one probe in %gs",
                    guard.flow, guard.version, guard.failures, self.limits.breaker_reset_s,
                )  # fmt: skip

    # ----------------------------------------------------------------------------------
    def _admit(self, guard: Guard, now: float) -> bool:
        """An open circuit lets one probe through once the reset time has passed."""
        assert guard.opened_at is not None
        retry_in = guard.opened_at + self.limits.breaker_reset_s - now
        if retry_in > 0 or guard.probing:
            self._count(guard, "circuit_open")
            raise CircuitOpen(
                f"version {guard.version} of flow {guard.flow} failed {guard.failures} times "
                f"in a row; its circuit is open and the execution was not sent "
                f"(next probe in {max(retry_in, 0):.1f}s)",
                guard.version,
            )
        guard.probing = True
        return True

    def _overloaded(self, guard: Guard) -> ExecutorOverloaded:
        self._count(guard, "overloaded")
        return ExecutorOverloaded(
            f"version {guard.version} of flow {guard.flow} had "
            f"{self.limits.max_inflight} executions in flight (--max-inflight-per-version) "
            "until the deadline; the execution was not sent",
            guard.version,
        )

    def _free_slot(self, guard: Guard) -> None:
        waiters = guard.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the longest waiting
                return
        guard.inflight -= 1

    def _count(self, guard: Guard, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.executor_rejected.labels(guard.flow, guard.version, reason).inc()

    def _set_open(self, guard: Guard, is_open: bool) -> None:
        if self._metrics is not None:
            self._metrics.circuit_open.labels(guard.flow, guard.version).set(int(is_open))
