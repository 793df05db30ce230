"""Lua source of the Redis store's rollout and lease scripts (see redis_scripts for
the answer convention; keys: the table in ``router.store.redis_codec``).

A rollout is stored next to its alias, in the flow's slot: ``P:T:rollouts``
(alias name -> document) and ``P:T:rollout_seq`` (alias name -> write count,
the compare-and-set token). ``P:rollouts_active`` is the set of
``<flow id>/<alias>`` of active rollouts, which the alias scripts check.
"""

from __future__ import annotations

from router.store.redis_scripts import CHECK_ROUTES

# KEYS: meta, aliases, rollouts, rollout_seq, active.  ARGV: alias, member.
# Answers {'OK', alias, document or false, seq or false, active (0/1)}.
GET_ROLLOUT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {'ALIAS_NOT_FOUND', ARGV[1]} end
return {'OK', raw, redis.call('HGET', KEYS[3], ARGV[1]), redis.call('HGET', KEYS[4], ARGV[1]),
        redis.call('SISMEMBER', KEYS[5], ARGV[2])}
"""

# KEYS: meta, versions, aliases, rollouts, rollout_seq, active.
# ARGV: alias, expected seq, expected alias revision, document, active ('1'/'0'),
# new alias JSON or '', flow id, channel, member, routed versions...
WRITE_ROLLOUT = (
    CHECK_ROUTES
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'FLOW_NOT_FOUND'} end
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return {'ALIAS_NOT_FOUND', ARGV[1]} end
local seq = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
if seq ~= tonumber(ARGV[2]) or cjson.decode(raw).revision ~= tonumber(ARGV[3]) then
  return {'RETRY'}
end
if ARGV[6] ~= '' then
  local missing = missing_route(KEYS[2], 10)
  if missing then return {'VERSION_NOT_FOUND', missing} end
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
  redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('PUBLISH', ARGV[8], ARGV[7])
end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[1], seq + 1)
if ARGV[5] == '1' then
  redis.call('SADD', KEYS[6], ARGV[9])
else
  redis.call('SREM', KEYS[6], ARGV[9])
end
return {'OK'}
"""
)

# KEYS: lease.  ARGV: holder, ttl ms.  Answers 1 if ``holder`` holds it now.
ACQUIRE_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease.  ARGV: holder.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
