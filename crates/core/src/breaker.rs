//! The LLM circuit breaker's shared state, as stored in Redis, read into typed stats.
//!
//! Every instance shares one breaker, kept in the Redis hash [`STATE_KEY`]. This module
//! only reads that hash (for `/ready` and admin output); the state machine that writes it
//! atomically lives with the chat path. A missing hash means no call has been made yet:
//! the breaker is closed.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Redis hash holding the LLM breaker's state. The `{breaker:llm}` hash tag keeps every
/// key of this breaker in one Redis Cluster slot, so one script can touch them together.
pub const STATE_KEY: &str = "evolve:{breaker:llm}:state";

/// The breaker's state, shown in upper case as the seed's `/ready` output does.
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

    fn from_stored(value: &str) -> Option<Self> {
        match value {
            "closed" => Some(BreakerState::Closed),
            "open" => Some(BreakerState::Open),
            "half_open" => Some(BreakerState::HalfOpen),
            _ => None,
        }
    }
}

/// What operators see about the breaker, with the seed's field names.
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
    fn serializes_in_the_seed_shape() {
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
