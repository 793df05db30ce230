"""The embedded store: one process, nothing to install.

Every method runs to completion without awaiting anything in between, so on
one event loop each write is atomic with respect to every other request.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router.errors import (
    AliasAlreadyExists,
    AliasNotFound,
    ExecutionNotFound,
    FlowAlreadyExists,
    FlowNotFound,
    InvalidToken,
    ResourceInUse,
    VersionNotFound,
)
from router.lifecycle.record import ExecutionRecord
from router.lifecycle.status import Status
from router.model import Alias, AliasUpdate, Flow, FlowUpdate, FlowVersion
from router.store.base import (
    FlowSnapshot,
    IdempotencyRecord,
    OutcomeKey,
    Page,
    PollEntry,
    quota_exceeded,
    routes_missing,
)
from router.store.bucket import Bucket, take
from router.store.memory_executions import ExecutionTable, PollSchedule
from router.store.memory_rollouts import MemoryRollouts
from router.store.stats import ExecutionStats

T = TypeVar("T")
PRUNE_EVERY = 4096  # expiring writes between sweeps of expired tokens and executions
K = TypeVar("K", str, int)


@dataclass
class _FlowState:
    flow: Flow
    versions: dict[int, FlowVersion] = field(default_factory=dict)
    next_version: int = 1
    aliases: dict[str, Alias] = field(default_factory=dict)
    executions: ExecutionTable = field(default_factory=ExecutionTable)
    revision: int = 1


def paginate(
    keys: Iterable[K],
    limit: int,
    token: str | None,
    parse: Callable[[str], K],
    get: Callable[[K], T],
) -> Page[T]:
    """Page over sorted ``keys``; the token is the first key of the next page."""
    ordered = sorted(keys)
    try:
        start = bisect.bisect_left(ordered, parse(token)) if token else 0
    except ValueError:
        raise InvalidToken() from None
    chunk = ordered[start : start + limit]
    following = ordered[start + limit : start + limit + 1]
    return Page([get(k) for k in chunk], str(following[0]) if following else None)


class MemoryStore(MemoryRollouts):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._flows: dict[str, _FlowState] = {}  # by id
        self._names: dict[str, str] = {}  # name -> id
        self._tokens: dict[tuple[str, str], tuple[IdempotencyRecord, float]] = {}
        self._clock = clock
        self._listeners: list[Callable[[str], None]] = []
        self._buckets: dict[str, Bucket] = {}
        self._expiring_writes = 0
        self._polls = PollSchedule()
        self._secrets: dict[str, bytes] = {}
        self._rollouts = {}
        self._leases = {}

    @property
    def in_process(self) -> bool:
        return True

    def _changed(self, state: _FlowState) -> None:
        """Bump the flow's revision and tell every route cache in this process."""
        state.revision += 1
        for listener in self._listeners:
            listener(state.flow.id)

    # flows ----------------------------------------------------------------------
    def _state(self, flow_id: str) -> _FlowState:
        state = self._flows.get(flow_id)
        if state is None:
            raise FlowNotFound(flow_id)
        return state

    async def create_flow(self, flow: Flow, *, max_flows: int | None = None) -> None:
        if flow.name in self._names:
            raise FlowAlreadyExists(flow.name)
        if max_flows is not None and len(self._flows) >= max_flows:
            raise quota_exceeded("max-flows", max_flows)
        self._names[flow.name] = flow.id
        self._flows[flow.id] = _FlowState(flow)

    async def get_flow(self, name: str) -> Flow:
        flow_id = self._names.get(name)
        if flow_id is None:
            raise FlowNotFound(name)
        return self._flows[flow_id].flow

    async def get_flow_by_id(self, flow_id: str) -> Flow:
        return self._state(flow_id).flow

    async def list_flows(self, limit: int, token: str | None = None) -> Page[Flow]:
        return paginate(self._names, limit, token, str, self._flow_named)

    async def list_flow_names(self, limit: int, token: str | None = None) -> Page[tuple[str, str]]:
        return paginate(self._names, limit, token, str, lambda n: (n, self._names[n]))

    def _flow_named(self, name: str) -> Flow:
        return self._flows[self._names[name]].flow

    async def update_flow(self, flow_id: str, update: FlowUpdate, at: int) -> Flow:
        state = self._state(flow_id)
        old = state.flow
        if update.name is not None and update.name != old.name and update.name in self._names:
            raise FlowAlreadyExists(update.name)
        state.flow = update.apply(old, at)
        if state.flow.name != old.name:
            del self._names[old.name]
            self._names[state.flow.name] = flow_id
        self._changed(state)
        return state.flow

    async def delete_flow(self, flow_id: str, *, force: bool) -> Flow:
        state = self._state(flow_id)
        if state.aliases and not force:
            raise ResourceInUse(f"flow {state.flow.name} still has aliases")
        del self._flows[flow_id]
        del self._names[state.flow.name]
        self._drop_rollouts(flow_id)
        self._changed(state)
        return state.flow

    # versions -------------------------------------------------------------------
    async def publish_version(
        self, flow_id: str, description: str, at: int, *, max_versions: int | None = None
    ) -> FlowVersion:
        state = self._state(flow_id)
        if max_versions is not None and len(state.versions) >= max_versions:
            raise quota_exceeded("max-versions-per-flow", max_versions)
        version = FlowVersion(
            flow_id=flow_id,
            version=state.next_version,
            description=description,
            definition=state.flow.definition,
            role_arn=state.flow.role_arn,
            created_at=at,
        )
        state.versions[version.version] = version
        state.next_version += 1
        return version

    async def get_version(self, flow_id: str, version: int) -> FlowVersion:
        found = self._state(flow_id).versions.get(version)
        if found is None:
            raise VersionNotFound(str(version))
        return found

    async def latest_version(self, flow_id: str) -> FlowVersion | None:
        versions = self._state(flow_id).versions
        return versions[max(versions)] if versions else None

    async def list_versions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[FlowVersion]:
        versions = self._state(flow_id).versions
        return paginate(versions, limit, token, int, versions.__getitem__)

    async def delete_version(self, flow_id: str, version: int, *, force: bool) -> None:
        state = self._state(flow_id)
        if version not in state.versions:
            raise VersionNotFound(str(version))
        if not force:
            for alias in state.aliases.values():
                if version in alias.versions():
                    raise ResourceInUse(f"version {version} is routed to by alias {alias.name}")
        del state.versions[version]

    # aliases --------------------------------------------------------------------
    async def create_alias(self, alias: Alias, *, max_aliases: int | None = None) -> None:
        state = self._state(alias.flow_id)
        if alias.name in state.aliases:
            raise AliasAlreadyExists(alias.name)
        if max_aliases is not None and len(state.aliases) >= max_aliases:
            raise quota_exceeded("max-aliases-per-flow", max_aliases)
        missing = routes_missing([r.version for r in alias.routes], state.versions.keys())
        if missing is not None:
            raise VersionNotFound(str(missing))
        state.aliases[alias.name] = alias
        self._changed(state)

    async def get_alias(self, flow_id: str, name: str) -> Alias:
        alias = self._state(flow_id).aliases.get(name)
        if alias is None:
            raise AliasNotFound(name)
        return alias

    async def get_alias_by_id(self, flow_id: str, alias_id: str) -> Alias:
        for alias in self._state(flow_id).aliases.values():
            if alias.id == alias_id:
                return alias
        raise AliasNotFound(alias_id)

    async def list_aliases(self, flow_id: str, limit: int, token: str | None = None) -> Page[Alias]:
        aliases = self._state(flow_id).aliases
        return paginate(aliases, limit, token, str, aliases.__getitem__)

    async def update_alias(self, flow_id: str, name: str, update: AliasUpdate, at: int) -> Alias:
        state = self._state(flow_id)
        old = await self.get_alias(flow_id, name)
        self._check_no_rollout(flow_id, name)
        new = update.apply(old, at)
        if new.name != name and new.name in state.aliases:
            raise AliasAlreadyExists(new.name)
        if update.routes is not None:  # only new routes must name existing versions
            missing = routes_missing([r.version for r in new.routes], state.versions.keys())
            if missing is not None:
                raise VersionNotFound(str(missing))
        del state.aliases[name]
        if new.name != name:  # the old name's finished rollout goes (as on Redis)
            self._drop_rollouts(flow_id, name)
        state.aliases[new.name] = new
        self._changed(state)
        return new

    async def delete_alias(self, flow_id: str, name: str) -> Alias:
        state = self._state(flow_id)
        if name in state.aliases:
            self._check_no_rollout(flow_id, name)
        alias = state.aliases.pop(name, None)
        if alias is None:
            raise AliasNotFound(name)
        self._drop_rollouts(flow_id, name)
        self._changed(state)
        return alias

    # executions -----------------------------------------------------------------
    async def claim_execution(self, record: ExecutionRecord, ttl_s: int) -> None:
        self._state(record.flow_id).executions.claim(record, self._clock(), ttl_s)
        self._count_write()

    async def put_executions(self, records: Sequence[ExecutionRecord], ttl_s: int) -> None:
        now = self._clock()
        by_flow: dict[str, list[ExecutionRecord]] = {}
        for record in records:
            by_flow.setdefault(record.flow_id, []).append(record)
        for flow_id, batch in by_flow.items():
            state = self._flows.get(flow_id)  # a deleted flow's records are dropped
            if state is not None:
                self._count_write(state.executions.put_many(batch, now, ttl_s))

    async def finish_execution(
        self,
        flow_id: str,
        name: str,
        status: Status,
        output: Any,
        error: str | None,
        cause: str | None,
        at: int,
    ) -> ExecutionRecord | None:
        state = self._flows.get(flow_id)
        if state is None:  # as on Redis: a deleted flow's records are gone
            raise ExecutionNotFound(name)
        return state.executions.finish(name, self._clock(), status, output, error, cause, at)

    async def get_execution(self, flow_id: str, name: str) -> ExecutionRecord:
        found = self._state(flow_id).executions.live(name, self._clock())
        if found is None:
            raise ExecutionNotFound(name)
        return found

    async def list_executions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[ExecutionRecord]:
        return self._state(flow_id).executions.page(self._clock(), limit, token)

    async def outcome_counts(self, flow_id: str) -> dict[OutcomeKey, int]:
        return dict(self._state(flow_id).executions.outcomes)

    async def set_slow_threshold(self, flow_id: str, alias: str, ms: int | None) -> None:
        state = self._flows.get(flow_id)
        if state is None:
            return
        if ms is None:
            state.executions.slow_ms.pop(alias, None)
        else:
            state.executions.slow_ms[alias] = ms

    async def execution_stats(self, flow_id: str, since_ms: int, until_ms: int) -> ExecutionStats:
        return self._state(flow_id).executions.stats.read(since_ms, until_ms, self._clock())

    # polling schedule -------------------------------------------------------------
    async def schedule_poll(self, flow_id: str, name: str, due_ms: int, attempt: int) -> None:
        self._polls.schedule(flow_id, name, due_ms, attempt)

    async def schedule_polls(self, entries: Sequence[PollEntry]) -> None:
        for entry in entries:
            self._polls.schedule(*entry)

    async def claim_polls(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[tuple[str, str, int]]:
        return self._polls.claim(now_ms, limit, lease_ms)

    async def cancel_poll(self, flow_id: str, name: str) -> None:
        self._polls.cancel(flow_id, name)

    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        return self._secrets.setdefault(name, candidate)

    # idempotency tokens -----------------------------------------------------------
    async def get_token(self, scope: str, token: str) -> IdempotencyRecord | None:
        found = self._tokens.get((scope, token))
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    async def put_token(
        self, scope: str, token: str, record: IdempotencyRecord, ttl_s: int
    ) -> IdempotencyRecord:
        existing = await self.get_token(scope, token)
        if existing is not None:
            return existing
        self._tokens[(scope, token)] = (record, self._clock() + ttl_s)
        self._count_write()
        return record

    def _count_write(self, writes: int = 1) -> None:
        """Every so many expiring writes, forget what has expired (Redis does it by TTL)."""
        before = self._expiring_writes
        self._expiring_writes += writes
        if before // PRUNE_EVERY == self._expiring_writes // PRUNE_EVERY:
            return
        now = self._clock()
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        for state in self._flows.values():
            state.executions.prune(now)

    # route caches ---------------------------------------------------------------
    async def snapshot(self, flow_ref: str, *, by_id: bool) -> FlowSnapshot:
        flow_id = flow_ref if by_id else self._names.get(flow_ref)
        state = self._flows.get(flow_id) if flow_id is not None else None
        if state is None:
            raise FlowNotFound(flow_ref)
        return FlowSnapshot(state.flow, tuple(state.aliases.values()), state.revision)

    async def revisions(self, flow_ids: Sequence[str]) -> list[int | None]:
        return [s.revision if (s := self._flows.get(f)) else None for f in flow_ids]

    async def listen(self, on_change: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        """Deliver changes until cancelled; in one process they arrive synchronously."""
        self._listeners.append(on_change)
        on_resync()
        try:
            await asyncio.Event().wait()
        finally:
            self._listeners.remove(on_change)

    # lifecycle --------------------------------------------------------------------
    async def take_token(self, bucket: str, rate: float, burst: int) -> float:
        state, wait = take(self._buckets.get(bucket), self._clock(), rate, burst)
        self._buckets[bucket] = state
        return wait

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
