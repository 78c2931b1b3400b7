//! `POST /admin/jobs/{name}/run`: runs a scheduled job now, through the same code, lease
//! and bookkeeping as its cron component (`evolve_platform::jobs::run_job`), for
//! platforms without the cron trigger plugin (Fermyon Cloud) or driven by an external
//! scheduler such as a Kubernetes CronJob.
//!
//! Answers the run's record: 200 when it ran, 409 when another run held the job's lease
//! (nothing was done), 503 when it failed (the record says why).

use evolve_core::jobs::{Job, Outcome, RunRequest};
use evolve_core::problem::Problem;
use evolve_platform::http::{Request, Response};
use evolve_platform::jobs::{run_job, JobsContext};

use crate::reply;

/// The route's label in the request metrics.
pub const ROUTE: &str = "/admin/jobs/{name}/run";

const ALLOWED: &[&str] = &["POST"];

/// The job name in a `/admin/jobs/{name}/run` path.
pub fn job_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/admin/jobs/")?
        .strip_suffix("/run")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// Serves a path that [`job_segment`] matched; the caller has checked the admin token.
pub async fn run(request: &Request, path: &str, name: &str) -> Response {
    let method = request.method().as_str();
    if !ALLOWED.contains(&method) {
        return reply::method_not_allowed(method, path, ALLOWED);
    }
    let Some(job) = Job::parse(name) else {
        return reply::problem(&Problem::not_found(path));
    };
    let context = match JobsContext::from_variables().await {
        Ok(context) => context,
        Err(error) => {
            return reply::problem(&Problem::service_unavailable(
                format!("configuration: {error}"),
                None,
            ))
        }
    };
    let record = run_job(RunRequest::admin(job), &context).await;
    let status = match record.outcome {
        Outcome::Ok => 200,
        Outcome::Skipped => 409,
        Outcome::Error => 503,
    };
    reply::json(status, &record)
}
