//! The `admin` component: what operators and the monitoring system ask the service.
//!
//! - `GET /admin/cache_stats`: Redis `INFO` figures (the FastAPI service's fields) and the per-prefix
//!   cache counters;
//! - `GET /admin/db_metrics`: PostgreSQL connections, transactions, cache hit ratio,
//!   deadlocks, table and partition sizes, slow statements;
//! - `GET /admin/scheduler_status`: every cron job, its schedule, next and last run;
//! - `GET /admin/breakers`: the shared circuit breakers;
//! - `POST /admin/cache/invalidate`, `POST /admin/cache/warm`: cache maintenance;
//! - `POST /admin/jobs/{name}/run`: runs a scheduled job now, as its cron component does;
//! - `/admin/queues...`: the work queue's figures and dead letters, a drain on demand;
//! - `/admin/broadcasts...`, `POST /admin/users/{user}/analysis`: work for the queue;
//! - `GET /metrics`: everything above that a time series can hold, as Prometheus text.
//!
//! `/admin/...` takes the admin token and `/metrics` the metrics token, each compared in
//! constant time (`evolve_core::admin::AccessToken`), before anything else is looked at:
//! without the token every path answers 401, so the routes cannot be probed. The two tokens
//! are separate so that a scraper's credential cannot change anything.

mod breakers;
mod broadcasts;
mod cache;
mod db;
// POST /admin/jobs/{name}/run (scheduled jobs).
mod jobs;
mod prometheus;
mod queues;
mod reply;
mod scheduler;

use evolve_core::admin::AdminConfig;
use evolve_core::problem::Problem;
use evolve_platform::http::{Request, Response};
use evolve_platform::metrics::Recorder;
use evolve_platform::pg::PgSession;
use evolve_platform::redis::RedisSession;
use evolve_platform::sdk::http::{Incoming, Responder};
use evolve_platform::{request, variables};

/// What every route needs: the configuration and the request's lazily opened connections.
pub struct Context {
    pub config: AdminConfig,
    pub redis: RedisSession,
    pub pg: PgSession,
}

/// The routes: path, methods, and the route label metrics use.
const ROUTES: &[(&str, &[&str])] = &[
    ("/metrics", &["GET"]),
    ("/admin/cache_stats", &["GET"]),
    ("/admin/db_metrics", &["GET"]),
    ("/admin/scheduler_status", &["GET"]),
    ("/admin/breakers", &["GET"]),
    ("/admin/cache/invalidate", &["POST"]),
    ("/admin/cache/warm", &["POST"]),
];

/// The largest body an admin route takes: a broadcast of the longest message, every
/// character four bytes of UTF-8.
const MAX_BODY: usize = 20 * 1024;

evolve_platform::http_component!(handle);

async fn handle(incoming: Incoming, out: Responder) {
    let recorder = Recorder::start("admin", &incoming.head().method);
    let path = incoming.head().path.clone();
    let route = if jobs::job_segment(&path).is_some() {
        jobs::ROUTE
    } else if let Some(queue_route) = queues::QueueRoute::parse(&path) {
        queue_route.label()
    } else if let Some(work_route) = broadcasts::Route::parse(&path) {
        work_route.label()
    } else {
        ROUTES
            .iter()
            .find(|(known, _)| *known == path)
            .map_or(evolve_core::metrics::UNMATCHED_ROUTE, |(known, _)| known)
    };
    let config = match variables::load(|lookup| AdminConfig::try_from_lookup(lookup)).await {
        Ok(config) => config,
        Err(error) => {
            let problem = Problem::service_unavailable(format!("configuration: {error}"), None);
            return recorder
                .respond(out, reply::problem(&problem), route, None)
                .await;
        }
    };
    let context = Context {
        redis: RedisSession::new(config.redis_url.clone(), config.deadlines.redis),
        pg: PgSession::new(config.pg_url.clone(), config.deadlines.pg),
        config,
    };
    let response = match request::read(incoming, MAX_BODY).await {
        Ok(request) => dispatch(&context, &request, &path).await,
        Err(refusal) => reply::problem(&refusal),
    };
    recorder
        .respond(out, response, route, Some(&context.redis))
        .await;
}

async fn dispatch(context: &Context, request: &Request, path: &str) -> Response {
    let header = request.header("authorization");
    let token = if path == "/metrics" {
        &context.config.metrics_token
    } else {
        &context.config.admin_token
    };
    if let Err(refusal) = token.authorize(header) {
        return reply::problem(&refusal);
    }
    if let Some(name) = jobs::job_segment(path) {
        return jobs::run(request, path, name).await;
    }
    if let Some(route) = queues::QueueRoute::parse(path) {
        return queues::serve(context, request, path, route).await;
    }
    if let Some(route) = broadcasts::Route::parse(path) {
        return broadcasts::serve(context, request, path, route).await;
    }
    let Some((_, allowed)) = ROUTES.iter().find(|(known, _)| *known == path) else {
        return reply::problem(&Problem::not_found(path));
    };
    let method = request.method().as_str();
    if !allowed.contains(&method) {
        return reply::method_not_allowed(method, path, allowed);
    }
    match path {
        "/metrics" => prometheus::get(context).await,
        "/admin/cache_stats" => cache::stats(context).await,
        "/admin/db_metrics" => db::metrics(context).await,
        "/admin/scheduler_status" => scheduler::status(context).await,
        "/admin/breakers" => breakers::get(context).await,
        "/admin/cache/invalidate" => cache::invalidate(context, request).await,
        "/admin/cache/warm" => cache::warm().await,
        _ => unreachable!("every route in ROUTES is dispatched"),
    }
}
