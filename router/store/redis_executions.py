"""The Redis store's executions, outcome counters, polling schedule and shared secrets.

A mixin of :class:`router.store.redis.RedisStore`; the key layout is in
``router.store.redis_codec`` and the scripts in ``router.store.redis_exec_scripts``.

Round trips: :meth:`put_executions` (the journal's flush) sends one pipeline
of one EVALSHA per flow in the batch, so a flush of any size is one round trip
(on a cluster, one per master holding those flows, sent in parallel). A script
the server does not know (after a restart or failover) is loaded and the
calls it refused are sent again; every write here is safe to repeat.
:meth:`claim_polls` is one pipeline of ZCOUNTs over the shards, then one of
claims where something is due.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from router.errors import ExecutionNotFound, FlowNotFound
from router.lifecycle.record import ExecutionRecord
from router.lifecycle.status import Status
from router.store import redis_codec as codec
from router.store import redis_exec_scripts as lua
from router.store.base import OutcomeKey, Page, PollEntry
from router.store.redis_client import FailureLog
from router.store.redis_client import reachable as _reachable
from router.store.redis_codec import ExecutionKeys, FlowKeys
from router.store.redis_stats import RedisStats, finish_args, stats_index, write_args
from router.store.stats import STATS_TTL_S

Call = tuple[str, Sequence[str], Sequence[Any]]  # script source, keys, args


class RedisExecutions(RedisStats):
    """Needs from the store: ``_client``, ``prefix``, ``raw_prefix``, ``failures``."""

    _client: redis.asyncio.Redis | RedisCluster
    prefix: str
    raw_prefix: str
    failures: FailureLog
    # where claim_polls starts; the store's own generator, not the random module's
    # (whose state a test or another library may be using)
    _shard_rng: random.Random

    def _execution_keys(self, flow_id: str) -> ExecutionKeys:
        return ExecutionKeys(self.raw_prefix, flow_id)

    async def _flow_exists(self, flow_id: str) -> bool:
        return bool(await self._client.exists(FlowKeys(self.prefix, flow_id).meta))

    async def _eval(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        (reply,) = await self._pipelined([(source, keys, args)])
        return reply

    async def _pipelined(self, calls: Sequence[Call]) -> list[Any]:
        """Run the scripts in one pipeline (one round trip); answers in order.

        EVALSHA alone, so no SCRIPT EXISTS round trip per pipeline: a call the
        server refuses with NOSCRIPT is sent again after loading its script.
        """
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):
            async with self._client.pipeline(transaction=False) as pipe:
                for i in todo:
                    source, keys, args = calls[i]
                    # execute_command: a cluster pipeline blocks its evalsha method
                    # (it cannot check the keys share a slot); ours always do.
                    pipe.execute_command("EVALSHA", _sha(source), len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            missing = []
            for i, answer in zip(todo, answers, strict=True):
                if isinstance(answer, NoScriptError):
                    missing.append(i)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[i] = answer
            if not missing:
                return replies
            for source in {calls[i][0] for i in missing}:
                await self._client.script_load(source)
            todo = missing
        raise NoScriptError("scripts could not be loaded")

    def _write_call(
        self, mode: str, flow_id: str, records: Sequence[ExecutionRecord], ttl_s: int
    ) -> Call:
        k = self._execution_keys(flow_id)
        batch = orjson.dumps([codec.execution_args(r) + write_args(r) for r in records])
        args = [mode, ttl_s, k.base, stats_index(self.raw_prefix, flow_id), STATS_TTL_S, batch]
        return lua.WRITE_EXECUTIONS, [k.gone, k.execs, k.outcomes, k.slow], args

    # executions -----------------------------------------------------------------
    @_reachable
    async def claim_execution(self, record: ExecutionRecord, ttl_s: int) -> None:
        # The flow's meta is in another slot on a cluster: checked first. A flow
        # deleted in between has a tombstone the script sees.
        if not await self._flow_exists(record.flow_id):
            raise FlowNotFound(record.flow_id)
        reply = await self._eval(*self._write_call("claim", record.flow_id, [record], ttl_s))
        codec.checked(reply, record.flow_id)

    @_reachable
    async def put_executions(self, records: Sequence[ExecutionRecord], ttl_s: int) -> None:
        by_flow: dict[str, dict[str, ExecutionRecord]] = {}
        for record in records:
            # one name once per script call: the first of a batch wins, as it would
            # one after the other
            by_flow.setdefault(record.flow_id, {}).setdefault(record.name, record)
        calls = [
            self._write_call("put", flow_id, list(named.values()), ttl_s)
            for flow_id, named in by_flow.items()
        ]
        if calls:
            await self._pipelined(calls)  # a deleted flow's records are dropped

    @_reachable
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
        if not status.is_final:
            raise ValueError(f"execution {name}: {status.value} is not a final status")
        k = self._execution_keys(flow_id)
        final = codec.encode_final(status, output, error, cause, at)
        args = [final, status.value, *finish_args(self.raw_prefix, flow_id, at)]
        keys = [k.execution(name), k.outcomes, k.slow]
        reply = await self._eval(lua.FINISH_EXECUTION, keys, args)
        if reply[0] == b"EXECUTION_NOT_FOUND":
            raise ExecutionNotFound(name)
        if len(reply) == 1:
            return None
        return codec.decode_stored(reply[1], final)

    @_reachable
    async def get_execution(self, flow_id: str, name: str) -> ExecutionRecord:
        raw, final = await self._client.hmget(
            self._execution_keys(flow_id).execution(name), ["r", "f"]
        )
        if raw is not None:
            return codec.decode_stored(raw, final)
        if not await self._flow_exists(flow_id):
            raise FlowNotFound(flow_id)
        raise ExecutionNotFound(name)

    @_reachable
    async def list_executions(
        self, flow_id: str, limit: int, token: str | None = None
    ) -> Page[ExecutionRecord]:
        k = self._execution_keys(flow_id)
        score, name = codec.list_start(token)
        args = [score, name, max(limit, 0) + 1, k.base]
        reply = await self._eval(lua.LIST_EXECUTIONS, [k.execs], args)
        page = codec.execution_page(reply[1:], limit)
        if not page.items and not await self._flow_exists(flow_id):
            raise FlowNotFound(flow_id)
        return page

    @_reachable
    async def outcome_counts(self, flow_id: str) -> dict[OutcomeKey, int]:
        raw = await self._client.hgetall(self._execution_keys(flow_id).outcomes)
        if not raw and not await self._flow_exists(flow_id):
            raise FlowNotFound(flow_id)
        return {codec.decode_outcome(f): int(n) for f, n in raw.items()}

    async def _purge_executions(self, flow_id: str) -> None:
        """After delete_flow: the flow's executions and counters (another slot)."""
        k = self._execution_keys(flow_id)
        args = [k.base, codec.TOMBSTONE_TTL_S, stats_index(self.raw_prefix, flow_id)]
        await self._eval(lua.PURGE_EXECUTIONS, [k.execs, k.outcomes, k.gone, k.slow], args)

    @_reachable
    async def set_slow_threshold(self, flow_id: str, alias: str, ms: int | None) -> None:
        # The flow's meta is in another slot on a cluster: checked first; a flow
        # deleted in between has the tombstone the script checks.
        if ms is not None and not await self._flow_exists(flow_id):
            return
        k = self._execution_keys(flow_id)
        args = [alias, "" if ms is None else ms]
        await self._eval(lua.SET_SLOW_THRESHOLD, [k.slow, k.gone], args)

    # polling schedule -------------------------------------------------------------
    def _poll_keys(self, flow_id: str, name: str) -> tuple[list[str], str]:
        member = codec.poll_member(flow_id, name)
        return list(codec.poll_keys(self.raw_prefix, codec.poll_shard(member))), member

    async def schedule_poll(self, flow_id: str, name: str, due_ms: int, attempt: int) -> None:
        await self.schedule_polls([(flow_id, name, due_ms, attempt)])

    @_reachable
    async def schedule_polls(self, entries: Sequence[PollEntry]) -> None:
        # One script call per shard touched, all in one pipeline: one round trip.
        by_shard: dict[int, list[Any]] = {}
        for flow_id, name, due_ms, attempt in entries:
            member = codec.poll_member(flow_id, name)
            by_shard.setdefault(codec.poll_shard(member), []).extend((member, due_ms, attempt))
        calls: list[Call] = [
            (lua.SCHEDULE_POLLS, list(codec.poll_keys(self.raw_prefix, shard)), args)
            for shard, args in by_shard.items()
        ]
        if calls:
            await self._pipelined(calls)

    @_reachable
    async def cancel_poll(self, flow_id: str, name: str) -> None:
        keys, member = self._poll_keys(flow_id, name)
        await self._eval(lua.CANCEL_POLL, keys, [member])

    @_reachable
    async def claim_polls(
        self, now_ms: int, limit: int, lease_ms: int
    ) -> list[tuple[str, str, int]]:
        if limit <= 0:
            return []
        # Shards in round-robin order from a random one, so that replicas
        # asking at once start in different places.
        first = self._shard_rng.randrange(codec.POLL_SHARDS)
        shards = [(first + i) % codec.POLL_SHARDS for i in range(codec.POLL_SHARDS)]
        keys = [codec.poll_keys(self.raw_prefix, s) for s in shards]
        async with self._client.pipeline(transaction=False) as pipe:
            for due, _ in keys:
                pipe.zcount(due, "-inf", now_ms)
            counts = await pipe.execute()
        calls: list[Call] = []
        left = limit
        for (due, attempts), count in zip(keys, counts, strict=True):
            if left and count:
                take = min(left, int(count))
                calls.append((lua.CLAIM_POLLS, [due, attempts], [now_ms, take, now_ms + lease_ms]))
                left -= take
        claimed: list[tuple[str, str, int]] = []
        for reply in await self._pipelined(calls) if calls else []:
            for i in range(0, len(reply), 2):
                flow_id, _, name = reply[i].decode().partition("/")
                claimed.append((flow_id, name, int(reply[i + 1])))
        return claimed

    # shared secrets ---------------------------------------------------------------
    @_reachable
    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        stored: bytes = await self._eval(
            lua.SHARED_SECRET, [f"{self.prefix}:secret:{name}"], [candidate]
        )
        return stored


def _sha(source: str) -> str:
    """The name Redis gives a script (SHA-1 of its source; about 1 µs a call)."""
    return hashlib.sha1(source.encode()).hexdigest()
