"""The use cases both dialects call: validate with the model, persist, route.

Dialects translate wire to these calls and domain errors back to wire; they
never touch the store directly. Everything here is API-neutral except for the
:class:`~router.model.Api` argument that picks the API's documented limits.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router import model
from router.definitions import Definitions
from router.errors import InvalidArgument, InvalidToken, VersionNotFound
from router.forward import Forwarder, UpstreamTemplate
from router.idempotency import DEFAULT_TTL_S, Create, Idempotency
from router.lifecycle.callback import Callbacks
from router.lifecycle.driver import Executions
from router.lifecycle.executions import Execution, ExecutionQuery, HistoryEvent, history
from router.metrics import Metrics
from router.model import Alias, AliasUpdate, Api, Flow, FlowUpdate, FlowVersion, Route
from router.paging import by_bytes
from router.routing import CompiledAlias, FlowRoutes, RouteCache
from router.store.base import Page, Store

T = TypeVar("T")

__all__ = [
    "NEUTRAL_PAGE",
    "Execution",
    "ExecutionQuery",
    "Gateway",
    "HistoryEvent",
    "PageFields",
    "Settings",
]


@dataclass(frozen=True, slots=True)
class Settings:
    max_routes: Mapping[Api, int] = field(
        default_factory=lambda: {Api.CLOUDFLOW: 2, Api.BEDROCK: 1}
    )
    # how long execution records are kept (from their start), and how long InvokeFlow
    # and StartSyncExecution wait for an asynchronous execution's final status
    execution_retention_s: int = 24 * 3600
    invoke_timeout_s: float = 60.0
    max_page: int = 1000
    cache_check_interval_s: float = 2.0
    # Quotas on what the store holds (None: no limit); enforced by the store,
    # atomically with the create they limit.
    max_flows: int | None = 1000
    max_versions_per_flow: int | None = 100  # counts existing versions
    max_aliases_per_flow: int | None = 100
    definition_cache_bytes: int = 64 * 1024 * 1024  # per process (router/lru)


@dataclass(frozen=True, slots=True)
class PageFields:
    """What a dialect calls its page size and token, for error messages."""

    limit: str
    token: str


NEUTRAL_PAGE = PageFields("limit", "token")  # callers other than a dialect


class Gateway:
    def __init__(
        self,
        store: Store,
        forwarder: Forwarder,
        metrics: Metrics,
        upstream: UpstreamTemplate,
        settings: Settings | None = None,
        rng: random.Random | None = None,
        idempotency_ttl_s: int = DEFAULT_TTL_S,
        callbacks: Callbacks | None = None,
    ) -> None:
        self.store = store
        self.forwarder = forwarder
        self.metrics = metrics
        self.upstream = upstream
        self.settings = settings or Settings()
        self.cache = RouteCache(store, metrics, self.settings.cache_check_interval_s)
        self._random = (rng or random.Random()).random
        self.definitions = Definitions(store, self.settings.definition_cache_bytes)
        self._idempotency = Idempotency(store, idempotency_ttl_s)
        self.executions = Executions(
            store,
            forwarder,
            metrics,
            upstream,
            retention_s=self.settings.execution_retention_s,
            callbacks=callbacks,
        )
        self.before_alias_delete: Callable[[Flow, str], Awaitable[None]] | None = None

    async def idempotent(
        self, scope: str, token: str | None, params: Mapping[str, Any], create: Create[T]
    ) -> T:
        """Run ``create`` at most once per client ``token`` (see :mod:`router.idempotency`)."""
        return await self._idempotency.once(scope, token, params, create)

    # flows --------------------------------------------------------------------
    async def create_flow(
        self,
        api: Api,
        *,
        name: str | None,
        definition: Any,
        description: str | None = None,
        role_arn: str = "",
        type: str = "FDL",
        execution_mode: str = "Standard",
        environment: Any = None,
        encryption_key_arn: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> Flow:
        at = model.now_ms()
        flow = Flow(
            id=model.new_id(),
            name=model.validate_name(name, api),
            definition=definition,
            description=model.validate_description(description, api) or "",
            role_arn=role_arn,
            type=type,
            execution_mode=execution_mode,
            environment=environment,
            encryption_key_arn=encryption_key_arn,
            tags=dict(tags or {}),
            created_at=at,
            updated_at=at,
        )
        await self.store.create_flow(flow, max_flows=self.settings.max_flows)
        return flow

    async def flow(self, name: str | None, field_name: str = "FlowName") -> Flow:
        return await self.store.get_flow(model.require(name, field_name))

    async def flow_by_id(self, flow_id: str) -> Flow:
        return await self.store.get_flow_by_id(flow_id)

    async def list_flows(
        self, limit: int, token: str | None, fields: PageFields = NEUTRAL_PAGE
    ) -> Page[Flow]:
        return await self._page(self.store.list_flows, limit, token, fields)

    async def update_flow(self, api: Api, flow: Flow, update: FlowUpdate) -> Flow:
        if update.name is not None:
            model.validate_name(update.name, api)
        model.validate_description(update.description, api)
        updated = await self.store.update_flow(flow.id, update, model.now_ms())
        await self._changed(flow)
        return updated

    async def delete_flow(self, flow: Flow, *, force: bool) -> Flow:
        deleted = await self.store.delete_flow(flow.id, force=force)
        await self._changed(flow)
        return deleted

    # versions -----------------------------------------------------------------
    async def publish_version(self, api: Api, flow: Flow, description: str | None) -> FlowVersion:
        model.validate_description(description, api)
        return await self.store.publish_version(
            flow.id,
            description or "",
            model.now_ms(),
            max_versions=self.settings.max_versions_per_flow,
        )

    async def version(self, flow: Flow, version: str | int | None) -> FlowVersion:
        return await self.store.get_version(flow.id, model.parse_version(version))

    async def list_versions(
        self, flow: Flow, limit: int, token: str | None, fields: PageFields = NEUTRAL_PAGE
    ) -> Page[FlowVersion]:
        return await self._page(
            functools.partial(self.store.list_versions, flow.id), limit, token, fields
        )

    async def delete_version(self, flow: Flow, version: str | None, *, force: bool) -> None:
        await self.store.delete_version(
            flow.id, model.parse_version(version, "FlowVersion"), force=force
        )

    # aliases ------------------------------------------------------------------
    def routes(
        self, api: Api, entries: Sequence[tuple[Any, Any]], field_name: str
    ) -> tuple[Route, ...]:
        return model.validate_routes(entries, self.settings.max_routes[api], field_name)

    async def create_alias(
        self,
        api: Api,
        flow: Flow,
        *,
        name: str | None,
        routes: tuple[Route, ...],
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        sticky_execution_name: bool = False,
    ) -> Alias:
        at = model.now_ms()
        alias = Alias(
            flow_id=flow.id,
            id=model.new_id(),
            name=model.validate_alias_name(name, api),
            routes=routes,
            description=model.validate_description(description, api) or "",
            tags=dict(tags or {}),
            created_at=at,
            updated_at=at,
            sticky_execution_name=sticky_execution_name,
        )
        await self.store.create_alias(alias, max_aliases=self.settings.max_aliases_per_flow)
        await self._changed(flow)
        return alias

    async def alias(self, flow: Flow, name: str | None, field_name: str = "Name") -> Alias:
        return await self.store.get_alias(flow.id, model.require(name, field_name))

    async def alias_by_id(self, flow: Flow, alias_id: str) -> Alias:
        return await self.store.get_alias_by_id(flow.id, alias_id)

    async def list_aliases(
        self, flow: Flow, limit: int, token: str | None, fields: PageFields = NEUTRAL_PAGE
    ) -> Page[Alias]:
        return await self._page(
            functools.partial(self.store.list_aliases, flow.id), limit, token, fields
        )

    async def update_alias(self, api: Api, flow: Flow, name: str, update: AliasUpdate) -> Alias:
        if update.name is not None:
            model.validate_alias_name(update.name, api)
        model.validate_description(update.description, api)
        updated = await self.store.update_alias(flow.id, name, update, model.now_ms())
        await self._changed(flow)
        return updated

    async def delete_alias(self, flow: Flow, name: str) -> Alias:
        if self.before_alias_delete is not None:  # aborts its rollout (router/rollout)
            await self.before_alias_delete(flow, name)
        deleted = await self.store.delete_alias(flow.id, name)
        await self._changed(flow)
        return deleted

    async def _changed(self, flow: Flow) -> None:
        """After a local write: route on it here at once (read-your-writes)."""
        self.cache.invalidate(flow.id, "local")
        await self.cache.reload(flow.id)

    # executions ---------------------------------------------------------------
    async def routes_by_name(
        self, flow_name: str | None, field_name: str = "FlowName"
    ) -> FlowRoutes:
        """The cached flow and its compiled aliases: no store read once warm."""
        return await self.cache.by_name(model.require(flow_name, field_name))

    async def routes_by_id(self, flow_id: str) -> FlowRoutes:
        return await self.cache.by_id(flow_id)

    def pick(
        self, alias: CompiledAlias, routing_key: bytes | None = None, name: str | None = None
    ) -> str:
        """The version an execution through ``alias`` goes to: sticky for a key, else by weight."""
        if routing_key is None and name and alias.alias.sticky_execution_name:
            routing_key = name.encode()
        if routing_key is not None:
            return alias.pick_for_key(routing_key)
        return alias.pick(self._random())

    async def start_execution(
        self,
        flow: Flow,
        *,
        alias: Alias | CompiledAlias | None = None,
        version: str | None = None,
        name: str | None = None,
        input: Any = None,
        routing_key: bytes | None = None,
    ) -> Execution:
        """Choose the version (alias weights, explicit version, or latest) and run it there."""
        if alias is not None:
            if isinstance(alias, Alias):
                alias = (await self.cache.by_id(flow.id)).alias(alias.name)
            chosen = self.pick(alias, routing_key, name)
            return await self.executions.start(
                alias.flow, chosen, alias.alias.name, name, input, alias.revision
            )
        if version is not None:
            chosen = str((await self.version(flow, version)).version)
        else:
            latest = await self.store.latest_version(flow.id)
            if latest is None:
                raise VersionNotFound(
                    "latest", f"flow {flow.name} has no published version to execute"
                )
            chosen = str(latest.version)
        return await self.executions.start(flow, chosen, "", name, input)

    async def start_sync(
        self,
        flow: Flow,
        *,
        alias: Alias | CompiledAlias | None = None,
        version: str | None = None,
        name: str | None = None,
        input: Any = None,
        routing_key: bytes | None = None,
    ) -> Execution:
        """Start, then :meth:`final`."""
        execution = await self.start_execution(
            flow, alias=alias, version=version, name=name, input=input, routing_key=routing_key
        )
        return await self.final(execution)

    async def final(self, execution: Execution) -> Execution:
        """``execution`` once final; raises ExecutionWaitTimeout after ``invoke_timeout_s``
        (the execution keeps running)."""
        if execution.record.is_final:
            return execution
        return await self.executions.wait_final(
            execution.flow, execution.name, execution.version, self.settings.invoke_timeout_s
        )

    async def run(
        self,
        flow: Flow,
        version: str,
        alias: str,
        name: str | None,
        input: Any,
        revision: int = 0,
        *,
        unnamed: bool = False,
    ) -> Execution:
        """Forward one execution to ``version``'s executor, record and count it
        (router/lifecycle/driver.py); ``unnamed``: ``name`` was generated."""
        return await self.executions.start(
            flow, version, alias, name, input, revision, unnamed=unnamed
        )

    async def version_definition(self, flow: Flow, version: str) -> Any:
        return await self.definitions.of(flow, version)

    async def describe_execution(self, flow: Flow, name: str | None) -> Execution:
        return await self.executions.describe(flow, model.require(name, "ExecutionName"))

    async def stop_execution(
        self, flow: Flow, name: str | None, error: str | None, cause: str | None
    ) -> Execution:
        """Stop a Running execution; raises ExecutionNotFound, ExecutionFinished."""
        name = model.require(name, "ExecutionName")
        return await self.executions.stop(flow, name, error, cause)

    async def list_executions(
        self,
        flow: Flow,
        query: ExecutionQuery,
        limit: int,
        token: str | None,
        fields: PageFields = NEUTRAL_PAGE,
    ) -> Page[Execution]:
        """Every execution (named or not) matching ``query``, newest first."""
        self._check_limit(limit, fields)
        try:
            page = await self.executions.list(flow.id, query, limit, token)
        except InvalidToken as e:
            raise InvalidArgument(f"{fields.token}: {e.message}", fields.token) from None
        return Page([Execution(flow, r) for r in page.items], page.next_token)

    async def execution_history(self, flow: Flow, name: str | None) -> list[HistoryEvent]:
        name = model.require(name, "ExecutionName")
        record, _ = await self.executions.lookup(flow, name)
        return history(record)

    async def _page(
        self,
        fetch: Callable[[int, str | None], Awaitable[Page[T]]],
        limit: int,
        token: str | None,
        fields: PageFields,
    ) -> Page[T]:
        self._check_limit(limit, fields)
        try:
            return await by_bytes(fetch, limit, token)
        except InvalidToken as e:
            raise InvalidArgument(f"{fields.token}: {e.message}", fields.token) from None

    def _check_limit(self, limit: int, fields: PageFields) -> None:
        if not 1 <= limit <= self.settings.max_page:
            raise InvalidArgument(
                f"{fields.limit} must be between 1 and {self.settings.max_page}", fields.limit
            )
