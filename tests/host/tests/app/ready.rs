//! The `ready` component of the real `spin.toml`, on the local host, against real Redis
//! and PostgreSQL: liveness, readiness, and the answers when a dependency is down.

use crate::common::*;
use std::time::{Duration, Instant};

/// The answer to a readiness request must come within this, whatever is down.
const BOUND: Duration = Duration::from_secs(5);

fn options(redis_url: &str, pg_url: &str) -> evolve_host::HostOptions {
    app_options(redis_url, pg_url)
}

async fn ready(addr: std::net::SocketAddr) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = client().get(url(addr, "/ready")).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap();
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_without_touching_dependencies() {
    // Nothing listens on these ports: /health must not care.
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let dead_pg = format!("postgres://evolve:evolve@127.0.0.1:{}/x", free_port());
    let app = start(&options(&dead, &dead_pg), HTTP_ONLY).await;
    let response = client().get(url(app.addr, "/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_is_healthy_with_both_services_up() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    // Database 2 of the test Redis: no other test writes a breaker state there.
    let app = start(&options(&rdb.url(), &pg_url()), HTTP_ONLY).await;
    let (status, body, _) = ready(app.addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["overall"], "healthy", "{body}");
    assert_eq!(body["redis"]["status"], "healthy");
    assert!(body["redis"]["latency_ms"].as_f64().is_some(), "{body}");
    assert_eq!(body["postgres"]["status"], "healthy");
    assert_eq!(
        body["postgres"]["schema_version"],
        evolve_core::schema::EXPECTED_VERSION
    );
    assert_eq!(
        body["postgres"]["expected_schema_version"],
        evolve_core::schema::EXPECTED_VERSION
    );
    assert_eq!(
        body["gemini"]["circuit_breaker"]["state"], "CLOSED",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_shows_the_shared_breaker_state() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let mut conn = redis::Client::open(rdb.url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let _: () = redis::cmd("HSET")
        .arg(evolve_core::keys::BREAKER_STATE)
        .arg(&[
            ("state", "open".to_string()),
            ("failure_count", "5".into()),
            ("total_calls", "127".into()),
            ("total_successes", "115".into()),
            ("total_blocked", "12".into()),
            ("opened_at_ms", (now_ms - 15_000).to_string()),
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let app = start(&options(&rdb.url(), &pg_url()), HTTP_ONLY).await;
    let (status, body, _) = ready(app.addr).await;
    let _: () = redis::cmd("DEL")
        .arg(evolve_core::keys::BREAKER_STATE)
        .query_async(&mut conn)
        .await
        .unwrap();
    // An open breaker still answers users (with the fallback reply): degraded, not down.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["overall"], "degraded");
    let breaker = &body["gemini"]["circuit_breaker"];
    assert_eq!(breaker["state"], "OPEN");
    assert_eq!(breaker["failure_count"], 5);
    assert_eq!(breaker["total_blocked"], 12);
    let retry_in = breaker["retry_in"].as_u64().unwrap();
    assert!((30..=45).contains(&retry_in), "retry_in {retry_in}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_names_redis_when_redis_is_stopped() {
    migrated().await;
    let mut redis_server = OwnRedis::start().await;
    let own_redis = redis_server.url.clone();
    let app = start(&options(&own_redis, &pg_url()), HTTP_ONLY).await;
    let up = eventually(Duration::from_secs(10), || async {
        let (status, body, _) = ready(app.addr).await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(
        up.is_some(),
        "readiness never became healthy with its own Redis"
    );

    redis_server.stop();
    let (status, body, took) = ready(app.addr).await;
    // Named, but still in rotation: chat answers degraded without Redis.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["overall"], "unhealthy");
    assert_eq!(body["redis"]["status"], "unhealthy", "{body}");
    assert!(
        body["redis"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["postgres"]["status"], "healthy",
        "only Redis is at fault: {body}"
    );
    assert!(took < BOUND, "answered in {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_names_postgres_when_postgres_is_stopped() {
    let rdb = RedisDb::claim().await;
    // Nothing listens on this port: a stopped server, as the client sees it.
    let stopped = format!(
        "postgres://evolve:evolve@127.0.0.1:{}/evolve_test",
        free_port()
    );
    let app = start(&options(&rdb.url(), &stopped), HTTP_ONLY).await;
    let (status, body, took) = ready(app.addr).await;
    // Named, but still in rotation: every instance shares the database, and each answers
    // a clean 503 with Retry-After while it is down.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["overall"], "unhealthy");
    assert_eq!(body["postgres"]["status"], "unhealthy", "{body}");
    assert_eq!(
        body["redis"]["status"], "healthy",
        "only PostgreSQL is at fault: {body}"
    );
    assert!(
        !body.to_string().contains("evolve:evolve@"),
        "password leaked: {body}"
    );
    assert!(took < BOUND, "answered in {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_is_unhealthy_on_an_unmigrated_database() {
    let rdb = RedisDb::claim().await;
    let empty = ScratchDb::empty("unmigrated").await;
    let app = start(&options(&rdb.url(), &empty.url), HTTP_ONLY).await;
    let (status, body, _) = ready(app.addr).await;
    drop(app);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["postgres"]["status"], "unhealthy");
    assert_eq!(body["postgres"]["schema_version"], 0, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_get_clear_errors() {
    let app = start(&options(&redis_url(), &pg_url()), HTTP_ONLY).await;
    // No route: the host answers 404, as Spin does.
    let response = client().get(url(app.addr, "/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // A route with the wrong method: the component answers 405 with Allow.
    let response = client()
        .post(url(app.addr, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 405);
    assert!(body["title"].as_str().is_some());
}
