"""Per-access-key rate limiting: a token bucket kept in the store.

Each access key has a bucket of ``burst`` tokens refilled at ``rate`` tokens
per second; a request takes one token or is refused with the time until one
is available. On Redis the bucket lives in one key updated by a Lua script
with the server's clock, so the limit holds across every replica; on the
memory store it lives in the process.

If the store cannot be reached, :meth:`RateLimiter.check` raises
``Unavailable``; the verifier bounds the call and decides without the store
(:mod:`router.auth.guard`): a rate limit must not turn a Redis outage into an
API outage, and executions through cached aliases must keep routing.
"""

from __future__ import annotations

from router.errors import Throttled
from router.store.base import Store
from router.store.bucket import Bucket, take

__all__ = ["BUCKET_SCOPE", "Bucket", "RateLimiter", "take"]

BUCKET_SCOPE = "rate"


class RateLimiter:
    def __init__(self, store: Store, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.store = store
        self.rate = rate
        self.burst = burst

    async def check(self, access_key_id: str) -> None:
        """Raise :class:`Throttled` when this key is over its rate (``Unavailable`` when
        the store cannot say)."""
        wait = await self.store.take_token(f"{BUCKET_SCOPE}:{access_key_id}", self.rate, self.burst)
        if wait > 0:
            raise Throttled(
                f"access key {access_key_id} is over its rate of {self.rate:g} requests/s",
                retry_after_s=wait,
            )
