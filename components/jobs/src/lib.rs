//! The `jobs` component: Spin's cron trigger calls it on each job's schedule.
//!
//! One build serves every job: `spin.toml` declares a `job-<name>` component per job with
//! this source and the variable `job = "<name>"`, each with its own `[[trigger.cron]]`
//! entry, so each job has its own schedule and its own variables while the code stays
//! one. The run itself, with its lease and its record, is
//! `evolve_platform::jobs::run_job`, which `POST /admin/jobs/{name}/run` calls too.

use evolve_core::jobs::{Job, Outcome, RunRequest};
use evolve_platform::jobs::{run_job, JobsContext};
use evolve_platform::variables;

// The cron trigger's world is not published as a crate; its WIT is in the repository.
wit_bindgen::generate!({
    path: "../../wit",
    world: "fermyon:spin-cron/spin-cron",
});

struct Jobs;

impl Guest for Jobs {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        let name = variables::get("job").map_err(|e| Error::Other(e.to_string()))?;
        let job = Job::parse(&name)
            .ok_or_else(|| Error::Other(format!("variable `job`: no job named {name:?}")))?;
        let context = JobsContext::from_variables()
            .map_err(|e| Error::Other(format!("job {job}: configuration: {e}")))?;
        // The plugin passes the time it fired, in Unix seconds.
        let fired_at_ms = metadata.timestamp.saturating_mul(1_000);
        let record = run_job(RunRequest::cron(job, fired_at_ms), &context);
        // One line per run in the host's log; the record itself is in Redis.
        println!(
            "job {job}: {:?} in {} ms, {} rows; {}",
            record.outcome, record.duration_ms, record.rows_affected, record.detail
        );
        match record.outcome {
            Outcome::Ok | Outcome::Skipped => Ok(()),
            Outcome::Error => Err(Error::Other(format!(
                "job {job} failed: {}",
                record.error.unwrap_or_default()
            ))),
        }
    }
}

export!(Jobs);
