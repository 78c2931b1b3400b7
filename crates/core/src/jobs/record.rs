//! What a run asks for, how it ended and what it records (the JSON kept in Redis), and
//! what the admin API shows for a job.

use serde::{Deserialize, Serialize};

use super::schedule::{rfc3339, Job, JobSpec};

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// By the cron trigger, on the job's schedule.
    Cron,
    /// By `POST /admin/jobs/{name}/run` (or another caller of `run_job`).
    Admin,
}

/// What a run asks for before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRequest {
    pub job: Job,
    pub trigger: Trigger,
    /// For cron runs, the schedule slot (Unix ms) the event belongs to: once a run of
    /// that slot has finished on any instance, later events of the same slot skip.
    pub slot_ms: Option<u64>,
}

impl RunRequest {
    /// A run for a cron event fired at `fired_at_ms`.
    pub fn cron(job: Job, fired_at_ms: u64) -> RunRequest {
        RunRequest {
            job,
            trigger: Trigger::Cron,
            slot_ms: job.spec().parsed_schedule().slot_ms(fired_at_ms),
        }
    }

    /// A run asked for over the admin API: not tied to a slot, but still under the lease.
    pub fn admin(job: Job) -> RunRequest {
        RunRequest {
            job,
            trigger: Trigger::Admin,
            slot_ms: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The job did its work (maybe not all of it: see the record's `detail`).
    Ok,
    /// The job failed; `error` says why.
    Error,
    /// Another run held the lease, or the slot was already done: nothing was done.
    Skipped,
}

impl Outcome {
    /// The stored and shown name (`ok`, `error`, `skipped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One run of a job, as stored in Redis and shown by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub job: Job,
    pub trigger: Trigger,
    /// The schedule slot of a cron run (Unix ms).
    pub slot_ms: Option<u64>,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// Rows (or entries) the run changed: rows deleted or moved, users expired, profiles
    /// loaded, snapshots written.
    pub rows_affected: u64,
    pub error: Option<String>,
    /// What the run did, for people (partitions dropped, whether work remains).
    pub detail: String,
    /// The run's lease token: which run held the lease (for a skipped run, which run it
    /// found holding it, when known).
    pub lease: String,
}

impl RunRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("run records serialize")
    }

    pub fn from_json(text: &[u8]) -> Option<RunRecord> {
        serde_json::from_slice(text).ok()
    }
}

/// What the admin API shows for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    pub id: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub schedule: &'static str,
    pub component: String,
    /// RFC 3339, UTC.
    pub next_run: Option<String>,
    pub next_run_ms: Option<u64>,
    /// The latest run that did work (ok or error).
    pub last_run: Option<RunRecord>,
}

/// The status of `spec` at `now_ms`, given its latest recorded run.
pub fn status(spec: &JobSpec, last_run: Option<RunRecord>, now_ms: u64) -> JobStatus {
    let next_run_ms = spec.next_run_ms(now_ms);
    JobStatus {
        id: spec.id,
        name: spec.name,
        title: spec.title,
        schedule: spec.schedule,
        component: spec.component(),
        next_run: next_run_ms.map(rfc3339),
        next_run_ms,
        last_run,
    }
}

/// How many records each job's run history keeps.
pub const HISTORY_LEN: u64 = 50;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::test_support::ms;

    #[test]
    fn status_shows_the_next_run_in_the_fastapi_format() {
        let now = ms("2025-01-05T10:17:30Z");
        let status = status(Job::Cleanup.spec(), None, now);
        assert_eq!(status.id, "cleanup_old_messages");
        assert_eq!(
            status.next_run.as_deref(),
            Some("2025-01-06T03:00:00+00:00")
        );
        assert_eq!(status.component, "job-cleanup");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["last_run"], serde_json::Value::Null);
    }

    #[test]
    fn run_records_round_trip() {
        let record = RunRecord {
            job: Job::CacheMetrics,
            trigger: Trigger::Cron,
            slot_ms: Some(1),
            started_at_ms: 10,
            finished_at_ms: 15,
            duration_ms: 5,
            outcome: Outcome::Skipped,
            rows_affected: 0,
            error: None,
            detail: "lease held by another run".into(),
            lease: "abc".into(),
        };
        let json = record.to_json();
        assert!(json.contains(r#""job":"cache-metrics""#), "{json}");
        assert!(json.contains(r#""outcome":"skipped""#), "{json}");
        for outcome in [Outcome::Ok, Outcome::Error, Outcome::Skipped] {
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{}\"", outcome.as_str())
            );
        }
        assert!(json.contains(r#""trigger":"cron""#), "{json}");
        assert_eq!(RunRecord::from_json(json.as_bytes()), Some(record));
        assert_eq!(RunRecord::from_json(b"{}"), None);
    }
}
