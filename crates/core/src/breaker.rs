//! The LLM circuit breaker, shared by every instance through one Redis hash.
//!
//! Every instance shares one breaker, kept in the Redis hash [`crate::keys::BREAKER_STATE`]. Its state
//! changes only inside two Lua scripts, [`ACQUIRE_SCRIPT`] (may this call go to the LLM?)
//! and [`RECORD_SCRIPT`] (how did it go?), so that each decision is atomic across
//! instances and exactly one caller anywhere holds the half-open probe. [`BreakerMachine`]
//! is the same state machine in Rust, for unit tests and as the executable specification
//! the scripts are checked against. [`parse_stats`] reads the hash for `/ready` and admin
//! output. A missing hash means no call has been made yet: the breaker is closed.
//!
//! Counting: every call let through (closed, or the half-open probe) adds to
//! `total_calls`; every refused call adds to `total_blocked` and nothing else, so
//! `success_rate = total_successes / total_calls` is about calls that reached the LLM.
//! Outcomes of calls let through before the breaker opened still count in
//! `total_successes`/`total_failures` but no longer move the state.

use crate::variables::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// The breaker's state, shown in upper case as the FastAPI service's `/ready` output does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are refused and answered with the fallback reply until the open period ends.
    Open,
    /// One probe call at a time is let through to decide whether to close again.
    HalfOpen,
}

impl BreakerState {
    /// The value stored in the Redis hash's `state` field.
    pub fn as_stored(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The name shown to operators: `CLOSED`, `OPEN`, `HALF_OPEN`.
    pub fn as_display(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }

    /// Reads the `state` field (or a script's reply); `None` for anything else.
    pub fn from_stored(value: &str) -> Option<Self> {
        match value {
            "closed" => Some(BreakerState::Closed),
            "open" => Some(BreakerState::Open),
            "half_open" => Some(BreakerState::HalfOpen),
            _ => None,
        }
    }
}

/// What operators see about the breaker, with the FastAPI service's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerStats {
    pub state: BreakerState,
    /// Consecutive failures counted towards opening.
    pub failure_count: u64,
    /// Calls let through to the LLM since the counters were created.
    pub total_calls: u64,
    /// Calls refused because the breaker was open (answered with the fallback reply).
    pub total_blocked: u64,
    /// Successful calls as a percentage of `total_calls`, two decimals; 100 before any call.
    pub success_rate: f64,
    /// Seconds until an open breaker lets a probe through; `null` unless open.
    pub retry_in: Option<u64>,
}

impl BreakerStats {
    /// A breaker that has never seen a call.
    pub fn closed() -> Self {
        BreakerStats {
            state: BreakerState::Closed,
            failure_count: 0,
            total_calls: 0,
            total_blocked: 0,
            success_rate: 100.0,
            retry_in: None,
        }
    }
}

/// The stored hash could not be understood; names the field so the writer can be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerParseError {
    #[error("breaker field `{field}` has invalid value {value:?}")]
    InvalidField { field: &'static str, value: String },
    #[error("breaker is open but field `opened_at_ms` is missing")]
    OpenWithoutOpenedAt,
    #[error("breaker script gave an unexpected reply: {reply}")]
    UnexpectedReply { reply: String },
}

/// Reads the breaker hash (field → value, as returned by `HGETALL`) into stats.
///
/// `open_duration_ms` is how long the breaker stays open (`breaker_open_seconds`), and
/// `now_ms` the current Unix time in milliseconds; together with `opened_at_ms` they
/// give `retry_in`. Missing fields count as zero and a missing `state` as closed, so an
/// empty hash reads as a fresh breaker. Fields this reader does not know are ignored.
pub fn parse_stats(
    fields: &HashMap<String, String>,
    open_duration_ms: u64,
    now_ms: u64,
) -> Result<BreakerStats, BreakerParseError> {
    let state = match fields.get("state") {
        None => BreakerState::Closed,
        Some(value) => {
            BreakerState::from_stored(value).ok_or_else(|| BreakerParseError::InvalidField {
                field: "state",
                value: value.clone(),
            })?
        }
    };
    let failure_count = counter(fields, "failure_count")?;
    let total_calls = counter(fields, "total_calls")?;
    let total_blocked = counter(fields, "total_blocked")?;
    let total_successes = counter(fields, "total_successes")?;

    let success_rate = if total_calls == 0 {
        100.0
    } else {
        let rate = total_successes.min(total_calls) as f64 * 100.0 / total_calls as f64;
        (rate * 100.0).round() / 100.0
    };

    let retry_in = match state {
        BreakerState::Open => {
            let opened_at_ms = match fields.get("opened_at_ms") {
                Some(_) => counter(fields, "opened_at_ms")?,
                None => return Err(BreakerParseError::OpenWithoutOpenedAt),
            };
            let closes_at_ms = opened_at_ms.saturating_add(open_duration_ms);
            Some(closes_at_ms.saturating_sub(now_ms).div_ceil(1000))
        }
        BreakerState::Closed | BreakerState::HalfOpen => None,
    };

    Ok(BreakerStats {
        state,
        failure_count,
        total_calls,
        total_blocked,
        success_rate,
        retry_in,
    })
}

fn counter(
    fields: &HashMap<String, String>,
    field: &'static str,
) -> Result<u64, BreakerParseError> {
    match fields.get(field) {
        None => Ok(0),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| BreakerParseError::InvalidField {
                field,
                value: value.clone(),
            }),
    }
}

// ---------------------------------------------------------------------------------------
// The state machine.

/// The breaker's settings, from Spin variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerThresholds {
    /// Consecutive failures (and slow calls) that open a closed breaker.
    pub failure_threshold: u32,
    /// Successful probes that close a half-open breaker.
    pub success_threshold: u32,
    /// How long an open breaker refuses calls before it lets a probe through.
    pub open: Duration,
    /// How long the half-open probe is reserved for its caller. A caller that crashed
    /// while probing must not wedge the breaker half-open: when the lease runs out the next
    /// caller gets a new probe.
    pub probe_lease: Duration,
}

impl BreakerThresholds {
    /// The FastAPI service's settings, with the given probe lease.
    pub const fn standard(probe_lease: Duration) -> BreakerThresholds {
        BreakerThresholds {
            failure_threshold: 5,
            success_threshold: 2,
            open: Duration::from_secs(60),
            probe_lease,
        }
    }

    /// Reads `breaker_failure_threshold`, `breaker_success_threshold` and
    /// `breaker_open_seconds`, each with the FastAPI service's value when unset or empty. The probe
    /// lease depends on the guarded call's budget, which its caller knows (see
    /// `llm::probe_lease`).
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
        probe_lease: Duration,
    ) -> Result<Self, ConfigError> {
        let v = crate::variables::Variables::new(lookup);
        let number = |name, default, min, max| v.number(name, default, min, max);
        let failure_threshold = number("breaker_failure_threshold", 5, 1, 10_000)?;
        let success_threshold = number("breaker_success_threshold", 2, 1, 10_000)?;
        let open_seconds = number("breaker_open_seconds", 60, 1, 86_400)?;
        Ok(BreakerThresholds {
            failure_threshold: failure_threshold as u32,
            success_threshold: success_threshold as u32,
            open: Duration::from_secs(open_seconds),
            probe_lease,
        })
    }

    /// `ARGV` of [`ACQUIRE_SCRIPT`].
    pub fn acquire_args(&self, now_ms: u64) -> [String; 3] {
        [
            now_ms.to_string(),
            millis(self.open).to_string(),
            millis(self.probe_lease).to_string(),
        ]
    }

    /// `ARGV` of [`RECORD_SCRIPT`]. `probe` is the probe this caller was handed, if any.
    pub fn record_args(
        &self,
        outcome: Outcome,
        probe: Option<ProbeId>,
        now_ms: u64,
    ) -> [String; 5] {
        [
            outcome.as_arg().to_owned(),
            now_ms.to_string(),
            self.failure_threshold.to_string(),
            self.success_threshold.to_string(),
            probe.map_or(0, |probe| probe.0).to_string(),
        ]
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Identifies one half-open probe, so that only its own outcome can close or reopen the
/// breaker: a prober whose lease ran out (and was replaced) reports too late to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId(pub u64);

/// Whether a call may go to the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Closed: go ahead.
    Allow,
    /// Half-open and this caller holds the one probe: go ahead, and report the outcome
    /// with this id.
    Probe(ProbeId),
    /// Open, or another caller holds the probe: answer with the fallback. `retry_in` is
    /// how long until a probe may be handed out.
    Reject { retry_in: Duration },
}

impl Decision {
    /// Whether the call may go to the LLM.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Reject { .. })
    }

    /// The probe this caller holds, to pass back when recording the outcome.
    pub fn probe(&self) -> Option<ProbeId> {
        match self {
            Decision::Probe(probe) => Some(*probe),
            Decision::Allow | Decision::Reject { .. } => None,
        }
    }

    /// Reads [`ACQUIRE_SCRIPT`]'s reply `{decision, retry_in_ms, probe_id}`.
    pub fn from_reply(
        decision: &str,
        retry_in_ms: i64,
        probe_id: i64,
    ) -> Result<Decision, BreakerParseError> {
        let unexpected = || BreakerParseError::UnexpectedReply {
            reply: format!("{decision} {retry_in_ms} {probe_id}"),
        };
        match decision {
            "allow" => Ok(Decision::Allow),
            "probe" if probe_id > 0 => Ok(Decision::Probe(ProbeId(probe_id as u64))),
            "reject" if retry_in_ms >= 0 => Ok(Decision::Reject {
                retry_in: Duration::from_millis(retry_in_ms as u64),
            }),
            _ => Err(unexpected()),
        }
    }
}

/// How a call that was let through went, as far as the breaker is concerned. Slow
/// successes and failures that say nothing about the LLM's health are mapped by the caller
/// (see `llm::breaker_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_arg(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// The whole breaker hash, typed; the Rust twin of the two scripts. Field names and
/// meanings are those of the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerMachine {
    pub state: BreakerState,
    /// Consecutive failures while closed; reset by a success or when it closes.
    pub failure_count: u64,
    /// Successful probes since it went half-open.
    pub success_count: u64,
    pub total_calls: u64,
    pub total_successes: u64,
    pub total_failures: u64,
    pub total_blocked: u64,
    pub opened_at_ms: u64,
    /// When the current probe's lease ends; 0 when no probe is out.
    pub probe_until_ms: u64,
    /// The last probe handed out.
    pub probe_id: u64,
    /// State changes so far.
    pub transitions: u64,
}

impl Default for BreakerMachine {
    fn default() -> Self {
        BreakerMachine {
            state: BreakerState::Closed,
            failure_count: 0,
            success_count: 0,
            total_calls: 0,
            total_successes: 0,
            total_failures: 0,
            total_blocked: 0,
            opened_at_ms: 0,
            probe_until_ms: 0,
            probe_id: 0,
            transitions: 0,
        }
    }
}

impl BreakerMachine {
    /// Reads the hash as `HGETALL` returns it; missing fields are zero, as in the scripts.
    pub fn from_fields(fields: &HashMap<String, String>) -> Result<Self, BreakerParseError> {
        let state = match fields.get("state") {
            None => BreakerState::Closed,
            Some(value) => {
                BreakerState::from_stored(value).ok_or_else(|| BreakerParseError::InvalidField {
                    field: "state",
                    value: value.clone(),
                })?
            }
        };
        Ok(BreakerMachine {
            state,
            failure_count: counter(fields, "failure_count")?,
            success_count: counter(fields, "success_count")?,
            total_calls: counter(fields, "total_calls")?,
            total_successes: counter(fields, "total_successes")?,
            total_failures: counter(fields, "total_failures")?,
            total_blocked: counter(fields, "total_blocked")?,
            opened_at_ms: counter(fields, "opened_at_ms")?,
            probe_until_ms: counter(fields, "probe_until_ms")?,
            probe_id: counter(fields, "probe_id")?,
            transitions: counter(fields, "transitions")?,
        })
    }

    fn transition(&mut self, to: BreakerState) {
        self.state = to;
        self.transitions += 1;
    }

    /// What [`ACQUIRE_SCRIPT`] decides at `now_ms`.
    pub fn acquire(&mut self, thresholds: &BreakerThresholds, now_ms: u64) -> Decision {
        match self.state {
            BreakerState::Closed => {
                self.total_calls += 1;
                return Decision::Allow;
            }
            BreakerState::Open => {
                let reopen_at = self.opened_at_ms.saturating_add(millis(thresholds.open));
                if now_ms < reopen_at {
                    self.total_blocked += 1;
                    return Decision::Reject {
                        retry_in: Duration::from_millis(reopen_at - now_ms),
                    };
                }
                self.transition(BreakerState::HalfOpen);
                self.success_count = 0;
            }
            BreakerState::HalfOpen => {
                if self.probe_until_ms > now_ms {
                    self.total_blocked += 1;
                    return Decision::Reject {
                        retry_in: Duration::from_millis(self.probe_until_ms - now_ms),
                    };
                }
            }
        }
        self.probe_id += 1;
        self.probe_until_ms = now_ms.saturating_add(millis(thresholds.probe_lease));
        self.total_calls += 1;
        Decision::Probe(ProbeId(self.probe_id))
    }

    /// What [`RECORD_SCRIPT`] does with an outcome at `now_ms`; returns the new state.
    pub fn record(
        &mut self,
        thresholds: &BreakerThresholds,
        outcome: Outcome,
        probe: Option<ProbeId>,
        now_ms: u64,
    ) -> BreakerState {
        match outcome {
            Outcome::Success => self.total_successes += 1,
            Outcome::Failure => self.total_failures += 1,
        }
        match self.state {
            BreakerState::Closed => match outcome {
                Outcome::Success => self.failure_count = 0,
                Outcome::Failure => {
                    self.failure_count += 1;
                    if self.failure_count >= u64::from(thresholds.failure_threshold) {
                        self.transition(BreakerState::Open);
                        self.opened_at_ms = now_ms;
                    }
                }
            },
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                let current = probe.is_some_and(|probe| probe.0 == self.probe_id);
                if current && self.probe_until_ms != 0 {
                    self.probe_until_ms = 0;
                    match outcome {
                        Outcome::Success => {
                            self.success_count += 1;
                            if self.success_count >= u64::from(thresholds.success_threshold) {
                                self.transition(BreakerState::Closed);
                                self.failure_count = 0;
                                self.success_count = 0;
                            }
                        }
                        Outcome::Failure => {
                            self.transition(BreakerState::Open);
                            self.opened_at_ms = now_ms;
                            self.failure_count += 1;
                            self.success_count = 0;
                        }
                    }
                }
            }
        }
        self.state
    }
}

/// Decides whether a call may go to the LLM, atomically for every instance.
///
/// `KEYS[1]` the breaker hash; `ARGV[1]` now (Unix ms), `ARGV[2]` the open period (ms),
/// `ARGV[3]` the probe lease (ms); see [`BreakerThresholds::acquire_args`]. Replies
/// `{decision, retry_in_ms, probe_id}` with decision `allow`, `probe` or `reject`; read
/// it with [`Decision::from_reply`]. Time comes from the caller (instances' clocks are
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
/// caller's probe id or 0; see [`BreakerThresholds::record_args`]. Replies with the new
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MINUTE_MS: u64 = 60_000;

    #[test]
    fn missing_hash_is_a_fresh_closed_breaker() {
        let stats = parse_stats(&HashMap::new(), MINUTE_MS, 1_000).unwrap();
        assert_eq!(stats, BreakerStats::closed());
    }

    #[test]
    fn reads_counters_and_success_rate() {
        let fields = hash(&[
            ("state", "closed"),
            ("failure_count", "2"),
            ("success_count", "0"),
            ("total_calls", "127"),
            ("total_successes", "115"),
            ("total_blocked", "12"),
            ("some_future_field", "x"),
        ]);
        let stats = parse_stats(&fields, MINUTE_MS, 0).unwrap();
        assert_eq!(stats.state, BreakerState::Closed);
        assert_eq!(stats.failure_count, 2);
        assert_eq!(stats.total_calls, 127);
        assert_eq!(stats.total_blocked, 12);
        assert_eq!(stats.success_rate, 90.55);
        assert_eq!(stats.retry_in, None);
    }

    #[test]
    fn open_breaker_counts_down_in_whole_seconds() {
        let fields = hash(&[("state", "open"), ("opened_at_ms", "100000")]);
        // Opened 15.5 s ago with a 60 s open period: 44.5 s left, shown as 45.
        let stats = parse_stats(&fields, MINUTE_MS, 115_500).unwrap();
        assert_eq!(stats.state, BreakerState::Open);
        assert_eq!(stats.retry_in, Some(45));
        // Past the open period the next call may probe: nothing left to wait.
        let stats = parse_stats(&fields, MINUTE_MS, 200_000).unwrap();
        assert_eq!(stats.retry_in, Some(0));
    }

    #[test]
    fn half_open_has_no_countdown() {
        let fields = hash(&[("state", "half_open"), ("opened_at_ms", "1")]);
        let stats = parse_stats(&fields, MINUTE_MS, 2).unwrap();
        assert_eq!(stats.state, BreakerState::HalfOpen);
        assert_eq!(stats.retry_in, None);
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = parse_stats(&hash(&[("state", "ajar")]), MINUTE_MS, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "breaker field `state` has invalid value \"ajar\""
        );
        let err = parse_stats(&hash(&[("total_calls", "-1")]), MINUTE_MS, 0).unwrap_err();
        assert!(err.to_string().contains("total_calls"), "{err}");
        let err = parse_stats(&hash(&[("state", "open")]), MINUTE_MS, 0).unwrap_err();
        assert_eq!(err, BreakerParseError::OpenWithoutOpenedAt);
    }

    #[test]
    fn successes_never_exceed_one_hundred_percent() {
        let fields = hash(&[("total_calls", "3"), ("total_successes", "5")]);
        assert_eq!(
            parse_stats(&fields, MINUTE_MS, 0).unwrap().success_rate,
            100.0
        );
    }

    #[test]
    fn serializes_in_the_fastapi_shape() {
        let json = serde_json::to_value(BreakerStats::closed()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "state": "CLOSED",
                "failure_count": 0,
                "total_calls": 0,
                "total_blocked": 0,
                "success_rate": 100.0,
                "retry_in": null
            })
        );
    }

    #[test]
    fn stored_and_display_names() {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert_eq!(BreakerState::from_stored(state.as_stored()), Some(state));
            let shown = serde_json::to_value(state).unwrap();
            assert_eq!(shown, serde_json::json!(state.as_display()));
        }
    }
}

#[cfg(test)]
mod machine_tests {
    use super::*;

    const T: BreakerThresholds = BreakerThresholds {
        failure_threshold: 5,
        success_threshold: 2,
        open: Duration::from_secs(60),
        probe_lease: Duration::from_secs(30),
    };

    fn opened_at(now_ms: u64) -> BreakerMachine {
        let mut machine = BreakerMachine::default();
        for _ in 0..5 {
            assert_eq!(machine.acquire(&T, now_ms), Decision::Allow);
            machine.record(&T, Outcome::Failure, None, now_ms);
        }
        assert_eq!(machine.state, BreakerState::Open);
        machine
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut machine = BreakerMachine::default();
        for _ in 0..4 {
            machine.acquire(&T, 0);
            assert_eq!(
                machine.record(&T, Outcome::Failure, None, 0),
                BreakerState::Closed
            );
        }
        machine.acquire(&T, 0);
        machine.record(&T, Outcome::Success, None, 0);
        assert_eq!(machine.failure_count, 0);
        for i in 1..=5 {
            machine.acquire(&T, 1_000);
            let state = machine.record(&T, Outcome::Failure, None, 1_000);
            let expected = if i < 5 {
                BreakerState::Closed
            } else {
                BreakerState::Open
            };
            assert_eq!(state, expected);
        }
        assert_eq!(machine.opened_at_ms, 1_000);
        assert_eq!(machine.transitions, 1);
        assert_eq!(machine.total_calls, 10);
        assert_eq!(machine.total_successes, 1);
        assert_eq!(machine.total_failures, 9);
    }

    #[test]
    fn open_rejects_with_the_time_left_and_counts_blocked_calls() {
        let mut machine = opened_at(1_000);
        let decision = machine.acquire(&T, 16_500);
        assert_eq!(
            decision,
            Decision::Reject {
                retry_in: Duration::from_millis(44_500)
            }
        );
        assert!(!decision.is_allowed());
        assert_eq!(decision.probe(), None);
        assert_eq!(
            machine.acquire(&T, 60_999),
            Decision::Reject {
                retry_in: Duration::from_millis(1)
            }
        );
        assert_eq!((machine.total_calls, machine.total_blocked), (5, 2));
        // Late outcomes of calls let through before it opened change only the totals.
        machine.record(&T, Outcome::Success, None, 17_000);
        assert_eq!(machine.state, BreakerState::Open);
        assert_eq!(machine.total_successes, 1);
        assert_eq!(machine.opened_at_ms, 1_000);
    }

    #[test]
    fn one_probe_at_a_time_and_a_new_one_when_its_lease_ends() {
        let mut machine = opened_at(0);
        let first = machine.acquire(&T, 60_000);
        assert_eq!(first, Decision::Probe(ProbeId(1)));
        assert!(first.is_allowed());
        assert_eq!(machine.state, BreakerState::HalfOpen);
        assert_eq!(machine.probe_until_ms, 90_000);
        assert_eq!(
            machine.acquire(&T, 61_000),
            Decision::Reject {
                retry_in: Duration::from_millis(29_000)
            }
        );
        // The first prober vanished: at the end of its lease someone else probes.
        let second = machine.acquire(&T, 90_000);
        assert_eq!(second, Decision::Probe(ProbeId(2)));
        // The vanished prober reports late: ignored, the second still holds the probe.
        machine.record(&T, Outcome::Success, first.probe(), 91_000);
        assert_eq!(machine.success_count, 0);
        assert!(!machine.acquire(&T, 91_000).is_allowed());
        // So is an outcome of a call let through while it was closed.
        machine.record(&T, Outcome::Failure, None, 91_000);
        assert_eq!(machine.state, BreakerState::HalfOpen);
        assert_eq!(machine.total_calls, 7);
        assert_eq!(machine.total_blocked, 2);
    }

    #[test]
    fn two_probe_successes_close() {
        let mut machine = opened_at(0);
        let probe = machine.acquire(&T, 60_000).probe();
        assert_eq!(
            machine.record(&T, Outcome::Success, probe, 60_100),
            BreakerState::HalfOpen
        );
        // The probe is released: the next caller probes at once.
        assert_eq!(machine.probe_until_ms, 0);
        // Recording the same probe twice does not count twice.
        machine.record(&T, Outcome::Success, probe, 60_100);
        assert_eq!(machine.success_count, 1);
        let probe = machine.acquire(&T, 60_200).probe();
        assert_eq!(probe, Some(ProbeId(2)));
        assert_eq!(
            machine.record(&T, Outcome::Success, probe, 60_300),
            BreakerState::Closed
        );
        assert_eq!((machine.failure_count, machine.success_count), (0, 0));
        assert_eq!(machine.transitions, 3);
        assert_eq!(machine.acquire(&T, 60_400), Decision::Allow);
    }

    #[test]
    fn one_probe_failure_reopens() {
        let mut machine = opened_at(0);
        let probe = machine.acquire(&T, 60_000).probe();
        machine.record(&T, Outcome::Success, probe, 60_000);
        let probe = machine.acquire(&T, 61_000).probe();
        assert_eq!(
            machine.record(&T, Outcome::Failure, probe, 62_000),
            BreakerState::Open
        );
        assert_eq!(machine.opened_at_ms, 62_000);
        assert_eq!(machine.success_count, 0);
        assert_eq!(machine.failure_count, 6);
        assert!(!machine.acquire(&T, 121_999).is_allowed());
        assert_eq!(machine.acquire(&T, 122_000), Decision::Probe(ProbeId(3)));
    }

    #[test]
    fn stats_read_the_machine_the_scripts_write() {
        let mut machine = opened_at(0);
        machine.acquire(&T, 1_000);
        let fields: HashMap<String, String> = [
            ("state", machine.state.as_stored().to_owned()),
            ("failure_count", machine.failure_count.to_string()),
            ("total_calls", machine.total_calls.to_string()),
            ("total_successes", machine.total_successes.to_string()),
            ("total_blocked", machine.total_blocked.to_string()),
            ("opened_at_ms", machine.opened_at_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            BreakerMachine::from_fields(&fields).unwrap().failure_count,
            5
        );
        let stats = parse_stats(&fields, millis(T.open), 1_000).unwrap();
        assert_eq!(stats.state, BreakerState::Open);
        assert_eq!((stats.total_calls, stats.total_blocked), (5, 1));
        assert_eq!(stats.success_rate, 0.0);
        assert_eq!(stats.retry_in, Some(59));
        assert_eq!(
            BreakerMachine::from_fields(&HashMap::new()).unwrap(),
            BreakerMachine::default()
        );
    }

    #[test]
    fn script_replies() {
        assert_eq!(Decision::from_reply("allow", 0, 0), Ok(Decision::Allow));
        assert_eq!(
            Decision::from_reply("probe", 0, 7),
            Ok(Decision::Probe(ProbeId(7)))
        );
        assert_eq!(
            Decision::from_reply("reject", 1_500, 0),
            Ok(Decision::Reject {
                retry_in: Duration::from_millis(1_500)
            })
        );
        for (decision, retry, probe) in [("probe", 0, 0), ("reject", -1, 0), ("maybe", 0, 0)] {
            let error = Decision::from_reply(decision, retry, probe).unwrap_err();
            assert!(
                matches!(error, BreakerParseError::UnexpectedReply { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn script_arguments() {
        assert_eq!(T.acquire_args(123), ["123", "60000", "30000"]);
        assert_eq!(
            T.record_args(Outcome::Failure, None, 9),
            ["failure", "9", "5", "2", "0"]
        );
        assert_eq!(
            T.record_args(Outcome::Success, Some(ProbeId(4)), 9),
            ["success", "9", "5", "2", "4"]
        );
    }

    #[test]
    fn thresholds_from_variables() {
        let lease = Duration::from_millis(3_000);
        let none = |_: &str| Ok::<_, String>(None);
        let defaults = BreakerThresholds::try_from_lookup(none, lease).unwrap();
        assert_eq!(defaults, BreakerThresholds::standard(lease));
        let set = |name: &str| {
            Ok::<_, String>(match name {
                "breaker_failure_threshold" => Some("3".to_owned()),
                "breaker_success_threshold" => Some("1".to_owned()),
                "breaker_open_seconds" => Some("2".to_owned()),
                _ => None,
            })
        };
        assert_eq!(
            BreakerThresholds::try_from_lookup(set, lease).unwrap(),
            BreakerThresholds {
                failure_threshold: 3,
                success_threshold: 1,
                open: Duration::from_secs(2),
                probe_lease: Duration::from_millis(3_000),
            }
        );
        let bad = |name: &str| {
            Ok::<_, String>((name == "breaker_failure_threshold").then(|| "0".to_owned()))
        };
        let error = BreakerThresholds::try_from_lookup(bad, lease).unwrap_err();
        assert!(
            error.to_string().contains("breaker_failure_threshold"),
            "{error}"
        );
    }

    #[test]
    fn script_digests_match_the_scripts() {
        for (script, digest) in [(ACQUIRE_SCRIPT, ACQUIRE_SHA1), (RECORD_SCRIPT, RECORD_SHA1)] {
            assert_eq!(
                sha1_smol::Sha1::from(script).digest().to_string(),
                digest,
                "update the digest after changing the script"
            );
        }
    }
}
