"""The Lua scripts that make every queue transition one atomic step, with its history and counters.

Why Lua rather than BLMOVE into a processing list: a claim must move the id *and* start its lease
together, or a worker killed between the two leaves an event in a processing list with no lease that
nothing will ever return. A script does both at once, and also promotes due retries in the same step,
so no separate mover process exists that could die. Claiming is polled (see EventQueue.claim) since
scripts cannot block.

The transactional outbox: every script that changes an event's state also appends the transition to
the `outbox` stream (`record`) and bumps its counter (`bump`) in the same atomic step. A process
killed right after a script therefore loses no history: the entry waits in the stream until some
process writes it to PostgreSQL (`rebalancer_shared.outbox`). Entry fields: `id` event id, `t`
transition, `n` times_queued, `d` detail, `ev` the event's JSON, `close` (runs of the event with an
attempt below it that are still `running` can no longer be running: the history closes them) and
`ms` the Redis time.

`finished` remembers the ids of recently completed or removed events (a day), so the same trigger
submitted again (a retried request, an Ably message replayed) is recognised and not run twice, and a
reconciliation never restores an event that finished while its history was still on its way.

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

RECORD_FN = """
local function record(outbox, id, transition, times, detail, json, close, now)
  return redis.call('XADD', outbox, '*', 'id', id, 't', transition, 'n', tostring(times), 'd', detail or '',
                    'ev', json or '', 'close', tostring(close), 'ms', tostring(now))
end
local function cmd_of(ekey)
  local cmd = redis.call('HGET', ekey, 'cmd')
  if cmd then return cmd end
  local json = redis.call('HGET', ekey, 'json')
  if json then return cjson.decode(json)['exec_command'] end
  return 'unknown'
end
local function bump(metrics, counter, cmd)
  redis.call('HINCRBY', metrics, counter .. ':' .. cmd, 1)
end
local function finish(finished, id, now, retention_ms)
  redis.call('ZADD', finished, now, id)
  redis.call('ZREMRANGEBYSCORE', finished, '-inf', now - retention_ms)
end
"""

INSERT_FN = """
local function insert(prefix, dedup, queue, order, retried, seq, retry, id, dkey, json, times, created, cmd,
                      due)
  local ekey = prefix .. id
  local state = 'queued'
  if due > 0 then state = 'retrying' end
  redis.call('HSET', ekey, 'json', json, 'state', state, 'times_queued', times, 'dedup', dkey, 'rerun', '0',
             'created_ms', created, 'cmd', cmd)
  redis.call('HSET', dedup, dkey, id)
  if due > 0 then redis.call('ZADD', retry, due, id) else redis.call('RPUSH', queue, id) end
  redis.call('ZADD', order, redis.call('INCR', seq), id)
  if tonumber(times) > 1 then redis.call('SADD', retried, id) end
end
"""

# KEYS: dedup, queue, order, retried, seq, outbox, metrics, finished, retry
# ARGV: event_prefix, id, dedup_key, json, times_queued, created_ms, command, now
ENQUEUE = (
    NOW
    + RECORD_FN
    + INSERT_FN
    + """
local now = now_ms(ARGV[8])
local ekey = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', ekey) == 1 or redis.call('ZSCORE', KEYS[8], ARGV[2]) then
  return {'already_accepted', ARGV[2]}
end
local existing = redis.call('HGET', KEYS[1], ARGV[3])
if existing then
  local xkey = ARGV[1] .. existing
  local state = redis.call('HGET', xkey, 'state')
  local times = redis.call('HGET', xkey, 'times_queued')
  local json = redis.call('HGET', xkey, 'json')
  if state == 'processing' then
    redis.call('HSET', xkey, 'rerun', '1')
    bump(KEYS[7], 'events_coalesced', ARGV[7])
    return {'coalesced', existing, record(KEYS[6], existing, 'coalesced', times,
      'duplicate trigger while processing: will run once more (trigger ' .. ARGV[2] .. ')', json, 0, now)}
  end
  if state then
    bump(KEYS[7], 'events_duplicate', ARGV[7])
    return {'duplicate', existing, record(KEYS[6], existing, 'duplicate', times,
      'duplicate trigger dropped: the event is already queued (trigger ' .. ARGV[2] .. ')', json, 0, now)}
  end
  redis.call('HDEL', KEYS[1], ARGV[3])
end
insert(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[9], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
       ARGV[6], ARGV[7], 0)
bump(KEYS[7], 'events_queued', ARGV[7])
return {'queued', ARGV[2], record(KEYS[6], ARGV[2], 'queued', ARGV[5], '', ARGV[4], 0, now)}
"""
)

# Recovery: put back an event PostgreSQL says is unfinished, unless Redis knows it (live or finished)
# or another live event holds its key. `delay_ms` > 0 (an event that was processing: its run may
# still be going) makes it claimable only after that delay, when such a run has stopped by itself.
# KEYS: dedup, queue, order, retried, seq, outbox, metrics, finished, retry
# ARGV: event_prefix, id, dedup_key, json, times_queued, created_ms, command, delay_ms, detail, now
RESTORE = (
    NOW
    + RECORD_FN
    + INSERT_FN
    + """
local now = now_ms(ARGV[10])
if redis.call('EXISTS', ARGV[1] .. ARGV[2]) == 1 then return {'present'} end
if redis.call('ZSCORE', KEYS[8], ARGV[2]) then return {'finished'} end
local existing = redis.call('HGET', KEYS[1], ARGV[3])
if existing and redis.call('EXISTS', ARGV[1] .. existing) == 1 then return {'superseded', existing} end
local due = 0
if tonumber(ARGV[8]) > 0 then due = now + tonumber(ARGV[8]) end
insert(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[9], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
       ARGV[6], ARGV[7], due)
return {'restored', record(KEYS[6], ARGV[2], 'recovered', ARGV[5], ARGV[9], ARGV[4], tonumber(ARGV[5]) + 1,
                           now)}
"""
)

CLAIM_FN = """
local function do_claim(prefix, queue, retry, leases, tombs, outbox, token, owner, lease_ms, now)
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
        local times = redis.call('HGET', ekey, 'times_queued')
        local entry = record(outbox, id, 'processing', times, 'worker ' .. owner, json, times, now)
        return {id, json, times, token, entry}
      end
    end
  end
  return false
end
"""

# KEYS: queue, retry, leases, tombstones, outbox
# ARGV: event_prefix, token, owner, lease_ms, now
CLAIM = (
    NOW
    + RECORD_FN
    + CLAIM_FN
    + """
return do_claim(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3], tonumber(ARGV[4]),
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
local function do_complete(prefix, dedup, queue, leases, order, retried, outbox, metrics, finished, id, token,
                           now, retention_ms)
  local ekey = prefix .. id
  if redis.call('HGET', ekey, 'lease') ~= token or redis.call('HGET', ekey, 'state') ~= 'processing' then
    return {'lost'}
  end
  redis.call('ZREM', leases, id)
  local times = redis.call('HGET', ekey, 'times_queued')
  local json = redis.call('HGET', ekey, 'json')
  bump(metrics, 'events_completed', cmd_of(ekey))
  if redis.call('HGET', ekey, 'rerun') == '1' then
    redis.call('HSET', ekey, 'state', 'queued', 'rerun', '0')
    redis.call('HDEL', ekey, 'lease', 'owner')
    redis.call('RPUSH', queue, id)
    return {'rerun', record(outbox, id, 'rerun', times, 'a trigger arrived during the run: it runs once more',
                            json, times, now)}
  end
  local dkey = redis.call('HGET', ekey, 'dedup')
  if redis.call('HGET', dedup, dkey) == id then redis.call('HDEL', dedup, dkey) end
  redis.call('DEL', ekey)
  redis.call('ZREM', order, id)
  redis.call('SREM', retried, id)
  finish(finished, id, now, retention_ms)
  return {'completed', record(outbox, id, 'completed', times, '', json, times, now)}
end
"""

# KEYS: dedup, queue, leases, order, retried, outbox, metrics, finished
# ARGV: event_prefix, id, token, retention_ms, now
COMPLETE = (
    NOW
    + RECORD_FN
    + COMPLETE_FN
    + """
return do_complete(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[2],
                   ARGV[3], now_ms(ARGV[5]), tonumber(ARGV[4]))
"""
)

# Finish a run and claim the next event in one round trip (the worker loop's hot path).
# KEYS: dedup, queue, leases, order, retried, outbox, metrics, finished, retry, tombstones
# ARGV: event_prefix, id, token, retention_ms, next_token, owner, lease_ms, now
COMPLETE_AND_CLAIM = (
    NOW
    + RECORD_FN
    + COMPLETE_FN
    + CLAIM_FN
    + """
local now = now_ms(ARGV[8])
local done = do_complete(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
                         ARGV[2], ARGV[3], now, tonumber(ARGV[4]))
if done[1] == 'lost' then return done end
local claimed = do_claim(ARGV[1], KEYS[2], KEYS[9], KEYS[3], KEYS[10], KEYS[6], ARGV[5], ARGV[6],
                         tonumber(ARGV[7]), now)
if not claimed then return done end
return {done[1], done[2], claimed[1], claimed[2], claimed[3], claimed[4], claimed[5]}
"""
)

# KEYS: leases, retry, retried, outbox, metrics
# ARGV: event_prefix, id, token, error, delay_ms, now
FAIL = (
    NOW
    + RECORD_FN
    + """
local now = now_ms(ARGV[6])
local ekey = ARGV[1] .. ARGV[2]
if redis.call('HGET', ekey, 'lease') ~= ARGV[3] or redis.call('HGET', ekey, 'state') ~= 'processing' then
  return {-1}
end
redis.call('ZREM', KEYS[1], ARGV[2])
local times = redis.call('HINCRBY', ekey, 'times_queued', 1)
redis.call('HSET', ekey, 'state', 'retrying', 'last_error', ARGV[4], 'rerun', '0')
redis.call('HDEL', ekey, 'lease', 'owner')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
local cmd = cmd_of(ekey)
bump(KEYS[5], 'events_failed', cmd)
bump(KEYS[5], 'events_retried', cmd)
local json = redis.call('HGET', ekey, 'json')
return {times, record(KEYS[4], ARGV[2], 'retrying', times, ARGV[4], json, times, now)}
"""
)

# Give a claimed event back untouched (graceful shutdown): front of the queue, no retry counted.
# KEYS: leases, queue, outbox
# ARGV: event_prefix, id, token, now
RELEASE = (
    NOW
    + RECORD_FN
    + """
local ekey = ARGV[1] .. ARGV[2]
if redis.call('HGET', ekey, 'lease') ~= ARGV[3] or redis.call('HGET', ekey, 'state') ~= 'processing' then
  return {0}
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HSET', ekey, 'state', 'queued')
redis.call('HDEL', ekey, 'lease', 'owner')
redis.call('LPUSH', KEYS[2], ARGV[2])
local times = redis.call('HGET', ekey, 'times_queued')
return {1, record(KEYS[3], ARGV[2], 'requeued', times, 'released at shutdown: it runs again',
                  redis.call('HGET', ekey, 'json'), tonumber(times) + 1, now_ms(ARGV[4]))}
"""
)

# KEYS: leases, queue, retried, outbox, metrics
# ARGV: event_prefix, now, limit
REAP = (
    NOW
    + RECORD_FN
    + """
local now = now_ms(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(expired) do
  local ekey = ARGV[1] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('EXISTS', ekey) == 1 then
    local times = redis.call('HINCRBY', ekey, 'times_queued', 1)
    local why = 'lease expired: its worker stopped'
    redis.call('HSET', ekey, 'state', 'queued', 'rerun', '0', 'last_error', why)
    redis.call('HDEL', ekey, 'lease', 'owner')
    redis.call('RPUSH', KEYS[2], id)
    redis.call('SADD', KEYS[3], id)
    bump(KEYS[5], 'events_retried', cmd_of(ekey))
    table.insert(out, id)
    table.insert(out, tostring(times))
    local json = redis.call('HGET', ekey, 'json')
    table.insert(out, record(KEYS[4], id, 'requeued', times, why, json, times, now))
  end
end
return out
"""
)

# KEYS: dedup, retry, order, retried, tombstones, outbox, metrics, finished
# ARGV: event_prefix, id, detail, retention_ms, now
REMOVE = (
    NOW
    + RECORD_FN
    + """
local now = now_ms(ARGV[5])
local ekey = ARGV[1] .. ARGV[2]
local state = redis.call('HGET', ekey, 'state')
if not state then return {'missing'} end
if state == 'processing' then return {'processing'} end
if state == 'queued' then redis.call('SADD', KEYS[5], ARGV[2]) end
if state == 'retrying' then redis.call('ZREM', KEYS[2], ARGV[2]) end
local json = redis.call('HGET', ekey, 'json')
local times = redis.call('HGET', ekey, 'times_queued')
bump(KEYS[7], 'events_removed', cmd_of(ekey))
local dkey = redis.call('HGET', ekey, 'dedup')
if redis.call('HGET', KEYS[1], dkey) == ARGV[2] then redis.call('HDEL', KEYS[1], dkey) end
redis.call('DEL', ekey)
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[2])
finish(KEYS[8], ARGV[2], now, tonumber(ARGV[4]))
local entry = record(KEYS[6], ARGV[2], 'removed', times, ARGV[3], json, tonumber(times) + 1, now)
return {'removed', json, times, entry}
"""
)

# A lost event whose key another live event holds: its history ends here (the live one covers it).
# KEYS: outbox
# ARGV: id, times_queued, detail, json, now
SUPERSEDE = (
    NOW
    + RECORD_FN
    + """
local close = tonumber(ARGV[2]) + 1
return record(KEYS[1], ARGV[1], 'superseded', ARGV[2], ARGV[3], ARGV[4], close, now_ms(ARGV[5]))
"""
)

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
