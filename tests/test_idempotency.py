"""router/idempotency.py on the memory store: replays, mismatches, concurrent creates."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.errors import AlreadyExists, IdempotencyMismatch, InvalidArgument
from router.idempotency import Create, Idempotency, fingerprint
from router.store.memory import MemoryStore


class Resources:
    """A toy resource kind: created, fetched and discarded by id."""

    def __init__(self, delays: list[float] | None = None) -> None:
        self.made: dict[str, dict[str, Any]] = {}
        self.discarded: list[str] = []
        self._ids = itertools.count(1)
        self._delays = delays or []
        self.making = asyncio.Event()  # a create has begun: its token is claimed

    def create(self, fail: BaseException | None = None) -> Create[str]:
        async def make() -> str:
            rid = f"r{next(self._ids)}"
            self.making.set()
            delay = self._delays.pop(0) if self._delays else 0.0
            await asyncio.sleep(delay)
            if fail is not None:
                raise fail
            self.made[rid] = {}
            return rid

        async def fetch(rid: str) -> str:
            assert rid in self.made
            return rid

        async def discard(rid: str) -> None:
            self.discarded.append(rid)
            del self.made[rid]

        return Create(make, lambda r: r, fetch, discard)


def _once(idem: Idempotency, res: Resources, token: str | None, **params: Any) -> Awaitable[str]:
    return idem.once("scope", token, params, res.create())


async def test_without_a_token_every_call_creates() -> None:
    idem, res = Idempotency(MemoryStore()), Resources()
    assert [await _once(idem, res, None, a=1) for _ in range(3)] == ["r1", "r2", "r3"]


async def test_same_token_same_parameters_replays() -> None:
    idem, res = Idempotency(MemoryStore()), Resources()
    first = await _once(idem, res, "tok", a=1, b=[1, 2])
    assert await _once(idem, res, "tok", b=[1, 2], a=1) == first
    assert list(res.made) == [first]
    # tokens are scoped
    assert await idem.once("other", "tok", {"a": 1, "b": [1, 2]}, res.create()) != first


async def test_same_token_different_parameters_is_a_mismatch() -> None:
    idem, res = Idempotency(MemoryStore()), Resources()
    await _once(idem, res, "tok", a=1)
    with pytest.raises(IdempotencyMismatch):
        await _once(idem, res, "tok", a=2)
    assert len(res.made) == 1


async def test_concurrent_same_token_creates_once() -> None:
    idem, res = Idempotency(MemoryStore()), Resources(delays=[0.05] * 10)
    results = await asyncio.gather(*(_once(idem, res, "tok", a=1) for _ in range(10)))
    assert set(results) == {"r1"}
    assert list(res.made) == ["r1"] and res.discarded == []


async def test_concurrent_same_token_different_parameters() -> None:
    idem, res = Idempotency(MemoryStore()), Resources(delays=[0.05, 0.0])
    first = asyncio.ensure_future(_once(idem, res, "tok", a=1))
    await res.making.wait()
    with pytest.raises(IdempotencyMismatch):
        await _once(idem, res, "tok", a=2)
    assert await first == "r1"


async def test_a_failed_first_attempt_does_not_burn_the_token() -> None:
    idem, res = Idempotency(MemoryStore(), settle_s=0.05), Resources()
    with pytest.raises(InvalidArgument):
        await idem.once("scope", "tok", {"a": 1}, res.create(fail=InvalidArgument("no")))
    # the retry waits for the claim to settle, then creates
    assert await _once(idem, res, "tok", a=1) == "r2"
    assert await _once(idem, res, "tok", a=1) == "r2"


async def test_a_slow_first_request_loses_and_is_discarded() -> None:
    idem, res = Idempotency(MemoryStore(), settle_s=0.01), Resources(delays=[0.2, 0.0])
    slow = asyncio.ensure_future(_once(idem, res, "tok", a=1))
    await res.making.wait()
    fast = await _once(idem, res, "tok", a=1)  # gave up waiting: created r2
    assert await slow == fast == "r2"
    assert res.discarded == ["r1"] and list(res.made) == ["r2"]


async def test_a_name_clash_rereads_the_token() -> None:
    store = MemoryStore()
    idem, res = Idempotency(store, settle_s=0.0), Resources()
    winner = await _once(idem, res, "tok", a=1)
    # a second request claimed too late and its create clashes with the winner's
    store._tokens.pop(("scope:claim", "tok"))
    token_record = store._tokens.pop(("scope", "tok"))

    async def clash() -> str:
        store._tokens[("scope", "tok")] = token_record  # the winner records meanwhile
        raise AlreadyExists("x")

    create = res.create()
    create.make = clash
    assert await idem.once("scope", "tok", {"a": 1}, create) == winner


async def test_tokens_expire() -> None:
    clock = [0.0]
    idem, res = Idempotency(MemoryStore(clock=lambda: clock[0]), ttl_s=10), Resources()
    assert await _once(idem, res, "tok", a=1) == "r1"
    clock[0] = 11
    assert await _once(idem, res, "tok", a=2) == "r2"


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_fingerprint_ignores_key_order(params: dict[str, Any]) -> None:
    reordered = dict(reversed(list(params.items())))
    assert fingerprint(params) == fingerprint(reordered)


def test_fingerprint_tells_values_apart() -> None:
    fingerprints: list[Callable[[], str]] = [
        lambda: fingerprint({"a": 1}),
        lambda: fingerprint({"a": "1"}),
        lambda: fingerprint({"a": None}),
        lambda: fingerprint({"a": [1]}),
        lambda: fingerprint({}),
    ]
    assert len({f() for f in fingerprints}) == len(fingerprints)
