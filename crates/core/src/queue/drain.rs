//! One drain: claim a batch, run its tasks, finish each, until the queue is empty or
//! the budget is spent. The same loop runs on the worker's Redis trigger, on its cron
//! trigger, behind `POST /admin/queues/drain`, and in the native race tests; only the
//! store, the runner and the clock differ.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::config::QueueConfig;
use super::scripts::{self, Failure, Reply, ScriptCall};
use super::task::{Delivery, Kind, Task};

/// Runs the queue's scripts (Redis on Spin, the `redis` crate in native tests).
#[allow(async_fn_in_trait)] // implemented and awaited within one single-threaded guest
pub trait QueueStore {
    async fn run(&self, call: &ScriptCall) -> Result<Vec<Reply>, StoreError>;
}

/// The store failed a call; the drain stops, and what it held is reclaimed later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue store: {0}")]
pub struct StoreError(pub String);

impl From<scripts::BadReply> for StoreError {
    fn from(error: scripts::BadReply) -> Self {
        StoreError(error.to_string())
    }
}

/// Why a task did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Worth another attempt (a dependency failed or was slow).
    #[error("{0}")]
    Failed(String),
    /// Its deadline passed.
    #[error("no result within {0} ms")]
    TimedOut(u64),
    /// Can never succeed (a payload this build cannot read): straight to the dead letters.
    #[error("{0}")]
    Permanent(String),
    /// Not tried: what it needs is unavailable for a known while (a model's breaker is
    /// open). Put back for then, without using an attempt.
    #[error("deferred: {reason}")]
    Deferred { retry_in_ms: u64, reason: String },
}

/// Runs one task of a known kind within `deadline`, returning a short summary of what
/// it did for the result record.
#[allow(async_fn_in_trait)]
pub trait TaskRunner {
    async fn run(&self, kind: Kind, task: &Task, deadline: Duration) -> Result<String, TaskError>;
}

/// Time and randomness, from the host on Spin and from the test elsewhere.
pub trait Clock {
    fn now_ms(&self) -> u64;
    fn random_u64(&self) -> u64;
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    pub consumer: String,
    pub claimed: u64,
    pub done: u64,
    /// Finished here, but another drain had already finished the same delivery.
    pub duplicates: u64,
    pub retried: u64,
    pub dead: u64,
    /// Put back unfinished without using an attempt: the budget ran out, or what the
    /// task needs was unavailable.
    pub released: u64,
    /// Failures whose delivery another drain had taken over meanwhile.
    pub lost: u64,
    pub duration_ms: u64,
    /// The first failures' errors (`<kind> <task>: <error>`), for the log.
    pub errors: Vec<String>,
}

/// Failures kept in a report's `errors`.
const REPORTED_ERRORS: usize = 10;

/// Errors kept in records and dead letters are cut to this many bytes.
const ERROR_BYTES: usize = 500;

/// Below this much budget left, no new batch is claimed.
const MIN_WINDOW_MS: u64 = 200;

/// Drains as `consumer` (unique per drain) until the queue is empty or the budget is
/// spent. A store error ends the drain; whatever it held goes back to the queue after
/// the visibility timeout.
pub async fn drain<S: QueueStore, R: TaskRunner, C: Clock>(
    store: &S,
    runner: &R,
    clock: &C,
    config: &QueueConfig,
    consumer: &str,
) -> Result<DrainReport, StoreError> {
    let started = clock.now_ms();
    let budget_ms = config.drain_budget.as_millis() as u64;
    let mut report = DrainReport {
        consumer: consumer.to_owned(),
        ..DrainReport::default()
    };
    let outcome = async {
        loop {
            let elapsed = clock.now_ms().saturating_sub(started);
            if budget_ms.saturating_sub(elapsed) < MIN_WINDOW_MS.min(budget_ms) {
                return Ok(());
            }
            let call = scripts::claim(
                consumer,
                clock.now_ms(),
                config.visibility,
                config.max_deliveries,
                config.batch,
            );
            let batch = scripts::parse_claim(&store.run(&call).await?)?;
            if batch.is_empty() {
                return Ok(());
            }
            report.claimed += batch.len() as u64;
            let finished: Vec<Result<(Finished, Option<String>), StoreError>> = stream::iter(batch)
                .map(|delivery| run_one(store, runner, clock, config, consumer, started, delivery))
                .buffer_unordered(config.concurrency as usize)
                .collect()
                .await;
            for finished in finished {
                let (finished, error) = finished?;
                if let Some(error) = error {
                    if report.errors.len() < REPORTED_ERRORS {
                        report.errors.push(error);
                    }
                }
                match finished {
                    Finished::Done => report.done += 1,
                    Finished::Duplicate => report.duplicates += 1,
                    Finished::Retried => report.retried += 1,
                    Finished::Dead => report.dead += 1,
                    Finished::Released => report.released += 1,
                    Finished::Lost => report.lost += 1,
                }
            }
        }
    }
    .await;
    // Tidy the group's consumers; a failure here costs nothing but a stale name.
    let _ = store
        .run(&scripts::finish(consumer, config.visibility * 2))
        .await;
    report.duration_ms = clock.now_ms().saturating_sub(started);
    outcome.map(|()| report)
}

enum Finished {
    Done,
    Duplicate,
    Retried,
    Dead,
    Released,
    Lost,
}

async fn run_one<S: QueueStore, R: TaskRunner, C: Clock>(
    store: &S,
    runner: &R,
    clock: &C,
    config: &QueueConfig,
    consumer: &str,
    drain_started: u64,
    delivery: Delivery,
) -> Result<(Finished, Option<String>), StoreError> {
    let budget_ms = config.drain_budget.as_millis() as u64;
    let task_ms = config.task_timeout.as_millis() as u64;
    let started = clock.now_ms();
    let left = budget_ms.saturating_sub(started.saturating_sub(drain_started));
    // A task never outlives the drain: near the end it gets what is left, and if that
    // is what stops it, it goes back without losing an attempt.
    let deadline_ms = task_ms.min(left);
    let cut_by_budget = deadline_ms < task_ms;
    let outcome = match Kind::parse(&delivery.task.kind) {
        Some(kind) if deadline_ms > 0 => {
            runner
                .run(kind, &delivery.task, Duration::from_millis(deadline_ms))
                .await
        }
        Some(_) => Err(TaskError::TimedOut(0)),
        None => Err(TaskError::Permanent(format!(
            "unknown task kind {:?}",
            truncate(&delivery.task.kind, 64)
        ))),
    };
    let now = clock.now_ms();
    let duration_ms = now.saturating_sub(started);
    match outcome {
        Ok(summary) => {
            let record = serde_json::json!({
                "task": delivery.task.id,
                "kind": delivery.task.kind,
                "reference": delivery.task.reference,
                "attempts": delivery.task.attempt + 1,
                "finished_ms": now,
                "duration_ms": duration_ms,
                "result": truncate(&summary, ERROR_BYTES),
            })
            .to_string();
            let call = scripts::complete(&delivery, &record, duration_ms);
            let finished = match scripts::parse_count(&store.run(&call).await?)? {
                1 => Finished::Done,
                _ => Finished::Duplicate,
            };
            Ok((finished, None))
        }
        Err(error) => {
            let failure = match (&error, Kind::parse(&delivery.task.kind)) {
                (TaskError::TimedOut(_), _) if cut_by_budget => Failure::Release { at_ms: now },
                (TaskError::Deferred { retry_in_ms, .. }, _) => Failure::Release {
                    at_ms: now + retry_in_ms,
                },
                (TaskError::Permanent(_), _) | (_, None) => Failure::Dead,
                (_, Some(kind)) if delivery.task.attempt + 1 >= kind.max_attempts() => {
                    Failure::Dead
                }
                (_, Some(_)) => {
                    let wait = config.backoff(delivery.task.attempt + 1, clock.random_u64());
                    Failure::Retry {
                        at_ms: now + wait.as_millis() as u64,
                    }
                }
            };
            let message = truncate(&error.to_string(), ERROR_BYTES);
            let call = scripts::fail(&delivery, consumer, &failure, &message, now, duration_ms);
            let finished = match (scripts::parse_count(&store.run(&call).await?)?, failure) {
                (0, _) => Finished::Lost,
                (_, Failure::Release { .. }) => Finished::Released,
                (_, Failure::Retry { .. }) => Finished::Retried,
                (_, Failure::Dead) => Finished::Dead,
            };
            let noted = format!("{} {}: {message}", delivery.task.kind, delivery.task.id);
            Ok((finished, Some(noted)))
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abcdef", 4), "abcd");
    }
}
