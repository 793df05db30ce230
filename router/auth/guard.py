"""Bounded store calls on the signed request path: a short timeout, a back-off, a decision.

A signed request asks the store twice at most: to record its nonce (CloudFlow,
on Redis) and to take a token from its access key's bucket (``--rate-limit``).
Neither may hold a request for the store's own socket timeout when Redis hangs,
or an outage of the store becomes an outage of executions that cached routing
could serve without it. So each call gets ``--auth-store-timeout`` seconds;
when it fails or runs out of time, the store is not asked again for
:data:`RETRY_S` seconds (by either check: they share one :class:`Backoff`),
and every request meanwhile is decided without it, as
``--auth-store-failure`` says:

* ``open`` (the default): let the request in. Its rate limit is not enforced;
  its nonce is still refused if this process has seen it (the local
  :class:`~router.auth.NonceCache`), but a replay sent to another worker or
  replica is not caught;
* ``closed``: refuse it with the dialect's ``Unavailable`` error (CloudFlow
  ``503 ServiceUnavailable``), which clients retry.

Each request decided without the store counts in
``flow_router_auth_store_degraded_total{check="nonce"|"ratelimit",
decision="allowed"|"refused"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from prometheus_client import Counter

from router.errors import Unavailable

log = logging.getLogger("flow_router.auth")

T = TypeVar("T")
Check = Literal["nonce", "ratelimit"]
Failure = Literal["open", "closed"]
FAILURES: tuple[Failure, ...] = ("open", "closed")

DEFAULT_TIMEOUT_S = 0.25  # Redis answers in about a millisecond; a hung one never does
DEFAULT_FAILURE: Failure = "open"
RETRY_S = 1.0  # after a failure, how long requests are decided without the store

_WHAT = {"nonce": "replay protection across processes", "ratelimit": "rate limits"}


@dataclass
class Backoff:
    """Until when (monotonic seconds) the store is not asked; shared by the checks."""

    until: float = 0.0


class StoreGuard:
    """One kind of store call (``check``) with its timeout, back-off and decision."""

    def __init__(
        self,
        check: Check,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        failure: Failure = DEFAULT_FAILURE,
        degraded: Counter | None = None,
        retry_s: float = RETRY_S,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0 or retry_s < 0:
            raise ValueError("a store guard needs a positive timeout and a back-off of 0 or more")
        if failure not in FAILURES:
            raise ValueError(f"failure must be one of {', '.join(FAILURES)}")
        self.check = check
        self.timeout_s = timeout_s
        self.fail_open = failure == "open"
        self.retry_s = retry_s
        self._clock = clock
        self.backoff = backoff if backoff is not None else Backoff()
        decision = "allowed" if self.fail_open else "refused"
        self._degraded = degraded.labels(check, decision) if degraded is not None else None

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T | None:
        """``attempt()``'s result; ``None`` when decided without the store and let in.

        Raises :class:`~router.errors.Unavailable` when decided without the store
        and refused; whatever else ``attempt`` raises (``Throttled``) goes through.
        """
        if self._clock() < self.backoff.until:
            self._without_store()
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                return await attempt()
        except (Unavailable, TimeoutError) as e:
            self.backoff.until = self._clock() + self.retry_s
            late = f"no answer in {self.timeout_s:g}s"
            reason = e.message if isinstance(e, Unavailable) else late
            log.warning(
                "the store failed the %s check (%s): for %gs signed requests are %s",
                self.check,
                reason,
                self.retry_s,
                f"let in without {_WHAT[self.check]}" if self.fail_open else "refused",
            )
            self._without_store()
            return None

    def _without_store(self) -> None:
        """Count the decision; raise it if it is a refusal."""
        if self._degraded is not None:
            self._degraded.inc()
        if not self.fail_open:
            raise Unavailable(f"the store needed for {_WHAT[self.check]} is unavailable")
