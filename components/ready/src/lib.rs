//! The `ready` component: `/health` says the process answers (liveness, no I/O) and
//! `/ready` says whether it can serve users (Redis, PostgreSQL and its schema version,
//! the LLM circuit breaker). Orchestrators restart on failed liveness and stop routing on
//! failed readiness, so the two must not be confused: `/health` never touches a dependency.
//!
//! This file only routes, gathers observations and renders; the rules are in
//! `evolve_core::readiness` and the I/O in `evolve_platform`.

use evolve_core::config::ReadyConfig;
use evolve_core::problem::Problem;
use evolve_core::readiness::{GeminiReport, PostgresReport, ReadyReport, RedisReport};
use evolve_core::schema;
use evolve_core::{breaker, keys};
use evolve_platform::metrics::{self, Recorder};
use evolve_platform::pg::Pg;
use evolve_platform::redis::RedisSession;
use evolve_platform::{reply, request, time, variables};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const JSON: &str = "application/json";
const ALLOWED: &[&str] = &["GET"];

/// No route here takes a body, so none is read: a client's body is never held.
#[http_component]
async fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
    let path = request::path(&incoming);
    let method = incoming.method();
    // `/health` is not recorded: recording may open a Redis connection, and liveness must
    // not depend on (or wait for) any dependency.
    if path == "/health" && method == Method::Get {
        return metrics::send(out, health()).await;
    }
    let recorder = Recorder::start("ready", &method);
    let route = match path.as_str() {
        known @ ("/health" | "/ready") => known,
        _ => evolve_core::metrics::UNMATCHED_ROUTE,
    };
    let mut redis = None;
    let response = serve(&method, &path, &mut redis);
    recorder.respond(out, response, route, redis.as_ref()).await;
}

/// Answers a request; `redis` keeps the session `/ready` opened, for the metrics.
fn serve(method: &Method, path: &str, redis: &mut Option<RedisSession>) -> Response {
    match (method, path) {
        (Method::Get, "/health") => health(),
        (Method::Get, "/ready") => ready(redis),
        (method, "/health" | "/ready") => {
            reply::method_not_allowed(&method.to_string(), path, ALLOWED)
        }
        _ => reply::problem(&Problem::not_found(path)),
    }
}

fn health() -> Response {
    let body = serde_json::json!({ "status": "ok", "version": VERSION });
    reply::text(200, JSON, body.to_string())
}

fn ready(redis: &mut Option<RedisSession>) -> Response {
    let config = match ReadyConfig::try_from_lookup(variables::lookup) {
        Ok(config) => config,
        Err(error) => {
            let problem = Problem::from_status(503).with_detail(format!("configuration: {error}"));
            return reply::problem(&problem);
        }
    };
    let (redis_report, gemini) = check_redis(&config, redis);
    let postgres = check_postgres(&config);
    let report = ReadyReport::new(redis_report, postgres, gemini, VERSION);
    reply::text(report.http_status(), JSON, report.to_json())
}

/// One Redis connection serves both the `PING` and the breaker read (and is kept in
/// `slot` for the request's metrics).
fn check_redis(
    config: &ReadyConfig,
    slot: &mut Option<RedisSession>,
) -> (RedisReport, GeminiReport) {
    let session = slot.insert(RedisSession::new(config.redis_url.clone()));
    let redis = match session.get() {
        Ok(redis) => redis,
        Err(error) => {
            let gemini = GeminiReport::unknown(format!("breaker state unreadable: {error}"));
            return (RedisReport::failed(error.to_string()), gemini);
        }
    };
    let redis_report = match redis.ping() {
        Ok(latency) => RedisReport::answered(latency, config.dependency_timeout),
        Err(error) => RedisReport::failed(error.to_string()),
    };
    let gemini = match redis.hgetall(keys::BREAKER_STATE) {
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

fn check_postgres(config: &ReadyConfig) -> PostgresReport {
    let expected = schema::EXPECTED_VERSION;
    let probe = Pg::open(&config.pg_url).and_then(|pg| pg.schema_version());
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
