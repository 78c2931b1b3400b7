//! The `ready` component: `/health` says the process answers (liveness, no I/O) and
//! `/ready` says whether it can serve users (Redis, PostgreSQL and its schema version,
//! the LLM circuit breaker, the read replica when one is set). Orchestrators restart on
//! failed liveness and stop routing on failed readiness, so the two must not be confused:
//! `/health` never touches a dependency.
//!
//! This file only routes, gathers observations and renders; the rules are in
//! `evolve_core::readiness` and the I/O in `evolve_platform`.

use evolve_core::config::ReadyConfig;
use evolve_core::problem::Problem;
use evolve_core::readiness::{GeminiReport, PostgresReport, ReadyReport, RedisReport};
use evolve_core::schema;
use evolve_core::{breaker, keys};
use evolve_platform::http::{Method, Response};
use evolve_platform::metrics::Recorder;
use evolve_platform::pg::Pg;
use evolve_platform::redis::RedisSession;
use evolve_platform::sdk::http::{Incoming, Responder};
use evolve_platform::{replica, reply, time, variables};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const JSON: &str = "application/json";
const ALLOWED: &[&str] = &["GET"];

evolve_platform::http_component!(handle);

/// No route here takes a body, so none is read: a client's body is never held.
async fn handle(incoming: Incoming, out: Responder) {
    let path = incoming.head().path.clone();
    let method = incoming.head().method.clone();
    // `/health` is not recorded: recording may open a Redis connection, and liveness must
    // not depend on (or wait for) any dependency.
    if path == "/health" && method == Method::Get {
        return out.send(health()).await;
    }
    let recorder = Recorder::start("ready", &method);
    let route = match path.as_str() {
        known @ ("/health" | "/ready") => known,
        _ => evolve_core::metrics::UNMATCHED_ROUTE,
    };
    let mut redis = None;
    let response = serve(&method, &path, &mut redis).await;
    recorder.respond(out, response, route, redis.as_ref()).await;
}

/// Answers a request; `redis` keeps the session `/ready` opened, for the metrics.
async fn serve(method: &Method, path: &str, redis: &mut Option<RedisSession>) -> Response {
    match (method, path) {
        (Method::Get, "/health") => health(),
        (Method::Get, "/ready") => ready(redis).await,
        (method, "/health" | "/ready") => reply::method_not_allowed(method.as_str(), path, ALLOWED),
        _ => reply::problem(&Problem::not_found(path)),
    }
}

fn health() -> Response {
    let body = serde_json::json!({ "status": "ok", "version": VERSION });
    reply::text(200, JSON, body.to_string())
}

/// Redis and PostgreSQL are checked at the same time, each within
/// `dependency_timeout_ms`: a dependency that does not answer in time is reported as
/// failed, by name (on WASIp2 the check waits for the host call; see `time::within`).
async fn ready(redis: &mut Option<RedisSession>) -> Response {
    let config = match variables::load(|lookup| ReadyConfig::try_from_lookup(lookup)).await {
        Ok(config) => config,
        Err(error) => {
            let problem = Problem::from_status(503).with_detail(format!("configuration: {error}"));
            return reply::problem(&problem);
        }
    };
    let session = redis.insert(RedisSession::new(
        config.redis_url.clone(),
        config.dependency_timeout.as_duration(),
    ));
    let ((redis_report, gemini), postgres, replica) = futures::join!(
        check_redis(&config, session),
        check_postgres(&config),
        replica::report()
    );
    let mut report = ReadyReport::new(redis_report, postgres, gemini, VERSION);
    if let Some(replica) = replica {
        report = report.with_replica(replica);
    }
    reply::text(report.http_status(), JSON, report.to_json())
}

/// One Redis connection serves both the `PING` and the breaker read (and is kept by
/// the caller for the request's metrics).
async fn check_redis(config: &ReadyConfig, session: &RedisSession) -> (RedisReport, GeminiReport) {
    let redis = match session.get().await {
        Ok(redis) => redis,
        Err(error) => {
            let gemini = GeminiReport::unknown(format!("breaker state unreadable: {error}"));
            return (RedisReport::failed(error.to_string()), gemini);
        }
    };
    let redis_report = match redis.ping().await {
        Ok(latency) => RedisReport::answered(latency, config.dependency_timeout),
        Err(error) => RedisReport::failed(error.to_string()),
    };
    let gemini = match redis.hgetall(keys::BREAKER_STATE).await {
        Ok(fields) => {
            let open_ms = config.breaker_open.as_millis() as u64;
            match breaker::parse_stats(&fields, open_ms, time::now_ms()) {
                Ok(stats) => GeminiReport::from_breaker(stats),
                Err(error) => GeminiReport::unknown(error.to_string()),
            }
        }
        Err(error) => GeminiReport::unknown(format!("breaker state unreadable: {error}")),
    };
    (redis_report, gemini)
}

async fn check_postgres(config: &ReadyConfig) -> PostgresReport {
    let expected = schema::EXPECTED_VERSION;
    let deadline = config.dependency_timeout.as_duration();
    let probe = match Pg::open(&config.pg_url, deadline).await {
        Ok(pg) => pg.schema_version().await,
        Err(error) => Err(error),
    };
    match probe {
        Ok(found) => PostgresReport::answered(
            found.latency,
            found.version,
            expected,
            config.dependency_timeout,
        ),
        Err(error) => PostgresReport::failed(error.to_string(), expected),
    }
}
