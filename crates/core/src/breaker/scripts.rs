//! The two Lua scripts that change the shared breaker, atomically for every instance.

/// Decides whether a call may go to the LLM, atomically for every instance.
///
/// `KEYS[1]` the breaker hash; `ARGV[1]` now (Unix ms), `ARGV[2]` the open period (ms),
/// `ARGV[3]` the probe lease (ms); see [`BreakerThresholds::acquire_args`](super::BreakerThresholds::acquire_args). Replies
/// `{decision, retry_in_ms, probe_id}` with decision `allow`, `probe` or `reject`; read
/// it with [`Decision::from_reply`](super::Decision::from_reply). Time comes from the caller (instances' clocks are
/// assumed to agree to well under the open period), which keeps the script deterministic
/// and lets tests drive time.
pub const ACQUIRE_SCRIPT: &str = r#"-- evolve breaker: acquire
local key = KEYS[1]
local now = tonumber(ARGV[1])
local open_ms = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local f = redis.call('HMGET', key, 'state', 'opened_at_ms', 'probe_until_ms')
local state = f[1] or 'closed'
if state == 'open' then
  local reopen_at = (tonumber(f[2]) or 0) + open_ms
  if now < reopen_at then
    redis.call('HINCRBY', key, 'total_blocked', 1)
    return {'reject', reopen_at - now, 0}
  end
  -- The open period is over: this caller takes the first probe.
  redis.call('HSET', key, 'state', 'half_open', 'success_count', 0)
  redis.call('HINCRBY', key, 'transitions', 1)
elseif state == 'half_open' then
  local probe_until = tonumber(f[3]) or 0
  if probe_until > now then
    redis.call('HINCRBY', key, 'total_blocked', 1)
    return {'reject', probe_until - now, 0}
  end
  -- No probe out, or its lease ran out: hand a new one.
else
  redis.call('HINCRBY', key, 'total_calls', 1)
  return {'allow', 0, 0}
end
local probe_id = redis.call('HINCRBY', key, 'probe_id', 1)
redis.call('HSET', key, 'probe_until_ms', string.format('%d', now + lease_ms))
redis.call('HINCRBY', key, 'total_calls', 1)
return {'probe', 0, probe_id}
"#;

/// Records the outcome of a call that [`ACQUIRE_SCRIPT`] let through.
///
/// `KEYS[1]` the breaker hash; `ARGV[1]` `success` or `failure`, `ARGV[2]` now (Unix ms),
/// `ARGV[3]` the failure threshold, `ARGV[4]` the success threshold, `ARGV[5]` the
/// caller's probe id or 0; see [`BreakerThresholds::record_args`](super::BreakerThresholds::record_args). Replies with the new
/// state (`closed`, `open`, `half_open`).
pub const RECORD_SCRIPT: &str = r#"-- evolve breaker: record
local key = KEYS[1]
local success = ARGV[1] == 'success'
local now = ARGV[2]
local failure_threshold = tonumber(ARGV[3])
local success_threshold = tonumber(ARGV[4])
local probe = tonumber(ARGV[5])
if success then
  redis.call('HINCRBY', key, 'total_successes', 1)
else
  redis.call('HINCRBY', key, 'total_failures', 1)
end
local f = redis.call('HMGET', key, 'state', 'failure_count', 'probe_id', 'probe_until_ms')
local state = f[1] or 'closed'
if state == 'open' then
  -- A call let through before it opened: counted above, the state stays.
  return 'open'
elseif state == 'half_open' then
  if probe == 0 or probe ~= tonumber(f[3]) or (tonumber(f[4]) or 0) == 0 then
    -- Not the current probe's outcome (a late one, or from before it opened).
    return 'half_open'
  end
  if success then
    local successes = redis.call('HINCRBY', key, 'success_count', 1)
    if successes >= success_threshold then
      redis.call('HSET', key, 'state', 'closed', 'failure_count', 0, 'success_count', 0,
        'probe_until_ms', 0)
      redis.call('HINCRBY', key, 'transitions', 1)
      return 'closed'
    end
    redis.call('HSET', key, 'probe_until_ms', 0)
    return 'half_open'
  end
  redis.call('HSET', key, 'state', 'open', 'opened_at_ms', now, 'success_count', 0,
    'probe_until_ms', 0)
  redis.call('HINCRBY', key, 'failure_count', 1)
  redis.call('HINCRBY', key, 'transitions', 1)
  return 'open'
end
if success then
  if (tonumber(f[2]) or 0) ~= 0 then
    redis.call('HSET', key, 'failure_count', 0)
  end
  return 'closed'
end
local failures = redis.call('HINCRBY', key, 'failure_count', 1)
if failures >= failure_threshold then
  redis.call('HSET', key, 'state', 'open', 'opened_at_ms', now)
  redis.call('HINCRBY', key, 'transitions', 1)
  return 'open'
end
return 'closed'
"#;

/// SHA-1 of [`ACQUIRE_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const ACQUIRE_SHA1: &str = "4f2099a00e6cdbb91f6caec90f0a629891f83430";
/// SHA-1 of [`RECORD_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const RECORD_SHA1: &str = "43cd1f5c06c828c0e5ed977153d4f44bbc286457";
