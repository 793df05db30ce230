"""Request authentication: only callers who sign with a known key get in.

With ``--credentials PATH`` (a JSON object of access key id → secret) the app
holds one :class:`Verifier` under :data:`VERIFIER`, and each dialect hands it
every API request before dispatching it:

* CloudFlow (``/``): RPC signature v1.0 or ACS3-HMAC-SHA256
  (:mod:`router.auth.cloudflow`), failures answered with CloudFlow's own Codes;
* Bedrock (``/flows…``, ``/tags/…``): AWS SigV4 for service ``bedrock``
  (:mod:`router.auth.sigv4`), failures answered as ``AccessDeniedException``;
* flow-router's own API (``/v1/…``, router/rollout/api): AWS SigV4 for service
  ``flow-router``, failures answered 403 in that API's ``{"code", "message"}``.

The signed time must be within :data:`~router.auth.base.WINDOW_S` (15 minutes)
of the server's clock, and a CloudFlow nonce is accepted once. ``/metrics``,
``/healthz``, ``/readyz`` are not API routes and stay open; the reference
executor, which authenticates nobody, then listens apart (:mod:`router.executor`).
Without credentials there is no verifier and signatures are ignored
(the CLI then refuses a non-loopback address unless ``--insecure``).

The verification functions are pure (method, raw path, query, headers, body,
now); this module adds what needs state: the keys, the nonces seen, the clock.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from heapq import heappop, heappush
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import Counter

from router import errors
from router.auth import cloudflow, guard, sigv4
from router.auth.base import WINDOW_S, Signed
from router.limits import read_body  # bounded in size and time; aiohttp keeps it for the dialect
from router.ratelimit import RateLimiter
from router.store.base import IdempotencyRecord, Store

__all__ = ["VERIFIER", "WINDOW_S", "NonceCache", "Signed", "Verifier", "load_credentials"]

log = logging.getLogger("flow_router.auth")

NONCE_SCOPE = "nonce"  # Store.put_token scope of shared nonces


def load_credentials(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a credentials file: a JSON object mapping access key ids to secrets.

    Raises ``ValueError`` with a message fit for the command line.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the credentials file {path}: {e.strerror}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError(f"the credentials file {path} is not valid JSON") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f"the credentials file {path} must be a non-empty JSON object "
            '{"<access key id>": "<secret>", …}'
        )
    for key, secret in data.items():
        if not key or not isinstance(secret, str) or not secret:
            raise ValueError(
                f"the credentials file {path}: every access key id needs a non-empty string secret"
            )
    return data


class NonceCache:
    """Nonces this process has accepted, each kept until its request would be refused
    as expired anyway (signed time + 15 minutes), so a replay inside the window is
    caught.

    Bounded: past ``max_entries`` the nonce nearest its expiry is forgotten first
    (``evicted`` counts them), which only reopens that one nonce for the rest of its
    window; at the default size that happens above ~500 signed requests/s per
    process sustained for 15 minutes (about 220 bytes a nonce: some 110 MB when full).

    With several workers or replicas a replay sent to another process is only
    caught when the nonces are shared: :class:`Verifier` does that through the
    store (one ``SET NX EX`` on Redis per signed request).
    """

    def __init__(self, max_entries: int = 500_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self.evicted = 0
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []  # a heap, one entry per key

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, key: object) -> bool:
        return key in self._until

    def add(self, key: str, expires_at: float, now: float) -> bool:
        """Remember ``key`` until ``expires_at``; False when it is already remembered."""
        until, expiry = self._until, self._expiry
        while expiry and expiry[0][0] <= now:
            del until[heappop(expiry)[1]]
        if key in until:
            return False
        if len(until) >= self.max_entries:
            del until[heappop(expiry)[1]]
            self.evicted += 1
        until[key] = expires_at
        heappush(expiry, (expires_at, key))
        return True


class Verifier:
    """Authenticates the requests of both dialects against the configured keys.

    Nonces go into this process's :class:`NonceCache` and, on a shared store
    (Redis), into the store too, through ``Store.put_token`` (``SET NX`` with a
    TTL), so a replay to another worker or replica is refused as well. That call
    and the rate limiter's are bounded by :class:`~router.auth.guard.StoreGuard`:
    if the store does not answer within ``store_timeout_s``, requests are decided
    without it for a second, let in or refused as ``store_failure`` says (by
    default let in: a store outage then weakens replay protection to one process
    and lifts rate limits, instead of stopping all signed traffic). The embedded
    memory store is not used for nonces (it is one process, like the cache, and never
    forgets a token nobody asks about again).
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        nonces: NonceCache | None = None,
        clock: Callable[[], float] = time.time,
        store_timeout_s: float = guard.DEFAULT_TIMEOUT_S,
        store_failure: guard.Failure = guard.DEFAULT_FAILURE,
        degraded: Counter | None = None,  # flow_router_auth_store_degraded
    ) -> None:
        self._credentials = dict(credentials)
        self._shared: Store | None = None
        self.nonces = nonces if nonces is not None else NonceCache()
        self._clock = clock
        backoff = guard.Backoff()  # one store: when one check finds it down, both skip it
        self._guards = {
            check: guard.StoreGuard(
                check,
                timeout_s=store_timeout_s,
                failure=store_failure,
                degraded=degraded,
                backoff=backoff,
            )
            for check in ("nonce", "ratelimit")
        }
        # Marks our own put_token record, so "the stored one is not ours" means replay.
        self._origin = f"{os.getpid()}.{secrets.token_hex(6)}."
        self._sequence = itertools.count()
        self.limiter: RateLimiter | None = None  # per access key, after the signature

    def share_nonces(self, store: Store) -> None:
        """Also record nonces in ``store``, unless it is the one-process memory store."""
        self._shared = None if store.in_process else store

    async def cloudflow(self, request: web.Request, params: Mapping[str, str], action: str) -> str:
        """Verify a CloudFlow request (``params``: query and form merged, ``action``: the
        action, both as dispatched); the caller's access key id, or an
        ``AuthenticationFailed``."""
        now = self._clock()
        # The RPC signature covers the parsed parameters; only ACS3 hashes the body.
        body = await read_body(request) if "Authorization" in request.headers else b""
        signed = cloudflow.verify(
            request.method,
            request.raw_path,
            request.query.items(),
            request.headers,
            body,
            params,
            action,
            self._credentials,
            now,
        )
        await self._remember_nonce(signed, now)
        return await self._admitted(signed)

    async def bedrock(self, request: web.Request) -> str:
        """Verify a SigV4 (service ``bedrock``) request; the caller's access key id."""
        return await self.aws(request, sigv4.SERVICE)

    async def aws(self, request: web.Request, service: str) -> str:
        """Verify a SigV4 request whose credential scope names ``service`` (``bedrock``,
        or ``flow-router`` for the ``/v1`` API); the caller's access key id."""
        now = self._clock()
        signed = sigv4.verify(
            request.method,
            request.raw_path,
            request.headers,
            await read_body(request),
            self._credentials,
            now,
            service,
        )
        return await self._admitted(signed)

    async def _admitted(self, signed: Signed) -> str:
        """The signer's key id, once its rate limit (if any) lets the request in."""
        limiter = self.limiter
        if limiter is not None:
            await self._guards["ratelimit"].call(lambda: limiter.check(signed.access_key_id))
        return signed.access_key_id

    async def _remember_nonce(self, signed: Signed, now: float) -> None:
        if signed.nonce is None:
            return
        # A nonce byte outside UTF-8 (kept by aiohttp as a surrogate) written out as \xNN,
        # so the key can be stored; valid UTF-8 stays as it is.
        nonce = signed.nonce.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        key = f"{signed.access_key_id}:{nonce}"
        expires_at = signed.timestamp + WINDOW_S
        if not self.nonces.add(key, expires_at, now):
            raise errors.NonceUsed(f"the signature nonce {signed.nonce!r} was already used")
        shared = self._shared
        if shared is None:
            return
        mine = IdempotencyRecord(f"{self._origin}{next(self._sequence)}", "")
        ttl_s = max(1, math.ceil(expires_at - now))
        stored = await self._guards["nonce"].call(
            lambda: shared.put_token(NONCE_SCOPE, key, mine, ttl_s)
        )
        if stored is not None and stored.fingerprint != mine.fingerprint:
            raise errors.NonceUsed(f"the signature nonce {signed.nonce!r} was already used")


VERIFIER = web.AppKey("verifier", Verifier)
