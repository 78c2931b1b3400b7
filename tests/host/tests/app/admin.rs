//! The `admin` component and the metrics of every component, on the local host against
//! real Redis and PostgreSQL: tokens, each endpoint's fields with known data, cache
//! invalidation, `/metrics` as valid Prometheus text whose counters rise with traffic on
//! two instances, and the alert rules and dashboard under `deploy/` checked with
//! `promtool` (Prometheus' own parser; the test fails if it is missing).
//!
//! Tests that touch application-wide Redis keys take their own Redis database (20-29).

use crate::common::postgres::OwnPostgres;
use crate::common::*;
use evolve_mock_gemini::{MockConfig, MockGemini};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct App {
    app: evolve_host::Running,
}

impl App {
    fn url(&self, path: &str) -> String {
        url(self.app.addr, path)
    }

    async fn admin(&self, path: &str) -> reqwest::Response {
        client()
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    async fn admin_json(&self, path: &str) -> Value {
        let response = self.admin(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        client()
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn profile(&self, user: &str) -> reqwest::Response {
        client()
            .get(self.url("/api/profile"))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        let response = client()
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.text().await.unwrap()
    }
}

/// The app on Redis database `db` and PostgreSQL `pg`.
async fn app(db: u8, pg: &str, tune: impl FnOnce(&mut evolve_host::HostOptions)) -> App {
    let mut options = app_options(&redis_db(db), pg);
    tune(&mut options);
    App {
        app: start(&options, HTTP_ONLY).await,
    }
}

// ---------------------------------------------------------------------------------------
// Tokens

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_requests_without_its_own_token() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let app = app(rdb.number, &pg_url(), |_| {}).await;
    let mut wrong_last_byte = ADMIN_TOKEN.to_string();
    let last = wrong_last_byte.pop().unwrap();
    wrong_last_byte.push(if last == 'n' { 'm' } else { 'n' });
    let mut metrics_last_byte = METRICS_TOKEN.to_string();
    metrics_last_byte.pop();
    metrics_last_byte.push('X');

    let admin_routes = [
        ("GET", "/admin/cache_stats"),
        ("GET", "/admin/db_metrics"),
        ("GET", "/admin/scheduler_status"),
        ("GET", "/admin/breakers"),
        ("POST", "/admin/cache/invalidate"),
        ("POST", "/admin/cache/warm"),
        ("GET", "/admin/no-such-route"),
    ];
    let user_jwt = token("alice");
    let bad_for_admin: [Option<&str>; 6] = [
        None,
        Some("wrong"),
        Some(wrong_last_byte.as_str()),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        Some(user_jwt.as_str()),
        Some(METRICS_TOKEN),
    ];
    let bad_for_metrics: [Option<&str>; 5] = [
        None,
        Some("wrong"),
        Some(metrics_last_byte.as_str()),
        Some(user_jwt.as_str()),
        Some(ADMIN_TOKEN),
    ];
    let routes = admin_routes
        .iter()
        .flat_map(|route| bad_for_admin.iter().map(move |t| (*route, *t)))
        .chain(bad_for_metrics.iter().map(|t| (("GET", "/metrics"), *t)));
    for ((method, path), bearer) in routes {
        let mut request = client().request(method.parse().unwrap(), app.url(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if method == "POST" {
            request = request.json(&json!({"prefix": "profile"}));
        }
        let response = request.send().await.unwrap();
        let what = format!("{method} {path} with {bearer:?}");
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        match bearer {
            None => assert_eq!(challenge, "Bearer", "{what}"),
            Some(_) => assert_eq!(challenge, "Bearer error=\"invalid_token\"", "{what}"),
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 401, "{what}");
        let text = body.to_string();
        assert!(
            !text.contains(ADMIN_TOKEN) && !text.contains(METRICS_TOKEN),
            "{text}"
        );
    }

    // With the token: unknown routes are 404, wrong methods 405 with Allow.
    let missing = app.admin("/admin/no-such-route").await;
    assert_eq!(missing.status(), 404);
    let wrong_method = client()
        .delete(app.url("/admin/cache_stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
    assert_eq!(app.admin("/admin/breakers").await.status(), 200);
}

// ---------------------------------------------------------------------------------------
// /admin/cache_stats

#[tokio::test(flavor = "multi_thread")]
async fn cache_stats_report_redis_info_and_our_counters() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    // Metrics off: their hash would be one more key in the count.
    let app = app(rdb.number, &pg_url(), |o| {
        set_var(o, "metrics_sample", 0);
        set_var(o, "cache_hit_sample", 1);
    })
    .await;
    let mut redis = redis_in(rdb.number).await;
    for i in 0..7 {
        let _: () = redis::cmd("SET")
            .arg(format!("test:admin:key:{i}"))
            .arg(i)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg(evolve_core::keys::CACHE_STATS)
        .arg("old:hits")
        .arg(30)
        .arg("old:misses")
        .arg(10)
        .query_async(&mut redis)
        .await
        .unwrap();
    // Lookups that hit and miss, so the server-wide counters have moved.
    let _: Option<String> = redis::cmd("GET")
        .arg("test:admin:key:1")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: Option<String> = redis::cmd("GET")
        .arg("test:admin:absent")
        .query_async(&mut redis)
        .await
        .unwrap();
    // A real profile read through the chat component: one miss, then one hit.
    let who = test_user("cache-stats");
    assert_eq!(app.profile(&who).await.headers()["x-cache"], "miss");
    assert_eq!(app.profile(&who).await.headers()["x-cache"], "hit");

    let stats = app.admin_json("/admin/cache_stats").await;
    assert_eq!(stats["status"], "active", "{stats}");
    // 7 keys, the counters hash and the cached profile.
    assert_eq!(stats["total_keys"], 9, "{stats}");
    let hits = stats["keyspace_hits"].as_u64().unwrap();
    let misses = stats["keyspace_misses"].as_u64().unwrap();
    assert!(hits >= 1 && misses >= 1, "{stats}");
    let expected_rate = (hits as f64 * 10_000.0 / (hits + misses) as f64).round() / 100.0;
    assert_eq!(
        stats["hit_rate"].as_f64().unwrap(),
        expected_rate,
        "{stats}"
    );
    assert!(stats["connected_clients"].as_u64().unwrap() >= 1, "{stats}");
    let memory = stats["used_memory_human"].as_str().unwrap();
    assert!(
        memory.ends_with(['B', 'K', 'M', 'G']) && memory.len() > 1,
        "{memory}"
    );
    assert_eq!(
        stats["prefixes"],
        json!({
            "old": {"hits": 30, "stale": 0, "misses": 10, "hit_rate": 75.0},
            "profile": {"hits": 1, "stale": 0, "misses": 1, "hit_rate": 50.0},
        }),
        "{stats}"
    );
}

// ---------------------------------------------------------------------------------------
// /admin/db_metrics

#[tokio::test(flavor = "multi_thread")]
async fn db_metrics_report_connections_transactions_tables_and_partitions() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("admin_metrics").await;
    let db_url = scratch.url.clone();
    let (db, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.batch_execute(
        "INSERT INTO users (external_id) VALUES ('a'), ('b'), ('c');
         INSERT INTO profiles (user_id) SELECT id FROM users;
         INSERT INTO chat_history (user_id, role, content)
             SELECT id, 'user', 'now ' || g FROM users, generate_series(1, 2) g;
         -- Long ago: no month partition holds it, so it lands in the default partition.
         INSERT INTO chat_history (user_id, role, content, created_at)
             SELECT id, 'user', 'then', timestamptz '2001-02-03 00:00:00+00' FROM users;
         ANALYZE;",
    )
    .await
    .unwrap();
    let month: String = db
        .query_one(
            "SELECT 'chat_history_y' || to_char(now() AT TIME ZONE 'UTC', 'YYYY') || 'm' \
             || to_char(now() AT TIME ZONE 'UTC', 'MM')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let max_connections: String = db
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get(0);

    let app = app(rdb.number, &db_url, |_| {}).await;
    // A statement that runs for a while on another connection.
    let (sleeper, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let sleeping = tokio::spawn(async move { sleeper.execute("SELECT pg_sleep(4)", &[]).await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let body = app.admin_json("/admin/db_metrics").await;
    assert_eq!(body["status"], "ok");

    let connections = &body["connections"];
    let max: u64 = max_connections.parse().unwrap();
    assert_eq!(connections["max_connections"], max, "{body}");
    let total = connections["total"].as_u64().unwrap();
    let by_state: u64 = connections["by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, by_state, "{body}");
    // This test's two connections and the app's.
    assert!(connections["in_database"].as_u64().unwrap() >= 3, "{body}");
    assert!(
        connections["by_state"]["active"].as_u64().unwrap() >= 1,
        "{body}"
    );
    let usage = (total as f64 * 10_000.0 / max as f64).round() / 100.0;
    assert_eq!(connections["usage_percent"].as_f64().unwrap(), usage);

    assert!(
        body["transactions"]["committed"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert!(body["transactions"]["rolled_back"].as_u64().is_some());
    let ratio = body["cache_hit_ratio"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&ratio), "{body}");
    assert_eq!(body["deadlocks"], 0);
    assert!(body["database_size_bytes"].as_u64().unwrap() > 0);

    let tables: HashMap<String, Value> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    assert_eq!(tables["users"]["row_estimate"], 3, "{body}");
    assert_eq!(tables["users"]["partitioned"], false);
    assert_eq!(tables["profiles"]["row_estimate"], 3);
    assert_eq!(tables["chat_history"]["partitioned"], true);
    assert_eq!(tables["chat_history"]["row_estimate"], 9, "{body}");
    assert!(tables["chat_history"]["size_bytes"].as_u64().unwrap() > 0);
    assert!(tables["users"]["size_bytes"].as_u64().unwrap() > 0);
    assert!(
        !tables.keys().any(|name| name.starts_with("chat_history_")),
        "partitions are listed apart: {body}"
    );

    let partitions: HashMap<String, Value> = body["chat_history_partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p.clone()))
        .collect();
    assert_eq!(partitions[&month]["row_estimate"], 6, "{body}");
    assert!(partitions[&month]["bounds"]
        .as_str()
        .unwrap()
        .starts_with("FOR VALUES FROM"));
    assert_eq!(partitions["chat_history_default"]["row_estimate"], 3);
    assert_eq!(partitions["chat_history_default"]["bounds"], "DEFAULT");
    let listed = body["chat_history_partitions"].as_array().unwrap();
    assert_eq!(
        listed.last().unwrap()["name"],
        "chat_history_default",
        "default partition last"
    );

    let slow = &body["slow_queries"];
    assert_eq!(slow["threshold_seconds"], 1.0);
    assert!(slow["running"].as_u64().unwrap() >= 1, "{body}");
    assert!(slow["longest_running_seconds"].as_f64().unwrap() >= 1.0);
    assert!(
        slow["longest_running"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["query"] == "SELECT pg_sleep(4)" && q["seconds"].as_f64().unwrap() >= 1.0),
        "{body}"
    );

    // pg_stat_statements is not installed here: said so, and the rest still answered.
    let statements = &body["slowest_statements"];
    assert_eq!(statements["available"], false, "{body}");
    assert!(statements["reason"]
        .as_str()
        .unwrap()
        .contains("pg_stat_statements"));
    assert_eq!(statements["statements"], json!([]));
    // No secret in the answer.
    assert!(!body.to_string().contains("evolve:evolve@"), "{body}");
    sleeping.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn slowest_statements_come_from_pg_stat_statements_without_secrets() {
    let rdb = RedisDb::claim().await;
    let server = OwnPostgres::start();
    let (mut db, connection) = tokio_postgres::connect(&server.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    evolve_migrate::migrate(&mut db).await.unwrap();
    // A slow statement, and a utility statement whose text carries a secret.
    db.batch_execute(
        "SELECT pg_sleep(0.3);
         CREATE ROLE someone LOGIN PASSWORD 'hunter2-secret';",
    )
    .await
    .unwrap();

    let app = app(rdb.number, &server.url, |_| {}).await;
    let body = app.admin_json("/admin/db_metrics").await;
    let statements = &body["slowest_statements"];
    assert_eq!(statements["available"], true, "{body}");
    let list = statements["statements"].as_array().unwrap();
    assert!(!list.is_empty() && list.len() <= 10, "{body}");
    let slowest = &list[0];
    assert_eq!(slowest["query"], "SELECT pg_sleep($1)", "{body}");
    assert!(slowest["mean_ms"].as_f64().unwrap() >= 250.0, "{body}");
    assert_eq!(slowest["calls"], 1);
    // Ordered by mean time.
    let means: Vec<f64> = list
        .iter()
        .map(|s| s["mean_ms"].as_f64().unwrap())
        .collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_db_figure_says_why_and_the_rest_still_answers() {
    let rdb = RedisDb::claim().await;
    // No migrations: chat_history does not exist, so its partitions cannot be read.
    let scratch = ScratchDb::empty("admin_no_history").await;
    let db_url = scratch.url.clone();
    let app = app(rdb.number, &db_url, |_| {}).await;
    let body = app.admin_json("/admin/db_metrics").await;
    assert_eq!(body["status"], "ok", "{body}");
    let partitions = &body["chat_history_partitions"];
    assert!(
        partitions["error"]
            .as_str()
            .is_some_and(|e| e.contains("chat_history")),
        "{body}"
    );
    assert!(
        body["connections"]["max_connections"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert!(
        body["transactions"]["committed"].as_u64().is_some(),
        "{body}"
    );
    assert!(body["tables"].as_array().is_some(), "{body}");
}

// ---------------------------------------------------------------------------------------
// /admin/scheduler_status and the cache-metrics history

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_status_lists_every_job_with_next_and_last_run() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let app = app(rdb.number, &pg_url(), |_| {}).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let body = app.admin_json("/admin/scheduler_status").await;
    let scheduler = &body["scheduler"];
    assert_eq!(scheduler["status"], "running", "{body}");
    let specs = evolve_core::jobs::JOBS;
    assert_eq!(scheduler["jobs_count"], specs.len());
    let jobs = scheduler["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), specs.len());
    for (job, spec) in jobs.iter().zip(specs) {
        assert_eq!(job["id"], spec.id, "{job}");
        assert_eq!(job["name"], spec.name);
        assert_eq!(job["schedule"], spec.schedule);
        // next_run comes from the same expression, and lies ahead.
        let next_ms = job["next_run_ms"].as_u64().unwrap();
        assert_eq!(Some(next_ms), spec.next_run_ms(now_ms), "{job}");
        assert!(next_ms > now_ms);
        assert_eq!(job["next_run"], evolve_core::jobs::rfc3339(next_ms));
        assert!(job["last_run"].is_null(), "nothing ran yet: {job}");
    }

    // A run through the admin route shows up as the job's last run, and the snapshot it
    // took as the cache statistics' history.
    let run = app.post("/admin/jobs/cache-metrics/run", json!({})).await;
    assert_eq!(run.status(), 200);
    let body = app.admin_json("/admin/scheduler_status").await;
    let job = body["scheduler"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "cache-metrics")
        .unwrap()
        .clone();
    let last = &job["last_run"];
    assert_eq!(last["outcome"], "ok", "{job}");
    assert_eq!(last["trigger"], "admin");
    assert!(last["error"].is_null());
    assert!(last["duration_ms"].as_u64().is_some());
    assert!(last["finished_at_ms"].as_u64().unwrap() >= now_ms);

    let stats = app.admin_json("/admin/cache_stats").await;
    let history = stats["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{stats}");
    assert!(history[0]["at_ms"].as_u64().unwrap() >= now_ms);

    // The same run as gauges in /metrics.
    let samples = parse_exposition(&app.metrics().await);
    assert_eq!(
        samples.get("evolve_job_last_success", &[("job", "cache-metrics")]),
        1.0
    );
    assert!(
        samples.get(
            "evolve_job_last_run_timestamp_seconds",
            &[("job", "cache-metrics")]
        ) >= (now_ms / 1000) as f64
    );
}

// ---------------------------------------------------------------------------------------
// /admin/cache/warm

#[tokio::test(flavor = "multi_thread")]
async fn cache_warm_loads_the_recently_active_users_profiles() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("admin_warm").await;
    let db_url = scratch.url.clone();
    let (db, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.batch_execute(
        "INSERT INTO users (external_id) VALUES ('warm-a'), ('warm-b'), ('idle');
         INSERT INTO profiles (user_id) SELECT id FROM users;
         INSERT INTO chat_history (user_id, role, content)
             SELECT id, 'user', 'hi' FROM users WHERE external_id LIKE 'warm-%';",
    )
    .await
    .unwrap();
    let app = app(rdb.number, &db_url, |_| {}).await;
    let response = app.post("/admin/cache/warm", json!({})).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["users"], 2, "{report}");
    assert_eq!(report["loaded"], 2, "{report}");
    assert_eq!(report["complete"], true);
    for (user, cached) in [("warm-a", "hit"), ("warm-b", "hit"), ("idle", "miss")] {
        assert_eq!(
            app.profile(user).await.headers()["x-cache"],
            cached,
            "{user}"
        );
    }
    // Warmed again: already cached.
    let again: Value = app
        .post("/admin/cache/warm", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["cached"], 2, "{again}");
    assert_eq!(again["loaded"], 0, "{again}");
}

// ---------------------------------------------------------------------------------------
// /admin/breakers

#[tokio::test(flavor = "multi_thread")]
async fn breakers_show_the_shared_state() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let app = app(rdb.number, &pg_url(), |_| {}).await;
    let fresh = app.admin_json("/admin/breakers").await;
    assert_eq!(fresh["breakers"][0]["name"], "llm");
    assert_eq!(fresh["breakers"][0]["state"], "CLOSED");
    assert_eq!(fresh["breakers"][0]["total_calls"], 0);

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut redis = redis_in(rdb.number).await;
    let _: () = redis::cmd("HSET")
        .arg(evolve_core::keys::BREAKER_STATE)
        .arg(&[
            ("state", "open".to_owned()),
            ("opened_at_ms", (now_ms - 15_000).to_string()),
            ("failure_count", "5".to_owned()),
            ("total_calls", "10".to_owned()),
            ("total_blocked", "3".to_owned()),
            ("total_successes", "5".to_owned()),
            ("total_failures", "5".to_owned()),
            ("transitions", "1".to_owned()),
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    let body = app.admin_json("/admin/breakers").await;
    let llm = &body["breakers"][0];
    assert_eq!(llm["state"], "OPEN", "{body}");
    assert_eq!(llm["failure_count"], 5);
    assert_eq!(llm["total_calls"], 10);
    assert_eq!(llm["total_blocked"], 3);
    assert_eq!(llm["success_rate"], 50.0);
    let retry_in = llm["retry_in"].as_u64().unwrap();
    assert!((44..=45).contains(&retry_in), "{body}");
    assert_eq!(
        llm["thresholds"],
        json!({"failure_threshold": 5, "success_threshold": 2, "open_seconds": 60})
    );

    // The speech model's breaker is its own, and untouched.
    let tts = &body["breakers"][1];
    assert_eq!(
        (tts["name"].as_str(), tts["state"].as_str()),
        (Some("tts"), Some("CLOSED")),
        "{body}"
    );

    // The same state in /metrics, one series per breaker.
    let text = app.metrics().await;
    let samples = parse_exposition(&text);
    let llm = |state: &str| -> f64 {
        samples.get(
            "evolve_breaker_state",
            &[("breaker", "llm"), ("state", state)],
        )
    };
    assert_eq!((llm("open"), llm("closed")), (1.0, 0.0));
    assert_eq!(
        samples.get(
            "evolve_breaker_state",
            &[("breaker", "tts"), ("state", "closed")]
        ),
        1.0
    );
    let of_llm = [("breaker", "llm")];
    assert_eq!(
        samples.get("evolve_breaker_transitions_total", &of_llm),
        1.0
    );
    assert_eq!(samples.get("evolve_breaker_blocked_total", &of_llm), 3.0);
    assert_eq!(samples.get("evolve_breaker_failures_total", &of_llm), 5.0);
}

// ---------------------------------------------------------------------------------------
// /admin/cache/invalidate

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_by_key_by_prefix_and_by_pattern() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let app = app(rdb.number, &pg_url(), |o| set_var(o, "metrics_sample", 0)).await;

    // A profile cached by the chat component goes away by key, so the next read misses.
    let who = format!("tg:{}", test_user("invalidate"));
    assert_eq!(app.profile(&who).await.headers()["x-cache"], "miss");
    assert_eq!(app.profile(&who).await.headers()["x-cache"], "hit");
    let response = app
        .post(
            "/admin/cache/invalidate",
            json!({"prefix": "profile", "id": who}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let key = evolve_core::keys::profile(&evolve_core::ids::UserRef::parse(&who).unwrap());
    assert_eq!(body, json!({"key": key, "deleted": 1}));
    assert_eq!(app.profile(&who).await.headers()["x-cache"], "miss");

    // By pattern, inside one prefix; nothing outside it is touched.
    let mut redis = redis_in(rdb.number).await;
    for key in [
        "evolve:cache:profile:ann",
        "evolve:cache:profile:anton",
        "evolve:cache:profile:bob",
        "evolve:other",
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("x")
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let response = app
        .post(
            "/admin/cache/invalidate",
            json!({"pattern": "evolve:cache:profile:an*"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"pattern": "evolve:cache:profile:an*", "deleted": 2})
    );
    let exists = |key: &'static str| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut redis)
                .await
                .unwrap()
        }
    };
    assert_eq!(exists("evolve:cache:profile:ann").await, 0);
    assert_eq!(exists("evolve:cache:profile:bob").await, 1);

    // Patterns outside the cache's entries are refused, and delete nothing.
    for pattern in ["evolve:cache:*", "evolve:*", "*", "evolve:cache:stats"] {
        let response = app
            .post("/admin/cache/invalidate", json!({ "pattern": pattern }))
            .await;
        assert_eq!(response.status(), 400, "{pattern}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(exists("evolve:other").await, 1);
    assert_eq!(exists(evolve_core::keys::CACHE_STATS).await, 1);
    assert_eq!(exists("evolve:cache:profile:bob").await, 1);

    // A whole prefix: the entries go, the counters stay.
    let response = app
        .post("/admin/cache/invalidate", json!({"prefix": "profile"}))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["pattern"], "evolve:cache:profile:*");
    assert!(body["deleted"].as_u64().unwrap() >= 2, "{body}");
    assert_eq!(exists("evolve:cache:profile:bob").await, 0);
    assert_eq!(exists(evolve_core::keys::CACHE_STATS).await, 1);
    assert_eq!(exists("evolve:other").await, 1);

    // Bad requests.
    for body in [
        json!({"prefix": "nope", "id": "x"}),
        json!({"prefix": "profile", "id": ""}),
        json!({}),
    ] {
        let response = app.post("/admin/cache/invalidate", body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let text = client()
        .post(app.url("/admin/cache/invalidate"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("prefix=profile")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
}

// ---------------------------------------------------------------------------------------
// /metrics

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// Samples of a Prometheus text exposition, checked while parsed: names and label syntax,
/// `# TYPE` before a family's samples, one `# TYPE` per family, histogram buckets
/// cumulative with `+Inf` equal to `_count`.
struct Samples {
    values: BTreeMap<(String, Labels), f64>,
    types: HashMap<String, String>,
}

impl Samples {
    /// The value of the sample `name` whose labels include `labels`, summed over the rest.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.values
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(text: &str) -> Labels {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(
            valid_name(name) && !name.contains(':'),
            "bad label name {name:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels.sort();
    labels
}

fn parse_exposition(text: &str) -> Samples {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut samples = Samples {
        values: BTreeMap::new(),
        types: HashMap::new(),
    };
    let family_of_sample = |name: &str, types: &HashMap<String, String>| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).map(String::as_str) == Some("histogram") {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                samples
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                parse_labels(labels.strip_suffix('}').expect("closing brace")),
            ),
            None => (series, Vec::new()),
        };
        assert!(valid_name(name), "{line}");
        let family = family_of_sample(name, &samples.types);
        assert!(
            samples.types.contains_key(&family),
            "sample before its TYPE: {line}"
        );
        assert!(
            samples
                .values
                .insert((name.to_owned(), labels), value)
                .is_none(),
            "duplicate sample {line}"
        );
    }
    // Histograms: buckets cumulative, +Inf equals _count.
    for (family, _) in samples.types.iter().filter(|(_, k)| *k == "histogram") {
        let bucket = format!("{family}_bucket");
        // Labels without `le` -> (le, cumulative count) pairs.
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), value) in &samples.values {
            if *name == bucket {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .expect("le")
                    .1
                    .clone();
                let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                series.entry(rest).or_default().push((le, *value));
            }
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}");
            assert_eq!(buckets.last().unwrap().0, f64::INFINITY, "{family}");
            let count = samples.values[&(format!("{family}_count"), labels.clone())];
            assert_eq!(buckets.last().unwrap().1, count, "{family} {labels:?}");
        }
    }
    samples
}

/// `promtool check metrics` on the text: Prometheus' own parser and linter.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_valid_prometheus_text_and_rise_with_traffic_on_two_instances() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let tune = |o: &mut evolve_host::HostOptions| {
        set_var(o, "metrics_sample", 1);
        set_var(o, "cache_hit_sample", 1);
        set_var(o, "gemini_base_url", mock.base_url());
        set_var(o, "llm_max_attempts", 1);
    };
    let a = app(rdb.number, &pg_url(), tune).await;
    let b = app(rdb.number, &pg_url(), tune).await;

    let before = a.metrics().await;
    promtool_check_metrics(&before);
    let before = parse_exposition(&before);
    for (family, kind) in evolve_core::metrics::FAMILIES {
        if family.starts_with("evolve_job_") {
            continue; // written once the jobs record runs
        }
        let kind = match kind {
            evolve_core::metrics::Kind::Counter => "counter",
            evolve_core::metrics::Kind::Gauge => "gauge",
            evolve_core::metrics::Kind::Histogram => "histogram",
        };
        assert_eq!(
            before.types.get(*family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(before.get("evolve_redis_up", &[]), 1.0);
    assert_eq!(before.get("evolve_pg_up", &[]), 1.0);
    assert!(before.get("evolve_pg_max_connections", &[]) > 0.0);
    assert!(before.get("evolve_redis_used_memory_bytes", &[]) > 0.0);

    // Traffic on both instances.
    let who = test_user("metrics");
    for app in [&a, &a, &a, &b, &b] {
        assert_eq!(app.profile(&who).await.status(), 200);
    }
    let turn = client()
        .post(b.url("/api/chat"))
        .bearer_auth(token(&who))
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(turn.status(), 200);
    let unauthorized = client().get(a.url("/api/profile")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        client()
            .get(a.url("/api/nowhere"))
            .bearer_auth(token(&who))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client().get(b.url("/ready")).send().await.unwrap().status(),
        200
    );

    let profile = [
        ("component", "chat"),
        ("method", "GET"),
        ("route", "/api/profile"),
        ("status", "200"),
    ];
    // Recording happens after each response has gone: look until it has landed.
    let after = eventually(Duration::from_secs(10), || async {
        let text = b.metrics().await;
        let samples = parse_exposition(&text);
        let count = |labels: &[(&str, &str)]| {
            samples.get("evolve_http_requests_total", labels)
                - before.get("evolve_http_requests_total", labels)
        };
        let done = count(&profile) == 5.0
            && count(&[("route", "/api/chat"), ("status", "200")]) == 1.0
            && count(&[("component", "ready"), ("route", "/ready")]) == 1.0
            && count(&[("component", "chat"), ("status", "401")]) == 1.0
            && count(&[("route", "unmatched"), ("status", "404")]) == 1.0;
        done.then_some(text)
    })
    .await
    .expect("the counters did not rise with the traffic");
    promtool_check_metrics(&after);
    let after = parse_exposition(&after);
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);

    // Latency histogram of the same requests: five observations, a positive sum.
    assert_eq!(
        delta("evolve_http_request_duration_seconds_count", &profile),
        5.0
    );
    assert!(delta("evolve_http_request_duration_seconds_sum", &profile) > 0.0);
    assert_eq!(
        delta(
            "evolve_http_request_duration_seconds_bucket",
            &[profile.as_slice(), &[("le", "+Inf")]].concat()
        ),
        5.0
    );
    // The chat turn: one LLM call with its tokens and latency.
    assert_eq!(delta("evolve_llm_calls_total", &[]), 1.0);
    assert_eq!(delta("evolve_llm_attempts_total", &[]), 1.0);
    assert!(delta("evolve_llm_tokens_total", &[("kind", "prompt")]) > 0.0);
    assert!(delta("evolve_llm_tokens_total", &[("kind", "output")]) > 0.0);
    assert_eq!(delta("evolve_llm_call_duration_seconds_count", &[]), 1.0);
    assert_eq!(delta("evolve_breaker_calls_total", &[]), 1.0);
    // Cache: the first read missed, the other reads (and the turn's profile) hit.
    assert_eq!(
        delta("evolve_cache_misses_total", &[("prefix", "profile")]),
        1.0
    );
    assert_eq!(
        delta("evolve_cache_hits_total", &[("prefix", "profile")]),
        5.0
    );
    // The scrapes themselves are recorded too.
    assert!(
        delta(
            "evolve_http_requests_total",
            &[("component", "admin"), ("route", "/metrics")]
        ) >= 1.0
    );
    // /health is never recorded: liveness touches no dependency.
    assert_eq!(
        client()
            .get(a.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = parse_exposition(&a.metrics().await);
    assert_eq!(
        last.get("evolve_http_requests_total", &[("route", "/health")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_a_dependency_that_is_down_and_still_answer() {
    let rdb = RedisDb::claim().await;
    let dead_pg = format!(
        "postgres://evolve:evolve@127.0.0.1:{}/evolve_test",
        free_port()
    );
    let app = app(rdb.number, &dead_pg, |_| {}).await;
    let text = app.metrics().await;
    promtool_check_metrics(&text);
    let samples = parse_exposition(&text);
    assert_eq!(samples.get("evolve_pg_up", &[]), 0.0);
    assert_eq!(samples.get("evolve_redis_up", &[]), 1.0);
    assert!(!samples.types.contains_key("evolve_pg_connections"));
    let db = app.admin("/admin/db_metrics").await;
    assert_eq!(db.status(), 503);
    assert!(db.headers().contains_key("retry-after"));
    let body = db.text().await.unwrap();
    assert!(!body.contains("evolve:evolve@"), "{body}");
}

// ---------------------------------------------------------------------------------------
// deploy/: alert rules, scrape config and dashboard

fn promtool() -> &'static str {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is not installed (Debian package `prometheus`; scripts/bootstrap installs it)"
    );
    "promtool"
}

fn run_promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_fire_at_the_fastapi_thresholds() {
    let dir = workspace().join("deploy/prometheus");
    let checked = run_promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    // The unit tests in alerts.test.yml: each alert fires past its threshold and not below.
    let tested = run_promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The scrape config, with its credentials file pointed at a real file.
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let config = std::fs::read_to_string(dir.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/secrets/evolve-metrics-token",
            token_file.to_str().unwrap(),
        );
    std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(dir.join("alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
    run_promtool(&["check", "config", "prometheus.yml"], tmp.path());
}

/// Metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("evolve_")
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            names.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

fn is_exported(name: &str) -> bool {
    use evolve_core::metrics::{Kind, FAMILIES};
    FAMILIES.iter().any(|(family, kind)| {
        name == *family
            || (*kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}")))
    })
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics_and_valid_promql() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("deploy/grafana/evolve-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 20, "{}", exprs.len());
    let used: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for name in &used {
        assert!(
            is_exported(name),
            "the dashboard uses {name}, which /metrics never writes"
        );
    }
    // The FastAPI service's list: Redis hit rate, memory, ops/s; PostgreSQL connections, slow
    // queries, transactions/s; API p50/p95/p99, requests/s, error rate; LLM requests/s,
    // tokens, latency.
    for needed in [
        "evolve_cache_hits_total",
        "evolve_redis_keyspace_hits_total",
        "evolve_redis_used_memory_bytes",
        "evolve_redis_commands_processed_total",
        "evolve_pg_connections",
        "evolve_pg_max_connections",
        "evolve_pg_slow_queries",
        "evolve_pg_transactions_total",
        "evolve_http_request_duration_seconds_bucket",
        "evolve_http_requests_total",
        "evolve_llm_calls_total",
        "evolve_llm_tokens_total",
        "evolve_llm_call_duration_seconds_bucket",
    ] {
        assert!(used.iter().any(|u| u == needed), "no panel shows {needed}");
    }
    for quantile in ["0.50", "0.95", "0.99"] {
        assert!(
            exprs
                .iter()
                .any(|e| e.contains(&format!("histogram_quantile({quantile}"))
                    && e.contains("evolve_http_request_duration_seconds_bucket")),
            "no API p{quantile}"
        );
    }
    assert!(exprs.iter().any(|e| e.contains("status=~\"5..\"")));

    // Every expression is valid PromQL: promtool parses them as recording rules, with
    // Grafana's variables replaced by values.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$route", ".*");
            json!({"record": format!("evolve:dashboard:{i}"), "expr": expr})
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads it as a rules file.
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(tmp.path().join("dashboard.yml"), file.to_string()).unwrap();
    run_promtool(&["check", "rules", "dashboard.yml"], tmp.path());

    // The alert rules also use only exported metrics (and Prometheus' own `up`).
    let alerts = std::fs::read_to_string(workspace().join("deploy/prometheus/alerts.yml")).unwrap();
    let in_alerts = metric_names(&alerts);
    assert!(in_alerts.len() >= 8);
    for name in in_alerts {
        assert!(
            is_exported(&name),
            "alerts.yml uses {name}, which /metrics never writes"
        );
    }
}
