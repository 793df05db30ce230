"""Lua source of the Redis store's scripts; the key layout is in ``router.store.redis``.

Each write is one script, so it runs atomically on the server: no other command
interleaves between its checks and its writes. Every script answers a table
whose first element is a status: ``OK`` followed by the payload, ``RETRY`` when
an optimistic check failed (the caller re-reads and tries again), or one of the
error codes that ``router.store.redis`` maps to ``router.errors``.

The flow's revision (``rev`` in the meta hash) is bumped, and the flow id
published on the change channel, by every write that changes the flow or its
aliases: that is what route caches follow.
"""

from __future__ import annotations

# Shared by the scripts that check an alias's routes: ARGV[first..] are versions.
CHECK_ROUTES = """
local function missing_route(versions, first)
  for i = first, #ARGV do
    if redis.call('HEXISTS', versions, ARGV[i]) == 0 then return ARGV[i] end
  end
  return nil
end
"""

# Quota arguments are the limit, or '' for none; the count is read in the same
# script as the write, so concurrent creates cannot overshoot it.

# KEYS: flow_names, flow_index, meta.  ARGV: name, id, flow, max flows.
CREATE_FLOW = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'FLOW_EXISTS', ARGV[1]} end
if ARGV[4] ~= '' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return {'QUOTA_EXCEEDED', 'max-flows', ARGV[4]}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('HSET', KEYS[3], 'name', ARGV[1], 'flow', ARGV[3], 'rev', 1, 'vseq', 0)
return {'OK'}
"""

# KEYS: flow_names, flow_index, meta.  ARGV: expected rev, new name, flow, id, channel.
UPDATE_FLOW = """
local cur = redis.call('HMGET', KEYS[3], 'name', 'rev')
if not cur[1] then return {'FLOW_NOT_FOUND'} end
if cur[2] ~= ARGV[1] then return {'RETRY'} end
if ARGV[2] ~= cur[1] then
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return {'FLOW_EXISTS', ARGV[2]} end
  redis.call('HDEL', KEYS[1], cur[1])
  redis.call('ZREM', KEYS[2], cur[1])
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
redis.call('HSET', KEYS[3], 'name', ARGV[2], 'flow', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'rev', 1)
redis.call('PUBLISH', ARGV[5], ARGV[4])
return {'OK'}
"""

# KEYS: flow_names, flow_index, meta, versions, vindex, aliases, alias_index,
# alias_ids, execs, exec_index, rollouts, rollout_seq, active rollouts.
# ARGV: force ('1'), id, channel, prefix of the execution keys.
# execs and exec_index are the legacy (v1) execution index: the execution keys
# named from it are those a v1 gateway wrote, which share the flow's hash tag.
# The v2 execution keys are in another slot: RedisStore.delete_flow deletes
# them next (router.store.redis_exec_scripts.PURGE_EXECUTIONS).
DELETE_FLOW = """
local cur = redis.call('HMGET', KEYS[3], 'name', 'flow')
if not cur[1] then return {'FLOW_NOT_FOUND'} end
if ARGV[1] ~= '1' and redis.call('HLEN', KEYS[6]) > 0 then return {'FLOW_IN_USE', cur[1]} end
local execs = redis.call('ZRANGE', KEYS[9], 0, -1)
for i = 1, #execs, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #execs) do batch[#batch + 1] = ARGV[4] .. execs[j] end
  redis.call('DEL', unpack(batch))
end
if redis.call('HGET', KEYS[1], cur[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], cur[1])
  redis.call('ZREM', KEYS[2], cur[1])
end
for _, name in ipairs(redis.call('HKEYS', KEYS[12])) do
  redis.call('SREM', KEYS[13], ARGV[2] .. '/' .. name)
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
redis.call('DEL', KEYS[11], KEYS[12])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return {'OK', cur[2]}
"""

# KEYS: meta, versions, vindex.  ARGV: the version's own fields (JSON), max versions.
# The stored value is ``[own fields, flow]``: the flow as it is now, of which
# the definition and role are the snapshot. Concatenating the two JSON texts
# keeps the definition byte for byte (no decode/encode in Lua).
PUBLISH_VERSION = """
local flow = redis.call('HGET', KEYS[1], 'flow')
if not flow then return {'FLOW_NOT_FOUND'} end
if ARGV[2] ~= '' and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[2]) then
  return {'QUOTA_EXCEEDED', 'max-versions-per-flow', ARGV[2]}
end
local n = redis.call('HINCRBY', KEYS[1], 'vseq', 1)
local value = '[' .. ARGV[1] .. ',' .. flow .. ']'
redis.call('HSET', KEYS[2], n, value)
redis.call('ZADD', KEYS[3], n, n)
return {'OK', n, value}
"""

# KEYS: meta, versions, vindex, aliases.  ARGV: version, force ('1').
DELETE_VERSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {'VERSION_NOT_FOUND', ARGV[1]} end
if ARGV[2] ~= '1' then
  local v = tonumber(ARGV[1])
  local users = {}
  local all = redis.call('HGETALL', KEYS[4])
  for i = 1, #all, 2 do
    for _, route in ipairs(cjson.decode(all[i + 1]).routes) do
      if route[1] == v then users[#users + 1] = all[i]; break end
    end
  end
  if #users > 0 then
    table.sort(users)
    return {'VERSION_IN_USE', ARGV[1], users[1]}
  end
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'OK'}
"""

# KEYS: meta, versions, aliases, alias_index, alias_ids.
# ARGV: name, alias id, alias, flow id, channel, max aliases, routed versions...
CREATE_ALIAS = (
    CHECK_ROUTES
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {'ALIAS_EXISTS', ARGV[1]} end
if ARGV[6] ~= '' and redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[6]) then
  return {'QUOTA_EXCEEDED', 'max-aliases-per-flow', ARGV[6]}
end
local missing = missing_route(KEYS[2], 7)
if missing then return {'VERSION_NOT_FOUND', missing} end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('PUBLISH', ARGV[5], ARGV[4])
return {'OK'}
"""
)

# KEYS: meta, versions, aliases, alias_index, alias_ids, active rollouts, rollouts,
# rollout_seq.  ARGV: expected rev, old name, new name, alias, alias id, flow id,
# channel, routed versions...  A rename drops the old name's finished rollout.
UPDATE_ALIAS = (
    CHECK_ROUTES
    + """
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return {'FLOW_NOT_FOUND'} end
if rev ~= ARGV[1] then return {'RETRY'} end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then return {'ALIAS_NOT_FOUND', ARGV[2]} end
if redis.call('SISMEMBER', KEYS[6], ARGV[6] .. '/' .. ARGV[2]) == 1 then
  return {'ROLLOUT_ACTIVE', ARGV[2]}
end
if ARGV[3] ~= ARGV[2] and redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  return {'ALIAS_EXISTS', ARGV[3]}
end
local missing = missing_route(KEYS[2], 8)
if missing then return {'VERSION_NOT_FOUND', missing} end
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
if ARGV[3] ~= ARGV[2] then
  redis.call('HDEL', KEYS[7], ARGV[2])
  redis.call('HDEL', KEYS[8], ARGV[2])
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
redis.call('HSET', KEYS[5], ARGV[5], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('PUBLISH', ARGV[7], ARGV[6])
return {'OK'}
"""
)

# KEYS: meta, aliases, alias_index, alias_ids, rollouts, rollout_seq, active
# rollouts.  ARGV: name, flow id, channel.  The alias's last rollout goes with it.
DELETE_ALIAS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {'ALIAS_NOT_FOUND', ARGV[1]} end
if redis.call('SISMEMBER', KEYS[7], ARGV[2] .. '/' .. ARGV[1]) == 1 then
  return {'ROLLOUT_ACTIVE', ARGV[1]}
end
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
local id = cjson.decode(raw).id
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[4], id) == ARGV[1] then redis.call('HDEL', KEYS[4], id) end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('PUBLISH', ARGV[3], ARGV[2])
return {'OK', raw}
"""

# KEYS: token.  ARGV: record, ttl seconds.  Answers the stored record, or false.
PUT_TOKEN = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return false
"""

# KEYS: bucket.  ARGV: rate (tokens/s), burst.  Answers the wait in seconds as a
# string ("0" = allowed). The server's clock, so every replica shares one bucket;
# the same arithmetic as router.ratelimit.take.
TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if state[1] then
  tokens = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""

# -- reads that need more than one command to be consistent ------------------

# KEYS: index, hash[, meta].  ARGV: 'lex' | 'score', start, count.
# Answers {'OK', keys, values}: up to ``count`` keys of the sorted index from
# ``start`` on, and their values in the hash.
PAGE = """
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then return {'FLOW_NOT_FOUND'} end
local keys
if ARGV[1] == 'lex' then
  keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], '+', 'LIMIT', 0, ARGV[3])
else
  keys = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'LIMIT', 0, ARGV[3])
end
local values = {}
for i = 1, #keys, 1000 do
  local part = redis.call('HMGET', KEYS[2], unpack(keys, i, math.min(i + 999, #keys)))
  for j = 1, #part do values[#values + 1] = part[j] end
end
return {'OK', keys, values}
"""

# KEYS: meta, key.  ARGV: 'get', or 'hget' and a field.  Answers {'OK', value}
# (value false when missing): one value of a flow, read at once with the check
# that the flow exists. A script rather than MULTI so it runs alike on one
# server and on a cluster.
FLOW_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
if ARGV[1] == 'get' then return {'OK', redis.call('GET', KEYS[2])} end
return {'OK', redis.call('HGET', KEYS[2], ARGV[2])}
"""

# KEYS: meta, aliases.  ARGV: alias name.  Answers {'OK', rev, alias or false}.
ALIAS_AT_REVISION = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return {'FLOW_NOT_FOUND'} end
return {'OK', rev, redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: meta, versions, vindex.  Answers {'OK'} when there is no version.
LATEST_VERSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0)
if #top == 0 then return {'OK'} end
return {'OK', tonumber(top[1]), redis.call('HGET', KEYS[2], top[1])}
"""

# KEYS: meta, aliases, alias_ids.  ARGV: alias id.
ALIAS_BY_ID = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
local name = redis.call('HGET', KEYS[3], ARGV[1])
local raw = name and redis.call('HGET', KEYS[2], name)
if not raw then return {'ALIAS_NOT_FOUND', ARGV[1]} end
return {'OK', raw}
"""

# KEYS: meta, aliases.  Answers {'OK', flow, rev, aliases}.
SNAPSHOT = """
local cur = redis.call('HMGET', KEYS[1], 'flow', 'rev')
if not cur[1] then return {'FLOW_NOT_FOUND'} end
return {'OK', cur[1], tonumber(cur[2]), redis.call('HVALS', KEYS[2])}
"""
