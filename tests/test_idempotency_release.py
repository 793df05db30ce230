"""router/idempotency.py: a create the store refused releases its claim; one that may
have been applied (store unreachable) keeps it. Memory store, no timing."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from router.errors import AlreadyExists, IdempotencyMismatch, QuotaExceeded, Unavailable
from router.idempotency import Create, Idempotency
from router.store.memory import MemoryStore

SETTLE_S = 3600.0  # a retry that waited for an unreleased claim would hang, not pass


class Kind:
    """Resources made by id; ``fail`` makes the next create raise instead."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self._ids = itertools.count(1)

    def create(self) -> Create[str]:
        async def make() -> str:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                error, self.fail = self.fail, None
                raise error
            rid = f"r{next(self._ids)}"
            self.made.append(rid)
            return rid

        async def fetch(rid: str) -> str:
            return rid

        async def discard(rid: str) -> None:
            self.made.remove(rid)

        return Create(make, lambda r: r, fetch, discard)


@pytest.mark.parametrize(
    "error", [AlreadyExists("orders"), QuotaExceeded("too many flows")], ids=["clash", "quota"]
)
async def test_a_refused_create_frees_the_token_for_other_parameters(error: Exception) -> None:
    idem, kind = Idempotency(MemoryStore(), settle_s=SETTLE_S), Kind()
    kind.fail = error
    with pytest.raises(type(error)):
        await idem.once("scope", "tok", {"name": "orders"}, kind.create())
    assert await idem.once("scope", "tok", {"name": "fresh"}, kind.create()) == "r1"
    # from now on the token stands for r1, with those parameters
    assert await idem.once("scope", "tok", {"name": "fresh"}, kind.create()) == "r1"
    with pytest.raises(IdempotencyMismatch):
        await idem.once("scope", "tok", {"name": "orders"}, kind.create())
    assert kind.made == ["r1"]


async def test_a_refused_create_lets_the_same_request_through_at_once() -> None:
    idem, kind = Idempotency(MemoryStore(), settle_s=SETTLE_S), Kind()
    kind.fail = AlreadyExists("orders")
    with pytest.raises(AlreadyExists):
        await idem.once("scope", "tok", {"name": "orders"}, kind.create())
    retry = idem.once("scope", "tok", {"name": "orders"}, kind.create())
    assert await asyncio.wait_for(retry, timeout=60) == "r1"  # hang guard, not a timing check


async def test_a_waiter_goes_ahead_when_the_claim_it_waits_on_is_released() -> None:
    idem, kind = Idempotency(MemoryStore(), settle_s=SETTLE_S), Kind()
    kind.gate, kind.fail = asyncio.Event(), AlreadyExists("orders")
    first = asyncio.ensure_future(idem.once("scope", "tok", {"n": 1}, kind.create()))
    for _ in range(100):
        if await _claimed(idem):
            break
        await asyncio.sleep(0)
    assert await _claimed(idem)  # the first request holds the claim, blocked in its create
    second = asyncio.ensure_future(idem.once("scope", "tok", {"n": 1}, kind.create()))
    # The memory store never suspends, so these turns take the second request past
    # the claim and into its wait.
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done()
    kind.gate.set()
    with pytest.raises(AlreadyExists):
        await first
    assert await asyncio.wait_for(second, timeout=60) == "r1"  # hang guard
    assert kind.made == ["r1"]


async def _claimed(idem: Idempotency) -> bool:
    return await idem.store.get_token("scope:claim", "tok") is not None


async def test_an_unreachable_store_keeps_the_claim() -> None:
    """The create may have been applied: the token must not be reused with other
    parameters, and the same request waits for the claim to settle."""
    idem, kind = Idempotency(MemoryStore(), settle_s=0.0), Kind()
    kind.fail = Unavailable("store unavailable")
    with pytest.raises(Unavailable):
        await idem.once("scope", "tok", {"name": "orders"}, kind.create())
    with pytest.raises(IdempotencyMismatch):
        await idem.once("scope", "tok", {"name": "fresh"}, kind.create())
    assert await idem.once("scope", "tok", {"name": "orders"}, kind.create()) == "r1"
