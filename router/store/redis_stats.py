"""The Redis store's statistics buckets (``router.store.stats``): keys, script
arguments and the one read.

The buckets are written by the execution scripts (``redis_exec_scripts``)
inside the writes that count starts and outcomes, so they add no round trip;
:meth:`RedisStats.execution_stats` reads a range of them in one pipeline
(one round trip; on a cluster, one per node holding the flow's meta or its
buckets, sent in parallel).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from router.errors import FlowNotFound
from router.lifecycle.record import ExecutionRecord
from router.store.redis_client import FailureLog
from router.store.redis_client import reachable as _reachable
from router.store.redis_codec import FlowKeys
from router.store.stats import (
    MAX_BUCKETS,
    RUN_BOUNDS_MS,
    STATS_TTL_S,
    ExecutionStats,
    bin_field,
    bucket_of,
    bucket_range,
    decode_field,
)


def stats_index(raw_prefix: str, flow_id: str) -> str:
    """``R:x:{F}:stats``: the flow's bucket numbers (so deleting the flow deletes them);
    bucket ``n`` is the hash ``R:x:{F}:stats:<n>``, in the same slot."""
    return f"{raw_prefix}:x:{{{flow_id}}}:stats"


def write_args(record: ExecutionRecord) -> list[Any]:
    """The statistics values of one execution in WRITE_EXECUTIONS: 4, and a final
    record's run time (ms) for the slow counters."""
    started = bucket_of(record.started_at)
    if not record.is_final or record.stopped_at is None:
        return [record.started_at, started, "", ""]
    run_ms = record.stopped_at - record.started_at
    return [record.started_at, started, bucket_of(record.stopped_at), bin_field(run_ms), run_ms]


def finish_args(raw_prefix: str, flow_id: str, at: int) -> list[Any]:
    """The 4 statistics values of FINISH_EXECUTION."""
    return [stats_index(raw_prefix, flow_id), STATS_TTL_S, at, bucket_of(at)]


# Lua: ``Stats(index, ttl)`` counts ``field`` in bucket ``n`` with ``count(n, field)``,
# adding up in the script first: ``close()`` writes one HINCRBY per distinct counter
# (a journal flush of 256 executions of one version bumps a handful), gives each
# bucket touched its TTL and its place in the index, renews the index's TTL and
# forgets numbers long expired.
LUA_STAT = f"""
local function Stats(index, ttl)
  local pending, self = {{}}, {{}}
  function self.count(n, field)
    local bucket = pending[n]
    if not bucket then
      bucket = {{}}
      pending[n] = bucket
    end
    bucket[field] = (bucket[field] or 0) + 1
  end
  function self.close()
    local newest = nil
    for n, fields in pairs(pending) do
      local key = index .. ':' .. n
      for field, by in pairs(fields) do redis.call('HINCRBY', key, field, by) end
      redis.call('EXPIRE', key, ttl)
      redis.call('ZADD', index, n, n)
      local b = tonumber(n)
      if newest == nil or b > newest then newest = b end
    end
    if newest ~= nil then
      redis.call('EXPIRE', index, ttl)
      redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (newest - {2 * MAX_BUCKETS}))
    end
  end
  return self
end
"""

# Lua: ``run_bin(ms)``, the same bin as ``router.store.stats.run_bin``.
LUA_RUN_BIN = f"""
local bounds = {{{", ".join(map(str, RUN_BOUNDS_MS))}}}
local function run_bin(ms)
  for j = 1, #bounds do
    if ms <= bounds[j] then return j - 1 end
  end
  return #bounds
end
"""


class RedisStats:
    """Needs from the store: ``_client``, ``prefix``, ``raw_prefix``, ``failures``."""

    _client: redis.asyncio.Redis | RedisCluster
    prefix: str
    raw_prefix: str
    failures: FailureLog

    @_reachable
    async def execution_stats(self, flow_id: str, since_ms: int, until_ms: int) -> ExecutionStats:
        buckets = bucket_range(since_ms, until_ms)
        index = stats_index(self.raw_prefix, flow_id)
        async with self._client.pipeline(transaction=False) as pipe:
            # The flow's meta too: a deleted flow's buckets live until their TTL.
            pipe.exists(FlowKeys(self.prefix, flow_id).meta)
            for n in buckets:
                pipe.hgetall(f"{index}:{n}")
            exists, *replies = await pipe.execute()
        if not exists:
            raise FlowNotFound(flow_id)
        return {
            n: {decode_field(f): int(v) for f, v in reply.items()}
            for n, reply in zip(buckets, replies, strict=True)
            if reply
        }
