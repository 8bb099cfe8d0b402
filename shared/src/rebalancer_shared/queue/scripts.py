"""The Lua scripts that make every queue transition one atomic step.

Why Lua rather than BLMOVE into a processing list: a claim must move the id *and* start its lease
together, or a worker killed between the two leaves an event in a processing list with no lease that
nothing will ever return. A script does both at once, and also promotes due retries in the same step,
so no separate mover process exists that could die. Claiming is polled (see EventQueue.claim) since
scripts cannot block.

Time comes from Redis (`TIME`) so that processes on machines with different clocks agree on lease
expiry; tests may pass an explicit `now` (ms) instead. Every script that acts for a lease holder
checks the lease token, so a worker whose lease was reaped cannot complete or fail the new holder's
run. The scripts build event-hash key names from the prefix, so the queue needs one Redis node (not
Redis Cluster).
"""

from __future__ import annotations

NOW = """
local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: dedup, queue, order, retried, seq
# ARGV: event_prefix, id, dedup_key, json, times_queued, created_ms
ENQUEUE = """
local existing = redis.call('HGET', KEYS[1], ARGV[3])
if existing then
  local state = redis.call('HGET', ARGV[1] .. existing, 'state')
  if state == 'processing' then
    redis.call('HSET', ARGV[1] .. existing, 'rerun', '1')
    return {'coalesced', existing}
  end
  if state then return {'duplicate', existing} end
  redis.call('HDEL', KEYS[1], ARGV[3])
end
local ekey = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', ekey) == 1 then return {'duplicate', ARGV[2]} end
redis.call('HSET', ekey, 'json', ARGV[4], 'state', 'queued', 'times_queued', ARGV[5],
           'dedup', ARGV[3], 'rerun', '0', 'created_ms', ARGV[6])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ARGV[2])
if tonumber(ARGV[5]) > 1 then redis.call('SADD', KEYS[4], ARGV[2]) end
return {'queued', ARGV[2]}
"""

CLAIM_FN = """
local function do_claim(prefix, queue, retry, leases, tombs, token, owner, lease_ms, now)
  local due = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', retry, id)
    redis.call('HSET', prefix .. id, 'state', 'queued')
    redis.call('RPUSH', queue, id)
  end
  for _ = 1, 1000 do
    local id = redis.call('LPOP', queue)
    if not id then return false end
    if redis.call('SREM', tombs, id) == 0 then
      local ekey = prefix .. id
      local json = redis.call('HGET', ekey, 'json')
      if json then
        redis.call('HSET', ekey, 'state', 'processing', 'lease', token, 'owner', owner, 'rerun', '0')
        redis.call('ZADD', leases, now + lease_ms, id)
        return {id, json, redis.call('HGET', ekey, 'times_queued'), token}
      end
    end
  end
  return false
end
"""

# KEYS: queue, retry, leases, tombstones
# ARGV: event_prefix, token, owner, lease_ms, now
CLAIM = (
    NOW
    + CLAIM_FN
    + """
return do_claim(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3], tonumber(ARGV[4]),
                now_ms(ARGV[5]))
"""
)

# KEYS: leases
# ARGV: event_prefix, id, token, lease_ms, now
RENEW = (
    NOW
    + """
local ekey = ARGV[1] .. ARGV[2]
if redis.call('HGET', ekey, 'lease') ~= ARGV[3] or redis.call('HGET', ekey, 'state') ~= 'processing' then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now_ms(ARGV[5]) + tonumber(ARGV[4]), ARGV[2])
return 1
"""
)

COMPLETE_FN = """
local function do_complete(prefix, dedup, queue, leases, order, retried, id, token)
  local ekey = prefix .. id
  if redis.call('HGET', ekey, 'lease') ~= token or redis.call('HGET', ekey, 'state') ~= 'processing' then
    return 'lost'
  end
  redis.call('ZREM', leases, id)
  if redis.call('HGET', ekey, 'rerun') == '1' then
    redis.call('HSET', ekey, 'state', 'queued', 'rerun', '0')
    redis.call('HDEL', ekey, 'lease', 'owner')
    redis.call('RPUSH', queue, id)
    return 'rerun'
  end
  local dkey = redis.call('HGET', ekey, 'dedup')
  if redis.call('HGET', dedup, dkey) == id then redis.call('HDEL', dedup, dkey) end
  redis.call('DEL', ekey)
  redis.call('ZREM', order, id)
  redis.call('SREM', retried, id)
  return 'completed'
end
"""

# KEYS: dedup, queue, leases, order, retried
# ARGV: event_prefix, id, token
COMPLETE = (
    COMPLETE_FN
    + """
return do_complete(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
"""
)

# Finish a run and claim the next event in one round trip (the worker loop's hot path).
# KEYS: dedup, queue, leases, order, retried, retry, tombstones
# ARGV: event_prefix, id, token, next_token, owner, lease_ms, now
COMPLETE_AND_CLAIM = (
    NOW
    + COMPLETE_FN
    + CLAIM_FN
    + """
local outcome = do_complete(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
if outcome == 'lost' then return {outcome} end
local claimed = do_claim(ARGV[1], KEYS[2], KEYS[6], KEYS[3], KEYS[7], ARGV[4], ARGV[5], tonumber(ARGV[6]),
                         now_ms(ARGV[7]))
if not claimed then return {outcome} end
return {outcome, claimed[1], claimed[2], claimed[3], claimed[4]}
"""
)

# KEYS: leases, retry, retried
# ARGV: event_prefix, id, token, error, delay_ms, now
FAIL = (
    NOW
    + """
local ekey = ARGV[1] .. ARGV[2]
if redis.call('HGET', ekey, 'lease') ~= ARGV[3] or redis.call('HGET', ekey, 'state') ~= 'processing' then
  return -1
end
redis.call('ZREM', KEYS[1], ARGV[2])
local times = redis.call('HINCRBY', ekey, 'times_queued', 1)
redis.call('HSET', ekey, 'state', 'retrying', 'last_error', ARGV[4], 'rerun', '0')
redis.call('HDEL', ekey, 'lease', 'owner')
redis.call('ZADD', KEYS[2], now_ms(ARGV[6]) + tonumber(ARGV[5]), ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
return times
"""
)

# Give a claimed event back untouched (graceful shutdown): front of the queue, no retry counted.
# KEYS: leases, queue
# ARGV: event_prefix, id, token
RELEASE = """
local ekey = ARGV[1] .. ARGV[2]
if redis.call('HGET', ekey, 'lease') ~= ARGV[3] or redis.call('HGET', ekey, 'state') ~= 'processing' then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HSET', ekey, 'state', 'queued')
redis.call('HDEL', ekey, 'lease', 'owner')
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""

# KEYS: leases, queue, retried
# ARGV: event_prefix, now, limit
REAP = (
    NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(expired) do
  local ekey = ARGV[1] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('EXISTS', ekey) == 1 then
    local times = redis.call('HINCRBY', ekey, 'times_queued', 1)
    redis.call('HSET', ekey, 'state', 'queued', 'rerun', '0',
               'last_error', 'lease expired: its worker stopped')
    redis.call('HDEL', ekey, 'lease', 'owner')
    redis.call('RPUSH', KEYS[2], id)
    redis.call('SADD', KEYS[3], id)
    table.insert(out, id)
    table.insert(out, tostring(times))
  end
end
return out
"""
)

# KEYS: dedup, retry, order, retried, tombstones
# ARGV: event_prefix, id
REMOVE = """
local ekey = ARGV[1] .. ARGV[2]
local state = redis.call('HGET', ekey, 'state')
if not state then return {'missing'} end
if state == 'processing' then return {'processing'} end
if state == 'queued' then redis.call('SADD', KEYS[5], ARGV[2]) end
if state == 'retrying' then redis.call('ZREM', KEYS[2], ARGV[2]) end
local json = redis.call('HGET', ekey, 'json')
local times = redis.call('HGET', ekey, 'times_queued')
local dkey = redis.call('HGET', ekey, 'dedup')
if redis.call('HGET', KEYS[1], dkey) == ARGV[2] then redis.call('HDEL', KEYS[1], dkey) end
redis.call('DEL', ekey)
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[2])
return {'removed', json, times}
"""

# KEYS: queue, tombstones, leases, retry, dedup, retried, order
# ARGV: event_prefix, now
# Returns the counters and the created time of the oldest live event (the head of the order index).
STATS = (
    NOW
    + """
local oldest = redis.call('ZRANGE', KEYS[7], 0, 0)
local created = false
if oldest[1] then created = redis.call('HGET', ARGV[1] .. oldest[1], 'created_ms') end
return {redis.call('LLEN', KEYS[1]) - redis.call('SCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
        redis.call('ZCARD', KEYS[4]), redis.call('HLEN', KEYS[5]), redis.call('SCARD', KEYS[6]),
        created, tostring(now_ms(ARGV[2]))}
"""
)

# KEYS: lock; ARGV: token, ttl_ms
LOCK_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lock; ARGV: token
LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
