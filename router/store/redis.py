"""The shared store: Redis, so several gateway processes and hosts see one state.

Behaves exactly like :class:`router.store.memory.MemoryStore` (the contract
tests run the same suite on both). Each write is one Lua script
(``router.store.redis_scripts``), so its checks and writes are atomic on the
server; read-modify-writes (``update_flow``, ``update_alias``) read in Python,
apply the model's update, and let the script write only if the flow's revision
is still the one they read, retrying otherwise. Values are orjson-encoded bytes.

Key layout (``P`` is the prefix, ``T`` the flow's hash tag ``{flow:<id>}``):

=========================  ==========  ===========================================
key                        type        content
=========================  ==========  ===========================================
``P:flow_names``           hash        flow name -> flow id
``P:flow_index``           sorted set  flow names, all scored 0 (ZRANGEBYLEX pages)
``P:T:meta``               hash        ``name``; ``flow`` (Flow JSON); ``rev``, the
                                       revision route caches compare; ``vseq``, the
                                       last version number issued (never reused)
``P:T:versions``           hash        number -> ``[{description, created_at}, flow]``
``P:T:vindex``             sorted set  version numbers scored by themselves
``P:T:aliases``            hash        alias name -> Alias JSON
``P:T:alias_index``        sorted set  alias names, all scored 0
``P:T:alias_ids``          hash        alias id -> alias name
``P:T:exec:<name>``        string      ExecutionRecord JSON, with the record's TTL
``P:T:execs``              sorted set  execution names by expiry, so delete_flow
                                       can find the execution keys
``P:T:exec_index``         sorted set  execution names, all scored 0
                                       (list_executions pages them)
``P:token:<n>:<scope>:<t>``  string    IdempotencyRecord JSON with its TTL; ``n`` is
                                       ``len(scope)``, so no scope/token pair clashes
``P:changes``              channel     flow ids, published by every write that
                                       bumps a flow's revision
=========================  ==========  ===========================================

Deployments (URL forms and timeouts: ``router.store.redis_client``):

* One server, or Sentinel: exactly the layout above. Every key of one flow
  carries the flow's hash tag.
* Cluster: a script may only touch keys of one hash slot, and flow create,
  rename and delete touch the global name index and a flow's keys at once.
  Rather than split those writes into steps that readers would have to
  tolerate half-done, the store puts *all* its keys in one slot: the prefix
  itself becomes the hash tag (``{fr}:flow_names``, ``{fr}:{flow:<id>}:meta``;
  Redis hashes only the first ``{…}`` of a key). Every script, quota check and
  revision bump is then exactly as atomic as on one server. The trade-off: the
  cluster gives flow-router failover (and room for other applications' data)
  but does not shard flow-router's own keys, which all live on the one master
  that owns the prefix's slot. That data set is small (flows, versions,
  aliases, and named executions until their TTL), and routing reads none of it
  on the hot path. The change feed uses plain PUBLISH, which a cluster
  broadcasts to every node, so the subscriber may sit on any node.

Failures: a command that cannot reach Redis within the client's timeouts raises
``Unavailable``, which the dialects answer with a retryable error; no command is
retried behind the caller's back (see ``router.store.redis_client``), and each
write is one script, so a failed write has written nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.errors import (
    AliasAlreadyExists,
    AliasNotFound,
    Conflict,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    FlowAlreadyExists,
    FlowNotFound,
    InvalidToken,
    ResourceInUse,
    RouterError,
    Unavailable,
    VersionNotFound,
)
from router.model import Alias, AliasUpdate, Flow, FlowUpdate, FlowVersion, Route
from router.store import redis_scripts as lua
from router.store.base import (
    ExecutionRecord,
    FlowSnapshot,
    IdempotencyRecord,
    Page,
    quota_exceeded,
)
from router.store.redis_client import Clients, connect, defaults

log = logging.getLogger("flow_router.store")

P = ParamSpec("P")
R = TypeVar("R")

_MAX_ATTEMPTS = 100  # optimistic retries of one read-modify-write
# Failures that mean "Redis is not there (now)": the caller may retry later.
# ReadOnlyError: a Sentinel master demoted under us; the cluster errors: a node
# or the slot's master is down, or the client cannot reach any node to learn
# the topology (RedisClusterException).
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    RedisClusterException,
    OSError,
)


def _reachable(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn Redis connection failures into ``Unavailable``."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except _UNREACHABLE as e:
            raise Unavailable(f"redis is unavailable: {e}") from e

    return call


# -- encoding ------------------------------------------------------------------


def encode_flow(flow: Flow) -> bytes:
    fields = {name: getattr(flow, name) for name in Flow.__slots__}
    fields["tags"] = dict(flow.tags)
    return orjson.dumps(fields)


def decode_flow(raw: bytes | str) -> Flow:
    return Flow(**orjson.loads(raw))


def encode_version_fields(description: str, created_at: int) -> bytes:
    return orjson.dumps({"description": description, "created_at": created_at})


def decode_version(flow_id: str, number: int, raw: bytes) -> FlowVersion:
    own, flow = orjson.loads(raw)
    return FlowVersion(
        flow_id=flow_id,
        version=number,
        description=own["description"],
        definition=flow["definition"],
        role_arn=flow["role_arn"],
        created_at=own["created_at"],
    )


def encode_alias(alias: Alias) -> bytes:
    fields = {name: getattr(alias, name) for name in Alias.__slots__ if name != "flow_id"}
    fields["routes"] = [[r.version, r.weight] for r in alias.routes]
    fields["tags"] = dict(alias.tags)
    return orjson.dumps(fields)


def decode_alias(flow_id: str, raw: bytes) -> Alias:
    fields = orjson.loads(raw)
    fields["routes"] = tuple(Route(v, w) for v, w in fields["routes"])
    return Alias(flow_id=flow_id, **fields)


def encode_execution(record: ExecutionRecord) -> bytes:
    return orjson.dumps({name: getattr(record, name) for name in ExecutionRecord.__slots__})


def decode_execution(raw: bytes) -> ExecutionRecord:
    return ExecutionRecord(**orjson.loads(raw))


def encode_token(record: IdempotencyRecord) -> bytes:
    return orjson.dumps({"fingerprint": record.fingerprint, "resource": record.resource})


def decode_token(raw: bytes | str) -> IdempotencyRecord:
    return IdempotencyRecord(**orjson.loads(raw))


# -- keys and script answers -----------------------------------------------------


class _FlowKeys:
    __slots__ = (
        "alias_ids",
        "alias_index",
        "aliases",
        "base",
        "exec_index",
        "execs",
        "meta",
        "versions",
        "vindex",
    )

    def __init__(self, prefix: str, flow_id: str) -> None:
        self.base = f"{prefix}:{{flow:{flow_id}}}:"
        self.meta = self.base + "meta"
        self.versions = self.base + "versions"
        self.vindex = self.base + "vindex"
        self.aliases = self.base + "aliases"
        self.alias_index = self.base + "alias_index"
        self.alias_ids = self.base + "alias_ids"
        self.execs = self.base + "execs"
        self.exec_index = self.base + "exec_index"

    def execution(self, name: str) -> str:
        return f"{self.base}exec:{name}"


_ERRORS: dict[bytes, Callable[..., RouterError]] = {
    b"FLOW_EXISTS": FlowAlreadyExists,
    b"FLOW_IN_USE": lambda name: ResourceInUse(f"flow {name} still has aliases"),
    b"VERSION_NOT_FOUND": VersionNotFound,
    b"VERSION_IN_USE": lambda v, alias: ResourceInUse(f"version {v} is routed to by alias {alias}"),
    b"ALIAS_EXISTS": AliasAlreadyExists,
    b"ALIAS_NOT_FOUND": AliasNotFound,
    b"EXECUTION_EXISTS": ExecutionAlreadyExists,
    b"QUOTA_EXCEEDED": quota_exceeded,
}


def _checked(reply: list[Any], flow_ref: str) -> list[Any]:
    """The payload of an ``OK`` answer; any error code raised as its domain error."""
    status = reply[0]
    if status == b"OK":
        return reply[1:]
    if status == b"FLOW_NOT_FOUND":
        raise FlowNotFound(flow_ref)
    raise _ERRORS[status](*(d.decode() for d in reply[1:]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _page_start(token: str | None, mode: str) -> str:
    if mode == "lex":
        return f"[{token}" if token else "-"
    if not token:
        return "-inf"
    try:
        return str(int(token))
    except ValueError:
        raise InvalidToken() from None


def _next_page(keys: Sequence[bytes], limit: int) -> str | None:
    return keys[limit].decode() if len(keys) > limit else None


def _limit(value: int | None) -> int | str:
    """A quota as a script argument: ``''`` for none."""
    return "" if value is None else value


class RedisStore:
    def __init__(
        self, client: redis.asyncio.Redis | RedisCluster | Clients, prefix: str = "fr"
    ) -> None:
        clients = client if isinstance(client, Clients) else Clients(client)
        self._clients = clients
        self._client = clients.client
        if clients.cluster:
            # One slot for everything (see the module docstring).
            if "{" in prefix or "}" in prefix:
                raise ValueError(f"key prefix {prefix!r}: no braces with Redis Cluster")
            prefix = f"{{{prefix}}}"
        self.prefix = prefix
        self._subscriptions = 0  # cluster: which node the next subscriber tries
        self._names = f"{prefix}:flow_names"
        self._index = f"{prefix}:flow_index"
        self._channel = f"{prefix}:changes"
        script = self._client.register_script
        self._create_flow = script(lua.CREATE_FLOW)
        self._update_flow = script(lua.UPDATE_FLOW)
        self._delete_flow = script(lua.DELETE_FLOW)
        self._publish_version = script(lua.PUBLISH_VERSION)
        self._delete_version = script(lua.DELETE_VERSION)
        self._create_alias = script(lua.CREATE_ALIAS)
        self._update_alias = script(lua.UPDATE_ALIAS)
        self._delete_alias = script(lua.DELETE_ALIAS)
        self._record_execution = script(lua.RECORD_EXECUTION)
        self._list_executions = script(lua.LIST_EXECUTIONS)
        self._put_token = script(lua.PUT_TOKEN)
        self._take_token = script(lua.TAKE_TOKEN)
        self._page = script(lua.PAGE)
        self._latest_version = script(lua.LATEST_VERSION)
        self._alias_by_id = script(lua.ALIAS_BY_ID)
        self._snapshot = script(lua.SNAPSHOT)
        self._flow_read = script(lua.FLOW_READ)
        self._alias_at_revision = script(lua.ALIAS_AT_REVISION)

    @classmethod
    def from_url(cls, url: str, prefix: str = "fr") -> RedisStore:
        """A store on a ``redis://``, ``redis+sentinel://`` or ``redis+cluster://`` URL."""
        return cls(connect(url), prefix)

    def _keys(self, flow_id: str) -> _FlowKeys:
        return _FlowKeys(self.prefix, flow_id)

    async def _run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], flow_ref: str
    ) -> list[Any]:
        return _checked(await script(keys=keys, args=args), flow_ref)

    async def _attempt(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], flow_ref: str
    ) -> bool:
        """Run an optimistic write; False when the flow moved since it was read."""
        reply: list[Any] = await script(keys=keys, args=args)
        if reply[0] == b"RETRY":
            return False
        _checked(reply, flow_ref)
        return True

    async def _page_of(
        self, keys: Sequence[str], mode: str, limit: int, token: str | None, flow_ref: str
    ) -> tuple[list[bytes], list[bytes], str | None]:
        count = max(limit, 0) + 1
        found, values = await self._run(
            self._page, keys, [mode, _page_start(token, mode), count], flow_ref
        )
        return found[:limit], values[:limit], _next_page(found, limit)

    # flows ----------------------------------------------------------------------
    @_reachable
    async def create_flow(self, flow: Flow, *, max_flows: int | None = None) -> None:
        keys = [self._names, self._index, self._keys(flow.id).meta]
        args = [flow.name, flow.id, encode_flow(flow), _limit(max_flows)]
        await self._run(self._create_flow, keys, args, flow.id)

    @_reachable
    async def get_flow(self, name: str) -> Flow:
        flow_id = await self._client.hget(self._names, name)
        raw = await self._client.hget(self._keys(_text(flow_id)).meta, "flow") if flow_id else None
        flow = decode_flow(raw) if raw else None
        if flow is None or flow.name != name:  # gone or renamed between the two reads
            raise FlowNotFound(name)
        return flow

    @_reachable
    async def get_flow_by_id(self, flow_id: str) -> Flow:
        raw = await self._client.hget(self._keys(flow_id).meta, "flow")
        if raw is None:
            raise FlowNotFound(flow_id)
        return decode_flow(raw)

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
        flows = [decode_flow(raw) for raw in raws if raw is not None]
        listed = {name.decode() for name in names}
        return Page([f for f in flows if f.name in listed], following)

    @_reachable
    async def update_flow(self, flow_id: str, update: FlowUpdate, at: int) -> Flow:
        keys = self._keys(flow_id)
        for _ in range(_MAX_ATTEMPTS):
            raw, rev = await self._client.hmget(keys.meta, ["flow", "rev"])
            if raw is None:
                raise FlowNotFound(flow_id)
            new = update.apply(decode_flow(raw), at)
            args = [rev, new.name, encode_flow(new), flow_id, self._channel]
            meta = [self._names, self._index, keys.meta]
            if await self._attempt(self._update_flow, meta, args, flow_id):
                return new
        raise Conflict(f"flow {flow_id} is being changed concurrently; try again")

    @_reachable
    async def delete_flow(self, flow_id: str, *, force: bool) -> Flow:
        k = self._keys(flow_id)
        keys = [self._names, self._index, k.meta, k.versions, k.vindex]
        keys += [k.aliases, k.alias_index, k.alias_ids, k.execs, k.exec_index]
        args = ["1" if force else "0", flow_id, self._channel, k.execution("")]
        (raw,) = await self._run(self._delete_flow, keys, args, flow_id)
        return decode_flow(raw)

    # versions -------------------------------------------------------------------
    @_reachable
    async def publish_version(
        self, flow_id: str, description: str, at: int, *, max_versions: int | None = None
    ) -> FlowVersion:
        k = self._keys(flow_id)
        own = encode_version_fields(description, at)
        number, raw = await self._run(
            self._publish_version,
            [k.meta, k.versions, k.vindex],
            [own, _limit(max_versions)],
            flow_id,
        )
        return decode_version(flow_id, number, raw)

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
        return decode_version(flow_id, version, raw)

    @_reachable
    async def latest_version(self, flow_id: str) -> FlowVersion | None:
        k = self._keys(flow_id)
        found = await self._run(self._latest_version, [k.meta, k.versions, k.vindex], [], flow_id)
        return decode_version(flow_id, found[0], found[1]) if found else None

    @_reachable
    async def list_versions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[FlowVersion]:
        k = self._keys(flow_id)
        numbers, raws, following = await self._page_of(
            [k.vindex, k.versions, k.meta], "score", limit, token, flow_id
        )
        items = [decode_version(flow_id, int(n), raw) for n, raw in zip(numbers, raws, strict=True)]
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
        args: list[Any] = [alias.name, alias.id, encode_alias(alias), alias.flow_id, self._channel]
        args += [_limit(max_aliases)]
        args += [r.version for r in alias.routes]
        await self._run(self._create_alias, self._alias_keys(alias.flow_id), args, alias.flow_id)

    @_reachable
    async def get_alias(self, flow_id: str, name: str) -> Alias:
        raw = await self._read(flow_id, self._keys(flow_id).aliases, name)
        if raw is None:
            raise AliasNotFound(name)
        return decode_alias(flow_id, raw)

    @_reachable
    async def get_alias_by_id(self, flow_id: str, alias_id: str) -> Alias:
        k = self._keys(flow_id)
        keys = [k.meta, k.aliases, k.alias_ids]
        (raw,) = await self._run(self._alias_by_id, keys, [alias_id], flow_id)
        return decode_alias(flow_id, raw)

    @_reachable
    async def list_aliases(self, flow_id: str, limit: int, token: str | None = None) -> Page[Alias]:
        k = self._keys(flow_id)
        _, raws, following = await self._page_of(
            [k.alias_index, k.aliases, k.meta], "lex", limit, token, flow_id
        )
        return Page([decode_alias(flow_id, raw) for raw in raws], following)

    @_reachable
    async def update_alias(self, flow_id: str, name: str, update: AliasUpdate, at: int) -> Alias:
        k = self._keys(flow_id)
        for _ in range(_MAX_ATTEMPTS):
            rev, raw = await self._run(
                self._alias_at_revision, [k.meta, k.aliases], [name], flow_id
            )
            if raw is None:
                raise AliasNotFound(name)
            new = update.apply(decode_alias(flow_id, raw), at)
            args: list[Any] = [
                rev,
                name,
                new.name,
                encode_alias(new),
                new.id,
                flow_id,
                self._channel,
            ]
            if update.routes is not None:  # only new routes must name existing versions
                args += [r.version for r in new.routes]
            if await self._attempt(self._update_alias, self._alias_keys(flow_id), args, flow_id):
                return new
        raise Conflict(f"flow {flow_id} is being changed concurrently; try again")

    @_reachable
    async def delete_alias(self, flow_id: str, name: str) -> Alias:
        k = self._keys(flow_id)
        keys = [k.meta, k.aliases, k.alias_index, k.alias_ids]
        (raw,) = await self._run(self._delete_alias, keys, [name, flow_id, self._channel], flow_id)
        return decode_alias(flow_id, raw)

    # executions -----------------------------------------------------------------
    @_reachable
    async def record_execution(self, record: ExecutionRecord, ttl_s: int) -> None:
        k = self._keys(record.flow_id)
        keys = [k.meta, k.execution(record.name), k.execs, k.exec_index]
        args = [record.name, encode_execution(record), ttl_s]
        await self._run(self._record_execution, keys, args, record.flow_id)

    @_reachable
    async def get_execution(self, flow_id: str, name: str) -> ExecutionRecord:
        raw = await self._read(flow_id, self._keys(flow_id).execution(name))
        if raw is None:
            raise ExecutionNotFound(name)
        return decode_execution(raw)

    @_reachable
    async def list_executions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[ExecutionRecord]:
        k = self._keys(flow_id)
        start = f"[{token}" if token else "-"
        args = [start, max(limit, 0) + 1, k.execution("")]
        names, records = await self._run(
            self._list_executions, [k.meta, k.exec_index], args, flow_id
        )
        return Page([decode_execution(r) for r in records[:limit]], _next_page(names, limit))

    # idempotency tokens -----------------------------------------------------------
    def _token_key(self, scope: str, token: str) -> str:
        return f"{self.prefix}:token:{len(scope)}:{scope}:{token}"

    @_reachable
    async def get_token(self, scope: str, token: str) -> IdempotencyRecord | None:
        raw = await self._client.get(self._token_key(scope, token))
        return decode_token(raw) if raw is not None else None

    @_reachable
    async def put_token(
        self, scope: str, token: str, record: IdempotencyRecord, ttl_s: int
    ) -> IdempotencyRecord:
        key = self._token_key(scope, token)
        stored = await self._put_token(keys=[key], args=[encode_token(record), ttl_s])
        return decode_token(stored) if stored is not None else record

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
            flow_id = _text(found) if found is not None else None
        if flow_id is None:
            raise FlowNotFound(flow_ref)
        k = self._keys(flow_id)
        raw, revision, aliases = await self._run(self._snapshot, [k.meta, k.aliases], [], flow_ref)
        flow = decode_flow(raw)
        if not by_id and flow.name != flow_ref:  # renamed between the two reads
            raise FlowNotFound(flow_ref)
        return FlowSnapshot(flow, tuple(decode_alias(flow_id, a) for a in aliases), revision)

    @_reachable
    async def revisions(self, flow_ids: Sequence[str]) -> list[int | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            for flow_id in flow_ids:
                pipe.hget(self._keys(flow_id).meta, "rev")
            revs = await pipe.execute()
        return [int(r) if r is not None else None for r in revs]

    async def listen(self, on_change: Callable[[str], None], on_resync: Callable[[], None]) -> None:
        """Deliver changes until cancelled; call ``on_resync`` on every (re)subscription.

        Messages published while the subscriber is disconnected are lost, so
        each reconnection, including redis-py's own silent ones, is a resync.
        """
        backoff = 0.05
        while True:
            pubsub: PubSub | None = None
            node: redis.asyncio.Redis | None = None
            resync = _Resync(on_resync)
            try:
                pubsub, node = await self._subscriber()
                await pubsub.subscribe(self._channel)
                _honour_cancellation()
                if pubsub.connection is not None:
                    pubsub.connection.register_connect_callback(resync.connected)
                on_resync()
                backoff = 0.05
                await _follow(pubsub, on_change)
            except _UNREACHABLE as e:
                log.warning("change feed lost (%s); resubscribing in %.2fs", e, backoff)
            finally:
                if pubsub is not None:
                    if pubsub.connection is not None:
                        pubsub.connection.deregister_connect_callback(resync.connected)
                    with contextlib.suppress(*_UNREACHABLE):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                if node is not None:
                    with contextlib.suppress(*_UNREACHABLE):
                        await node.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _subscriber(self) -> tuple[PubSub, redis.asyncio.Redis | None]:
        """A PubSub for the change feed, and the client it owns, if any.

        On a cluster: a plain connection to one node, the next one on every
        resubscription, so a node that is down is not tried forever. PUBLISH is
        broadcast to every node, so any node hears every change.
        """
        client = self._client
        if not isinstance(client, RedisCluster):
            return client.pubsub(ignore_subscribe_messages=True), None
        await client.initialize()
        nodes = client.get_nodes()
        node = nodes[self._subscriptions % len(nodes)]
        self._subscriptions += 1
        options = self._clients.node_options or defaults()
        plain = redis.asyncio.Redis(host=node.host, port=int(node.port), **options)
        return plain.pubsub(ignore_subscribe_messages=True), plain

    # lifecycle --------------------------------------------------------------------
    @_reachable
    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
        for client in self._clients.also_close:
            await client.aclose()


class _Resync:
    """Holds the resync callback: redis-py keeps connect callbacks as weak methods."""

    def __init__(self, on_resync: Callable[[], None]) -> None:
        self._on_resync = on_resync

    def connected(self, connection: AbstractConnection) -> None:
        self._on_resync()


async def _follow(pubsub: PubSub, on_change: Callable[[str], None]) -> None:
    # Wakes up every second rather than blocking for good, so that a swallowed
    # cancellation (see _honour_cancellation) still ends the loop.
    while True:
        _honour_cancellation()
        message = await pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] == "message":
            on_change(message["data"].decode())


def _honour_cancellation() -> None:
    """Raise ``CancelledError`` if this task was cancelled but the error never arrived.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py uses to send commands)
    drops a cancellation that lands as the operation completes, so a
    cancelled ``subscribe`` can return normally.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
