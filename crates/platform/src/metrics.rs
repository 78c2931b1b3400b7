//! Request metrics, written to Redis cheaply: the one place components record figures.
//!
//! A component starts a [`Recorder`] when a request arrives and hands it the response.
//! [`Recorder::respond`] sends the response first and records afterwards, so the client
//! never waits for the write (the host sends the response as soon as its body is finished
//! and the instance lives until the handler returns). The write is one `EVALSHA` of
//! `evolve_core::metrics::RECORD_SCRIPT` (every field of the request in one round trip):
//!
//! - on the request's own Redis connection when it is already open: exact, and no
//!   connection is opened for it (on Spin every outbound `open` is a new TCP connection);
//! - otherwise only for one request in `metrics_sample` (weight `metrics_sample`) and for
//!   every server error, on a connection opened for it.
//!
//! So a cached read, which opens no Redis connection, opens one for metrics one time in 64
//! by default, and a chat turn, which has one open for the breaker, pays one round trip
//! after its answer has gone. Recording never fails a request: errors are dropped.

use crate::http::{Method, Response};
use crate::llm::LlmCall;
use crate::redis::{Redis, RedisError, RedisSession};
use crate::script::LuaScript;
use crate::sdk::http::Responder;
use crate::{time, variables};
use evolve_core::config::Deadlines;
use evolve_core::keys;
use evolve_core::metrics::{self, LlmRecord, RequestRecord};
use evolve_core::variables::RedisUrl;
use std::cell::RefCell;
use std::time::{Duration, Instant};

const RECORD: LuaScript = LuaScript::new(metrics::RECORD_SCRIPT, metrics::RECORD_SHA1);

/// Figures of one request, collected while it runs and written once after the response.
pub struct Recorder {
    component: &'static str,
    method: String,
    started: Instant,
    extra: RefCell<Vec<(String, i64)>>,
}

impl Recorder {
    /// Starts timing a request to `component`.
    pub fn start(component: &'static str, method: &Method) -> Self {
        Recorder {
            component,
            method: method.to_string(),
            started: Instant::now(),
            extra: RefCell::new(Vec::new()),
        }
    }

    /// Notes an LLM call made for this request (calls, attempts, latency, tokens, errors).
    pub fn llm_call(&self, call: &LlmCall) {
        let record = LlmRecord::of(&call.result, call.attempts, call.elapsed, call.slow);
        self.extra.borrow_mut().extend(record.increments());
    }

    /// Sends `response`, then records the request under `route` (the component's own name
    /// for the route, never the raw path). `session` is the request's Redis session, if it
    /// has one: used when open, and when it failed to open nothing is recorded (Redis is
    /// down; another attempt would only hold the instance).
    pub async fn respond(
        self,
        out: Responder,
        response: Response,
        route: &str,
        session: Option<&RedisSession>,
    ) {
        let status = response.status();
        let elapsed = self.started.elapsed();
        out.send(response).await;
        if session.is_some_and(RedisSession::failed) {
            return;
        }
        let _ = self.write(route, status, elapsed, session).await;
    }

    async fn write(
        &self,
        route: &str,
        status: u16,
        elapsed: std::time::Duration,
        session: Option<&RedisSession>,
    ) -> Result<(), RedisError> {
        let open = session.and_then(RedisSession::if_open);
        let every = match variables::lookup("metrics_sample").await {
            Ok(value) => metrics::sample_from(value.as_deref()).unwrap_or(metrics::DEFAULT_SAMPLE),
            Err(_) => metrics::DEFAULT_SAMPLE,
        };
        let Some(weight) = metrics::weight(every, time::random_fraction(), status, open.is_some())
        else {
            return Ok(());
        };
        let record = RequestRecord {
            component: self.component,
            method: &self.method,
            route,
            status,
            elapsed,
        };
        let increments = metrics::merge(
            record
                .increments(weight)
                .into_iter()
                .chain(self.extra.take()),
        );
        match (open, session) {
            (Some(redis), _) => record_increments(redis, &increments).await,
            (None, Some(session)) => record_increments(session.get().await?, &increments).await,
            (None, None) => {
                let Ok(Some(url)) = variables::lookup("redis_url").await else {
                    return Ok(());
                };
                let Ok(url) = RedisUrl::parse("redis_url", &url) else {
                    return Ok(());
                };
                let deadlines = variables::load(|lookup| Deadlines::try_from_lookup(lookup)).await;
                let deadline = deadlines
                    .map_or(Duration::from_millis(Deadlines::DEFAULT_REDIS_MS), |d| {
                        d.redis
                    });
                record_increments(&Redis::open(&url, deadline).await?, &increments).await
            }
        }
    }
}

/// Adds `increments` to the metrics hash in one round trip.
pub async fn record_increments(
    redis: &Redis,
    increments: &[(String, i64)],
) -> Result<(), RedisError> {
    if increments.is_empty() {
        return Ok(());
    }
    let args: Vec<String> = increments
        .iter()
        .flat_map(|(field, by)| [field.clone(), by.to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RECORD.run(redis, &[keys::METRICS], &args).await?;
    Ok(())
}

/// Records one finished job run (for `evolve_job_runs_total` and
/// `evolve_job_run_seconds_total`); jobs hold a Redis connection for their lease anyway.
pub async fn record_job_run(
    redis: &Redis,
    job: &str,
    outcome: &str,
    duration: std::time::Duration,
) -> Result<(), RedisError> {
    record_increments(redis, &metrics::job_increments(job, outcome, duration)).await
}

/// Everything recorded so far (the `/metrics` source).
pub async fn recorded(
    redis: &Redis,
) -> Result<std::collections::HashMap<String, String>, RedisError> {
    redis.hgetall(keys::METRICS).await
}
