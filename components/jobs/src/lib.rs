//! The `jobs` component: Spin's cron trigger calls it on each job's schedule.
//!
//! One build serves every job: `spin.toml` declares a `job-<name>` component per job with
//! this source and the variable `job = "<name>"`, each with its own `[[trigger.cron]]`
//! entry, so each job has its own schedule and its own variables while the code stays
//! one. The run itself, with its lease and its record, is
//! `evolve_platform::jobs::run_job`, which `POST /admin/jobs/{name}/run` calls too.
//! The cron world differs between the builds (`fermyon:spin-cron@2.0.0` for Spin 3,
//! the async `spin:cron@3.0.0` for Spin 4); `evolve_platform::cron_component!` exports
//! the right one.

use evolve_core::jobs::{Job, Outcome, RunRequest};
use evolve_platform::jobs::{run_job, JobsContext};
use evolve_platform::variables;

evolve_platform::cron_component!(handle_cron_event);

/// Runs this component's job; `fired_at` is the time the schedule fired, in Unix seconds.
async fn handle_cron_event(fired_at: u64) -> Result<(), String> {
    let name = variables::get("job").await.map_err(|e| e.to_string())?;
    let job = Job::parse(&name).ok_or_else(|| format!("variable `job`: no job named {name:?}"))?;
    let context = JobsContext::from_variables()
        .await
        .map_err(|e| format!("job {job}: configuration: {e}"))?;
    let record = run_job(
        RunRequest::cron(job, fired_at.saturating_mul(1_000)),
        &context,
    )
    .await;
    // One line per run in the host's log; the record itself is in Redis.
    println!(
        "job {job}: {:?} in {} ms, {} rows; {}",
        record.outcome, record.duration_ms, record.rows_affected, record.detail
    );
    match record.outcome {
        Outcome::Ok | Outcome::Skipped => Ok(()),
        Outcome::Error => Err(format!(
            "job {job} failed: {}",
            record.error.unwrap_or_default()
        )),
    }
}
