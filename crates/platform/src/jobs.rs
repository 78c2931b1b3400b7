//! The scheduled jobs on Redis and PostgreSQL: [`run_job`] takes the job's cluster-wide
//! lease, runs the job within its time budget, and records the run; each job's steps are
//! in a submodule, its rules in `evolve_core::jobs`.
//!
//! The cron component calls [`run_job`] when Spin's cron trigger fires, on every instance;
//! the admin component calls the same function for `POST /admin/jobs/{name}/run`. Only
//! one run of a job works at a time anywhere: the others are recorded as skipped. A run
//! renews its lease between steps and stops when it finds the lease gone (a pause longer
//! than the lease, say), so two runs never work at once even then.

mod cache_metrics;
mod cache_warm;
mod cleanup;
mod lease;
mod partitions;
mod subscriptions;

pub use cache_metrics::{cache_metrics_history, snapshot_cache};
pub use cache_warm::{warm_cache, WarmReport};

use evolve_core::jobs::{
    self, Acquired, Job, JobStatus, JobsConfig, Outcome, RunRecord, RunRequest,
};
use evolve_core::keys;
use evolve_core::variables::ConfigError;

use crate::pg::{Pg, PgError, PgSession};
use crate::redis::{Redis, RedisError, RedisParameter, RedisResult, RedisSession};
use crate::{metrics, time, variables};
use std::rc::Rc;

/// What a run needs: the configuration and the lazily opened connections.
pub struct JobsContext {
    pub config: JobsConfig,
    pub redis: RedisSession,
    pub pg: PgSession,
}

impl JobsContext {
    pub fn new(config: JobsConfig) -> Self {
        JobsContext {
            redis: RedisSession::new(config.redis_url.clone(), config.deadlines.redis),
            pg: PgSession::new(config.pg_url.clone(), config.deadlines.pg),
            config,
        }
    }

    /// The context from the component's Spin variables.
    pub async fn from_variables() -> Result<Self, ConfigError> {
        variables::load(|lookup| JobsConfig::try_from_lookup(lookup))
            .await
            .map(Self::new)
    }
}

/// Why a run failed. Messages carry no secrets (the connection errors are scrubbed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("the lease expired while the run was working; it stopped")]
    LeaseLost,
}

/// What a run's steps did so far; kept when a later step fails.
#[derive(Debug, Default)]
struct Work {
    rows: u64,
    notes: Vec<String>,
}

impl Work {
    fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

/// A run in progress.
struct Run<'a> {
    ctx: &'a JobsContext,
    redis: &'a Redis,
    lease: lease::Lease<'a>,
    /// Unix ms after which no new step starts.
    deadline_ms: u64,
}

impl Run<'_> {
    async fn pg(&self) -> Result<Rc<Pg>, JobError> {
        Ok(self.ctx.pg.get().await?)
    }

    /// Whether another step may start: not once the budget is spent. Renews the lease,
    /// and fails if it is no longer this run's.
    async fn may_continue(&self) -> Result<bool, JobError> {
        if time::now_ms() >= self.deadline_ms {
            return Ok(false);
        }
        if !self.lease.renew().await? {
            return Err(JobError::LeaseLost);
        }
        Ok(true)
    }

    fn lock_timeout_ms(&self) -> i32 {
        self.ctx
            .config
            .lock_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32
    }
}

/// Runs a job once, if no other run of it is working and (for a cron run) its slot is
/// not done yet, and returns the run's record. Every run that takes the lease is
/// recorded as the job's latest run and in its history; a skipped run is recorded as the
/// job's latest skip.
pub async fn run_job(request: RunRequest, ctx: &JobsContext) -> RunRecord {
    let started_at_ms = time::now_ms();
    let token = format!("{:016x}", time::random_u64());
    let job = request.job;
    let record = |outcome: Outcome, rows: u64, error: Option<String>, detail: String, lease| {
        let finished_at_ms = time::now_ms();
        RunRecord {
            job,
            trigger: request.trigger,
            slot_ms: request.slot_ms,
            started_at_ms,
            finished_at_ms,
            duration_ms: finished_at_ms.saturating_sub(started_at_ms),
            outcome,
            rows_affected: rows,
            error,
            detail,
            lease,
        }
    };
    let failed = |error: String| {
        record(
            Outcome::Error,
            0,
            Some(error),
            "not run: without Redis there is no lease".to_owned(),
            String::new(),
        )
    };

    let redis = match ctx.redis.get().await {
        Ok(redis) => redis,
        Err(error) => return failed(error.to_string()),
    };
    let ttl = jobs::lease_ttl(ctx.config.budget, ctx.config.lock_timeout);
    let (detail, holder) = match lease::acquire(redis, job, &token, ttl, request.slot_ms).await {
        Ok(Acquired::Lease) => (String::new(), None),
        Ok(Acquired::Busy { holder }) => {
            ("another run holds the job's lease".to_owned(), Some(holder))
        }
        Ok(Acquired::SlotDone { slot_ms }) => (
            format!(
                "a run for the {} slot has already finished (this event came late)",
                jobs::rfc3339(slot_ms)
            ),
            Some(String::new()),
        ),
        Err(error) => return failed(error.to_string()),
    };
    if let Some(holder) = holder {
        let skip = record(Outcome::Skipped, 0, None, detail, holder);
        // The skip is informational; failing to store it changes nothing.
        let stored = redis
            .execute(
                "SET",
                &[bin(&keys::job_skipped(job.name())), bin(&skip.to_json())],
            )
            .await;
        drop(stored);
        count(redis, &skip).await;
        return skip;
    }
    let lease = lease::Lease::new(redis, job, token.clone(), ttl);

    let run = Run {
        ctx,
        redis,
        lease,
        deadline_ms: started_at_ms + ctx.config.budget.as_millis() as u64,
    };
    let mut work = Work::default();
    let result = match job {
        Job::Cleanup => cleanup::run(&run, &mut work).await,
        Job::Partitions => partitions::run(&run, &mut work).await,
        Job::Subscriptions => subscriptions::run(&run, &mut work).await,
        Job::CacheMetrics => cache_metrics::run(&run, &mut work).await,
        Job::CacheWarm => cache_warm::run(&run, &mut work).await,
    };
    let (outcome, error) = match result {
        Ok(()) => (Outcome::Ok, None),
        Err(error) => (Outcome::Error, Some(error.to_string())),
    };
    let mut done = record(outcome, work.rows, error, work.notes.join("; "), token);
    match run.lease.finish(&done, request.slot_ms).await {
        Ok(true) => {}
        Ok(false) => {
            done.detail
                .push_str("; the lease had expired before the run finished");
        }
        Err(error) => {
            let text = format!("the run could not be recorded: {error}");
            done.error = Some(match done.error.take() {
                Some(earlier) => format!("{earlier}; {text}"),
                None => text,
            });
            done.outcome = Outcome::Error;
        }
    }
    count(redis, &done).await;
    done
}

/// Adds the run to the job counters of `/metrics`; a failure there fails nothing.
async fn count(redis: &Redis, run: &RunRecord) {
    let recorded = metrics::record_job_run(
        redis,
        run.job.name(),
        run.outcome.as_str(),
        std::time::Duration::from_millis(run.duration_ms),
    )
    .await;
    drop(recorded);
}

fn bin(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

fn records(reply: Vec<RedisResult>) -> Vec<RunRecord> {
    reply
        .into_iter()
        .filter_map(|item| match item {
            RedisResult::Binary(bytes) => RunRecord::from_json(&bytes),
            _ => None,
        })
        .collect()
}

/// The latest run that did work (ok or error) of every job that has run, in the order
/// of [`jobs::JOBS`].
pub async fn latest_runs(redis: &Redis) -> Result<Vec<RunRecord>, RedisError> {
    let mut runs = Vec::new();
    for job in Job::ALL {
        if let Some(bytes) = redis.get(&keys::job_last(job.name())).await? {
            runs.extend(RunRecord::from_json(&bytes));
        }
    }
    Ok(runs)
}

/// The job's latest skipped run, if any.
pub async fn latest_skip(redis: &Redis, job: Job) -> Result<Option<RunRecord>, RedisError> {
    Ok(redis
        .get(&keys::job_skipped(job.name()))
        .await?
        .and_then(|bytes| RunRecord::from_json(&bytes)))
}

/// The job's `n` most recent runs that did work, newest first.
pub async fn run_history(redis: &Redis, job: Job, n: u64) -> Result<Vec<RunRecord>, RedisError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let reply = redis
        .execute(
            "LRANGE",
            &[
                bin(&keys::job_history(job.name())),
                RedisParameter::Int64(0),
                RedisParameter::Int64(n.min(i64::MAX as u64) as i64 - 1),
            ],
        )
        .await?;
    Ok(records(reply))
}

/// Every job's schedule, next run and latest run, for `/admin/scheduler_status`.
pub async fn scheduler_status(redis: &Redis, now_ms: u64) -> Result<Vec<JobStatus>, RedisError> {
    let latest = latest_runs(redis).await?;
    Ok(jobs::JOBS
        .iter()
        .map(|spec| {
            let last = latest.iter().find(|r| r.job == spec.job).cloned();
            jobs::status(spec, last, now_ms)
        })
        .collect())
}

/// SQLSTATE `lock_not_available`: a `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

fn is_lock_timeout(error: &PgError) -> bool {
    error.sqlstate.as_deref() == Some(LOCK_NOT_AVAILABLE)
}
