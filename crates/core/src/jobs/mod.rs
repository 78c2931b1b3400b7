//! The scheduled jobs, apart from their I/O: which jobs exist and when they run, what a
//! run records, how runs on many instances are kept from overlapping, and the plans the
//! partition and retention jobs carry out.
//!
//! [`JOBS`] is the one list of jobs and schedules. `spin.toml` declares one cron component
//! per job with the same expression (a host test compares the two), the admin's
//! scheduler status computes `next_run` from it, and the cron component looks its job up
//! here by name.
//!
//! Spin's cron trigger fires on every instance that runs it, so a run first takes a
//! cluster-wide lease in Redis ([`ACQUIRE_SCRIPT`]); a run that finds the lease taken, or
//! finds its schedule slot already done by another instance, is recorded as skipped and
//! does nothing. The lease outlives the job's time budget, the run renews it between
//! steps, and a crashed run's lease simply expires.

mod cache_metrics;
mod config;
mod lease;
mod partitions;
mod record;
mod schedule;

pub use cache_metrics::{info_number, CacheSnapshot, PrefixCounts, Window, CACHE_METRICS_LEN};
pub use config::JobsConfig;
pub use lease::{
    lease_ttl, Acquired, ACQUIRE_SCRIPT, ACQUIRE_SHA1, FINISH_SCRIPT, FINISH_SHA1, LEASE_GRACE,
    RENEW_SCRIPT, RENEW_SHA1, SLOT_MARKER_TTL,
};
pub use partitions::{plan_partitions, plan_retention, Month, RetentionPlan, DEFAULT_PARTITION};
pub use record::{status, JobStatus, Outcome, RunRecord, RunRequest, Trigger, HISTORY_LEN};
pub use schedule::{find, rfc3339, Job, JobSpec, Schedule, ScheduleError, JOBS};

#[cfg(test)]
pub(crate) mod test_support {
    use chrono::DateTime;

    /// An RFC 3339 time as Unix ms.
    pub(crate) fn ms(text: &str) -> u64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }
}
