"""The Redis store's rollouts and leases: a mixin of :class:`router.store.redis.RedisStore`
(scripts in ``router.store.redis_rollout_scripts``, keys in ``router.store.redis_codec``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from router.model import Alias
from router.store import redis_codec as codec
from router.store import redis_rollout_scripts as lua
from router.store.base import RolloutWrite, StoredRollout
from router.store.redis_client import FailureLog
from router.store.redis_client import reachable as _reachable
from router.store.redis_codec import FlowKeys, GlobalKeys


class RedisRollouts:
    """Needs from the store: ``_client``, ``prefix``, ``_global``, ``_channel``, ``failures``."""

    _client: redis.asyncio.Redis | RedisCluster
    prefix: str
    _global: GlobalKeys
    _channel: str
    failures: FailureLog

    def _register_rollout_scripts(self) -> None:
        script = self._client.register_script
        self._get_rollout = script(lua.GET_ROLLOUT)
        self._write_rollout = script(lua.WRITE_ROLLOUT)
        self._acquire_lease = script(lua.ACQUIRE_LEASE)
        self._release_lease = script(lua.RELEASE_LEASE)

    async def _run_checked(
        self, script: AsyncScript, keys: list[str], args: list[Any], ref: str
    ) -> list[Any]:
        return codec.checked(await script(keys=keys, args=args), ref)

    @_reachable
    async def get_rollout(self, flow_id: str, alias: str) -> tuple[Alias, StoredRollout | None]:
        k = FlowKeys(self.prefix, flow_id)
        keys = [k.meta, k.aliases, k.rollouts, k.rollout_seq, self._global.active_rollouts]
        raw, doc, seq, active = await self._run_checked(
            self._get_rollout, keys, [alias, f"{flow_id}/{alias}"], flow_id
        )
        found = codec.decode_alias(flow_id, raw)
        if not doc:
            return found, None
        return found, StoredRollout(bytes(doc), int(seq or 0), bool(active))

    @_reachable
    async def write_rollout(self, flow_id: str, write: RolloutWrite, at: int) -> Alias | None:
        k = FlowKeys(self.prefix, flow_id)
        keys = [k.meta, k.versions, k.aliases, k.rollouts, k.rollout_seq]
        keys += [self._global.active_rollouts]
        args: list[Any] = [write.alias, write.seq, write.revision, write.doc]
        args += ["1" if write.active else "0"]
        alias, _ = await self.get_rollout(flow_id, write.alias)
        if alias.revision != write.revision:
            return None
        encoded: bytes | str = ""
        if write.routes is not None:
            # The script writes it only if the stored alias is still at
            # write.revision: the one this was built from.
            alias = replace(alias, routes=write.routes, updated_at=at, revision=alias.revision + 1)
            encoded = codec.encode_alias(alias)
        args += [encoded, flow_id, self._channel, f"{flow_id}/{write.alias}"]
        args += [r.version for r in write.routes or ()]
        reply: list[Any] = await self._write_rollout(keys=keys, args=args)
        if reply[0] == b"RETRY":
            return None
        codec.checked(reply, flow_id)
        return alias

    @_reachable
    async def active_rollouts(self) -> list[tuple[str, str]]:
        members = await self._client.smembers(self._global.active_rollouts)
        pairs = [codec.text(m).partition("/") for m in members]
        return sorted((flow_id, alias) for flow_id, _, alias in pairs)

    @_reachable
    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        got = await self._acquire_lease(keys=[self._global.lease(name)], args=[holder, ttl_ms])
        return bool(got)

    @_reachable
    async def release_lease(self, name: str, holder: str) -> None:
        await self._release_lease(keys=[self._global.lease(name)], args=[holder])
