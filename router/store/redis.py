"""The shared store: Redis, so several gateway processes and hosts see one state.

Behaves exactly like :class:`router.store.memory.MemoryStore` (the contract
tests run the same suite on both). Each write is one Lua script
(``router.store.redis_scripts``), so its checks and writes are atomic on the
server; read-modify-writes (``update_flow``, ``update_alias``) read in Python,
apply the model's update, and let the script write only if the flow's revision
is still the one they read, retrying otherwise.

The key layout and the value encodings are in ``router.store.redis_codec``
(its docstring has the table, and how a Cluster holds the keys); the change
feed route caches follow is ``router.store.redis_feed``; URL forms, timeouts
and what counts as "unreachable" are ``router.store.redis_client``; executions,
outcome counters, the polling schedule and shared secrets are the mixin
``router.store.redis_executions``.

Failures: a command that cannot reach Redis within the client's timeouts raises
``Unavailable("store unavailable")``, which the dialects answer with a
retryable error. What went wrong (hosts, ports, redis-py's message) is logged
at WARNING, at most once per ``FAILURE_LOG_INTERVAL_S``, never shown to
clients. No command is retried behind the caller's back, and each write is
one script, so a failed write has written nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from router.errors import (
    AliasNotFound,
    Conflict,
    FlowNotFound,
    VersionNotFound,
)
from router.model import Alias, AliasUpdate, Flow, FlowUpdate, FlowVersion
from router.store import redis_codec as codec
from router.store import redis_scripts as lua
from router.store.base import FlowSnapshot, IdempotencyRecord, Page
from router.store.redis_client import Clients, FailureLog, connect
from router.store.redis_client import reachable as _reachable
from router.store.redis_codec import FlowKeys, GlobalKeys, decode_alias, encode_alias
from router.store.redis_executions import RedisExecutions
from router.store.redis_feed import ChangeFeed
from router.store.redis_rollouts import RedisRollouts

__all__ = ["RedisStore", "decode_alias", "encode_alias"]

log = logging.getLogger("flow_router.store")

_MAX_ATTEMPTS = 100  # optimistic retries of one read-modify-write


class RedisStore(RedisExecutions, RedisRollouts):
    def __init__(
        self, client: redis.asyncio.Redis | RedisCluster | Clients, prefix: str = "fr"
    ) -> None:
        clients = client if isinstance(client, Clients) else Clients(client)
        self._clients = clients
        self._client = clients.client
        self._shard_rng = random.Random()
        self.raw_prefix = prefix  # execution keys: their own hash tags (see redis_codec)
        if clients.cluster:
            prefix = codec.cluster_prefix(prefix)  # one slot for everything (see redis_codec)
        self.prefix = prefix
        self._global = GlobalKeys(prefix)
        self._names = self._global.names
        self._index = self._global.index
        self._channel = self._global.channel
        self._feed = ChangeFeed(clients, self._channel)
        self.failures = FailureLog(log)
        script = self._client.register_script
        self._create_flow = script(lua.CREATE_FLOW)
        self._update_flow = script(lua.UPDATE_FLOW)
        self._delete_flow = script(lua.DELETE_FLOW)
        self._publish_version = script(lua.PUBLISH_VERSION)
        self._delete_version = script(lua.DELETE_VERSION)
        self._create_alias = script(lua.CREATE_ALIAS)
        self._update_alias = script(lua.UPDATE_ALIAS)
        self._delete_alias = script(lua.DELETE_ALIAS)
        self._put_token = script(lua.PUT_TOKEN)
        self._take_token = script(lua.TAKE_TOKEN)
        self._page = script(lua.PAGE)
        self._latest_version = script(lua.LATEST_VERSION)
        self._alias_by_id = script(lua.ALIAS_BY_ID)
        self._snapshot = script(lua.SNAPSHOT)
        self._flow_read = script(lua.FLOW_READ)
        self._alias_at_revision = script(lua.ALIAS_AT_REVISION)
        self._register_rollout_scripts()

    @classmethod
    def from_url(cls, url: str, prefix: str = "fr") -> RedisStore:
        """A store on a ``redis://``, ``redis+sentinel://`` or ``redis+cluster://`` URL."""
        return cls(connect(url), prefix)

    @property
    def in_process(self) -> bool:
        return False

    def _keys(self, flow_id: str) -> FlowKeys:
        return FlowKeys(self.prefix, flow_id)

    async def _run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], flow_ref: str
    ) -> list[Any]:
        return codec.checked(await script(keys=keys, args=args), flow_ref)

    async def _attempt(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], flow_ref: str
    ) -> bool:
        """Run an optimistic write; False when the flow moved since it was read."""
        reply: list[Any] = await script(keys=keys, args=args)
        if reply[0] == b"RETRY":
            return False
        codec.checked(reply, flow_ref)
        return True

    async def _page_of(
        self, keys: Sequence[str], mode: str, limit: int, token: str | None, flow_ref: str
    ) -> tuple[list[bytes], list[bytes], str | None]:
        count = max(limit, 0) + 1
        found, values = await self._run(
            self._page, keys, [mode, codec.page_start(token, mode), count], flow_ref
        )
        return found[:limit], values[:limit], codec.next_page(found, limit)

    # flows ----------------------------------------------------------------------
    @_reachable
    async def create_flow(self, flow: Flow, *, max_flows: int | None = None) -> None:
        keys = [self._names, self._index, self._keys(flow.id).meta]
        args = [flow.name, flow.id, codec.encode_flow(flow), codec.quota_arg(max_flows)]
        await self._run(self._create_flow, keys, args, flow.id)

    @_reachable
    async def get_flow(self, name: str) -> Flow:
        flow_id = await self._client.hget(self._names, name)
        meta = self._keys(codec.text(flow_id)).meta if flow_id else None
        raw = await self._client.hget(meta, "flow") if meta else None
        flow = codec.decode_flow(raw) if raw else None
        if flow is None or flow.name != name:  # gone or renamed between the two reads
            raise FlowNotFound(name)
        return flow

    @_reachable
    async def get_flow_by_id(self, flow_id: str) -> Flow:
        raw = await self._client.hget(self._keys(flow_id).meta, "flow")
        if raw is None:
            raise FlowNotFound(flow_id)
        return codec.decode_flow(raw)

    @_reachable
    async def list_flows(self, limit: int, token: str | None = None) -> Page[Flow]:
        names, ids, following = await self._page_of(
            [self._index, self._names], "lex", limit, token, ""
        )
        async with self._client.pipeline(transaction=False) as pipe:
            for flow_id in ids:
                pipe.hget(self._keys(flow_id.decode()).meta, "flow")
            raws = await pipe.execute()
        # A flow deleted or renamed between the two reads is left out, as if
        # the listing had been read after that write.
        flows = [codec.decode_flow(raw) for raw in raws if raw is not None]
        listed = {name.decode() for name in names}
        return Page([f for f in flows if f.name in listed], following)

    @_reachable
    async def list_flow_names(self, limit: int, token: str | None = None) -> Page[tuple[str, str]]:
        names, ids, following = await self._page_of(
            [self._index, self._names], "lex", limit, token, ""
        )
        pairs = zip(names, ids, strict=True)
        return Page([(codec.text(n), codec.text(i)) for n, i in pairs if i], following)

    @_reachable
    async def update_flow(self, flow_id: str, update: FlowUpdate, at: int) -> Flow:
        keys = self._keys(flow_id)
        for _ in range(_MAX_ATTEMPTS):
            raw, rev = await self._client.hmget(keys.meta, ["flow", "rev"])
            if raw is None:
                raise FlowNotFound(flow_id)
            new = update.apply(codec.decode_flow(raw), at)
            args = [rev, new.name, codec.encode_flow(new), flow_id, self._channel]
            meta = [self._names, self._index, keys.meta]
            if await self._attempt(self._update_flow, meta, args, flow_id):
                return new
        raise Conflict(f"flow {flow_id} is being changed concurrently; try again")

    @_reachable
    async def delete_flow(self, flow_id: str, *, force: bool) -> Flow:
        k = self._keys(flow_id)
        keys = [self._names, self._index, k.meta, k.versions, k.vindex]
        keys += [k.aliases, k.alias_index, k.alias_ids, k.execs, k.exec_index]
        keys += [k.rollouts, k.rollout_seq, self._global.active_rollouts]
        args = ["1" if force else "0", flow_id, self._channel, k.execution("")]
        (raw,) = await self._run(self._delete_flow, keys, args, flow_id)
        await self._purge_executions(flow_id)  # another slot on a cluster: see redis_codec
        return codec.decode_flow(raw)

    # versions -------------------------------------------------------------------
    @_reachable
    async def publish_version(
        self, flow_id: str, description: str, at: int, *, max_versions: int | None = None
    ) -> FlowVersion:
        k = self._keys(flow_id)
        own = codec.encode_version_fields(description, at)
        number, raw = await self._run(
            self._publish_version,
            [k.meta, k.versions, k.vindex],
            [own, codec.quota_arg(max_versions)],
            flow_id,
        )
        return codec.decode_version(flow_id, number, raw)

    async def _read(self, flow_id: str, key: str, field: str | None = None) -> Any:
        """One value of a flow (``None`` if missing); ``FlowNotFound`` if the flow is gone."""
        args = ["get"] if field is None else ["hget", field]
        (raw,) = await self._run(self._flow_read, [self._keys(flow_id).meta, key], args, flow_id)
        return raw

    @_reachable
    async def get_version(self, flow_id: str, version: int) -> FlowVersion:
        raw = await self._read(flow_id, self._keys(flow_id).versions, str(version))
        if raw is None:
            raise VersionNotFound(str(version))
        return codec.decode_version(flow_id, version, raw)

    @_reachable
    async def latest_version(self, flow_id: str) -> FlowVersion | None:
        k = self._keys(flow_id)
        found = await self._run(self._latest_version, [k.meta, k.versions, k.vindex], [], flow_id)
        return codec.decode_version(flow_id, found[0], found[1]) if found else None

    @_reachable
    async def list_versions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[FlowVersion]:
        k = self._keys(flow_id)
        numbers, raws, following = await self._page_of(
            [k.vindex, k.versions, k.meta], "score", limit, token, flow_id
        )
        items = [
            codec.decode_version(flow_id, int(n), raw) for n, raw in zip(numbers, raws, strict=True)
        ]
        return Page(items, following)

    @_reachable
    async def delete_version(self, flow_id: str, version: int, *, force: bool) -> None:
        k = self._keys(flow_id)
        keys = [k.meta, k.versions, k.vindex, k.aliases]
        await self._run(self._delete_version, keys, [version, "1" if force else "0"], flow_id)

    # aliases --------------------------------------------------------------------
    def _alias_keys(self, flow_id: str) -> list[str]:
        k = self._keys(flow_id)
        return [k.meta, k.versions, k.aliases, k.alias_index, k.alias_ids]

    @_reachable
    async def create_alias(self, alias: Alias, *, max_aliases: int | None = None) -> None:
        args: list[Any] = [
            alias.name,
            alias.id,
            codec.encode_alias(alias),
            alias.flow_id,
            self._channel,
        ]
        args += [codec.quota_arg(max_aliases)]
        args += [r.version for r in alias.routes]
        await self._run(self._create_alias, self._alias_keys(alias.flow_id), args, alias.flow_id)

    @_reachable
    async def get_alias(self, flow_id: str, name: str) -> Alias:
        raw = await self._read(flow_id, self._keys(flow_id).aliases, name)
        if raw is None:
            raise AliasNotFound(name)
        return codec.decode_alias(flow_id, raw)

    @_reachable
    async def get_alias_by_id(self, flow_id: str, alias_id: str) -> Alias:
        k = self._keys(flow_id)
        keys = [k.meta, k.aliases, k.alias_ids]
        (raw,) = await self._run(self._alias_by_id, keys, [alias_id], flow_id)
        return codec.decode_alias(flow_id, raw)

    @_reachable
    async def list_aliases(self, flow_id: str, limit: int, token: str | None = None) -> Page[Alias]:
        k = self._keys(flow_id)
        _, raws, following = await self._page_of(
            [k.alias_index, k.aliases, k.meta], "lex", limit, token, flow_id
        )
        return Page([codec.decode_alias(flow_id, raw) for raw in raws], following)

    @_reachable
    async def update_alias(self, flow_id: str, name: str, update: AliasUpdate, at: int) -> Alias:
        k = self._keys(flow_id)
        for _ in range(_MAX_ATTEMPTS):
            rev, raw = await self._run(
                self._alias_at_revision, [k.meta, k.aliases], [name], flow_id
            )
            if raw is None:
                raise AliasNotFound(name)
            new = update.apply(codec.decode_alias(flow_id, raw), at)
            args: list[Any] = [
                rev,
                name,
                new.name,
                codec.encode_alias(new),
                new.id,
                flow_id,
                self._channel,
            ]
            if update.routes is not None:  # only new routes must name existing versions
                args += [r.version for r in new.routes]
            keys = [*self._alias_keys(flow_id), self._global.active_rollouts]
            keys += [k.rollouts, k.rollout_seq]
            if await self._attempt(self._update_alias, keys, args, flow_id):
                return new
        raise Conflict(f"flow {flow_id} is being changed concurrently; try again")

    @_reachable
    async def delete_alias(self, flow_id: str, name: str) -> Alias:
        k = self._keys(flow_id)
        keys = [k.meta, k.aliases, k.alias_index, k.alias_ids, k.rollouts, k.rollout_seq]
        keys += [self._global.active_rollouts]
        (raw,) = await self._run(self._delete_alias, keys, [name, flow_id, self._channel], flow_id)
        return codec.decode_alias(flow_id, raw)

    # idempotency tokens -----------------------------------------------------------
    @_reachable
    async def get_token(self, scope: str, token: str) -> IdempotencyRecord | None:
        raw = await self._client.get(self._global.token(scope, token))
        return codec.decode_token(raw) if raw is not None else None

    @_reachable
    async def put_token(
        self, scope: str, token: str, record: IdempotencyRecord, ttl_s: int
    ) -> IdempotencyRecord:
        key = self._global.token(scope, token)
        stored = await self._put_token(keys=[key], args=[codec.encode_token(record), ttl_s])
        return codec.decode_token(stored) if stored is not None else record

    @_reachable
    async def take_token(self, bucket: str, rate: float, burst: int) -> float:
        key = f"{self.prefix}:bucket:{bucket}"
        wait = await self._take_token(keys=[key], args=[repr(rate), burst])
        return float(wait)

    # route caches ---------------------------------------------------------------
    @_reachable
    async def snapshot(self, flow_ref: str, *, by_id: bool) -> FlowSnapshot:
        flow_id: str | None = flow_ref
        if not by_id:
            found = await self._client.hget(self._names, flow_ref)
            flow_id = codec.text(found) if found is not None else None
        if flow_id is None:
            raise FlowNotFound(flow_ref)
        k = self._keys(flow_id)
        raw, revision, aliases = await self._run(self._snapshot, [k.meta, k.aliases], [], flow_ref)
        flow = codec.decode_flow(raw)
        if not by_id and flow.name != flow_ref:  # renamed between the two reads
            raise FlowNotFound(flow_ref)
        return FlowSnapshot(flow, tuple(codec.decode_alias(flow_id, a) for a in aliases), revision)

    @_reachable
    async def revisions(self, flow_ids: Sequence[str]) -> list[int | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for flow_id in flow_ids:
                pipe.hget(self._keys(flow_id).meta, "rev")
            revs = await pipe.execute()
        return [int(r) if r is not None else None for r in revs]

    async def listen(self, on_change: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        await self._feed.listen(on_change, on_resync)

    # lifecycle --------------------------------------------------------------------
    @_reachable
    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
        for client in self._clients.also_close:
            await client.aclose()
