"""Client-token idempotency for creates, on the Store's token records.

A create that carries a client token runs at most once per token: the same
token with the same parameters answers the resource the first request created
(no duplicate, same id); the same token with different parameters is an
:class:`~router.errors.IdempotencyMismatch`. Tokens are remembered for a bounded
time (the store expires them; on Redis they survive a gateway restart).

Two records per token, both written set-if-absent (``Store.put_token``):

* ``<scope>:claim`` — written *before* creating, with a fresh nonce. The request
  whose nonce is stored owns the token; a concurrent request with the same
  token sees someone else's nonce and waits for the result instead of creating
  a duplicate.
* ``<scope>`` — written *after* creating: the fingerprint of the parameters and
  the id of what was created. Replays read it.

A create the store refused (the name is taken, a quota is reached, the input
is invalid) releases its claim: it writes ``<scope>:release`` for the claim's
nonce, and a request that finds a released claim goes ahead at once, whatever
parameters the claim was made with; so the token is not burnt by a request that
created nothing. A claim that was not released (its request crashed, or could
not tell whether the store applied the create: the store was unreachable) is
waited on for at most ``settle_s``; after that the waiter creates itself, so a
retry still succeeds. If that ever produces two resources (the first request
was only slow), the one whose result record lost is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from router.errors import AlreadyExists, IdempotencyMismatch, RouterError, Unavailable
from router.store.base import IdempotencyRecord, Store

T = TypeVar("T")

DEFAULT_TTL_S = 8 * 3600
_POLL_S = (0.005, 0.1)  # first and longest pause while waiting for a concurrent create


def fingerprint(params: Mapping[str, Any]) -> str:
    """A digest of the request parameters that does not depend on key order.

    The standard json module, not orjson: definitions may hold integers beyond
    64 bits, and this runs once per create, not per execution.
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Create(Generic[T]):
    """How to make, name, re-read and discard one kind of resource."""

    def __init__(
        self,
        make: Callable[[], Awaitable[T]],
        key: Callable[[T], str],
        fetch: Callable[[str], Awaitable[T]],
        discard: Callable[[T], Awaitable[object]],
    ) -> None:
        self.make = make
        self.key = key
        self.fetch = fetch
        self.discard = discard


class Idempotency:
    def __init__(self, store: Store, ttl_s: int = DEFAULT_TTL_S, settle_s: float = 3.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.settle_s = settle_s

    async def once(
        self, scope: str, token: str | None, params: Mapping[str, Any], create: Create[T]
    ) -> T:
        if token is None:
            return await create.make()
        digest = fingerprint(params)
        found = await self.store.get_token(scope, token)
        if found is not None:
            return await self._replay(found, digest, create)
        nonce = uuid.uuid4().hex
        claim = await self.store.put_token(
            f"{scope}:claim", token, IdempotencyRecord(digest, nonce), self.ttl_s
        )
        if claim.resource != nonce and not await self._released(scope, token, claim):
            if claim.fingerprint != digest:
                raise _mismatch()
            found = await self._wait_for_result(scope, token, claim)
            if found is not None:
                return await self._replay(found, digest, create)
        try:
            made = await create.make()
        except AlreadyExists:
            # A same-token request that claimed before us may have finished meanwhile.
            found = await self.store.get_token(scope, token)
            if found is None:
                await self._release(scope, token, claim)
                raise
            return await self._replay(found, digest, create)
        except Unavailable:
            raise  # the create may have been applied: keep the claim, let it settle
        except RouterError:
            await self._release(scope, token, claim)
            raise
        key = create.key(made)
        stored = await self.store.put_token(
            scope, token, IdempotencyRecord(digest, key), self.ttl_s
        )
        if stored.resource != key:  # a slow first request finished after we gave up waiting
            await create.discard(made)
            return await self._replay(stored, digest, create)
        return made

    async def _release(self, scope: str, token: str, claim: IdempotencyRecord) -> None:
        """Mark ``claim`` as having created nothing, so the token can be used again."""
        marker = IdempotencyRecord(claim.fingerprint, claim.resource)
        with contextlib.suppress(Unavailable):  # then the claim settles as if we crashed
            await self.store.put_token(
                f"{scope}:release", _release_key(token, claim), marker, self.ttl_s
            )

    async def _released(self, scope: str, token: str, claim: IdempotencyRecord) -> bool:
        found = await self.store.get_token(f"{scope}:release", _release_key(token, claim))
        return found is not None

    async def _replay(self, found: IdempotencyRecord, digest: str, create: Create[T]) -> T:
        if found.fingerprint != digest:
            raise _mismatch()
        return await create.fetch(found.resource)

    async def _wait_for_result(
        self, scope: str, token: str, claim: IdempotencyRecord
    ) -> IdempotencyRecord | None:
        """The result of ``claim``'s request; ``None`` once it is released or has not
        settled within ``settle_s``."""
        deadline = time.monotonic() + self.settle_s
        pause, longest = _POLL_S
        while True:
            found = await self.store.get_token(scope, token)
            if found is not None or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)
            if await self._released(scope, token, claim):
                return await self.store.get_token(scope, token)


def _release_key(token: str, claim: IdempotencyRecord) -> str:
    # One marker per claim: a claim written after this one expired has another nonce.
    return f"{token}:{claim.resource}"


def _mismatch() -> IdempotencyMismatch:
    return IdempotencyMismatch(
        "clientToken was already used with different parameters; use a new token"
    )
