//! Faults injected for real into three instances behind nginx, with a steady chat load
//! running through nginx the whole time: an instance killed with SIGKILL and restarted,
//! the model failing every call and then recovering, and the model slower than its
//! timeout. After each, and at the end, every turn that answered 200 is in
//! `chat_history` with its reply, and no turn is half-stored.
//!
//! One test, its phases in order on one cluster (starting processes is the slow part);
//! every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::process::HostProcess;
use common::*;
use evolve_host::HostOptions;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::{json, Value};

/// Model timeout and total budget of a turn in this test.
const LLM_TIMEOUT_MS: u64 = 1_000;
const LLM_BUDGET_MS: u64 = 2_500;
const BREAKER_OPEN_SECONDS: u64 = 3;

/// One chat turn of the load: who sent it, what came back, how long it took.
#[derive(Debug, Clone)]
struct Turn {
    user: String,
    status: u16,
    body: Value,
    took: Duration,
    at: Instant,
}

/// Chat turns sent through nginx by `workers` concurrent senders until stopped.
struct Load {
    turns: Arc<Mutex<Vec<Turn>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(nginx: SocketAddr, workers: usize) -> Load {
        let turns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|w| {
                let (turns, stop) = (turns.clone(), stop.clone());
                tokio::spawn(async move {
                    let user = test_user(&format!("faults-load-{w}"));
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let at = Instant::now();
                        let response = client()
                            .post(url(nginx, "/api/chat"))
                            .bearer_auth(token(&user))
                            .json(&json!({ "message": format!("load {w} {n}") }))
                            .send()
                            .await;
                        let (status, body) = match response {
                            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
                            Err(_) => (0, Value::Null),
                        };
                        turns.lock().unwrap().push(Turn {
                            user: user.clone(),
                            status,
                            body,
                            took: at.elapsed(),
                            at,
                        });
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load { turns, stop, tasks }
    }

    /// The turns sent from `from` on.
    fn since(&self, from: Instant) -> Vec<Turn> {
        let turns = self.turns.lock().unwrap();
        turns.iter().filter(|t| t.at >= from).cloned().collect()
    }

    /// The turns that ended from `from` on (those in flight then, too).
    fn ended_since(&self, from: Instant) -> Vec<Turn> {
        let turns = self.turns.lock().unwrap();
        turns
            .iter()
            .filter(|t| t.at + t.took >= from)
            .cloned()
            .collect()
    }

    async fn finish(self) -> Vec<Turn> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.turns).unwrap().into_inner().unwrap()
    }
}

fn options(db: &RedisDb, pg: &ScratchDb, mock: &MockGemini) -> HostOptions {
    let mut options = app_options(&db.url(), &pg.url);
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

async fn breaker_state(addr: SocketAddr) -> String {
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

async fn count(pg: &ScratchDb, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Every turn that answered 200 is stored with its reply, and no turn is half-stored
/// (a user message without the reply after it).
async fn assert_all_stored(pg: &ScratchDb, turns: &[Turn]) {
    let ok: Vec<&Turn> = turns.iter().filter(|t| t.status == 200).collect();
    assert!(!ok.is_empty());
    let ids: Vec<String> = ok
        .iter()
        .flat_map(|t| [&t.body["user_message_id"], &t.body["message_id"]])
        .map(|id| id.as_i64().expect("ids in a 200 turn").to_string())
        .collect();
    let stored = format!(
        "SELECT count(*) FROM chat_history WHERE id IN ({})",
        ids.join(",")
    );
    assert_eq!(
        count(pg, &stored).await as usize,
        ids.len(),
        "a 200 turn not stored"
    );
    let users: Vec<String> = turns.iter().map(|t| format!("'{}'", t.user)).collect();
    let half = format!(
        "SELECT count(*) FROM users u WHERE u.external_id IN ({}) AND
           (SELECT count(*) FROM chat_history h WHERE h.user_id = u.id AND h.role = 'user')
        <> (SELECT count(*) FROM chat_history h WHERE h.user_id = u.id AND h.role = 'assistant')",
        users.join(",")
    );
    assert_eq!(count(pg, &half).await, 0, "a half-stored turn");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_under_load_lose_no_accepted_turn() {
    migrated().await;
    let db = RedisDb::claim().await;
    let pg = ScratchDb::migrated("faults").await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let options = options(&db, &pg, &mock);
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
    let closed = eventually(Duration::from_secs(BREAKER_OPEN_SECONDS + 5), || async {
        (breaker_state(addrs[2]).await == "CLOSED").then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "the breaker did not close after the model recovered"
    );
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
    assert_all_stored(&pg, &turns).await;
    eprintln!(
        "faults: {} turns through nginx; {kill_failures} answered 502 at the kill (in flight \
         on the killed instance), every other one 200; breaker closed {closed_after:?} after \
         opening; slowest turn with the model slower than its timeout {slowest:?}",
        turns.len()
    );
}
