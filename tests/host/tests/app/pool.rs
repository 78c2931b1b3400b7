//! A chat turn gives its PostgreSQL connection back while it waits on the model.
//!
//! Spin pools 64 PostgreSQL connections per address in each process. A turn that held
//! its connection through a slow model call would cap an instance at 64 turns in flight:
//! the 65th would wait for a connection until its `pg_timeout_ms` and answer 503 (WASIp3),
//! or wait a whole model call longer (WASIp2). Here 80 turns wait on a model slower than
//! `pg_timeout_ms`: every one is served, in about one model call.

use crate::common::*;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::json;
use std::time::{Duration, Instant};

const TURNS: usize = 80;
const MODEL_LATENCY: Duration = Duration::from_millis(3_000);

#[tokio::test(flavor = "multi_thread")]
async fn turns_waiting_on_a_slow_model_do_not_hold_database_connections() {
    let _machine = whole_machine().await;
    migrated().await;
    let rdb = RedisDb::claim().await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    mock.set_behaviour(Behaviour {
        latency_ms: MODEL_LATENCY.as_millis() as u64,
        ..Behaviour::default()
    });
    let mut options = app_options(&rdb.url(), &pg_url());
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "pg_timeout_ms", 2_000);
    // Slow is not failing here: the breaker stays closed.
    set_var(&mut options, "breaker_slow_call_ms", 10_000);
    let app = start(&options, HTTP_ONLY).await;
    // First contact (each user is created) before the measured turns.
    let users: Vec<String> = (0..TURNS)
        .map(|i| test_user(&format!("pool-{i}")))
        .collect();
    for user in &users {
        let response = client()
            .get(url(app.addr, "/api/profile"))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let started = Instant::now();
    let turns = futures::future::join_all(users.iter().map(|user| async {
        let response = client()
            .post(url(app.addr, "/api/chat"))
            .bearer_auth(token(user))
            .json(&json!({ "message": "take your time" }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), started.elapsed())
    }))
    .await;
    let slowest = turns.iter().map(|(_, took)| *took).max().unwrap();
    println!("{TURNS} turns on a {MODEL_LATENCY:?} model: the last ended after {slowest:?}");
    let failed: Vec<_> = turns.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} turns failed: {failed:?}",
        failed.len()
    );
    assert_eq!(mock.stats().calls, TURNS as u64);
    // Held connections would have made the last 16 wait a whole model call more.
    assert!(
        slowest < MODEL_LATENCY + Duration::from_millis(1_500),
        "the last turn ended after {slowest:?}"
    );
}
