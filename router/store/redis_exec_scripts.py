"""Lua source of the Redis store's execution, outcome, polling and secret scripts.

Key layout: ``router.store.redis_codec``. Every script here touches the keys of
one hash slot only: one flow's execution keys (tag ``{<flow id>}``) or one poll
shard (tag ``{<shard>}``), so each runs on one master of a cluster. Answers
follow ``router.store.redis_scripts``: a status first (``OK`` or an error code).

An execution is a hash: ``r`` the record as written (JSON), ``k`` its counter
base ``alias|revision|version``, and ``f`` once final: ``''`` when the record
was written final, else the final part (JSON: status, at, output, error,
cause) written by the one transition. ``f`` is written by at most one script
call, and the outcome counter is bumped by that same call. So are the flow's
statistics buckets (``router.store.stats``, ``router.store.redis_stats``):
``s``, the start time (ms) of a record written Running, lets the transition
count its run time.
"""

from __future__ import annotations

from router.lifecycle.status import Status
from router.store.base import SLOW, SLOW_SUCCEEDED
from router.store.redis_stats import LUA_RUN_BIN, LUA_STAT

# Lua: ``count_slow(outcomes, threshold, base, status, run_ms)`` bumps the slow
# counters (``Store.set_slow_threshold``) of an execution that ran longer than
# ``threshold`` ms (nil: none set); ``alias_of(base)`` is the alias of a
# counter base ``alias|revision|version`` (the alias is what may hold a '|').
LUA_SLOW = f"""
local function alias_of(base)
  return string.match(base, '^(.*)|[^|]*|[^|]*$')
end
local function count_slow(outcomes, threshold, base, status, run_ms)
  if threshold == nil or run_ms == nil or run_ms <= threshold then return end
  redis.call('HINCRBY', outcomes, base .. '|{SLOW}', 1)
  if status == '{Status.SUCCEEDED.value}' then
    redis.call('HINCRBY', outcomes, base .. '|{SLOW_SUCCEEDED}', 1)
  end
end
"""

# KEYS: gone, execs, outcomes, slow thresholds.
# ARGV: mode ('put' | 'claim'), ttl seconds, prefix of the execution keys, the
# statistics index and its buckets' TTL seconds, then ONE JSON array with an
# entry of 9 values per execution: record (JSON text), counter base, final
# status ('' while Running), score (-started_at), name, started_at, the
# statistics bucket of the start, and of the final status and its run-time bin
# field ('' and '' while Running); a final record's entry has a 10th, its run
# time (ms), for the slow counters (read only while a threshold is set). One
# argument for the whole batch, because packing nine arguments per execution
# cost the gateway more CPU than the rest of the flush (the record stays a JSON
# string inside it: no number of the record is ever decoded by Lua). Execution
# keys are the prefix plus the name: the same hash tag as the declared keys, so
# the same slot.
# 'put' skips a taken name; 'claim' answers EXECUTION_EXISTS (then it holds one
# execution). A record is written, and counted, only where its key is free, so a
# batch sent again writes and counts nothing twice. A deleted flow's tombstone
# (``gone``) refuses every write. Afterwards the oldest entries of ``execs``
# whose records have expired are pruned, a few more than were written, so the
# index never outgrows the live records by much.
WRITE_EXECUTIONS = (
    LUA_STAT
    + LUA_SLOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'FLOW_NOT_FOUND'} end
local slow = nil
if redis.call('EXISTS', KEYS[4]) == 1 then
  slow = {}
  local set = redis.call('HGETALL', KEYS[4])
  for i = 1, #set, 2 do slow[set[i]] = tonumber(set[i + 1]) end
end
local ttl = tonumber(ARGV[2])
local stats = Stats(ARGV[4], ARGV[5])
local batch = cjson.decode(ARGV[6])
local written = 0
for _, e in ipairs(batch) do
  local key = ARGV[3] .. e[5]
  if redis.call('EXISTS', key) == 1 then
    if ARGV[1] == 'claim' then return {'EXECUTION_EXISTS', e[5]} end
  elseif ttl > 0 then
    if e[3] == '' then
      redis.call('HSET', key, 'r', e[1], 'k', e[2], 's', tostring(e[6]))
    else
      redis.call('HSET', key, 'r', e[1], 'k', e[2], 'f', '')
      redis.call('HINCRBY', KEYS[3], e[2] .. '|' .. e[3], 1)
      stats.count(tostring(e[8]), e[2] .. '|' .. e[3])
      stats.count(tostring(e[8]), e[2] .. '|' .. e[9])
      if slow then count_slow(KEYS[3], slow[alias_of(e[2])], e[2], e[3], e[10]) end
    end
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', KEYS[2], e[4], e[5])
    redis.call('HINCRBY', KEYS[3], e[2] .. '|Started', 1)
    stats.count(tostring(e[7]), e[2] .. '|Started')
    written = written + 1
  end
end
stats.close()
if written > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], -(written + 2), -1)
  for j = #oldest, 1, -1 do
    if redis.call('EXISTS', ARGV[3] .. oldest[j]) == 1 then break end
    redis.call('ZREM', KEYS[2], oldest[j])
  end
end
return {'OK', written}
"""
)

# KEYS: execution, outcomes, slow thresholds.  ARGV: final part (JSON), status,
# the statistics index, its buckets' TTL seconds, the final time (ms) and its
# bucket.
# Answers {'OK', record} when this call made the transition, {'OK'} when the
# execution was already final, {'EXECUTION_NOT_FOUND'} when it is missing or
# expired. The hash keeps its TTL (HSET on an existing key does not touch it).
# A record without ``s`` (written before statistics) counts no run time, and so
# is never slow.
FINISH_EXECUTION = (
    LUA_STAT
    + LUA_RUN_BIN
    + LUA_SLOW
    + """
local cur = redis.call('HMGET', KEYS[1], 'r', 'k', 'f', 's')
if not cur[1] then return {'EXECUTION_NOT_FOUND'} end
if cur[3] then return {'OK'} end
redis.call('HSET', KEYS[1], 'f', ARGV[1])
redis.call('HINCRBY', KEYS[2], cur[2] .. '|' .. ARGV[2], 1)
local stats = Stats(ARGV[3], ARGV[4])
stats.count(ARGV[6], cur[2] .. '|' .. ARGV[2])
if cur[4] then
  local run_ms = math.max(tonumber(ARGV[5]) - tonumber(cur[4]), 0)
  stats.count(ARGV[6], cur[2] .. '|h' .. run_bin(run_ms))
  local threshold = redis.call('HGET', KEYS[3], alias_of(cur[2]))
  count_slow(KEYS[2], tonumber(threshold), cur[2], ARGV[2], run_ms)
end
stats.close()
return {'OK', cur[1]}
"""
)

# KEYS: execs.  ARGV: first score, first name ('' for none), count, prefix of
# the execution keys.  Answers {'OK', r1, f1, r2, f2, ...}: up to ``count``
# live executions in (score, name) order (newest first: the score is
# -started_at) from (first score, first name) on. Entries whose record has
# expired are pruned on the way (the offset accounts for them).
LIST_EXECUTIONS = """
local want = tonumber(ARGV[3])
local first = tonumber(ARGV[1])
local out = {'OK'}
local found = 0
local offset = 0
while found < want do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES',
                           'LIMIT', offset, want)
  if #batch == 0 then break end
  local removed = 0
  for i = 1, #batch, 2 do
    local name = batch[i]
    if found < want and not (ARGV[2] ~= '' and tonumber(batch[i + 1]) == first
                             and name < ARGV[2]) then
      local h = redis.call('HMGET', ARGV[4] .. name, 'r', 'f')
      if h[1] then
        out[#out + 1] = h[1]
        out[#out + 1] = h[2] or ''
        found = found + 1
      else
        redis.call('ZREM', KEYS[1], name)
        removed = removed + 1
      end
    end
  end
  offset = offset + #batch / 2 - removed
end
return out
"""

# KEYS: execs, outcomes, gone, slow thresholds.  ARGV: prefix of the execution
# keys, tombstone TTL seconds, the statistics index.  Deletes a flow's
# executions, counters, statistics and slow thresholds, and leaves a tombstone
# so that a journal flush arriving late writes nothing.
PURGE_EXECUTIONS = """
local function purge(index, prefix)
  local names = redis.call('ZRANGE', index, 0, -1)
  for i = 1, #names, 500 do
    local batch = {}
    for j = i, math.min(i + 499, #names) do batch[#batch + 1] = prefix .. names[j] end
    redis.call('DEL', unpack(batch))
  end
end
purge(KEYS[1], ARGV[1])
purge(ARGV[3], ARGV[3] .. ':')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], ARGV[3])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
return {'OK'}
"""

# KEYS: slow thresholds, gone.  ARGV: alias, threshold ms ('' to clear).
SET_SLOW_THRESHOLD = """
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
elseif redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return {'OK'}
"""

# -- the shared polling schedule (one shard: a sorted set and its attempts) -----------

# KEYS: due, attempts.  ARGV: member, due ms, attempt, then more such triples
# (all of this shard): a journal flush schedules its Running records at once.
SCHEDULE_POLLS = """
for i = 1, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
return 1
"""

# KEYS: due, attempts.  ARGV: member.
CANCEL_POLL = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: due, attempts.  ARGV: now ms, limit, lease end ms.  Answers
# {member1, attempt1, ...}: the entries due at or before now (at most limit),
# each moved to the lease end, so no other claimer gets it until then.
CLAIM_POLLS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due == 0 then return {} end
local attempts = redis.call('HMGET', KEYS[2], unpack(due))
local out = {}
for i = 1, #due do
  redis.call('ZADD', KEYS[1], ARGV[3], due[i])
  out[#out + 1] = due[i]
  out[#out + 1] = attempts[i] or '0'
end
return out
"""

# KEYS: secret.  ARGV: candidate.  Answers the stored value (set if absent, no TTL).
SHARED_SECRET = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
