//! The queue's Lua scripts, each one atomic step on the `{queue}` keys. What each takes
//! and returns is written above it; `super::scripts` builds the calls and reads the
//! replies.

use super::scripts::Script;

/// KEYS: stream, de-duplication key, status. ARGV: task id, kind, payload, reference,
/// enqueued ms, de-duplication ttl ms, channel, wake-up message. A task whose reference
/// is pending (or was enqueued within the ttl) is not added: reply `{0, its task id}`;
/// one whose reference is dead is tried anew. Reply `{1, entry id}`.
pub const ENQUEUE: Script = Script {
    source: r#"
if ARGV[4] ~= '' then
  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[6]) then
    if redis.call('HGET', KEYS[3], ARGV[4]) ~= 'dead' then
      return {0, redis.call('GET', KEYS[2]) or ''}
    end
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[6])
  end
  redis.call('HSET', KEYS[3], ARGV[4], 'pending')
end
local id = redis.call('XADD', KEYS[1], '*', 'task', ARGV[1], 'kind', ARGV[2],
  'payload', ARGV[3], 'attempt', '0', 'ref', ARGV[4], 'enqueued', ARGV[5])
if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return {1, id}
"#,
    sha1: "17f9231e0aaa5739c11182776f40dcdf01d3c62a",
};

/// KEYS: counter, stream, status. ARGV: every, counter ttl ms, task id, kind, payload,
/// reference prefix, enqueued ms, channel, wake-up message. Counts one event and, on
/// every `every`-th, enqueues the task with the reference `prefix<count / every>`. The
/// counter reaches each count once, so each window is enqueued once: no marker is
/// needed. Reply `{0, count}` (not due) or `{1, entry id}`.
pub const ENQUEUE_EVERY: Script = Script {
    source: r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local every = tonumber(ARGV[1])
if n % every ~= 0 then return {0, n} end
local ref = ARGV[6] .. math.floor(n / every)
redis.call('HSET', KEYS[3], ref, 'pending')
local id = redis.call('XADD', KEYS[2], '*', 'task', ARGV[3], 'kind', ARGV[4],
  'payload', ARGV[5], 'attempt', '0', 'ref', ref, 'enqueued', ARGV[7])
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return {1, id}
"#,
    sha1: "825dd7dc27995f81ce793bc41ae5c917d2f759f8",
};

/// KEYS: high, default, low, delayed, dead, stats, status. ARGV: group, consumer, now
/// ms, visibility ms, max deliveries, count. Takes up to `count` deliveries: first the
/// entries idle past the visibility timeout (their drain died; one delivered more than
/// `max deliveries` times goes to the dead letters instead), then due retries are
/// promoted, then new entries are read high, default, low. Reply: 9 items per delivery
/// (priority, entry, deliveries, task, kind, payload, attempt, reference, enqueued).
pub const CLAIM: Script = Script {
    source: r#"
local function fields_of(flat)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end
local group, consumer, now = ARGV[1], ARGV[2], ARGV[3]
local visibility, max_deliveries = tonumber(ARGV[4]), tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local streams = {KEYS[1], KEYS[2], KEYS[3]}
local out, taken = {}, 0
local function emit(p, id, deliveries, f)
  local item = {tostring(p), id, tostring(deliveries), f.task or '', f.kind or '',
    f.payload or '', f.attempt or '0', f.ref or '', f.enqueued or '0'}
  for _, v in ipairs(item) do out[#out + 1] = v end
  taken = taken + 1
end
for _, s in ipairs(streams) do
  redis.pcall('XGROUP', 'CREATE', s, group, '0', 'MKSTREAM')
end
for p, s in ipairs(streams) do
  if taken >= count then break end
  local claimed = redis.call('XAUTOCLAIM', s, group, consumer, visibility, '0-0',
    'COUNT', count - taken)
  for _, entry in ipairs(claimed[2]) do
    local id = entry[1]
    local f = fields_of(entry[2])
    local info = redis.call('XPENDING', s, group, id, id, 1)[1]
    local deliveries = info and info[4] or 1
    if deliveries > max_deliveries then
      redis.call('XADD', KEYS[5], '*', 'task', f.task or '', 'kind', f.kind or '',
        'payload', f.payload or '', 'attempt', f.attempt or '0', 'ref', f.ref or '',
        'enqueued', f.enqueued or '0', 'priority', tostring(p),
        'error', 'delivered ' .. (deliveries - 1) .. ' times without finishing',
        'failed_at', now)
      redis.call('XACK', s, group, id)
      redis.call('XDEL', s, id)
      redis.call('HINCRBY', KEYS[6], (f.kind or 'unknown') .. ':dead', 1)
      if f.ref and f.ref ~= '' then redis.call('HSET', KEYS[7], f.ref, 'dead') end
    else
      emit(p, id, deliveries, f)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local t = cjson.decode(member)
  redis.call('XADD', streams[tonumber(t.priority)] or KEYS[2], '*', 'task', t.task,
    'kind', t.kind, 'payload', t.payload, 'attempt', tostring(t.attempt), 'ref', t.ref,
    'enqueued', tostring(t.enqueued))
  redis.call('ZREM', KEYS[4], member)
end
for p, s in ipairs(streams) do
  if taken >= count then break end
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - taken,
    'STREAMS', s, '>')
  if read then
    for _, entry in ipairs(read[1][2]) do emit(p, entry[1], 1, fields_of(entry[2])) end
  end
end
return out
"#,
    sha1: "1c507d6f88d701e2cd26c2edbe13b8e9762ddbaa",
};

/// KEYS: stream, stats, status, results. ARGV: group, entry, kind, reference, result
/// record, results kept, duration field, duration ms. Acknowledges and removes a done
/// task, counts it and keeps its record. Reply 1, or 0 when another drain already
/// finished the entry (then nothing is counted twice).
pub const COMPLETE: Script = Script {
    source: r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':done', 1)
redis.call('HINCRBY', KEYS[2], ARGV[7], 1)
redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':duration_ms_sum', ARGV[8])
if ARGV[4] ~= '' then redis.call('HDEL', KEYS[3], ARGV[4]) end
redis.call('LPUSH', KEYS[4], ARGV[5])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[6]) - 1)
return 1
"#,
    sha1: "9bf8b0dff0483aa65926acb18e52d3724202a449",
};

/// KEYS: stream, delayed, dead, stats, status. ARGV: group, consumer, entry, priority,
/// task, kind, payload, next attempt, reference, enqueued, error, now ms, retry at ms
/// (empty: dead), outcome counter, duration field, duration ms. Takes a failed (or
/// released) task off the stream and schedules it again or moves it to the dead
/// letters, only while this consumer still holds the delivery. Reply 0 (not held), 1
/// (scheduled), 2 (dead).
pub const FAIL: Script = Script {
    source: r#"
local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)[1]
if not held or held[2] ~= ARGV[2] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[6] .. ':' .. ARGV[14], 1)
if ARGV[15] ~= '' then
  redis.call('HINCRBY', KEYS[4], ARGV[15], 1)
  redis.call('HINCRBY', KEYS[4], ARGV[6] .. ':duration_ms_sum', ARGV[16])
end
if ARGV[13] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[13], cjson.encode({priority = ARGV[4], task = ARGV[5],
    kind = ARGV[6], payload = ARGV[7], attempt = ARGV[8], ref = ARGV[9],
    enqueued = ARGV[10]}))
  if ARGV[14] == 'failed' then redis.call('HINCRBY', KEYS[4], ARGV[6] .. ':retried', 1) end
  return 1
end
redis.call('XADD', KEYS[3], '*', 'task', ARGV[5], 'kind', ARGV[6], 'payload', ARGV[7],
  'attempt', ARGV[8], 'ref', ARGV[9], 'enqueued', ARGV[10], 'priority', ARGV[4],
  'error', ARGV[11], 'failed_at', ARGV[12])
redis.call('HINCRBY', KEYS[4], ARGV[6] .. ':dead', 1)
if ARGV[9] ~= '' then redis.call('HSET', KEYS[5], ARGV[9], 'dead') end
return 2
"#,
    sha1: "987bffd3a03e84a3947c70e67d1cadd94bab8244",
};

/// KEYS: dead, high, default, low, status. ARGV: dead entry, now ms. Puts a dead
/// letter back on its stream with its attempts reset. Reply 1, or 0 when no such entry.
pub const RETRY_DEAD: Script = Script {
    source: r#"
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not entry then return 0 end
local f = {}
for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
local stream = KEYS[1 + (tonumber(f.priority) or 2)] or KEYS[3]
redis.call('XADD', stream, '*', 'task', f.task or '', 'kind', f.kind or '',
  'payload', f.payload or '', 'attempt', '0', 'ref', f.ref or '', 'enqueued', ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[1])
if f.ref and f.ref ~= '' then redis.call('HSET', KEYS[5], f.ref, 'pending') end
return 1
"#,
    sha1: "1abd2af19a6c5d0f805718e9a14bd49588f4b8e4",
};

/// KEYS: dead, status. ARGV: dead entry. Deletes a dead letter (and its reference's
/// `dead` state). Reply 1, or 0 when no such entry.
pub const DELETE_DEAD: Script = Script {
    source: r#"
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not entry then return 0 end
local f = {}
for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
redis.call('XDEL', KEYS[1], ARGV[1])
if f.ref and f.ref ~= '' and redis.call('HGET', KEYS[2], f.ref) == 'dead' then
  redis.call('HDEL', KEYS[2], f.ref)
end
return 1
"#,
    sha1: "441f0484b53571d8ead82f9a94165bb028c26f09",
};

/// KEYS: dead. ARGV: count. The newest dead letters: 10 items each (entry, task, kind,
/// payload, attempt, reference, enqueued, priority, error, failed at).
pub const LIST_DEAD: Script = Script {
    source: r#"
local out = {}
for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])) do
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  local item = {entry[1], f.task or '', f.kind or '', f.payload or '', f.attempt or '0',
    f.ref or '', f.enqueued or '0', f.priority or '2', f.error or '', f.failed_at or '0'}
  for _, v in ipairs(item) do out[#out + 1] = v end
end
return out
"#,
    sha1: "f82339a500857f2301dd69f0cd793e80b3e0eefd",
};

/// KEYS: high, default, low, delayed, dead, stats. ARGV: group. Per stream: length,
/// pending deliveries, enqueue time of the oldest entry (0 when empty); then the
/// delayed and dead counts; then the counters as field, value pairs.
pub const STATS: Script = Script {
    source: r#"
local out = {}
for i = 1, 3 do
  out[#out + 1] = redis.call('XLEN', KEYS[i])
  local pending = redis.pcall('XPENDING', KEYS[i], ARGV[1])
  if type(pending) == 'table' and pending[1] then
    out[#out + 1] = pending[1]
  else
    out[#out + 1] = 0
  end
  local first = redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', 1)[1]
  local oldest = '0'
  if first then
    for j = 1, #first[2], 2 do
      if first[2][j] == 'enqueued' then oldest = first[2][j + 1] end
    end
  end
  out[#out + 1] = oldest
end
out[#out + 1] = redis.call('ZCARD', KEYS[4])
out[#out + 1] = redis.call('XLEN', KEYS[5])
for _, v in ipairs(redis.call('HGETALL', KEYS[6])) do out[#out + 1] = v end
return out
"#,
    sha1: "29d73f68942e9bf1b058107c6c20e6739deead90",
};

/// KEYS: high, default, low. ARGV: group, consumer, idle ms. Removes this drain's
/// consumer, and those of drains gone longer than the idle time, when they hold no
/// delivery (a consumer's pending deliveries would be lost with it). Reply: removed.
pub const FINISH: Script = Script {
    source: r#"
local removed = 0
for i = 1, 3 do
  local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[i], ARGV[1])
  if type(consumers) == 'table' and not consumers.err then
    for _, c in ipairs(consumers) do
      local f = {}
      for j = 1, #c, 2 do f[c[j]] = c[j + 1] end
      if f.pending == 0 and (f.name == ARGV[2] or f.idle > tonumber(ARGV[3])) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[1], f.name)
        removed = removed + 1
      end
    end
  end
end
return removed
"#,
    sha1: "5f13e5f1a9a58c108a04055ba87a4d859c7dc3a9",
};

/// Every script, for loading and for the digest test.
pub const ALL: [Script; 10] = [
    ENQUEUE,
    ENQUEUE_EVERY,
    CLAIM,
    COMPLETE,
    FAIL,
    RETRY_DEAD,
    DELETE_DEAD,
    LIST_DEAD,
    STATS,
    FINISH,
];
