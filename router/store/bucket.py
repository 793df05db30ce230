"""Token buckets: the arithmetic every store keeps rate-limit buckets with.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per
second; taking a token either succeeds or says how long until one is there.
The memory store runs :func:`take` in the process; the Redis store runs the
same arithmetic in Lua (``router/store/redis_scripts.py``) with the server's
clock. The rate limiter (:mod:`router.ratelimit`) uses the store; the store
never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at: float  # seconds, the clock the bucket was last updated with


def take(bucket: Bucket | None, now: float, rate: float, burst: int) -> tuple[Bucket, float]:
    """Take one token. Returns the new bucket and the wait (0 when allowed).

    The same arithmetic runs in Lua on Redis (``router/store/redis_scripts.py``).
    """
    if bucket is None:
        tokens = float(burst)
    else:
        tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.at) * rate)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate
