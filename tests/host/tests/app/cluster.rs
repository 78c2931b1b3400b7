//! Three instances of the application as one service: three `evolve-host` processes on
//! one Redis database and one PostgreSQL database, each with its own connections, its
//! own Redis trigger and cron, the way three replicas run. What one instance learns or
//! writes, the others act on: the LLM breaker, profiles, the per-user rate limit,
//! idempotency records, queued tasks and the scheduled jobs' leases.
//!
//! The HTTP checks run in order on one cluster (starting three processes is the slow
//! part), each with users of its own, the breaker late since it opens for everyone, and
//! last nginx in front of the three (the repository's `deploy/nginx`), with one instance
//! killed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::nginx::Nginx;
use crate::common::process::HostProcess;
use crate::common::*;
use evolve_core::jobs::{Job, Outcome, RunRecord};
use evolve_core::keys;
use evolve_core::metrics::job_increments;
use evolve_host::HostOptions;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Chat turns one user may start per minute, on the whole cluster.
const RATE_LIMIT: usize = 4;

struct Cluster {
    /// Held for the cluster's life: the Redis database returns to the pool with it.
    _db: RedisDb,
    pg: ScratchDb,
    mock: MockGemini,
    instances: Vec<HostProcess>,
}

fn options(db: &RedisDb, pg: &ScratchDb, mock: &MockGemini) -> HostOptions {
    let mut options = app_options(&db.url(), &pg.url);
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "llm_max_attempts", 1);
    set_var(&mut options, "analysis_every_turns", 0);
    set_var(&mut options, "chat_rate_limit_per_minute", RATE_LIMIT);
    set_var(&mut options, "breaker_failure_threshold", 3);
    set_var(&mut options, "breaker_open_seconds", 60);
    // Pub/sub is not per database: a wake-up channel of the cluster's own.
    let channel = unique_prefix("cluster").replace(':', ".");
    set_var(
        &mut options,
        "queue_channel",
        format!("evolve:wake:{channel}"),
    );
    options
}

impl Cluster {
    async fn start() -> Cluster {
        let db = RedisDb::claim().await;
        let pg = ScratchDb::migrated("cluster").await;
        let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
            .await
            .unwrap();
        let options = options(&db, &pg, &mock);
        let instances =
            futures::future::join_all((0..3).map(|_| HostProcess::start(&options))).await;
        Cluster {
            _db: db,
            pg,
            mock,
            instances,
        }
    }

    fn addr(&self, instance: usize) -> SocketAddr {
        self.instances[instance].addr
    }

    async fn chat(&self, instance: usize, user: &str, message: &str) -> reqwest::Response {
        client()
            .post(url(self.addr(instance), "/api/chat"))
            .bearer_auth(token(user))
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap()
    }

    async fn chat_ok(&self, instance: usize, user: &str, message: &str) -> Value {
        let response = self.chat(instance, user, message).await;
        assert_eq!(response.status(), 200, "instance {instance}");
        response.json().await.unwrap()
    }

    async fn get(&self, instance: usize, user: &str, path: &str) -> reqwest::Response {
        client()
            .get(url(self.addr(instance), path))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    async fn admin(&self, instance: usize, path: &str) -> Value {
        let response = client()
            .get(url(self.addr(instance), path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path} on instance {instance}");
        response.json().await.unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.pg.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.unwrap().get(0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_behave_as_one_service() {
    let _machine = whole_machine().await;
    migrated().await;
    let cluster = Cluster::start().await;
    a_profile_written_on_one_is_read_fresh_on_the_others(&cluster).await;
    the_rate_limit_counts_a_users_turns_on_every_instance(&cluster).await;
    an_idempotency_key_retried_on_another_instance_replays(&cluster).await;
    a_queued_task_heard_by_every_worker_is_done_once(&cluster).await;
    the_breaker_opened_through_one_is_open_on_all(&cluster).await;
    nginx_spreads_requests_and_routes_around_a_killed_instance(cluster).await;
}

async fn a_profile_written_on_one_is_read_fresh_on_the_others(c: &Cluster) {
    let user = test_user("cluster-profile");
    // Every instance caches the old profile first.
    for i in 0..3 {
        assert_eq!(c.get(i, &user, "/api/profile").await.status(), 200);
    }
    let response = client()
        .put(url(c.addr(0), "/api/profile"))
        .bearer_auth(token(&user))
        .json(&json!({ "name": "Ann", "interests": ["chess"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for i in 1..3 {
        let profile: Value = c.get(i, &user, "/api/profile").await.json().await.unwrap();
        assert_eq!(profile["data"]["name"], "Ann", "instance {i}: {profile}");
        assert_eq!(
            profile["data"]["interests"],
            json!(["chess"]),
            "instance {i}: {profile}"
        );
    }
}

async fn the_rate_limit_counts_a_users_turns_on_every_instance(c: &Cluster) {
    let user = test_user("cluster-rate");
    for turn in 0..RATE_LIMIT {
        c.chat_ok(turn % 3, &user, &format!("turn {turn}")).await;
    }
    // The next turn is refused wherever it lands.
    for i in 0..3 {
        let response = c.chat(i, &user, "one too many").await;
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "instance {i}"
        );
        assert!(response.headers().contains_key("retry-after"));
    }
    // Another user is not limited by it.
    c.chat_ok(2, &test_user("cluster-rate-other"), "hello")
        .await;
}

async fn an_idempotency_key_retried_on_another_instance_replays(c: &Cluster) {
    let user = test_user("cluster-idem");
    let send = |instance: usize| {
        client()
            .post(url(c.addr(instance), "/api/chat"))
            .bearer_auth(token(&user))
            .header("idempotency-key", "turn-0001")
            .json(&json!({ "message": "say it once" }))
            .send()
    };
    let calls = c.mock.stats().text_calls;
    let first = send(0).await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    for i in 1..3 {
        let again = send(i).await.unwrap();
        assert_eq!(again.status(), 200, "instance {i}");
        assert_eq!(
            again.headers().get("idempotent-replayed").unwrap(),
            "true",
            "instance {i}"
        );
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["message_id"], first["message_id"], "instance {i}");
        assert_eq!(again["reply"], first["reply"], "instance {i}");
    }
    assert_eq!(
        c.mock.stats().text_calls,
        calls + 1,
        "the model was asked once"
    );
    let stored = format!(
        "SELECT count(*) FROM chat_history h JOIN users u ON u.id = h.user_id
         WHERE u.external_id = '{user}'"
    );
    assert_eq!(c.count(&stored).await, 2, "one turn stored");
}

async fn a_queued_task_heard_by_every_worker_is_done_once(c: &Cluster) {
    let user = test_user("cluster-voice");
    let turn = c.chat_ok(0, &user, "read this aloud").await;
    let message = turn["message_id"].as_i64().unwrap();
    let path = format!("/api/chat/messages/{message}/voice");
    let response = client()
        .post(url(c.addr(1), &path))
        .bearer_auth(token(&user))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // Every instance's worker hears the wake-up and drains; one of them does the task.
    let audio = eventually(Duration::from_secs(30), || async {
        let response = c.get(2, &user, &path).await;
        (response.status() == 200).then_some(response)
    })
    .await
    .expect("the voice was made");
    assert_eq!(audio.headers()["content-type"], "audio/wav");
    // Let every drain that heard the wake-up finish before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let voices = format!("SELECT count(*) FROM voice_messages WHERE message_id = {message}");
    assert_eq!(c.count(&voices).await, 1);
    assert_eq!(c.mock.stats().tts_calls, 1);
    let queues = c.admin(0, "/admin/queues").await;
    assert_eq!(queues["kinds"]["voice"]["done"], 1, "{queues}");
}

async fn the_breaker_opened_through_one_is_open_on_all(c: &Cluster) {
    c.mock.set_behaviour(Behaviour {
        status: Some(500),
        ..Behaviour::default()
    });
    // Three failed turns through instance 0 (users of their own: the rate limit is per
    // user) open the breaker.
    for turn in 0..3 {
        let body = c
            .chat_ok(0, &test_user(&format!("cluster-breaker-{turn}")), "hello?")
            .await;
        assert_eq!(body["degraded"], true, "{body}");
    }
    let breakers = c.admin(1, "/admin/breakers").await;
    assert!(breakers.to_string().contains("OPEN"), "{breakers}");
    // The model is healthy again, but while the breaker is open nobody asks it.
    c.mock.reset();
    for i in 0..3 {
        for turn in 0..2 {
            let user = test_user(&format!("cluster-open-{i}-{turn}"));
            let body = c.chat_ok(i, &user, "anyone there?").await;
            assert_eq!(body["degraded"], true, "instance {i}: {body}");
        }
        let ready = c.admin(i, "/ready").await;
        assert!(ready.to_string().contains("OPEN"), "instance {i}: {ready}");
    }
    assert_eq!(c.mock.stats().calls, 0, "a call while the breaker was open");
}

// --- scheduled jobs on three instances ----------------------------------------------------

/// The same tick of every scheduled job fired on three instances at once (three loaded
/// applications, each with its own component instances and connections): each job does
/// its work once, and the two other runs are recorded as skipped.
#[tokio::test(flavor = "multi_thread")]
async fn each_tick_of_a_job_fired_on_every_instance_runs_once() {
    migrated().await;
    let db = RedisDb::claim().await;
    let options = app_options(&db.url(), &pg_url());
    let mut apps: Vec<Arc<evolve_host::App>> = Vec::new();
    for _ in 0..3 {
        apps.push(evolve_host::App::load(&options).await.unwrap());
    }
    let mut redis = redis_in(db.number).await;
    // A job's slot is its nearest occurrence, so the slot changes at the midpoint between
    // two. Every schedule here is in whole minutes, whose midpoints fall on whole or half
    // minutes: ten seconds into the current half minute, the three fire times share a slot.
    let now = chrono::Utc::now().timestamp();
    let now = now - now % 30 + 10;
    for job in Job::ALL {
        let component = job.spec().component();
        // The instances' clocks a second apart, as the cron plugin's are.
        let fired = futures::future::join_all(apps.iter().enumerate().map(|(i, app)| {
            let component = component.clone();
            async move { evolve_host::cron::fire(app, &component, now as u64 + i as u64).await }
        }))
        .await;
        for result in fired {
            result.unwrap();
        }
        let history: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(keys::job_history(job.name()))
            .arg(0)
            .arg(-1)
            .query_async(&mut redis)
            .await
            .unwrap();
        let runs: Vec<RunRecord> = history
            .iter()
            .map(|r| RunRecord::from_json(r).unwrap())
            .collect();
        assert_eq!(runs.len(), 1, "{}: {runs:?}", job.name());
        assert_ne!(runs[0].outcome, Outcome::Skipped, "{}", job.name());
        // The two other instances' runs, each counted as skipped.
        let (skips, _) = &job_increments(job.name(), "skipped", Duration::ZERO)[0];
        let counted: Option<i64> = redis::cmd("HGET")
            .arg(keys::METRICS)
            .arg(skips)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(counted, Some(2), "{}", job.name());
        let skipped: Option<Vec<u8>> = redis::cmd("GET")
            .arg(keys::job_skipped(job.name()))
            .query_async(&mut redis)
            .await
            .unwrap();
        let skipped = RunRecord::from_json(&skipped.expect("a skip is recorded")).unwrap();
        assert_eq!(skipped.outcome, Outcome::Skipped, "{}", job.name());
        assert_eq!(skipped.slot_ms, runs[0].slot_ms, "{}", job.name());
    }
}

async fn nginx_spreads_requests_and_routes_around_a_killed_instance(mut c: Cluster) {
    let addrs: Vec<SocketAddr> = (0..3).map(|i| c.addr(i)).collect();
    let nginx = Nginx::start(&addrs).await;
    let user = test_user("cluster-nginx");
    let get = |id: String| {
        client()
            .get(url(nginx.addr, "/api/chat/history?limit=5"))
            .bearer_auth(token(&user))
            .header("x-request-id", id)
            .send()
    };
    for n in 0..9 {
        let response = get(format!("spread-{n}")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-request-id"],
            format!("spread-{n}").as_str()
        );
    }
    // nginx logs a request after answering it: wait for the last line.
    let log = nginx.access_log_with("rid=spread-8").await;
    for addr in &addrs {
        assert!(
            log.contains(&format!("upstream={addr}")),
            "{addr} got nothing:\n{log}"
        );
    }

    // An instance killed: every GET still answers 200 (a refused connection is retried
    // on another instance), and its first failures take it out of the upstream.
    let killed = addrs[2];
    signal("-KILL", &[c.instances[2].pid()]);
    let _ = c.instances[2].child.wait();
    for n in 0..10 {
        let response = get(format!("after-kill-{n}")).await.unwrap();
        assert_eq!(response.status(), 200, "request {n} after the kill");
    }
    let retried = nginx
        .access_log_with("rid=after-kill-9")
        .await
        .lines()
        .filter(|line| line.contains("rid=after-kill-") && line.contains(&killed.to_string()))
        .count();
    assert!(
        retried >= 1,
        "no request tried the killed instance:\n{}",
        nginx.access_log()
    );
    // A chat turn (POST) through nginx lands on a live instance and is stored once.
    let turn = client()
        .post(url(nginx.addr, "/api/chat"))
        .bearer_auth(token(&user))
        .json(&json!({ "message": "still there?" }))
        .send()
        .await
        .unwrap();
    assert_eq!(turn.status(), 200);
    let stored = format!(
        "SELECT count(*) FROM chat_history h JOIN users u ON u.id = h.user_id
         WHERE u.external_id = '{user}'"
    );
    assert_eq!(c.count(&stored).await, 2);
}
