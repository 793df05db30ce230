"""The one storage seam: everything the gateway persists goes through ``Store``.

Contract (tested identically against every implementation in
``tests/store/test_contract.py``):

* Every write is atomic: it either happens whole or not at all, and two
  concurrent writes that conflict (same flow name, same alias name, same
  execution name) see exactly one winner; the loser gets the domain error.
* Reads raise the ``*NotFound`` error of what is missing.
* Lists are ordered (flows and aliases by name, versions by number) and paged
  with an opaque token: pass ``Page.next_token`` back to get the next page.
* Alias writes bump ``Alias.revision`` so caches can tell stale from fresh.
* Executions (``router.lifecycle.record.ExecutionRecord``): every execution,
  named or not, has a record that expires ``ttl_s`` after it was written. Its
  one Running -> final transition (:meth:`Store.finish_execution`) and the
  per-(alias, revision, version, status) outcome counter it bumps are one
  atomic write, so exactly one caller sees it happen. The counters are not
  records: they live as long as the flow. The same writes count starts,
  outcomes and run times in 10-second buckets kept for an hour
  (``router.store.stats``, :meth:`Store.execution_stats`).
* Polls: a schedule shared by every replica; a claimed entry is leased (its
  due time moves ``lease_ms`` ahead), so a replica that dies holding it
  orphans nothing, and two claimers never get the same entry.
* Quotas (``max_flows``, ``max_versions``, ``max_aliases``; ``None`` means no
  limit) are checked inside the same atomic write as the create they limit, so
  concurrent creates never overshoot: at the limit the create raises
  ``QuotaExceeded`` and writes nothing. A create that would also fail for
  another reason (the name is taken, the flow is gone) raises that error.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from router.errors import InvalidToken, QuotaExceeded
from router.lifecycle.record import ExecutionRecord as Record
from router.lifecycle.status import Status
from router.model import Alias, AliasUpdate, Flow, FlowUpdate, FlowVersion, Route
from router.store.stats import ExecutionStats

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class FlowSnapshot:
    """A flow with all its aliases, read at one revision (what a route cache holds)."""

    flow: Flow
    aliases: tuple[Alias, ...]
    revision: int


# The record every execution method below takes and returns.
ExecutionRecord = Record
# One entry of the polling schedule: flow id, execution name, due (ms), attempt.
PollEntry = tuple[str, str, int, int]

STARTED = "Started"  # the OutcomeKey status counted when an execution is recorded
# Counted besides the final status when the execution ran longer than its alias's
# slow threshold (Store.set_slow_threshold): any final status, and Succeeded ones.
SLOW = "Slow"
SLOW_SUCCEEDED = "SlowSucceeded"


@dataclass(frozen=True, slots=True)
class OutcomeKey:
    """One per-flow outcome counter: executions of ``version`` through ``alias`` at
    alias ``revision`` that started (``status`` "Started") or ended with ``status``."""

    alias: str
    revision: int
    version: str
    status: str  # a Status value, STARTED, SLOW or SLOW_SUCCEEDED

    @classmethod
    def started(cls, record: Record) -> OutcomeKey:
        return cls(record.alias, record.revision, record.version, STARTED)

    @classmethod
    def final(cls, record: Record) -> OutcomeKey:
        return cls(record.alias, record.revision, record.version, record.status.value)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A remembered client token: what it created and with which parameters."""

    fingerprint: str
    resource: str  # the id (or name) of what the first request created


@dataclass(frozen=True, slots=True)
class StoredRollout:
    """An alias's rollout as the store keeps it: an opaque document
    (``router.rollout.state`` encodes it), whether it is active, and ``seq``,
    bumped by every write (the compare-and-set token of :class:`RolloutWrite`)."""

    doc: bytes
    seq: int
    active: bool


@dataclass(frozen=True, slots=True)
class RolloutWrite:
    """One atomic rollout write: the document, and the alias's routes with it.

    Applied only if the rollout's ``seq`` (0: none yet) and the alias's revision
    are still those read; ``routes`` (if given) become the alias's routes, bumping
    its revision and announcing the change like any alias write.
    """

    alias: str
    seq: int
    revision: int
    doc: bytes
    active: bool
    routes: tuple[Route, ...] | None = None


class Store(Protocol):
    @property
    def in_process(self) -> bool:
        """Whether the data lives inside this process (the memory store).

        Such a store is not shared: one worker process only, and nothing
        (nonces, rate-limit buckets) is shared through it with other gateways.
        """
        ...

    # flows ------------------------------------------------------------------
    async def create_flow(self, flow: Flow, *, max_flows: int | None = None) -> None: ...
    async def get_flow(self, name: str) -> Flow: ...
    async def get_flow_by_id(self, flow_id: str) -> Flow: ...
    async def list_flows(self, limit: int, token: str | None = None) -> Page[Flow]: ...
    async def list_flow_names(self, limit: int, token: str | None = None) -> Page[tuple[str, str]]:
        """(name, id) of each flow, in the order and pages of ``list_flows``, without
        reading the flows (the console searches names)."""
        ...

    async def update_flow(self, flow_id: str, update: FlowUpdate, at: int) -> Flow: ...
    async def delete_flow(self, flow_id: str, *, force: bool) -> Flow:
        """Delete a flow with its versions and aliases.

        Without ``force`` a flow that still has aliases raises ``ResourceInUse``.
        """
        ...

    # versions ---------------------------------------------------------------
    async def publish_version(
        self, flow_id: str, description: str, at: int, *, max_versions: int | None = None
    ) -> FlowVersion:
        """Snapshot the flow's current definition as the next version number.

        ``max_versions`` counts the versions that exist now: numbers are never
        reused, but deleting a version makes room for another.
        """
        ...

    async def get_version(self, flow_id: str, version: int) -> FlowVersion: ...
    async def latest_version(self, flow_id: str) -> FlowVersion | None: ...
    async def list_versions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[FlowVersion]: ...
    async def delete_version(self, flow_id: str, version: int, *, force: bool) -> None:
        """Without ``force``, a version that an alias routes to raises ``ResourceInUse``."""
        ...

    # aliases ------------------------------------------------------------------
    async def create_alias(self, alias: Alias, *, max_aliases: int | None = None) -> None:
        """Raises ``AliasAlreadyExists`` or ``VersionNotFound`` for a missing route."""
        ...

    async def get_alias(self, flow_id: str, name: str) -> Alias: ...
    async def get_alias_by_id(self, flow_id: str, alias_id: str) -> Alias: ...
    async def list_aliases(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[Alias]: ...
    async def update_alias(self, flow_id: str, name: str, update: AliasUpdate, at: int) -> Alias:
        """Apply ``update`` and bump the revision; routes must name existing versions."""
        ...

    async def delete_alias(self, flow_id: str, name: str) -> Alias:
        """Deletes the alias's last rollout with it; ``RolloutActive`` while one is active."""
        ...

    # rollouts (router/rollout) --------------------------------------------------
    # While an alias's rollout is active, update_alias and delete_alias raise
    # RolloutActive: its routes belong to the rollout until it finishes.
    async def get_rollout(self, flow_id: str, alias: str) -> tuple[Alias, StoredRollout | None]:
        """The alias and its current or last rollout, read at once."""
        ...

    async def write_rollout(self, flow_id: str, write: RolloutWrite, at: int) -> Alias | None:
        """Apply ``write`` atomically; the alias after it, or ``None`` if the rollout or
        the alias changed since they were read (read again and decide again)."""
        ...

    async def active_rollouts(self) -> list[tuple[str, str]]:
        """(flow id, alias name) of every active rollout."""
        ...

    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take or renew the lease ``name`` for ``ttl_ms``; False while another holds it."""
        ...

    async def release_lease(self, name: str, holder: str) -> None: ...

    # executions ---------------------------------------------------------------
    async def claim_execution(self, record: Record, ttl_s: int) -> None:
        """Record a caller-named execution iff its name is free in the flow.

        Raises ``ExecutionAlreadyExists`` for a taken name, ``FlowNotFound``.
        Counts ``Started``, and the final status if ``record`` is already final.
        """
        ...

    async def put_executions(self, records: Sequence[Record], ttl_s: int) -> None:
        """Record each execution whose name is free (the journal's flush).

        Counts ``Started`` (and the final status of a final record) for each one
        written. Idempotent: sent again, a record already written is skipped and
        not counted again. Records of a flow that does not exist (deleted
        meanwhile) are dropped.
        """
        ...

    async def finish_execution(
        self,
        flow_id: str,
        name: str,
        status: Status,
        output: Any,
        error: str | None,
        cause: str | None,
        at: int,
    ) -> Record | None:
        """Make the record's one transition to the final ``status`` at ``at`` (ms).

        Returns the final record if this call made the transition (and counted
        it); ``None`` if the record was already final. Only a non-``None``
        answer may be counted in metrics. Raises ``ExecutionNotFound``.
        """
        ...

    async def get_execution(self, flow_id: str, name: str) -> Record: ...
    async def list_executions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[Record]:
        """Executions that have not expired, newest first (``started_at``
        descending, then name), paged with an opaque token."""
        ...

    async def outcome_counts(self, flow_id: str) -> dict[OutcomeKey, int]:
        """Every outcome counter of the flow; they live until the flow is deleted."""
        ...

    async def set_slow_threshold(self, flow_id: str, alias: str, ms: int | None) -> None:
        """From now on, an execution through ``alias`` whose run (start to final
        status) lasts longer than ``ms`` milliseconds is also counted under
        ``SLOW`` (and ``SLOW_SUCCEEDED`` if it succeeded), by the same atomic write
        that counts its final status; ``None`` stops that. A rollout with
        ``analysis.slowSeconds`` sets it (router.rollout.controller). Deleted with
        the flow; a no-op for a flow that does not exist."""
        ...

    async def execution_stats(self, flow_id: str, since_ms: int, until_ms: int) -> ExecutionStats:
        """The flow's statistics buckets (``router.store.stats``) from ``since_ms`` to
        ``until_ms``: starts, outcomes and run times per 10 s, counted by the same
        atomic writes as ``outcome_counts``; empty buckets left out. Raises
        ``FlowNotFound``."""
        ...

    # polling schedule -------------------------------------------------------------
    async def schedule_poll(self, flow_id: str, name: str, due_ms: int, attempt: int) -> None:
        """Put (or move) the execution in the shared schedule: poll ``attempt`` at ``due_ms``."""
        ...

    async def schedule_polls(self, entries: Sequence[PollEntry]) -> None:
        """:meth:`schedule_poll` of each (flow id, name, due ms, attempt), the journal's
        flush of its Running records: on Redis, one round trip for them all."""
        ...

    async def claim_polls(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[tuple[str, str, int]]:
        """Up to ``limit`` entries due at or before ``now_ms``, as (flow id, name, attempt).

        Each claimed entry's due time moves to ``now_ms + lease_ms``: the claimer
        reschedules or cancels it; if it dies, the entry comes due again.
        Concurrent claimers never get the same entry.
        """
        ...

    async def cancel_poll(self, flow_id: str, name: str) -> None: ...

    # shared secrets ---------------------------------------------------------------
    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        """Store ``candidate`` under ``name`` unless a value is there; return the stored one."""
        ...

    # idempotency tokens ---------------------------------------------------------
    async def get_token(self, scope: str, token: str) -> IdempotencyRecord | None: ...
    async def put_token(
        self, scope: str, token: str, record: IdempotencyRecord, ttl_s: int
    ) -> IdempotencyRecord:
        """Store ``record`` unless the token is taken; return whichever is stored."""
        ...

    # rate limits ----------------------------------------------------------------
    async def take_token(self, bucket: str, rate: float, burst: int) -> float:
        """Take one token from a bucket refilled at ``rate``/s up to ``burst``.

        Returns 0 when taken, else the seconds until a token is available.
        """
        ...

    # route caches ---------------------------------------------------------------
    async def snapshot(self, flow_ref: str, *, by_id: bool) -> FlowSnapshot:
        """The flow (by name, or by id) with all its aliases, at one revision."""
        ...

    async def revisions(self, flow_ids: Sequence[str]) -> list[int | None]:
        """Each flow's current revision (``None``: the flow is gone)."""
        ...

    async def listen(self, on_change: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        """Call ``on_change(flow_id)`` for every change until cancelled.

        ``on_resync`` runs whenever changes may have been missed (at start and
        after every reconnect), so the caller re-checks revisions.
        """
        ...

    # lifecycle ------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise ``Unavailable`` when the store cannot be reached."""
        ...

    async def close(self) -> None: ...


def routes_missing(alias_versions: Iterable[int], existing: Container[int]) -> int | None:
    """The first routed version that does not exist, if any."""
    for v in alias_versions:
        if v not in existing:
            return v
    return None


# What each quota limits, for the message of its ``QuotaExceeded``.
QUOTAS = {
    "max-flows": "flows",
    "max-versions-per-flow": "versions per flow",
    "max-aliases-per-flow": "aliases per flow",
}


def quota_exceeded(quota: str, limit: int | str) -> QuotaExceeded:
    """The error for a create refused by ``quota`` (named as its ``--`` option)."""
    return QuotaExceeded(
        f"quota exceeded: at most {limit} {QUOTAS[quota]} are allowed "
        f"(the {quota} quota of this gateway)"
    )


def execution_token(record: Record) -> str:
    """The page token that starts a listing at ``record`` (newest first)."""
    return f"{record.started_at}:{record.name}"


def parse_execution_token(token: str) -> tuple[int, str]:
    """(started_at, name) of an ``execution_token``; ``InvalidToken`` otherwise."""
    started, colon, name = token.partition(":")
    if not colon or not started.isascii() or not started.lstrip("-").isdigit() or not name:
        raise InvalidToken()
    return int(started), name
