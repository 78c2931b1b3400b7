//! The shared circuit breaker's Lua scripts (`evolve_core::breaker`), run on the real test
//! Redis by digest as the chat component runs them, with time supplied by the test.
//!
//! Each test keeps its breaker in a hash of its own (the scripts take it as `KEYS[1]`), so
//! the tests share one Redis without sharing state. Besides the scenarios of DESIGN §4, a
//! long pseudo-random run checks that the scripts and `BreakerMachine`, the Rust model the
//! unit tests exercise, agree on every reply and every field.

use std::collections::HashMap;
use std::time::Duration;

use evolve_core::breaker::{
    parse_stats, BreakerMachine, BreakerState, BreakerThresholds, Decision, Outcome, ProbeId,
    ACQUIRE_SCRIPT, ACQUIRE_SHA1, RECORD_SCRIPT, RECORD_SHA1,
};
use redis::aio::MultiplexedConnection;

const T: BreakerThresholds = BreakerThresholds {
    failure_threshold: 5,
    success_threshold: 2,
    open: Duration::from_secs(60),
    probe_lease: Duration::from_secs(32),
};

/// An arbitrary Unix time in ms; the scripts only compare times they are given.
const T0: u64 = 1_700_000_000_000;
const OPEN_MS: u64 = 60_000;
const LEASE_MS: u64 = 32_000;

/// A breaker hash for one test, and the scripts loaded so `EVALSHA` finds them.
async fn setup(test: &str) -> (MultiplexedConnection, String) {
    let mut conn = crate::common::redis().await;
    for (script, digest) in [(ACQUIRE_SCRIPT, ACQUIRE_SHA1), (RECORD_SCRIPT, RECORD_SHA1)] {
        let loaded: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(loaded, digest, "the digest constant is stale");
    }
    let key = format!("{}{{breaker}}:state", crate::common::unique_prefix(test));
    (conn, key)
}

async fn acquire(conn: &mut MultiplexedConnection, key: &str, now_ms: u64) -> Decision {
    let (decision, retry_in_ms, probe_id): (String, i64, i64) = redis::cmd("EVALSHA")
        .arg(ACQUIRE_SHA1)
        .arg(1)
        .arg(key)
        .arg(&T.acquire_args(now_ms)[..])
        .query_async(conn)
        .await
        .unwrap();
    Decision::from_reply(&decision, retry_in_ms, probe_id).unwrap()
}

async fn record(
    conn: &mut MultiplexedConnection,
    key: &str,
    outcome: Outcome,
    probe: Option<ProbeId>,
    now_ms: u64,
) -> BreakerState {
    let state: String = redis::cmd("EVALSHA")
        .arg(RECORD_SHA1)
        .arg(1)
        .arg(key)
        .arg(&T.record_args(outcome, probe, now_ms)[..])
        .query_async(conn)
        .await
        .unwrap();
    BreakerState::from_stored(&state).unwrap()
}

async fn fields(conn: &mut MultiplexedConnection, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

async fn machine(conn: &mut MultiplexedConnection, key: &str) -> BreakerMachine {
    BreakerMachine::from_fields(&fields(conn, key).await).unwrap()
}

async fn delete(conn: &mut MultiplexedConnection, key: &str) {
    let _: i64 = redis::cmd("DEL").arg(key).query_async(conn).await.unwrap();
}

/// Five failed calls at `at`: the breaker opens.
async fn open_at(conn: &mut MultiplexedConnection, key: &str, at: u64) {
    for i in 1..=5 {
        assert_eq!(acquire(conn, key, at).await, Decision::Allow);
        let state = record(conn, key, Outcome::Failure, None, at).await;
        let expected = if i < 5 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(state, expected, "after failure {i}");
    }
}

#[tokio::test]
async fn opens_after_five_consecutive_failures() {
    let (mut conn, key) = setup("breaker_opens").await;
    // Four failures, then a success: the count starts again.
    for _ in 0..4 {
        acquire(&mut conn, &key, T0).await;
        record(&mut conn, &key, Outcome::Failure, None, T0).await;
    }
    acquire(&mut conn, &key, T0).await;
    assert_eq!(
        record(&mut conn, &key, Outcome::Success, None, T0).await,
        BreakerState::Closed
    );
    assert_eq!(machine(&mut conn, &key).await.failure_count, 0);

    open_at(&mut conn, &key, T0 + 1_000).await;
    let m = machine(&mut conn, &key).await;
    assert_eq!(m.state, BreakerState::Open);
    assert_eq!(m.failure_count, 5);
    assert_eq!(m.opened_at_ms, T0 + 1_000);
    assert_eq!(m.transitions, 1);
    assert_eq!(
        (m.total_calls, m.total_successes, m.total_failures),
        (10, 1, 9)
    );
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn rejects_while_open_and_counts_blocked_calls() {
    let (mut conn, key) = setup("breaker_rejects").await;
    open_at(&mut conn, &key, T0).await;
    for (now, left) in [(T0, OPEN_MS), (T0 + 15_500, 44_500), (T0 + OPEN_MS - 1, 1)] {
        assert_eq!(
            acquire(&mut conn, &key, now).await,
            Decision::Reject {
                retry_in: Duration::from_millis(left)
            }
        );
    }
    // A late outcome of a call let through before it opened moves nothing but totals.
    assert_eq!(
        record(&mut conn, &key, Outcome::Success, None, T0 + 2).await,
        BreakerState::Open
    );
    let m = machine(&mut conn, &key).await;
    assert_eq!(
        (m.total_calls, m.total_blocked, m.total_successes),
        (5, 3, 1)
    );
    assert_eq!(m.opened_at_ms, T0);
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn exactly_one_probe_among_fifty_concurrent_callers() {
    let (mut conn, key) = setup("breaker_one_probe").await;
    open_at(&mut conn, &key, T0).await;
    let client = redis::Client::open(crate::common::redis_url()).unwrap();
    let mut callers = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        let key = key.clone();
        callers.push(tokio::spawn(async move {
            // A connection each, as instances would have.
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            acquire(&mut conn, &key, T0 + OPEN_MS + 5).await
        }));
    }
    let mut probes = Vec::new();
    let mut rejects = 0;
    for caller in callers {
        match caller.await.unwrap() {
            Decision::Probe(id) => probes.push(id),
            Decision::Reject { retry_in } => {
                assert_eq!(retry_in, Duration::from_millis(LEASE_MS));
                rejects += 1;
            }
            Decision::Allow => panic!("an open breaker allowed a call"),
        }
    }
    assert_eq!(probes, vec![ProbeId(1)]);
    assert_eq!(rejects, 49);
    let m = machine(&mut conn, &key).await;
    assert_eq!(m.state, BreakerState::HalfOpen);
    assert_eq!(m.probe_until_ms, T0 + OPEN_MS + 5 + LEASE_MS);
    assert_eq!((m.total_calls, m.total_blocked), (6, 49));
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn an_expired_probe_lease_hands_a_new_probe() {
    let (mut conn, key) = setup("breaker_lease").await;
    open_at(&mut conn, &key, T0).await;
    let half_open_at = T0 + OPEN_MS;
    let first = acquire(&mut conn, &key, half_open_at).await;
    assert_eq!(first, Decision::Probe(ProbeId(1)));
    assert!(!acquire(&mut conn, &key, half_open_at + LEASE_MS - 1)
        .await
        .is_allowed());
    // The first prober never reported: its lease ends and the next caller probes.
    let second = acquire(&mut conn, &key, half_open_at + LEASE_MS).await;
    assert_eq!(second, Decision::Probe(ProbeId(2)));
    // The first prober's late report is ignored; the second still holds the probe.
    assert_eq!(
        record(
            &mut conn,
            &key,
            Outcome::Failure,
            first.probe(),
            half_open_at + LEASE_MS + 1
        )
        .await,
        BreakerState::HalfOpen
    );
    assert!(!acquire(&mut conn, &key, half_open_at + LEASE_MS + 2)
        .await
        .is_allowed());
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn two_probe_successes_close_it() {
    let (mut conn, key) = setup("breaker_closes").await;
    open_at(&mut conn, &key, T0).await;
    let now = T0 + OPEN_MS;
    let probe = acquire(&mut conn, &key, now).await.probe();
    assert_eq!(
        record(&mut conn, &key, Outcome::Success, probe, now + 10).await,
        BreakerState::HalfOpen
    );
    // Reporting the same probe again does not count twice.
    record(&mut conn, &key, Outcome::Success, probe, now + 11).await;
    assert_eq!(machine(&mut conn, &key).await.success_count, 1);
    // The probe was released: the next caller probes at once, without waiting the lease.
    let probe = acquire(&mut conn, &key, now + 20).await.probe();
    assert_eq!(probe, Some(ProbeId(2)));
    assert_eq!(
        record(&mut conn, &key, Outcome::Success, probe, now + 30).await,
        BreakerState::Closed
    );
    let m = machine(&mut conn, &key).await;
    assert_eq!(
        (m.failure_count, m.success_count, m.probe_until_ms),
        (0, 0, 0)
    );
    assert_eq!(m.transitions, 3);
    assert_eq!(acquire(&mut conn, &key, now + 40).await, Decision::Allow);
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn one_failure_in_half_open_reopens_it() {
    let (mut conn, key) = setup("breaker_reopens").await;
    open_at(&mut conn, &key, T0).await;
    let now = T0 + OPEN_MS;
    let probe = acquire(&mut conn, &key, now).await.probe();
    record(&mut conn, &key, Outcome::Success, probe, now).await;
    let probe = acquire(&mut conn, &key, now + 100).await.probe();
    assert_eq!(
        record(&mut conn, &key, Outcome::Failure, probe, now + 200).await,
        BreakerState::Open
    );
    let m = machine(&mut conn, &key).await;
    assert_eq!(m.opened_at_ms, now + 200);
    assert_eq!((m.success_count, m.probe_until_ms), (0, 0));
    assert_eq!(
        acquire(&mut conn, &key, now + 200 + OPEN_MS - 1).await,
        Decision::Reject {
            retry_in: Duration::from_millis(1)
        }
    );
    assert_eq!(
        acquire(&mut conn, &key, now + 200 + OPEN_MS).await,
        Decision::Probe(ProbeId(3))
    );
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn stats_show_what_the_scripts_counted() {
    let (mut conn, key) = setup("breaker_stats").await;
    for _ in 0..3 {
        acquire(&mut conn, &key, T0).await;
        record(&mut conn, &key, Outcome::Success, None, T0).await;
    }
    open_at(&mut conn, &key, T0 + 10).await;
    acquire(&mut conn, &key, T0 + 15_510).await;
    acquire(&mut conn, &key, T0 + 15_510).await;

    let stats = parse_stats(&fields(&mut conn, &key).await, OPEN_MS, T0 + 15_510).unwrap();
    assert_eq!(stats.state, BreakerState::Open);
    assert_eq!(stats.failure_count, 5);
    assert_eq!(stats.total_calls, 8);
    assert_eq!(stats.total_blocked, 2);
    assert_eq!(stats.success_rate, 37.5);
    assert_eq!(stats.retry_in, Some(45));
    let m = machine(&mut conn, &key).await;
    assert_eq!(
        (m.total_successes, m.total_failures, m.transitions),
        (3, 5, 1)
    );
    delete(&mut conn, &key).await;
}

#[tokio::test]
async fn eval_works_when_the_script_cache_lacks_the_script() {
    // EVALSHA of an unknown digest is NOSCRIPT; the platform falls back to EVAL, which
    // must give the same answer (and caches the script under the same digest).
    let (mut conn, key) = setup("breaker_eval").await;
    let error = redis::cmd("EVALSHA")
        .arg("0000000000000000000000000000000000000000")
        .arg(1)
        .arg(&key)
        .query_async::<redis::Value>(&mut conn)
        .await
        .unwrap_err();
    assert!(
        error.to_string().to_ascii_lowercase().contains("noscript"),
        "{error}"
    );
    let (decision, _, _): (String, i64, i64) = redis::cmd("EVAL")
        .arg(ACQUIRE_SCRIPT)
        .arg(1)
        .arg(&key)
        .arg(&T.acquire_args(T0)[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(decision, "allow");
    delete(&mut conn, &key).await;
}

/// A small deterministic generator, so a failing run can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test]
async fn scripts_and_model_agree_on_a_long_random_run() {
    let (mut conn, key) = setup("breaker_model").await;
    let mut model = BreakerMachine::default();
    let mut rng = Lcg(0x5eed);
    let mut now = T0;
    // Probes handed out and not yet reported, and calls let through while closed.
    let mut held: Vec<Option<ProbeId>> = Vec::new();
    for step in 0..2_000 {
        // Time moves in steps that cross the open period and the lease now and then.
        now += [0, 1, 500, 5_000, 20_000, 61_000][rng.next(6) as usize];
        if held.is_empty() || rng.next(2) == 0 {
            let expected = model.acquire(&T, now);
            let got = acquire(&mut conn, &key, now).await;
            assert_eq!(got, expected, "acquire at step {step}");
            if got.is_allowed() && rng.next(10) != 0 {
                // One caller in ten never reports (it crashed).
                held.push(got.probe());
            }
        } else {
            let probe = held.swap_remove(rng.next(held.len() as u64) as usize);
            let outcome = if rng.next(3) == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            let expected = model.record(&T, outcome, probe, now);
            let got = record(&mut conn, &key, outcome, probe, now).await;
            assert_eq!(got, expected, "record at step {step}");
        }
        assert_eq!(
            machine(&mut conn, &key).await,
            model,
            "state after step {step}"
        );
    }
    // The run visited every state and transition kind.
    assert!(model.transitions > 20, "{model:?}");
    assert!(model.probe_id > 5, "{model:?}");
    delete(&mut conn, &key).await;
}
