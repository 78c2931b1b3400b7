//! Which jobs exist and when they run: [`JOBS`], the six-field cron expressions of their
//! schedules, and the next run (or the slot of a fired event) computed from them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Chat history past retention disappears: whole partitions dropped, the boundary
    /// partition and the default partition trimmed in batches.
    Cleanup,
    /// Monthly partitions created ahead; rows that landed in the default partition moved
    /// into their month.
    Partitions,
    /// Premium users whose subscription ended become free; their cached profiles go.
    Subscriptions,
    /// A snapshot of the cache counters and Redis' own statistics into a capped series.
    CacheMetrics,
    /// The profiles of the most recently active users loaded into the cache.
    CacheWarm,
}

impl Job {
    /// Every job, in the order of [`JOBS`].
    pub const ALL: [Job; 5] = [
        Job::Cleanup,
        Job::Partitions,
        Job::Subscriptions,
        Job::CacheMetrics,
        Job::CacheWarm,
    ];

    /// The job's schedule and names.
    pub fn spec(self) -> &'static JobSpec {
        &JOBS[self as usize]
    }

    /// The short name: the `job` variable of its component, the admin route's segment.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The job with this short name.
    pub fn parse(name: &str) -> Option<Job> {
        find(name).map(|spec| spec.job)
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is known about a job before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    pub job: Job,
    /// Short name, `a-z` and `-`: the component is `job-<name>`.
    pub name: &'static str,
    /// The FastAPI service's job id, shown by `/admin/scheduler_status`.
    pub id: &'static str,
    /// What the job does, for people.
    pub title: &'static str,
    /// Six-field cron expression (seconds first), evaluated in UTC, exactly as the
    /// `[[trigger.cron]]` entry of the job's component in `spin.toml` says.
    pub schedule: &'static str,
}

/// Every job with its schedule: the single source of truth that `spin.toml` must match.
pub const JOBS: &[JobSpec] = &[
    JobSpec {
        job: Job::Cleanup,
        name: "cleanup",
        id: "cleanup_old_messages",
        title: "Remove chat history older than the retention period",
        // Daily at 03:00 UTC, as the FastAPI service's job.
        schedule: "0 0 3 * * *",
    },
    JobSpec {
        job: Job::Partitions,
        name: "partitions",
        id: "maintain_partitions",
        title: "Create chat history partitions ahead; move strays out of the default partition",
        // Daily, before the cleanup, so that a boundary month with strays is a partition
        // by the time the cleanup trims it.
        schedule: "0 30 2 * * *",
    },
    JobSpec {
        job: Job::Subscriptions,
        name: "subscriptions",
        id: "check_expired_subscriptions",
        title: "Move users whose premium subscription ended to the free plan",
        // Hourly, as the FastAPI service's job.
        schedule: "0 0 * * * *",
    },
    JobSpec {
        job: Job::CacheMetrics,
        name: "cache-metrics",
        id: "collect_cache_metrics",
        title: "Record cache and Redis statistics",
        // Every 5 minutes, as the FastAPI service's job.
        schedule: "0 */5 * * * *",
    },
    JobSpec {
        job: Job::CacheWarm,
        name: "cache-warm",
        id: "warm_cache",
        title: "Load the profiles of recently active users into the cache",
        // The FastAPI service warmed the cache at start-up, which serverless instances lack: every
        // 10 minutes instead (and on demand through the admin route).
        schedule: "0 */10 * * * *",
    },
];

/// The job with this short name.
pub fn find(name: &str) -> Option<&'static JobSpec> {
    JOBS.iter().find(|spec| spec.name == name)
}

impl JobSpec {
    /// The name of the job's cron component in `spin.toml`.
    pub fn component(&self) -> String {
        format!("job-{}", self.name)
    }

    /// The parsed schedule.
    pub fn parsed_schedule(&self) -> Schedule {
        Schedule::parse(self.schedule).expect("JOBS schedules are valid (unit-tested)")
    }

    /// The first scheduled time strictly after `after_ms` (Unix ms).
    pub fn next_run_ms(&self, after_ms: u64) -> Option<u64> {
        self.parsed_schedule().next_after_ms(after_ms)
    }
}

/// A cron expression is not one the cron trigger accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression {expression:?}: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

/// A six-field cron expression (seconds, minutes, hours, day of month, month, day of
/// week), the form Spin's cron trigger takes, evaluated in UTC.
#[derive(Debug, Clone)]
pub struct Schedule(cron::Schedule);

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let error = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let fields = expression.split_whitespace().count();
        if fields != 6 {
            return Err(error(format!(
                "{fields} fields; the cron trigger takes six (seconds first)"
            )));
        }
        cron::Schedule::from_str(expression)
            .map(Schedule)
            .map_err(|e| error(e.to_string()))
    }

    /// The first occurrence strictly after `after_ms`.
    pub fn next_after_ms(&self, after_ms: u64) -> Option<u64> {
        let after = utc(after_ms as i64)?;
        self.0.after(&after).next().map(to_ms)
    }

    /// The last occurrence at or before `at_ms`.
    pub fn previous_ms(&self, at_ms: u64) -> Option<u64> {
        // The iterator's backward step yields times strictly before its start; start one
        // second later (occurrences fall on whole seconds) and keep what is not after.
        let start = utc(at_ms as i64 - at_ms as i64 % 1_000 + 1_000)?;
        self.0
            .after(&start)
            .next_back()
            .map(to_ms)
            .filter(|&t| t <= at_ms)
    }

    /// The occurrence nearest to `at_ms`: the schedule slot a cron event fired at
    /// `at_ms` belongs to. Instances' clocks and the plugin's timer differ by a little,
    /// so the same slot fired on two instances maps to the same value here.
    pub fn slot_ms(&self, at_ms: u64) -> Option<u64> {
        match (self.previous_ms(at_ms), self.next_after_ms(at_ms)) {
            (Some(before), Some(after)) if after - at_ms < at_ms - before => Some(after),
            (Some(before), _) => Some(before),
            (None, after) => after,
        }
    }
}

pub(super) fn utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn to_ms(at: DateTime<Utc>) -> u64 {
    at.timestamp_millis().max(0) as u64
}

/// `at_ms` as RFC 3339 in UTC with whole seconds (`2025-01-06T03:00:00+00:00`), the form
/// the FastAPI service's scheduler status used.
pub fn rfc3339(at_ms: u64) -> String {
    utc(at_ms as i64)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::test_support::ms;
    use crate::jobs::RunRequest;

    #[test]
    fn jobs_are_listed_once_in_the_order_of_the_enum() {
        assert_eq!(JOBS.len(), Job::ALL.len());
        for (i, job) in Job::ALL.iter().enumerate() {
            assert_eq!(JOBS[i].job, *job);
            assert_eq!(job.spec().job, *job);
            assert_eq!(Job::parse(job.name()), Some(*job));
            // The serialized name is the short name.
            assert_eq!(
                serde_json::to_string(job).unwrap(),
                format!("\"{}\"", job.name())
            );
        }
        assert_eq!(Job::parse("nope"), None);
        let mut names: Vec<_> = JOBS.iter().map(|s| s.name).collect();
        names.dedup();
        assert_eq!(names.len(), JOBS.len());
        for spec in JOBS {
            assert!(spec
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-'));
            assert_eq!(spec.component(), format!("job-{}", spec.name));
        }
    }

    #[test]
    fn every_schedule_parses_and_has_the_fastapi_timing() {
        for spec in JOBS {
            Schedule::parse(spec.schedule).unwrap();
        }
        let now = ms("2025-01-05T10:17:30Z");
        let next = |job: Job| rfc3339(job.spec().next_run_ms(now).unwrap());
        assert_eq!(next(Job::Cleanup), "2025-01-06T03:00:00+00:00");
        assert_eq!(next(Job::Partitions), "2025-01-06T02:30:00+00:00");
        assert_eq!(next(Job::Subscriptions), "2025-01-05T11:00:00+00:00");
        assert_eq!(next(Job::CacheMetrics), "2025-01-05T10:20:00+00:00");
        assert_eq!(next(Job::CacheWarm), "2025-01-05T10:20:00+00:00");
    }

    #[test]
    fn schedules_take_six_fields() {
        assert!(Schedule::parse("0 3 * * *").is_err());
        assert!(Schedule::parse("0 0 3 * * * 2030").is_err());
        let error = Schedule::parse("a b c d e f").unwrap_err();
        assert!(error.to_string().contains("a b c d e f"), "{error}");
    }

    #[test]
    fn next_run_is_strictly_after() {
        let schedule = Schedule::parse("0 */5 * * * *").unwrap();
        let at = ms("2025-01-05T10:20:00Z");
        assert_eq!(schedule.next_after_ms(at), Some(ms("2025-01-05T10:25:00Z")));
        assert_eq!(
            schedule.next_after_ms(at - 1),
            Some(ms("2025-01-05T10:20:00Z"))
        );
    }

    #[test]
    fn a_fired_event_belongs_to_the_nearest_slot() {
        let schedule = Schedule::parse("0 */5 * * * *").unwrap();
        let slot = ms("2025-01-05T10:20:00Z");
        assert_eq!(schedule.previous_ms(slot), Some(slot));
        assert_eq!(schedule.previous_ms(slot + 999), Some(slot));
        assert_eq!(schedule.previous_ms(slot - 1), Some(slot - 300_000));
        // Two instances whose clocks differ a little agree on the slot.
        for at in [slot, slot + 1, slot + 1_500, slot - 800, slot + 149_999] {
            assert_eq!(schedule.slot_ms(at), Some(slot), "{at}");
        }
        assert_eq!(schedule.slot_ms(slot - 150_001), Some(slot - 300_000));
        let daily = Job::Cleanup.spec().parsed_schedule();
        let three = ms("2025-01-06T03:00:00Z");
        assert_eq!(daily.slot_ms(three + 2_000), Some(three));
        assert_eq!(daily.slot_ms(three - 2_000), Some(three));
        assert_eq!(
            RunRequest::cron(Job::Cleanup, three + 1_000).slot_ms,
            Some(three)
        );
        assert_eq!(RunRequest::admin(Job::Cleanup).slot_ms, None);
    }
}
