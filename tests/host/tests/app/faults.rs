//! Faults injected for real into three instances behind nginx, with a steady chat load
//! running through nginx the whole time: an instance killed with SIGKILL and restarted,
//! the model failing every call and then recovering, and the model slower than its
//! timeout. After each, and at the end, every turn that answered 200 is in
//! `chat_history` with its reply, and no turn is half-stored.
//!
//! One test, its phases in order on one cluster (starting processes is the slow part);
//! every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::load::{assert_all_stored, Load, Turn};
use crate::common::nginx::Nginx;
use crate::common::process::HostProcess;
use crate::common::*;
use evolve_host::HostOptions;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::Value;

/// Model timeout and total budget of a turn in this test.
const LLM_TIMEOUT_MS: u64 = 1_000;
pub const LLM_BUDGET_MS: u64 = 2_500;
const BREAKER_OPEN_SECONDS: u64 = 3;
/// How long the model takes to answer the half-open probe (within its timeout).
const PROBE_LATENCY_MS: u64 = 800;

/// The instances' configuration: short model timeouts and breaker period, no rate limit,
/// and a queue wake-up channel of their own.
pub fn options(redis_url: &str, pg_url: &str, mock: &MockGemini) -> HostOptions {
    let mut options = app_options(redis_url, pg_url);
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "llm_max_attempts", 1);
    set_var(&mut options, "llm_timeout_ms", LLM_TIMEOUT_MS);
    set_var(&mut options, "llm_total_budget_ms", LLM_BUDGET_MS);
    set_var(&mut options, "breaker_failure_threshold", 3);
    set_var(&mut options, "breaker_open_seconds", BREAKER_OPEN_SECONDS);
    set_var(&mut options, "breaker_success_threshold", 1);
    set_var(&mut options, "chat_rate_limit_per_minute", 0);
    set_var(&mut options, "analysis_every_turns", 0);
    let channel = unique_prefix("faults").replace(':', ".");
    set_var(
        &mut options,
        "queue_channel",
        format!("evolve:wake:{channel}"),
    );
    options
}

pub async fn breaker_state(addr: SocketAddr) -> String {
    let body: Value = client()
        .get(url(addr, "/admin/breakers"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["breakers"]
        .as_array()
        .and_then(|list| list.iter().find(|b| b["name"] == "llm"))
        .map(|b| b["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_under_load_lose_no_accepted_turn() {
    let _machine = whole_machine().await;
    migrated().await;
    let db = RedisDb::claim().await;
    let pg = ScratchDb::migrated("faults").await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let options = options(&db.url(), &pg.url, &mock);
    let mut instances =
        futures::future::join_all((0..3).map(|_| HostProcess::start(&options))).await;
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
    let nginx = Nginx::start(&addrs).await;
    let load = Load::start(nginx.addr, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. An instance killed mid-load: nothing fails, and it rejoins when restarted.
    let killed_at = Instant::now();
    signal("-KILL", &[instances[1].pid()]);
    let _ = instances[1].child.wait();
    let user = test_user("faults-reader");
    for n in 0..10 {
        let response = client()
            .get(url(nginx.addr, "/api/chat/history?limit=5"))
            .bearer_auth(token(&user))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {n} after the kill");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = load.ended_since(killed_at);
    assert!(during.len() > 10, "the load kept running: {}", during.len());
    // A turn in flight on the killed instance was sent: nginx does not send a POST twice,
    // so its client gets 502 (and may retry it with its Idempotency-Key). Every other
    // turn went to a live instance.
    let failed: Vec<&Turn> = during.iter().filter(|t| t.status != 200).collect();
    assert!(
        failed.len() <= 4 && failed.iter().all(|t| t.status == 502),
        "turns failed after the kill: {failed:?}"
    );
    let kill_failures = failed.len();
    // Routed around: the last failure ends within 2 s of the kill (a turn sent after it
    // reaches a live instance, as nginx retries a refused connection on the next one).
    let route_around = failed
        .iter()
        .map(|t| t.ended().saturating_duration_since(killed_at))
        .max()
        .unwrap_or_default();
    assert!(
        route_around <= Duration::from_secs(2),
        "failures {route_around:?} after the kill"
    );
    instances[1] = HostProcess::start_on(&options, addrs[1]).await;
    let rejoined = eventually(Duration::from_secs(15), || async {
        let log = nginx.access_log();
        let after = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
        after
            .contains(&format!("upstream={} ", addrs[1]))
            .then_some(())
    })
    .await;
    assert!(rejoined.is_some(), "the restarted instance got no request");

    // 2. The model failing every call: fallback replies; the breaker opens for the
    // whole cluster with no call while open; it half-opens after its period and closes.
    mock.set_behaviour(Behaviour {
        status: Some(500),
        ..Behaviour::default()
    });
    let opened = eventually(Duration::from_secs(10), || async {
        (breaker_state(addrs[0]).await == "OPEN").then(Instant::now)
    })
    .await
    .expect("the breaker opened");
    // Calls let through before it opened finish first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    mock.reset();
    for addr in &addrs {
        assert_eq!(breaker_state(*addr).await, "OPEN");
    }
    let open_for = Duration::from_secs(BREAKER_OPEN_SECONDS) - Duration::from_millis(500);
    tokio::time::sleep(open_for.saturating_sub(opened.elapsed())).await;
    assert_eq!(
        mock.stats().calls,
        0,
        "a model call while the breaker was open"
    );
    let fallback = load.since(opened);
    assert!(
        fallback
            .iter()
            .all(|t| t.status == 200 && t.body["degraded"] == true),
        "turns while open: {fallback:?}"
    );
    // The probe: one call, from one instance, for the whole cluster. The model is slowed
    // (within its timeout) so the probe stays in flight while the load keeps asking all
    // three instances; each of them answers the fallback meanwhile.
    mock.set_behaviour(Behaviour {
        latency_ms: PROBE_LATENCY_MS,
        ..Behaviour::default()
    });
    let probing = eventually(Duration::from_secs(5), || async {
        (mock.stats().calls > 0).then(Instant::now)
    })
    .await
    .expect("the half-open breaker let a probe through");
    tokio::time::sleep(Duration::from_millis(PROBE_LATENCY_MS / 2)).await;
    let probes = mock.stats().calls;
    let asked_meanwhile = load.since(probing).len();
    assert_eq!(
        probes, 1,
        "half-open probes in flight at once ({asked_meanwhile} turns asked meanwhile)"
    );
    let closed = eventually(Duration::from_secs(BREAKER_OPEN_SECONDS + 5), || async {
        (breaker_state(addrs[2]).await == "CLOSED").then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "the breaker did not close after the model recovered"
    );
    mock.reset();
    let recovered = Instant::now();
    let closed_after = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        load.since(recovered)
            .iter()
            .any(|t| t.status == 200 && t.body["degraded"] == false),
        "no real reply after the recovery"
    );

    // 3. The model slower than its timeout: every turn ends within the budget plus 1 s.
    let slow_from = Instant::now();
    mock.set_behaviour(Behaviour {
        latency_ms: 5 * LLM_TIMEOUT_MS,
        ..Behaviour::default()
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    mock.reset();
    let slow = load.since(slow_from);
    assert!(!slow.is_empty());
    let bound = Duration::from_millis(LLM_BUDGET_MS + 1_000);
    for turn in &slow {
        assert!(turn.took <= bound, "a turn took {:?}: {turn:?}", turn.took);
        assert_eq!(turn.status, 200, "{turn:?}");
    }
    let slowest = slow.iter().map(|t| t.took).max().unwrap();

    let turns = load.finish().await;
    let failed: Vec<&Turn> = turns.iter().filter(|t| t.status != 200).collect();
    assert_eq!(
        failed.len(),
        kill_failures,
        "a turn failed outside the kill: {failed:?}"
    );
    assert_all_stored(&pg.url, &turns).await;
    eprintln!(
        "faults: {} turns through nginx; {kill_failures} answered 502 at the kill (in flight \
         on the killed instance, the last ending {route_around:?} after it), every other one \
         200; one half-open probe while {asked_meanwhile} turns asked; breaker closed \
         {closed_after:?} after opening; slowest turn with the model slower than its timeout \
         {slowest:?}",
        turns.len()
    );
}
