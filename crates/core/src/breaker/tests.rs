//! The breaker's hash as `/ready` and the admin read it ([`super::parse_stats`]), and its names.

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
