"""The route cache: compiled aliases in memory, so routing reads no store.

Each process keeps, per flow, a :class:`FlowRoutes`: the flow and all of its
aliases compiled into sampling tables, read from the store as one snapshot at
one revision. A routed request is then a few dict lookups and a sample.

Freshness. Every store write that changes a flow or its aliases bumps the
flow's revision and announces the flow id (Redis pub/sub; in-process calls on
the memory store). On an announcement the entry is dropped and reloaded at
once; requests that arrive meanwhile wait for that one reload. Because an
announcement can be lost (a dropped subscriber connection), a periodic check
compares the revisions of every cached flow with the store's, and a
reconnect triggers the same check; that bounds staleness by the check
interval even when messages are lost.

Outages. A reload that cannot reach the store puts back the snapshot the
flow was routing on a moment before (with no store there is nothing newer to
know), so an invalidation during an outage never drops a cached flow. That
snapshot keeps its old revision, so the periodic check (or the resync on
reconnect) sees it differ from the store's and reloads it once the store
answers: staleness stays bounded by the check interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from router.errors import AliasNotFound, FlowNotFound, Unavailable
from router.metrics import Metrics
from router.model import Alias, Flow
from router.sampler import AliasTable, KeyedTable
from router.store.base import FlowSnapshot, Store

log = logging.getLogger("flow_router.routing")


class CompiledAlias:
    """What the hot path needs for one alias revision, built once."""

    __slots__ = ("alias", "flow", "keyed", "pick", "salt", "table", "versions")

    def __init__(self, flow: Flow, alias: Alias) -> None:
        self.flow = flow
        self.alias = alias
        weights = [r.weight for r in alias.routes]
        self.table = AliasTable(weights)
        self.keyed = KeyedTable(weights)
        self.versions = tuple(str(r.version) for r in alias.routes)
        self.salt = f"{flow.id}/{alias.id}/".encode()
        self.pick: Callable[[float], str] = _picker(self.table, self.versions)

    @property
    def revision(self) -> int:
        return self.alias.revision

    def pick_for_key(self, key: bytes) -> str:
        # Salted per alias so one key is not the canary of every alias at once.
        return self.versions[self.keyed.sample_key(self.salt + key)]


def _picker(table: AliasTable, versions: tuple[str, ...]) -> Callable[[float], str]:
    """``u -> version`` with the table in closure cells.

    Measured here: ~7% cheaper per call than a method reading ``self.table`` and
    ``self.versions`` (178 vs 191 ns including ``random()``).
    """
    n, limit, alias = table.n, table.limit, table.alias

    def pick(u: float) -> str:
        x = u * n
        c = int(x)
        return versions[c if x < limit[c] else alias[c]]

    return pick


@dataclass(frozen=True, slots=True)
class FlowRoutes:
    flow: Flow
    revision: int
    by_name: Mapping[str, CompiledAlias]
    by_id: Mapping[str, CompiledAlias]

    def alias(self, name: str) -> CompiledAlias:
        found = self.by_name.get(name)
        if found is None:
            raise AliasNotFound(name)
        return found

    def alias_by_id(self, alias_id: str) -> CompiledAlias:
        found = self.by_id.get(alias_id)
        if found is None:
            raise AliasNotFound(alias_id)
        return found


def compile_snapshot(snapshot: FlowSnapshot, previous: FlowRoutes | None) -> FlowRoutes:
    """Compile every alias, reusing tables whose alias revision did not move."""
    flow = snapshot.flow
    by_name: dict[str, CompiledAlias] = {}
    for alias in snapshot.aliases:
        old = previous.by_name.get(alias.name) if previous else None
        same = old is not None and old.revision == alias.revision and old.flow == flow
        by_name[alias.name] = old if same and old is not None else CompiledAlias(flow, alias)
    return FlowRoutes(
        flow=flow,
        revision=snapshot.revision,
        by_name=by_name,
        by_id={c.alias.id: c for c in by_name.values()},
    )


class RouteCache:
    def __init__(self, store: Store, metrics: Metrics, check_interval_s: float = 2.0) -> None:
        self._store = store
        self._metrics = metrics
        self._check_interval_s = check_interval_s
        self._flows: dict[str, FlowRoutes] = {}  # by flow id
        self._ids: dict[str, str] = {}  # flow name -> id, for cached flows only
        self._loading: dict[tuple[str, bool], asyncio.Future[FlowRoutes]] = {}
        # Invalidation counter, and the count at each flow's last invalidation:
        # a snapshot taken before an invalidation of its flow is not installed.
        self._generation = 0
        self._invalidated_at: dict[str, int] = {}
        # What the weight gauges show per flow id: (flow name, alias names).
        self._published: dict[str, tuple[str, frozenset[str]]] = {}
        # Invalidated flows whose reload has not answered yet: what they routed
        # on, put back if the store cannot be reached (see the module docstring).
        self._last: dict[str, FlowRoutes] = {}

    # hot path ---------------------------------------------------------------------
    async def by_name(self, name: str) -> FlowRoutes:
        flow_id = self._ids.get(name)
        if flow_id is not None:
            found = self._flows.get(flow_id)
            if found is not None:
                return found
        return await self._load(name, by_id=False)

    async def by_id(self, flow_id: str) -> FlowRoutes:
        found = self._flows.get(flow_id)
        if found is not None:
            return found
        return await self._load(flow_id, by_id=True)

    # loading --------------------------------------------------------------------
    async def _load(self, ref: str, *, by_id: bool) -> FlowRoutes:
        """One snapshot per flow at a time; concurrent callers share it."""
        key = (ref, by_id)
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[FlowRoutes] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            try:
                while True:
                    generation = self._generation
                    snapshot = await self._store.snapshot(ref, by_id=by_id)
                    if self._invalidated_at.get(snapshot.flow.id, -1) < generation:
                        break  # nothing changed this flow while we were reading it
                routes = self._install(snapshot)
            except Unavailable as e:
                kept = self._restore(ref, by_id=by_id)
                if kept is None:
                    raise
                self._metrics.cache_errors.inc()
                log.warning(
                    "route cache: store unreachable, flow %s keeps routing on revision %d: %s",
                    kept.flow.id,
                    kept.revision,
                    e.message,
                )
                routes = kept
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # consumed here; waiters re-raise their own copy
            raise
        finally:
            del self._loading[key]
        future.set_result(routes)
        return routes

    def _restore(self, ref: str, *, by_id: bool) -> FlowRoutes | None:
        """Put back what an invalidated flow routed on, if its reload cannot reach the store."""
        if by_id:
            kept = self._last.pop(ref, None)
        else:
            found = next((f for f, r in self._last.items() if r.flow.name == ref), None)
            kept = self._last.pop(found) if found is not None else None
        if kept is None:  # a concurrent load (by the other key) may have put it back
            cached = self._flows.get(ref if by_id else self._ids.get(ref, ""))
            return cached if cached is not None and (by_id or cached.flow.name == ref) else None
        self._flows[kept.flow.id] = kept
        self._ids[kept.flow.name] = kept.flow.id
        return kept

    def _install(self, snapshot: FlowSnapshot) -> FlowRoutes:
        flow = snapshot.flow
        self._last.pop(flow.id, None)
        previous = self._flows.get(flow.id)
        routes = compile_snapshot(snapshot, previous)
        self._metrics.cache_loads.inc()
        if previous is not None and previous.flow.name != flow.name:
            self._ids.pop(previous.flow.name, None)
        self._publish_weights(flow.id, routes)
        self._flows[flow.id] = routes
        self._ids[flow.name] = flow.id
        return routes

    def _publish_weights(self, flow_id: str, routes: FlowRoutes | None) -> None:
        """Keep the configured-split gauges equal to what this process routes by.

        Gauges change only when a new snapshot is installed (or the flow is
        gone), never in between, so a scrape during a reload still sees them.
        """
        old_name, old_aliases = self._published.pop(flow_id, ("", frozenset()))
        new_name = routes.flow.name if routes else ""
        new_aliases = frozenset(routes.by_name) if routes else frozenset()
        for alias in old_aliases:
            if alias not in new_aliases or old_name != new_name:
                self._metrics.forget_alias(old_name, alias)
        if routes is None:
            return
        for name, compiled in routes.by_name.items():
            shares = compiled.alias.shares()
            self._metrics.set_weights(new_name, name, ((str(v), s) for v, s in shares.items()))
        self._published[flow_id] = (new_name, new_aliases)

    # invalidation -----------------------------------------------------------------
    def invalidate(self, flow_id: str, source: str = "feed") -> None:
        """Drop a flow now (so no request routes on it) and reload it in the background."""
        self._metrics.cache_invalidations.labels(source).inc()
        self._invalidated_at[flow_id] = self._generation
        self._generation += 1
        routes = self._flows.pop(flow_id, None)
        if routes is None:
            return
        self._ids.pop(routes.flow.name, None)
        self._last[flow_id] = routes
        asyncio.get_running_loop().create_task(self.reload(flow_id))

    async def reload(self, flow_id: str) -> None:
        """Load a flow now (after a local write, or an announcement)."""
        try:
            await self.by_id(flow_id)
        except FlowNotFound:
            self._last.pop(flow_id, None)
            self._publish_weights(flow_id, None)
        except Unavailable as e:
            self._metrics.cache_errors.inc()
            log.warning("route cache: reloading flow %s failed: %s", flow_id, e.message)

    async def check(self) -> int:
        """Compare cached revisions with the store's; reload what moved. Returns how many."""
        ids = list(self._flows)
        if not ids:
            return 0
        current = await self._store.revisions(ids)
        moved = 0
        for flow_id, revision in zip(ids, current, strict=True):
            cached = self._flows.get(flow_id)
            if cached is not None and cached.revision != revision:
                self.invalidate(flow_id, "check")
                moved += 1
        return moved

    async def run(self) -> None:
        """Background task: follow the store's change feed and check periodically."""
        checker = asyncio.create_task(self._check_periodically())
        try:
            await self._store.listen(self.invalidate, self._resync)
        finally:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker

    def _resync(self) -> None:
        self._metrics.cache_resyncs.inc()
        asyncio.get_running_loop().create_task(self._check_logged())

    async def _check_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval_s)
            await self._check_logged()

    async def _check_logged(self) -> None:
        try:
            moved = await self.check()
        except Unavailable as e:
            self._metrics.cache_errors.inc()
            log.warning("route cache revision check failed: %s", e.message)
            return
        if moved:
            log.info("route cache: %d flow(s) changed without a notification", moved)
