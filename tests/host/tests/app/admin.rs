//! The `admin` component on the local host against real Redis and PostgreSQL: tokens,
//! each endpoint's fields with known data, cache invalidation. (`/metrics` and the
//! monitoring files are in `metrics.rs`.)
//!
//! Tests that touch application-wide Redis keys claim their own Redis database.

use crate::common::postgres::OwnPostgres;
use crate::common::*;
use crate::metrics::parse_exposition;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The application served in this process, with its admin, user and metrics clients.
pub struct App {
    pub app: evolve_host::Running,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        url(self.app.addr, path)
    }

    pub async fn admin(&self, path: &str) -> reqwest::Response {
        client()
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        let response = self.admin(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        client()
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn profile(&self, user: &str) -> reqwest::Response {
        client()
            .get(self.url("/api/profile"))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
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
pub async fn app(db: u8, pg: &str, tune: impl FnOnce(&mut evolve_host::HostOptions)) -> App {
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
