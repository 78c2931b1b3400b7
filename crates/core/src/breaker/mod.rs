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

mod machine;
mod scripts;

pub use machine::BreakerMachine;
pub use scripts::{ACQUIRE_SCRIPT, ACQUIRE_SHA1, RECORD_SCRIPT, RECORD_SHA1};

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

#[cfg(test)]
mod tests;
