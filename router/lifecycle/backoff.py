"""The polling schedule for executions without a callback.

The gateway asks an asynchronous executor ``GET {execution URL}/{execution}``
``base_s`` after the start, then waits twice as long after each answer that is
still ``Running``, never more than ``cap_s``: with the defaults 0.1 s, 0.2 s,
0.4 s ... 25.6 s, then every 30 s. An execution that runs ``D`` seconds so
gets about ``log2(D / 0.1)`` polls while it is short and one more every 30 s
once it is long (:func:`polls_for` counts them exactly, for the bench report).

Jitter spreads the polls of executions started together: with ``jitter`` j
each delay is drawn uniformly from ``[(1 - j) d, d]``, so it never exceeds the
cap and the schedule only gets denser. The random source is injected (a seeded
``random.Random`` in tests and bench), never the module's global one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_DOUBLINGS = 64  # 2**64 times any positive base is past any cap that matters


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.1
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.0  # 0: exact; 0.2: each delay drawn from [0.8 d, d]

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before poll number ``attempt`` (0 is the first poll)."""
        if attempt < 0:
            raise ValueError("attempt must be 0 or more")
        d = self.cap_s
        if attempt < _MAX_DOUBLINGS:
            d = min(self.base_s * self.factor**attempt, self.cap_s)
        if self.jitter and rng is not None:
            d -= d * self.jitter * rng.random()
        return d


DEFAULT = Backoff()


def next_delay(attempt: int, rng: random.Random | None = None, backoff: Backoff = DEFAULT) -> float:
    """Seconds before poll number ``attempt`` under ``backoff`` (the default schedule)."""
    return backoff.delay(attempt, rng)


def cap_attempt(backoff: Backoff = DEFAULT) -> int:
    """The first poll number whose delay is the cap (with callbacks, the safety poll's)."""
    attempt = 0
    while attempt < _MAX_DOUBLINGS and backoff.delay(attempt) < backoff.cap_s:
        attempt += 1
    return attempt


def polls_for(duration_s: float, backoff: Backoff = DEFAULT) -> int:
    """How many polls an execution that ends ``duration_s`` after its start gets.

    Counts every ``GET`` up to and including the first one at or after the end
    (the one that sees the final status), on the schedule without jitter and
    with answers taking no time. An execution that is final in its start reply
    (``duration_s`` <= 0) gets none.
    """
    if duration_s <= 0:
        return 0
    elapsed, polls = 0.0, 0
    # Geometric phase: at most _MAX_DOUBLINGS polls before the delay reaches the cap.
    while polls < _MAX_DOUBLINGS:
        d = backoff.delay(polls)
        if d >= backoff.cap_s:
            break
        elapsed += d
        polls += 1
        if elapsed >= duration_s:
            return polls
    # Capped phase: every cap_s, counted with a division instead of a loop.
    remaining = duration_s - elapsed
    whole = int(remaining // backoff.cap_s)
    if whole * backoff.cap_s < remaining:
        whole += 1
    return polls + whole
