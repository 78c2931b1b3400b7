//! The work queue for operators:
//! - `GET /admin/queues`: per stream its length, pending deliveries and oldest age; the
//!   delayed and dead-letter counts; per kind the done, failed, retried and dead counts;
//! - `GET /admin/queues/dead?limit=`: the newest dead letters with their last error;
//! - `POST /admin/queues/dead/{entry}/retry`, `DELETE /admin/queues/dead/{entry}`;
//! - `POST /admin/queues/drain`: one drain now, as the worker runs it;
//! - `POST /admin/queues/probe?count=&priority=`: enqueues no-op probe tasks, to see a
//!   drain work end to end (and to load it in benchmarks).

use evolve_core::problem::Problem;
use evolve_core::queue::scripts::{self, Enqueued};
use evolve_core::queue::stats::QueueStats;
use evolve_core::queue::{Kind, NewTask, Priority};
use evolve_platform::http::{Method, Request, Response};
use evolve_platform::queue::{self, drain_queue, RedisQueue, WorkerContext};
use evolve_platform::time;
use serde_json::json;

use crate::{reply, Context};

/// The queue routes, by the labels metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRoute<'a> {
    Stats,
    Dead,
    DeadEntry(&'a str),
    RetryDead(&'a str),
    Drain,
    Probe,
}

impl<'a> QueueRoute<'a> {
    pub fn parse(path: &'a str) -> Option<QueueRoute<'a>> {
        let rest = path.strip_prefix("/admin/queues")?;
        Some(match rest {
            "" => QueueRoute::Stats,
            "/dead" => QueueRoute::Dead,
            "/drain" => QueueRoute::Drain,
            "/probe" => QueueRoute::Probe,
            _ => {
                let entry = rest.strip_prefix("/dead/")?;
                match entry.strip_suffix("/retry") {
                    Some(entry) => QueueRoute::RetryDead(entry),
                    None => QueueRoute::DeadEntry(entry),
                }
            }
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            QueueRoute::Stats => "/admin/queues",
            QueueRoute::Dead => "/admin/queues/dead",
            QueueRoute::DeadEntry(_) => "/admin/queues/dead/{entry}",
            QueueRoute::RetryDead(_) => "/admin/queues/dead/{entry}/retry",
            QueueRoute::Drain => "/admin/queues/drain",
            QueueRoute::Probe => "/admin/queues/probe",
        }
    }

    fn allowed(self) -> &'static [&'static str] {
        match self {
            QueueRoute::Stats | QueueRoute::Dead => &["GET"],
            QueueRoute::DeadEntry(_) => &["DELETE"],
            QueueRoute::RetryDead(_) | QueueRoute::Drain | QueueRoute::Probe => &["POST"],
        }
    }
}

/// Serves a queue route; the caller has checked the admin token.
pub async fn serve(
    context: &Context,
    request: &Request,
    path: &str,
    route: QueueRoute<'_>,
) -> Response {
    let method = request.method().as_str();
    if !route.allowed().contains(&method) {
        return reply::method_not_allowed(method, path, route.allowed());
    }
    if let QueueRoute::DeadEntry(entry) | QueueRoute::RetryDead(entry) = route {
        if !is_entry_id(entry) {
            return reply::problem(&Problem::not_found(path));
        }
    }
    if route == QueueRoute::Drain {
        return drain().await;
    }
    let redis = match context.redis.get().await {
        Ok(redis) => redis,
        Err(error) => return reply::unavailable("Redis", &error),
    };
    let store = RedisQueue::new(redis);
    let result = match (route, request.method()) {
        (QueueRoute::Stats, _) => store.call(&scripts::stats()).await.and_then(|reply| {
            QueueStats::parse(&reply, time::now_ms())
                .map(|stats| reply::json(200, &stats))
                .map_err(bad_reply)
        }),
        (QueueRoute::Dead, _) => {
            let limit = query_number(request.query(), "limit")
                .unwrap_or(50)
                .clamp(1, 500);
            store
                .call(&scripts::list_dead(limit))
                .await
                .and_then(|reply| {
                    scripts::parse_dead(&reply)
                        .map(|dead| reply::json(200, &json!({ "dead": dead })))
                        .map_err(bad_reply)
                })
        }
        (QueueRoute::RetryDead(entry), _) => store
            .call(&scripts::retry_dead(entry, time::now_ms()))
            .await
            .map(|reply| found(&reply, path, json!({"entry": entry, "status": "requeued"}))),
        (QueueRoute::DeadEntry(entry), Method::Delete) => store
            .call(&scripts::delete_dead(entry))
            .await
            .map(|reply| found(&reply, path, json!({"entry": entry, "status": "deleted"}))),
        (QueueRoute::Probe, _) => probe(context, request, redis).await,
        _ => unreachable!("methods were checked against the route"),
    };
    result.unwrap_or_else(|error| reply::unavailable("Redis", &error))
}

/// A stream entry id as Redis writes them: `<ms>-<seq>`.
fn is_entry_id(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    text.split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
}

fn found(reply: &[scripts::Reply], path: &str, body: serde_json::Value) -> Response {
    match scripts::parse_count(reply) {
        Ok(1) => reply::json(200, &body),
        _ => reply::problem(&Problem::not_found(path)),
    }
}

fn bad_reply(error: scripts::BadReply) -> evolve_platform::redis::RedisError {
    evolve_platform::redis::RedisError {
        operation: "queue".to_owned(),
        message: error.to_string(),
    }
}

fn query_number(query: &str, name: &str) -> Option<u32> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

fn query_text<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

async fn drain() -> Response {
    let ctx = match WorkerContext::from_variables().await {
        Ok(ctx) => ctx,
        Err(error) => {
            return reply::problem(&Problem::service_unavailable(
                format!("configuration: {error}"),
                None,
            ))
        }
    };
    match drain_queue(&ctx).await {
        Ok(report) => reply::json(200, &report),
        Err(error) => reply::unavailable("Redis", &error),
    }
}

/// Enqueues `count` probe tasks (1 to 10,000) at `priority` (default `default`).
async fn probe(
    context: &Context,
    request: &Request,
    redis: &evolve_platform::redis::Redis,
) -> Result<Response, evolve_platform::redis::RedisError> {
    let query = request.query();
    let count = match query_text(query, "count") {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(n @ 1..=10_000) => n,
            _ => {
                return Ok(reply::problem(&Problem::bad_request(
                    "count must be an integer from 1 to 10000",
                )))
            }
        },
    };
    let priority = match query_text(query, "priority") {
        None => Priority::Default,
        Some(name) => match Priority::parse(name) {
            Some(priority) => priority,
            None => {
                return Ok(reply::problem(&Problem::bad_request(
                    "priority must be high, default or low",
                )))
            }
        },
    };
    let mut task = NewTask::new(Kind::Probe, "{}".to_owned());
    task.priority = priority;
    let channel = &context.config.queue_channel;
    let mut added = 0u32;
    for _ in 0..count {
        if let Enqueued::Added { .. } = queue::enqueue(redis, &task, channel).await? {
            added += 1;
        }
    }
    Ok(reply::json(
        202,
        &json!({"enqueued": added, "kind": "probe", "priority": priority.as_str()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_paths_parse() {
        assert_eq!(QueueRoute::parse("/admin/queues"), Some(QueueRoute::Stats));
        assert_eq!(
            QueueRoute::parse("/admin/queues/dead/1-0/retry"),
            Some(QueueRoute::RetryDead("1-0"))
        );
        assert_eq!(QueueRoute::parse("/admin/queuesx"), None);
        assert!(is_entry_id("1700000000000-12"));
        assert!(!is_entry_id("1-"));
        assert!(!is_entry_id("a-1"));
        assert!(!is_entry_id("1-0/x"));
    }
}
