"""Vose's alias method over integer weights: build once, sample in O(1).

The table is built in exact integer arithmetic. With ``n`` outcomes and total
weight ``W``, column ``c`` keeps ``cut[c]`` of its ``W`` units for outcome
``c`` and gives the remaining ``W - cut[c]`` units to ``alias[c]``. Drawing a
uniform integer ``x`` in ``[0, n*W)`` and reading column ``x // W`` therefore
returns outcome ``i`` with probability exactly ``w_i / W``
(:meth:`AliasTable.sample_int`, :func:`realized_probabilities`).

The hot path (:meth:`AliasTable.sample`) uses one ``random()`` float instead of
an integer draw, because ``random.randrange`` costs several times more. The
float path reads the same integer table through per-column float limits; its
deviation from the exact probabilities is below ``n * 2**-50`` per outcome,
which ``tests/test_sampler.py`` proves by computing the float path's exact
realized probabilities over all 2**53 possible ``random()`` values.

No I/O, no global state: a table is an immutable value.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from fractions import Fraction


class AliasTable:
    __slots__ = ("alias", "cut", "limit", "n", "total")

    n: int
    total: int
    cut: tuple[int, ...]
    alias: tuple[int, ...]
    limit: tuple[float, ...]

    def __init__(self, weights: Sequence[int]) -> None:
        n = len(weights)
        if n == 0:
            raise ValueError("an alias table needs at least one outcome")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights):
            raise ValueError("weights must be non-negative integers")
        total = sum(weights)
        if total <= 0:
            raise ValueError("at least one weight must be positive")

        # Column c holds `total` units; outcome i owns n*w_i units overall.
        scaled = [n * w for w in weights]
        cut = [total] * n
        alias = list(range(n))
        small = [i for i, s in enumerate(scaled) if s < total]
        large = [i for i, s in enumerate(scaled) if s >= total]
        while small and large:
            s = small.pop()
            big = large[-1]
            cut[s] = scaled[s]
            alias[s] = big
            scaled[big] -= total - scaled[s]
            if scaled[big] < total:
                large.pop()
                small.append(big)
        # In exact arithmetic whatever is left is exactly full (scaled == total),
        # so the defaults (keep everything, alias to self) are already right.
        assert all(scaled[i] == total for i in small + large)

        self.n = n
        self.total = total
        self.cut = tuple(cut)
        self.alias = tuple(alias)
        # x = u*n lands in column int(x); it stays there iff x < c + cut/total.
        self.limit = tuple(c + k / total for c, k in enumerate(cut))

    def sample(self, u: float) -> int:
        """Outcome for a uniform float ``u`` in [0, 1) (e.g. ``random.random()``)."""
        x = u * self.n
        c = int(x)
        return c if x < self.limit[c] else self.alias[c]

    def sample_int(self, x: int) -> int:
        """Outcome for a uniform integer ``x`` in [0, n*total): exact."""
        c, unit = divmod(x, self.total)
        return c if unit < self.cut[c] else self.alias[c]

    def __repr__(self) -> str:
        return f"AliasTable(n={self.n}, total={self.total}, cut={self.cut}, alias={self.alias})"


_KEY_BITS = 128


def key_position(key: bytes) -> int:
    """A routing key's fixed point on [0, 2**128): the same for every weight vector."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=_KEY_BITS // 8).digest(), "big")


class KeyedTable:
    """Sticky, ramp-stable choice for routing keys: cumulative intervals on [0, 1).

    Outcome ``i`` owns ``[c_(i-1)/W, c_i/W)`` where ``c`` are the cumulative
    weights, and a key sits at a fixed point ``h / 2**128`` that does not depend
    on the weights. So the same key gets the same outcome while the weights stay
    the same, and when one outcome's weight grows (the others unchanged) its
    interval only widens on both sides: no key that was on it moves away. The
    alias table cannot promise that (a weight change reshuffles its columns),
    which is why keyed routing uses this layout instead.

    Lookup is O(1) expected: a guide table of ``n`` buckets gives the first
    candidate interval for the key's bucket, and a short scan (on average less
    than two steps) finds the owner. Comparisons are exact integer arithmetic.

    Trade-off: with three or more outcomes, intervals between the grown one
    and the ends shift, so keys can also move between outcomes whose weights
    did not change. Weighted rendezvous hashing avoids that (a key moves only
    to the outcome that grew) but costs a hash and a logarithm per outcome,
    O(n) per request. With two outcomes, the common canary case, keys move only
    towards the outcome that grew.
    """

    __slots__ = ("bounds", "guide", "n", "total")

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights
        ):
            raise ValueError("weights must be a non-empty list of non-negative integers")
        total = sum(weights)
        if total <= 0:
            raise ValueError("at least one weight must be positive")
        n = len(weights)
        cumulative = list(itertools.accumulate(weights))
        # h*W < c_i * 2**128  <=>  h/2**128 < c_i/W: scaled bounds, exact.
        self.bounds = tuple(c << _KEY_BITS for c in cumulative)
        # guide[b]: the first interval that reaches into bucket b = [b/n, (b+1)/n).
        guide = []
        i = 0
        for b in range(n):
            while cumulative[i] * n <= b * total:
                i += 1
            guide.append(i)
        self.guide = tuple(guide)
        self.n = n
        self.total = total

    def sample_position(self, h: int) -> int:
        """Outcome for a point ``h`` in [0, 2**128)."""
        scaled = h * self.total
        i = self.guide[(h * self.n) >> _KEY_BITS]
        bounds = self.bounds
        while scaled >= bounds[i]:
            i += 1
        return i

    def sample_key(self, key: bytes) -> int:
        return self.sample_position(key_position(key))


def realized_probabilities(table: AliasTable) -> list[Fraction]:
    """Exact probability of each outcome under :meth:`AliasTable.sample_int`."""
    units = [0] * table.n
    for c in range(table.n):
        units[c] += table.cut[c]
        units[table.alias[c]] += table.total - table.cut[c]
    denominator = table.n * table.total
    return [Fraction(u, denominator) for u in units]
