//! `GET /admin/scheduler_status`: every scheduled job as `spin.toml` declares it (from
//! `evolve_core::jobs::JOBS`, the one source of truth), its next run computed from the
//! same expression, and its latest run as the jobs recorded it.

use evolve_core::jobs::{self, JobStatus, Outcome};
use evolve_core::metrics::{Exposition, Kind};
use evolve_platform::http::Response;
use evolve_platform::redis::Redis;
use evolve_platform::{jobs as runs, time};
use serde_json::json;

use crate::{reply, Context};

pub async fn status(context: &Context) -> Response {
    let now_ms = time::now_ms();
    let read = match context.redis.get().await {
        Ok(redis) => runs::scheduler_status(redis, now_ms).await,
        Err(error) => Err(error),
    };
    let body = match read {
        Ok(statuses) => json!({
            "scheduler": {
                "status": "running",
                "jobs_count": statuses.len(),
                "jobs": statuses,
            }
        }),
        // Schedules do not need Redis; only the last runs are unknown.
        Err(error) => {
            let statuses: Vec<JobStatus> = jobs::JOBS
                .iter()
                .map(|spec| jobs::status(spec, None, now_ms))
                .collect();
            json!({
                "scheduler": {
                    "status": "degraded",
                    "error": format!("last runs unavailable: {error}"),
                    "jobs_count": statuses.len(),
                    "jobs": statuses,
                }
            })
        }
    };
    reply::json(200, &body)
}

/// The latest run of each job as gauges (run counts come from the metrics hash).
pub async fn write_metrics(out: &mut Exposition, redis: &Redis) {
    let Ok(latest) = runs::latest_runs(redis).await else {
        return;
    };
    out.family(
        "evolve_job_last_run_timestamp_seconds",
        Kind::Gauge,
        "When the latest run of each job that did work finished (Unix seconds).",
    );
    for run in &latest {
        out.sample(
            "evolve_job_last_run_timestamp_seconds",
            &[("job", run.job.name())],
            run.finished_at_ms as f64 / 1e3,
        );
    }
    out.family(
        "evolve_job_last_duration_seconds",
        Kind::Gauge,
        "How long the latest run of each job took.",
    );
    for run in &latest {
        out.sample(
            "evolve_job_last_duration_seconds",
            &[("job", run.job.name())],
            run.duration_ms as f64 / 1e3,
        );
    }
    out.family(
        "evolve_job_last_success",
        Kind::Gauge,
        "1 when the latest run of each job succeeded, 0 when it failed.",
    );
    for run in &latest {
        let ok = if run.outcome == Outcome::Ok { 1.0 } else { 0.0 };
        out.sample("evolve_job_last_success", &[("job", run.job.name())], ok);
    }
}
