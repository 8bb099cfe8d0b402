"""The Lua scripts that make every queue transition one atomic step, with its history and counters.

Why Lua rather than BLMOVE into a processing list: a claim must move the id *and* start its lease
together, or a worker killed between the two leaves an event in a processing list with no lease that
nothing will ever return. A script does both at once, and also promotes due retries in the same step,
so no separate mover process exists that could die.

Wake-up nudges: scripts cannot block, so a worker with nothing to claim waits outside Redis
(queue/wakeup.py). Every script that makes an event claimable, now or at a due time, publishes one
nudge per such event on the wake-up channel (`nudge`, in the same atomic step): enqueue and a
coalesce that brings a waiting event forward, restore, release, reap, retry_now, complete with a
rerun, the events a claim promotes beyond the one it takes, and fail (claimable at its due time).
The message is the delay in ms until the event is claimable (0: now), from Redis's clock, so a
listener on another machine needs no agreement of clocks. Every claim also answers when the next one may
find something (`next_due_in`: at once while the queue holds ids, else the earliest due time), which
is when an idle worker asks again.
A nudge is a hint, never the record: the claim stays this one atomic script, and a lost nudge only
delays a claim until the worker's fallback poll.

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

Waiting: a failed run's event waits in the `retry` zset until its due time, in one of three states
by its failure class (rebalancer_shared.failures): `retrying` (transient), `scheduled` (market
closed) or `needs_attention`; the last two are also kept in a set each so the stats count them in
O(1). A claim promotes due events of all three alike, in due order, to the back of the FIFO queue.

Time comes from Redis (`TIME`) so that processes on machines with different clocks agree on lease
expiry; tests may pass an explicit `now` (ms) instead. Every script that acts for a lease holder
checks the lease token, so a worker whose lease was reaped cannot complete or fail the new holder's
run.

Redis Cluster: a script may only touch the keys it is given in KEYS, all in one slot. So no key name
is built inside a script: the live events are fields of two hashes (`events`: id -> the record as
JSON, `bodies`: id -> the Event's JSON; see `load`/`save`), every key is passed in KEYS, and all keys
of a deployment share the hash tag `{prefix}` (keys.py), so every script runs on the one node that
holds that slot. The wake-up channel is a channel, not a key (ARGV). The same scripts run on one
node, under Sentinel and on a Cluster.
"""

from __future__ import annotations

NOW = """
local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# A live event's record: one field of the `events` hash, a JSON object of strings: state,
# times_queued, dedup, rerun, created_ms, cmd, and while they apply lease, owner, last_error, class and
# due_ms. The Event itself (its JSON, written once) is the same field of the `bodies` hash, apart so
# that the steps that rewrite the record do not decode and encode it again; `load` puts it in
# `rec.json`. Every queue script is given `bodies` as its last key (EventQueue adds it).
RECORD_FN = """
local BODIES = KEYS[#KEYS]
local function load(events, id)
  local raw = redis.call('HGET', events, id)
  if not raw then return nil end
  local rec = cjson.decode(raw)
  rec.json = redis.call('HGET', BODIES, id)
  return rec
end
local function save(events, id, rec)
  local json = rec.json
  rec.json = nil
  redis.call('HSET', events, id, cjson.encode(rec))
  rec.json = json
end
local function drop(events, id)
  redis.call('HDEL', events, id)
  redis.call('HDEL', BODIES, id)
end
local function record(outbox, id, transition, times, detail, json, close, now)
  return redis.call('XADD', outbox, '*', 'id', id, 't', transition, 'n', tostring(times), 'd', detail or '',
                    'ev', json or '', 'close', tostring(close), 'ms', tostring(now))
end
-- A transition into a waiting state also records its failure class and due time (ms).
local function record_wait(outbox, id, transition, times, detail, json, close, now, cls, due)
  return redis.call('XADD', outbox, '*', 'id', id, 't', transition, 'n', tostring(times), 'd', detail or '',
                    'ev', json or '', 'close', tostring(close), 'ms', tostring(now), 'cls', cls,
                    'due', tostring(due))
end
-- The scheduled and needs-attention events also sit in a set each (O(1) counts); all three waiting
-- states share the retry zset for their due times.
local function unwait(scheduled, attention, id)
  redis.call('SREM', scheduled, id)
  redis.call('SREM', attention, id)
end
local function wait_in(scheduled, attention, state, id)
  if state == 'scheduled' then redis.call('SADD', scheduled, id) end
  if state == 'needs_attention' then redis.call('SADD', attention, id) end
end
local function cmd_of(rec)
  if rec.cmd then return rec.cmd end
  if rec.json then return cjson.decode(rec.json)['exec_command'] or 'unknown' end
  return 'unknown'
end
local function bump(metrics, counter, cmd)
  redis.call('HINCRBY', metrics, counter .. ':' .. cmd, 1)
end
local function finish(finished, id, now, retention_ms)
  redis.call('ZADD', finished, now, id)
  redis.call('ZREMRANGEBYSCORE', finished, '-inf', now - retention_ms)
end
-- One event becomes claimable in `delay_ms` (0: now): one message on the wake-up channel.
local function nudge(channel, delay_ms)
  redis.call('PUBLISH', channel, tostring(math.max(0, delay_ms)))
end
local function held_by(rec, token)
  return rec ~= nil and rec.lease == token and rec.state == 'processing'
end
"""

INSERT_FN = """
-- K: the KEYS of ENQUEUE and RESTORE. A due time > 0 makes the event wait (in `state`) until then.
local function insert(K, id, dkey, json, times, created, cmd, due, state, cls)
  if due <= 0 then state = 'queued' end
  local rec = {json = json, state = state, times_queued = tostring(times), dedup = dkey, rerun = '0',
               created_ms = tostring(created), cmd = cmd}
  if cls ~= '' then
    rec.class = cls
    rec.due_ms = tostring(due)
  end
  save(K[12], id, rec)
  redis.call('HSET', BODIES, id, json)
  redis.call('HSET', K[1], dkey, id)
  if due > 0 then
    redis.call('ZADD', K[9], due, id)
    wait_in(K[10], K[11], state, id)
  else
    redis.call('RPUSH', K[2], id)
  end
  redis.call('ZADD', K[3], redis.call('INCR', K[5]), id)
  if tonumber(times) > 1 then redis.call('SADD', K[4], id) end
end
"""

# A trigger whose key is live: dropped while its event is queued or retrying (it runs soon anyway),
# noted for one more run while it is processing, and brings a scheduled or needs-attention event
# forward (due now: the processor decides again whether its market allows it).
# KEYS: dedup, queue, order, retried, seq, outbox, metrics, finished, retry, scheduled, attention, events
# ARGV: id, dedup_key, json, times_queued, created_ms, command, now, wake_channel
ENQUEUE = (
    NOW
    + RECORD_FN
    + INSERT_FN
    + """
local now = now_ms(ARGV[7])
local events = KEYS[12]
if redis.call('HEXISTS', events, ARGV[1]) == 1 or redis.call('ZSCORE', KEYS[8], ARGV[1]) then
  -- A write even here: a WAIT after it (durability.py) then confirms the replicas have the first
  -- enqueue too, as a replica acknowledges everything up to an offset.
  redis.call('INCR', KEYS[5])
  return {'already_accepted', ARGV[1]}
end
local existing = redis.call('HGET', KEYS[1], ARGV[2])
if existing then
  local x = load(events, existing)
  if x and x.state == 'processing' then
    x.rerun = '1'
    save(events, existing, x)
    bump(KEYS[7], 'events_coalesced', ARGV[6])
    return {'coalesced', existing, record(KEYS[6], existing, 'coalesced', x.times_queued,
      'duplicate trigger while processing: will run once more (trigger ' .. ARGV[1] .. ')', x.json, 0, now)}
  end
  if x and (x.state == 'scheduled' or x.state == 'needs_attention') then
    local was = x.state
    redis.call('ZREM', KEYS[9], existing)
    unwait(KEYS[10], KEYS[11], existing)
    x.state = 'queued'
    save(events, existing, x)
    redis.call('RPUSH', KEYS[2], existing)
    nudge(ARGV[8], 0)
    bump(KEYS[7], 'events_coalesced', ARGV[6])
    return {'coalesced', existing, record(KEYS[6], existing, 'requeued', x.times_queued,
      'a new trigger (' .. ARGV[1] .. ') brought the ' .. was ..
      ' event forward: it runs now if its market allows', x.json, x.times_queued, now)}
  end
  if x then
    bump(KEYS[7], 'events_duplicate', ARGV[6])
    return {'duplicate', existing, record(KEYS[6], existing, 'duplicate', x.times_queued,
      'duplicate trigger dropped: the event is already queued (trigger ' .. ARGV[1] .. ')', x.json, 0, now)}
  end
  redis.call('HDEL', KEYS[1], ARGV[2])
end
insert(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 0, 'queued', '')
nudge(ARGV[8], 0)
bump(KEYS[7], 'events_queued', ARGV[6])
return {'queued', ARGV[1], record(KEYS[6], ARGV[1], 'queued', ARGV[4], '', ARGV[3], 0, now)}
"""
)

# Recovery: put back an event PostgreSQL says is unfinished, unless Redis knows it (live or finished)
# or another live event holds its key. `delay_ms` > 0 (an event that was processing: its run may
# still be going) makes it claimable only after that delay, when such a run has stopped by itself; a
# scheduled or needs-attention event keeps its state, class and due time (`due_ms`).
# KEYS: dedup, queue, order, retried, seq, outbox, metrics, finished, retry, scheduled, attention, events
# ARGV: id, dedup_key, json, times_queued, created_ms, command, delay_ms, detail, now, state, class,
#       due_ms, wake_channel
RESTORE = (
    NOW
    + RECORD_FN
    + INSERT_FN
    + """
local now = now_ms(ARGV[9])
local events = KEYS[12]
if redis.call('HEXISTS', events, ARGV[1]) == 1 then return {'present'} end
if redis.call('ZSCORE', KEYS[8], ARGV[1]) then return {'finished'} end
local existing = redis.call('HGET', KEYS[1], ARGV[2])
if existing and redis.call('HEXISTS', events, existing) == 1 then return {'superseded', existing} end
local due = tonumber(ARGV[12])
local state = ARGV[10]
if due <= 0 and tonumber(ARGV[7]) > 0 then
  due = now + tonumber(ARGV[7])
  state = 'retrying'
end
insert(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], due, state, ARGV[11])
nudge(ARGV[13], due - now)
return {'restored', record(KEYS[6], ARGV[1], 'recovered', ARGV[4], ARGV[8], ARGV[3], tonumber(ARGV[4]) + 1,
                           now)}
"""
)

CLAIM_FN = """
-- Promotes the due waiting events, then takes the head of the queue; the promoted events beyond the
-- one it takes are announced on the wake-up channel, so other idle workers come for them.
local function do_claim(events, queue, retry, leases, tombs, outbox, token, owner, lease_ms, now, scheduled,
                        attention, channel)
  local due = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', retry, id)
    unwait(scheduled, attention, id)
    local rec = load(events, id)
    if rec then
      rec.state = 'queued'
      save(events, id, rec)
    end
    redis.call('RPUSH', queue, id)
  end
  for _ = 1, 1000 do
    local id = redis.call('LPOP', queue)
    if not id then return false end
    if redis.call('SREM', tombs, id) == 0 then
      local rec = load(events, id)
      if rec then
        rec.state = 'processing'
        rec.lease = token
        rec.owner = owner
        rec.rerun = '0'
        save(events, id, rec)
        redis.call('ZADD', leases, now + lease_ms, id)
        local entry = record(outbox, id, 'processing', rec.times_queued, 'worker ' .. owner, rec.json,
                             rec.times_queued, now)
        for _ = 2, #due do nudge(channel, 0) end
        return {id, rec.json, rec.times_queued, token, entry}
      end
    end
  end
  return false
end
-- In how many ms there is something to claim: 0 while the queue holds ids, else the earliest due
-- time of a waiting event, or -1 when nothing waits.
local function next_due_in(queue, retry, now)
  if redis.call('LLEN', queue) > 0 then return 0 end
  local head = redis.call('ZRANGE', retry, 0, 0, 'WITHSCORES')
  if not head[2] then return -1 end
  return math.max(0, tonumber(head[2]) - now)
end
"""

# Returns the claim with, last, when the next claim may find something (`next_due_in`), or only that
# when nothing was claimable: an idle worker asks again then (and a busy process wakes another slot
# at once while the queue still holds events).
# KEYS: queue, retry, leases, tombstones, outbox, scheduled, attention, events
# ARGV: token, owner, lease_ms, now, wake_channel
CLAIM = (
    NOW
    + RECORD_FN
    + CLAIM_FN
    + """
local now = now_ms(ARGV[4])
local claimed = do_claim(KEYS[8], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2],
                         tonumber(ARGV[3]), now, KEYS[6], KEYS[7], ARGV[5])
if claimed then
  table.insert(claimed, next_due_in(KEYS[1], KEYS[2], now))
  return claimed
end
return next_due_in(KEYS[1], KEYS[2], now)
"""
)

# KEYS: leases, events
# ARGV: id, token, lease_ms, now
RENEW = (
    NOW
    + RECORD_FN
    + """
if not held_by(load(KEYS[2], ARGV[1]), ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now_ms(ARGV[4]) + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

COMPLETE_FN = """
local function do_complete(events, dedup, queue, leases, order, retried, outbox, metrics, finished, id, token,
                           now, retention_ms, channel)
  local rec = load(events, id)
  if not held_by(rec, token) then return {'lost'} end
  redis.call('ZREM', leases, id)
  bump(metrics, 'events_completed', cmd_of(rec))
  if rec.rerun == '1' then
    rec.state = 'queued'
    rec.rerun = '0'
    rec.lease = nil
    rec.owner = nil
    save(events, id, rec)
    redis.call('RPUSH', queue, id)
    nudge(channel, 0)
    local why = 'a trigger arrived during the run: it runs once more'
    return {'rerun', record(outbox, id, 'rerun', rec.times_queued, why, rec.json, rec.times_queued, now)}
  end
  if redis.call('HGET', dedup, rec.dedup) == id then redis.call('HDEL', dedup, rec.dedup) end
  drop(events, id)
  redis.call('ZREM', order, id)
  redis.call('SREM', retried, id)
  finish(finished, id, now, retention_ms)
  return {'completed', record(outbox, id, 'completed', rec.times_queued, '', rec.json, rec.times_queued, now)}
end
"""

# KEYS: dedup, queue, leases, order, retried, outbox, metrics, finished, events
# ARGV: id, token, retention_ms, now, wake_channel
COMPLETE = (
    NOW
    + RECORD_FN
    + COMPLETE_FN
    + """
return do_complete(KEYS[9], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[1],
                   ARGV[2], now_ms(ARGV[4]), tonumber(ARGV[3]), ARGV[5])
"""
)

# Finish a run and claim the next event in one round trip (the worker loop's hot path).
# KEYS: dedup, queue, leases, order, retried, outbox, metrics, finished, events, retry, tombstones,
#       scheduled, attention
# ARGV: id, token, retention_ms, next_token, owner, lease_ms, now, wake_channel
COMPLETE_AND_CLAIM = (
    NOW
    + RECORD_FN
    + COMPLETE_FN
    + CLAIM_FN
    + """
local now = now_ms(ARGV[7])
local done = do_complete(KEYS[9], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
                         ARGV[1], ARGV[2], now, tonumber(ARGV[3]), ARGV[8])
if done[1] == 'lost' then return done end
local claimed = do_claim(KEYS[9], KEYS[2], KEYS[10], KEYS[3], KEYS[11], KEYS[6], ARGV[4], ARGV[5],
                         tonumber(ARGV[6]), now, KEYS[12], KEYS[13], ARGV[8])
if not claimed then return done end
return {done[1], done[2], claimed[1], claimed[2], claimed[3], claimed[4], claimed[5]}
"""
)

# End a run that did not succeed, or a claim that may not run yet: the event waits in `state`
# (retrying, scheduled or needs_attention) until its due time: `due_ms` when > 0, else now +
# `delay_ms`. `attempted` = '1' when a run happened (counted: times_queued, the retried set and the
# failure counters); '0' for a deferral decided before the run (nothing counted).
# KEYS: leases, retry, retried, outbox, metrics, scheduled, attention, events
# ARGV: id, token, error, delay_ms, now, state, class, due_ms, attempted, wake_channel
FAIL = (
    NOW
    + RECORD_FN
    + """
local now = now_ms(ARGV[5])
local events = KEYS[8]
local rec = load(events, ARGV[1])
if not held_by(rec, ARGV[2]) then return {-1} end
redis.call('ZREM', KEYS[1], ARGV[1])
local cmd = cmd_of(rec)
if ARGV[9] == '1' then
  rec.times_queued = tostring(tonumber(rec.times_queued) + 1)
  redis.call('SADD', KEYS[3], ARGV[1])
  bump(KEYS[5], 'events_failed', cmd)
  bump(KEYS[5], 'events_retried', cmd)
end
local due = tonumber(ARGV[8])
if due <= 0 then due = now + tonumber(ARGV[4]) end
local state = ARGV[6]
rec.state = state
rec.last_error = ARGV[3]
rec.rerun = '0'
rec.class = ARGV[7]
rec.due_ms = tostring(due)
rec.lease = nil
rec.owner = nil
save(events, ARGV[1], rec)
redis.call('ZADD', KEYS[2], due, ARGV[1])
wait_in(KEYS[6], KEYS[7], state, ARGV[1])
nudge(ARGV[10], due - now)
if state ~= 'retrying' then bump(KEYS[5], 'events_' .. state, cmd) end
local times = tonumber(rec.times_queued)
return {times, tostring(due),
        record_wait(KEYS[4], ARGV[1], state, times, ARGV[3], rec.json, times, now, ARGV[7], due)}
"""
)

# An operator's "retry now": a waiting event (retrying, scheduled, needs attention) is due at once and
# joins the back of the queue. A queued one is left as it is; a processing one is refused.
# KEYS: queue, retry, scheduled, attention, outbox, events
# ARGV: id, detail, now, wake_channel
RETRY_NOW = (
    NOW
    + RECORD_FN
    + """
local rec = load(KEYS[6], ARGV[1])
if not rec then return {'missing'} end
if rec.state == 'processing' or rec.state == 'queued' then return {rec.state} end
redis.call('ZREM', KEYS[2], ARGV[1])
unwait(KEYS[3], KEYS[4], ARGV[1])
rec.state = 'queued'
save(KEYS[6], ARGV[1], rec)
redis.call('RPUSH', KEYS[1], ARGV[1])
nudge(ARGV[4], 0)
return {'requeued', record(KEYS[5], ARGV[1], 'requeued', rec.times_queued, ARGV[2], rec.json,
                           tonumber(rec.times_queued), now_ms(ARGV[3]))}
"""
)

# Give a claimed event back untouched (graceful shutdown): front of the queue, no retry counted.
# KEYS: leases, queue, outbox, events
# ARGV: id, token, now, wake_channel
RELEASE = (
    NOW
    + RECORD_FN
    + """
local rec = load(KEYS[4], ARGV[1])
if not held_by(rec, ARGV[2]) then return {0} end
redis.call('ZREM', KEYS[1], ARGV[1])
rec.state = 'queued'
rec.lease = nil
rec.owner = nil
save(KEYS[4], ARGV[1], rec)
redis.call('LPUSH', KEYS[2], ARGV[1])
nudge(ARGV[4], 0)
return {1, record(KEYS[3], ARGV[1], 'requeued', rec.times_queued, 'released at shutdown: it runs again',
                  rec.json, tonumber(rec.times_queued) + 1, now_ms(ARGV[3]))}
"""
)

# KEYS: leases, queue, retried, outbox, metrics, events
# ARGV: now, limit, wake_channel
REAP = (
    NOW
    + RECORD_FN
    + """
local now = now_ms(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  local rec = load(KEYS[6], id)
  if rec then
    local times = tonumber(rec.times_queued) + 1
    local why = 'lease expired: its worker stopped'
    rec.times_queued = tostring(times)
    rec.state = 'queued'
    rec.rerun = '0'
    rec.last_error = why
    rec.lease = nil
    rec.owner = nil
    save(KEYS[6], id, rec)
    redis.call('RPUSH', KEYS[2], id)
    nudge(ARGV[3], 0)
    redis.call('SADD', KEYS[3], id)
    bump(KEYS[5], 'events_retried', cmd_of(rec))
    table.insert(out, id)
    table.insert(out, tostring(times))
    table.insert(out, record(KEYS[4], id, 'requeued', times, why, rec.json, times, now))
  end
end
return out
"""
)

# KEYS: dedup, retry, order, retried, tombstones, outbox, metrics, finished, scheduled, attention, events
# ARGV: id, detail, retention_ms, now
REMOVE = (
    NOW
    + RECORD_FN
    + """
local now = now_ms(ARGV[4])
local rec = load(KEYS[11], ARGV[1])
if not rec then return {'missing'} end
if rec.state == 'processing' then return {'processing'} end
if rec.state == 'queued' then redis.call('SADD', KEYS[5], ARGV[1]) end
if rec.state ~= 'queued' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  unwait(KEYS[9], KEYS[10], ARGV[1])
end
bump(KEYS[7], 'events_removed', cmd_of(rec))
if redis.call('HGET', KEYS[1], rec.dedup) == ARGV[1] then redis.call('HDEL', KEYS[1], rec.dedup) end
drop(KEYS[11], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
finish(KEYS[8], ARGV[1], now, tonumber(ARGV[3]))
local entry = record(KEYS[6], ARGV[1], 'removed', rec.times_queued, ARGV[2], rec.json,
                     tonumber(rec.times_queued) + 1, now)
return {'removed', rec.json, rec.times_queued, entry}
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

# KEYS: queue, tombstones, leases, retry, dedup, retried, order, scheduled, attention, events, bodies
# ARGV: now
# Returns the counters and the created time of the oldest live event (the head of the order index).
# The retry zset holds every waiting event: the retrying ones are those in neither set.
STATS = (
    NOW
    + RECORD_FN
    + """
local oldest = redis.call('ZRANGE', KEYS[7], 0, 0)
local created = false
if oldest[1] then
  local rec = load(KEYS[10], oldest[1])
  if rec then created = rec.created_ms end
end
local scheduled = redis.call('SCARD', KEYS[8])
local attention = redis.call('SCARD', KEYS[9])
return {redis.call('LLEN', KEYS[1]) - redis.call('SCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
        redis.call('ZCARD', KEYS[4]) - scheduled - attention, redis.call('HLEN', KEYS[5]),
        redis.call('SCARD', KEYS[6]), created, tostring(now_ms(ARGV[1])), scheduled, attention}
"""
)

# Take the lock when it is free, or when it is ours already (a take whose replication was not
# confirmed is asked again: durability.py).
# KEYS: lock; ARGV: token, ttl_ms
LOCK_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if held then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

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
