//! The rate-limit and idempotency scripts of `evolve_core::limits`, run on the real test
//! Redis exactly as the chat component sends them (`EVAL` with the keys of
//! `evolve_core::keys`), and their replies read with the same parsers.
//!
//! Every test uses its own user id, so the tests share one Redis without sharing keys.

use std::time::Duration;

use evolve_core::ids::IdempotencyKey;
use evolve_core::ids::UserRef;
use evolve_core::keys;
use evolve_core::limits::{
    claim_was_ours, Begin, Claim, Fingerprint, RateDecision, RateLimit, StoredResponse,
    IDEMPOTENCY_ABANDON_SCRIPT, IDEMPOTENCY_BEGIN_SCRIPT, IDEMPOTENCY_FINISH_SCRIPT,
    IDEMPOTENCY_KEEP, IDEMPOTENCY_LEASE, RATE_LIMIT_SCRIPT,
};
use redis::aio::MultiplexedConnection;

/// A user id no other test (or run) uses.
fn test_user(test: &str) -> UserRef {
    UserRef::parse(crate::common::unique_prefix(test).trim_end_matches(':')).unwrap()
}

/// A moment to start a test's clock from.
const T0: u64 = 1_750_000_000_000;

async fn count_turn_at(
    conn: &mut MultiplexedConnection,
    key: &str,
    limit: RateLimit,
    now_ms: u64,
) -> RateDecision {
    let reply: Vec<i64> = redis::cmd("EVAL")
        .arg(RATE_LIMIT_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&limit.script_args(now_ms)[..])
        .query_async(conn)
        .await
        .unwrap();
    limit.decision(&reply).unwrap()
}

/// A turn at `T0`: for tests where time does not move.
async fn count_turn(conn: &mut MultiplexedConnection, key: &str, limit: RateLimit) -> RateDecision {
    count_turn_at(conn, key, limit, T0).await
}

async fn zcard(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn twenty_turns_a_minute_then_429_until_the_oldest_leaves() {
    let mut conn = crate::common::redis().await;
    let key = keys::chat_rate_limit(&test_user("rl_twenty"));
    let limit = RateLimit::per_minute(20);

    for turn in 0..20 {
        assert_eq!(
            count_turn(&mut conn, &key, limit).await,
            RateDecision::Allowed {
                remaining: 19 - turn
            },
            "turn {turn}"
        );
    }
    let refused = count_turn(&mut conn, &key, limit).await;
    let RateDecision::Limited { retry_after_ms } = refused else {
        panic!("turn 21 was {refused:?}");
    };
    // The first turn was a moment ago: it leaves the window in just under a minute.
    assert!(
        (50_000..=60_000).contains(&retry_after_ms),
        "retry after {retry_after_ms} ms"
    );
    assert_eq!(
        refused.retry_after_secs(),
        Some(retry_after_ms.div_ceil(1000))
    );
    let problem = refused.problem().unwrap();
    assert_eq!(problem.status, 429);
    assert!(problem
        .headers()
        .iter()
        .any(|(name, _)| *name == "retry-after"));

    // Refused turns are not counted, and the set expires with the window.
    for _ in 0..5 {
        assert!(matches!(
            count_turn(&mut conn, &key, limit).await,
            RateDecision::Limited { .. }
        ));
    }
    assert_eq!(zcard(&mut conn, &key).await, 20);
    let ttl = pttl(&mut conn, &key).await;
    assert!((1..=60_000).contains(&ttl), "pttl {ttl}");
}

#[tokio::test]
async fn the_window_slides() {
    let mut conn = crate::common::redis().await;
    let key = keys::chat_rate_limit(&test_user("rl_slide"));
    let limit = RateLimit {
        limit: 3,
        window_ms: 3_000,
    };
    let at = |offset_ms: u64| T0 + offset_ms;

    assert!(matches!(
        count_turn_at(&mut conn, &key, limit, at(0)).await,
        RateDecision::Allowed { remaining: 2 }
    ));
    assert!(matches!(
        count_turn_at(&mut conn, &key, limit, at(10)).await,
        RateDecision::Allowed { remaining: 1 }
    ));
    assert!(matches!(
        count_turn_at(&mut conn, &key, limit, at(1_000)).await,
        RateDecision::Allowed { remaining: 0 }
    ));

    // Full: the wait is until the first turn leaves, at 3,000 ms.
    assert_eq!(
        count_turn_at(&mut conn, &key, limit, at(1_500)).await,
        RateDecision::Limited {
            retry_after_ms: 1_500
        }
    );
    assert_eq!(
        count_turn_at(&mut conn, &key, limit, at(2_999)).await,
        RateDecision::Limited { retry_after_ms: 1 }
    );

    // At 3,010 ms the first two turns have left; the third still counts, so this is a
    // sliding window, not a counter reset at a boundary.
    assert!(matches!(
        count_turn_at(&mut conn, &key, limit, at(3_010)).await,
        RateDecision::Allowed { remaining: 1 }
    ));
    assert!(matches!(
        count_turn_at(&mut conn, &key, limit, at(3_020)).await,
        RateDecision::Allowed { remaining: 0 }
    ));
    assert_eq!(
        count_turn_at(&mut conn, &key, limit, at(3_030)).await,
        RateDecision::Limited {
            retry_after_ms: 970
        }
    );
}

#[tokio::test]
async fn concurrent_turns_are_counted_exactly() {
    let key = keys::chat_rate_limit(&test_user("rl_concurrent"));
    let limit = RateLimit::per_minute(50);
    let mut connections = Vec::new();
    for _ in 0..8 {
        connections.push(crate::common::redis().await);
    }

    let attempts = (0..400).map(|i| {
        let mut conn = connections[i % connections.len()].clone();
        let key = key.clone();
        tokio::spawn(async move { count_turn(&mut conn, &key, limit).await })
    });
    let decisions: Vec<RateDecision> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter_map(|decision| match decision {
            RateDecision::Allowed { remaining } => Some(*remaining),
            RateDecision::Limited { .. } => None,
        })
        .collect();
    remaining.sort_unstable();
    // Exactly 50 allowed, and each saw a different count: no two read the same state.
    assert_eq!(remaining, (0..50).collect::<Vec<u32>>());
    assert_eq!(zcard(&mut connections[0], &key).await, 50);
}

async fn begin(
    conn: &mut MultiplexedConnection,
    key: &str,
    claim: &Claim,
    lease: Duration,
) -> Begin {
    let reply: Option<String> = redis::cmd("EVAL")
        .arg(IDEMPOTENCY_BEGIN_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&claim.begin_args(lease)[..])
        .query_async(conn)
        .await
        .unwrap();
    claim.begin_outcome(reply.as_deref()).unwrap()
}

async fn finish(
    conn: &mut MultiplexedConnection,
    key: &str,
    claim: &Claim,
    response: &StoredResponse,
) -> bool {
    let reply: i64 = redis::cmd("EVAL")
        .arg(IDEMPOTENCY_FINISH_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&claim.finish_args(response, IDEMPOTENCY_KEEP)[..])
        .query_async(conn)
        .await
        .unwrap();
    claim_was_ours(reply).unwrap()
}

async fn abandon(conn: &mut MultiplexedConnection, key: &str, claim: &Claim) -> bool {
    let reply: i64 = redis::cmd("EVAL")
        .arg(IDEMPOTENCY_ABANDON_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&claim.abandon_args()[..])
        .query_async(conn)
        .await
        .unwrap();
    claim_was_ours(reply).unwrap()
}

fn chat_fingerprint(message: &str) -> Fingerprint {
    Fingerprint::of(&[b"POST /api/chat", message.as_bytes()])
}

fn answer() -> StoredResponse {
    StoredResponse {
        status: 200,
        content_type: "application/json".into(),
        body: r#"{"reply":"Привет!","message_id":41,"degraded":false}"#.into(),
    }
}

fn idempotency_key(user: &UserRef, raw: &str) -> String {
    keys::idempotency(user, &IdempotencyKey::parse(raw).unwrap())
}

#[tokio::test]
async fn idempotency_begin_finish_replay() {
    let mut conn = crate::common::redis().await;
    let key = idempotency_key(&test_user("idem_replay"), "8e03978e-40d5-43e8");

    let first = Claim::new("token-1", chat_fingerprint("hi"));
    assert_eq!(
        begin(&mut conn, &key, &first, IDEMPOTENCY_LEASE).await,
        Begin::Started
    );
    let ttl = pttl(&mut conn, &key).await;
    assert!((55_000..=60_000).contains(&ttl), "lease pttl {ttl}");

    // A retry while the first runs waits; the same key for another message is refused.
    let retry = Claim::new("token-2", chat_fingerprint("hi"));
    assert_eq!(
        begin(&mut conn, &key, &retry, IDEMPOTENCY_LEASE).await,
        Begin::InProgress
    );
    let other = Claim::new("token-3", chat_fingerprint("bye"));
    assert_eq!(
        begin(&mut conn, &key, &other, IDEMPOTENCY_LEASE).await,
        Begin::Mismatch
    );
    // Only the claim's owner may finish or release it.
    assert!(!finish(&mut conn, &key, &retry, &answer()).await);
    assert!(!abandon(&mut conn, &key, &retry).await);

    assert!(finish(&mut conn, &key, &first, &answer()).await);
    let ttl = pttl(&mut conn, &key).await;
    assert!(ttl > 86_000_000, "kept pttl {ttl}");

    // Every later retry replays the first answer and writes nothing.
    for token in ["token-4", "token-5"] {
        let retry = Claim::new(token, chat_fingerprint("hi"));
        assert_eq!(
            begin(&mut conn, &key, &retry, IDEMPOTENCY_LEASE).await,
            Begin::Done(answer())
        );
    }
    assert_eq!(
        begin(&mut conn, &key, &other, IDEMPOTENCY_LEASE).await,
        Begin::Mismatch
    );
    // Finishing twice does nothing: the record is no longer a pending claim.
    assert!(!finish(&mut conn, &key, &first, &answer()).await);
}

#[tokio::test]
async fn idempotency_abandon_frees_the_key() {
    let mut conn = crate::common::redis().await;
    let key = idempotency_key(&test_user("idem_abandon"), "k1");

    let first = Claim::new("token-1", chat_fingerprint("hi"));
    assert_eq!(
        begin(&mut conn, &key, &first, IDEMPOTENCY_LEASE).await,
        Begin::Started
    );
    assert!(abandon(&mut conn, &key, &first).await);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    let retry = Claim::new("token-2", chat_fingerprint("hi"));
    assert_eq!(
        begin(&mut conn, &key, &retry, IDEMPOTENCY_LEASE).await,
        Begin::Started
    );
}

#[tokio::test]
async fn an_expired_lease_passes_the_key_on() {
    let mut conn = crate::common::redis().await;
    let key = idempotency_key(&test_user("idem_lease"), "k1");

    let crashed = Claim::new("token-1", chat_fingerprint("hi"));
    assert_eq!(
        begin(&mut conn, &key, &crashed, Duration::from_millis(200)).await,
        Begin::Started
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let retry = Claim::new("token-2", chat_fingerprint("hi"));
    assert_eq!(
        begin(&mut conn, &key, &retry, IDEMPOTENCY_LEASE).await,
        Begin::Started
    );
    // The request whose lease ran out cannot overwrite the one that took over.
    assert!(!finish(&mut conn, &key, &crashed, &answer()).await);
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, retry.record());
    assert!(finish(&mut conn, &key, &retry, &answer()).await);
}

#[tokio::test]
async fn concurrent_claims_start_once() {
    let key = idempotency_key(&test_user("idem_concurrent"), "same-key");
    let mut connections = Vec::new();
    for _ in 0..8 {
        connections.push(crate::common::redis().await);
    }
    let attempts = (0..100).map(|i| {
        let mut conn = connections[i % connections.len()].clone();
        let key = key.clone();
        tokio::spawn(async move {
            let claim = Claim::new(&format!("token-{i}"), chat_fingerprint("hi"));
            begin(&mut conn, &key, &claim, IDEMPOTENCY_LEASE).await
        })
    });
    let outcomes: Vec<Begin> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let started = outcomes.iter().filter(|o| **o == Begin::Started).count();
    let waiting = outcomes.iter().filter(|o| **o == Begin::InProgress).count();
    assert_eq!((started, waiting), (1, 99));
}
