//! A drain on Spin: the context its tasks share, and the handler of each kind.

use std::time::Duration;

use evolve_core::queue::drain::{self, DrainReport, TaskError, TaskRunner};
use evolve_core::queue::{Kind, Task, WorkerConfig};
use evolve_core::variables::ConfigError;

use super::store::{RedisQueue, SpinClock};
use super::{analysis, broadcast, voice};
use crate::breaker::Breaker;
use crate::pg::PgSession;
use crate::redis::{Redis, RedisError, RedisSession};
use crate::{time, variables};
use evolve_core::breaker::Decision;

/// What one drain's tasks share: the configuration and lazily opened connections. The
/// drain's own script calls and the tasks' calls go over the same Redis connection.
pub struct WorkerContext {
    pub config: WorkerConfig,
    pub redis: RedisSession,
    pub pg: PgSession,
}

impl WorkerContext {
    pub fn new(config: WorkerConfig) -> Self {
        WorkerContext {
            redis: RedisSession::new(config.redis_url.clone(), config.deadlines.redis),
            pg: PgSession::new(config.pg_url.clone(), config.deadlines.pg),
            config,
        }
    }

    /// The context from the component's Spin variables.
    pub async fn from_variables() -> Result<Self, ConfigError> {
        variables::load(|lookup| WorkerConfig::try_from_lookup(lookup))
            .await
            .map(Self::new)
    }
}

/// A store or model failure inside a task: worth a retry.
pub(super) fn failed(error: impl std::fmt::Display) -> TaskError {
    TaskError::Failed(error.to_string())
}

/// Asks `breaker` (named `what` in the error) for a call; when it is open, the task is
/// deferred until a probe may go, without using an attempt.
pub(super) async fn acquire_or_defer(
    breaker: &Breaker,
    redis: &Redis,
    what: &str,
) -> Result<Decision, TaskError> {
    match breaker
        .acquire(redis, time::now_ms())
        .await
        .map_err(failed)?
    {
        Decision::Reject { retry_in } => Err(TaskError::Deferred {
            retry_in_ms: retry_in.as_millis().max(1) as u64,
            reason: format!("the {what} breaker is open"),
        }),
        decision => Ok(decision),
    }
}

/// Drains the queue once, as a consumer of its own, within the configured budget.
pub async fn drain_queue(ctx: &WorkerContext) -> Result<DrainReport, RedisError> {
    let redis = ctx.redis.get().await?;
    let consumer = format!("drain-{:016x}", time::random_u64());
    let handlers = Handlers { ctx };
    drain::drain(
        &RedisQueue::new(redis),
        &handlers,
        &SpinClock,
        &ctx.config.queue,
        &consumer,
    )
    .await
    .map_err(|error| RedisError {
        operation: "drain".to_owned(),
        message: error.0,
    })
}

/// Runs each kind's handler under the task's deadline.
struct Handlers<'a> {
    ctx: &'a WorkerContext,
}

impl TaskRunner for Handlers<'_> {
    async fn run(&self, kind: Kind, task: &Task, deadline: Duration) -> Result<String, TaskError> {
        let work = async {
            match kind {
                Kind::Probe => Ok("probe: nothing to do".to_owned()),
                Kind::Voice => voice::run(self.ctx, task, deadline).await,
                Kind::Analysis => analysis::run(self.ctx, task, deadline).await,
                Kind::Broadcast => broadcast::run(self.ctx, task, deadline).await,
            }
        };
        match time::within(deadline, work).await {
            Some(outcome) => outcome,
            None => Err(TaskError::TimedOut(deadline.as_millis() as u64)),
        }
    }
}
