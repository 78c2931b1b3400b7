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

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::variables::{parse_ranged, ConfigError, PgUrl, RedisUrl};

// ---------------------------------------------------------------------------------------
// Jobs and schedules

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
    /// The seed's job id, shown by `/admin/scheduler_status`.
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
        // Daily at 03:00 UTC, as the seed's job.
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
        // Hourly, as the seed's job.
        schedule: "0 0 * * * *",
    },
    JobSpec {
        job: Job::CacheMetrics,
        name: "cache-metrics",
        id: "collect_cache_metrics",
        title: "Record cache and Redis statistics",
        // Every 5 minutes, as the seed's job.
        schedule: "0 */5 * * * *",
    },
    JobSpec {
        job: Job::CacheWarm,
        name: "cache-warm",
        id: "warm_cache",
        title: "Load the profiles of recently active users into the cache",
        // The seed warmed the cache at start-up, which serverless instances lack: every
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

fn utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn to_ms(at: DateTime<Utc>) -> u64 {
    at.timestamp_millis().max(0) as u64
}

/// `at_ms` as RFC 3339 in UTC with whole seconds (`2025-01-06T03:00:00+00:00`), the form
/// the seed's scheduler status used.
pub fn rfc3339(at_ms: u64) -> String {
    utc(at_ms as i64)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Runs and their records

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

/// How long the "slot done" marker is kept: far longer than any clock difference
/// between instances, and than a daily job's period.
pub const SLOT_MARKER_TTL: Duration = Duration::from_secs(7 * 86_400);

/// What the lease adds to the job's budget: a step started just before the deadline
/// (one batch, one DDL statement waiting for its lock) finishes inside it.
pub const LEASE_GRACE: Duration = Duration::from_secs(30);

/// How long a run's lease lasts (renewed between steps).
pub fn lease_ttl(budget: Duration, lock_timeout: Duration) -> Duration {
    budget + lock_timeout + LEASE_GRACE
}

/// Takes a job's lease for a run, unless the run's slot is already done.
///
/// `KEYS[1]` the lease, `KEYS[2]` the job's last done slot; `ARGV[1]` the run's token,
/// `ARGV[2]` the lease TTL in ms, `ARGV[3]` the run's slot (Unix ms) or empty. Replies
/// `{'ok', token}`, `{'busy', holder}` or `{'done', slot}`.
pub const ACQUIRE_SCRIPT: &str = r#"-- evolve jobs: acquire
if ARGV[3] ~= '' then
  local done = tonumber(redis.call('GET', KEYS[2]) or '')
  if done and done >= tonumber(ARGV[3]) then
    return {'done', tostring(done)}
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'ok', ARGV[1]}
end
return {'busy', redis.call('GET', KEYS[1]) or ''}
"#;

/// Extends the lease if the run still holds it.
///
/// `KEYS[1]` the lease; `ARGV[1]` the run's token, `ARGV[2]` the TTL in ms. Replies 1 if
/// extended, 0 if the lease is gone or someone else's.
pub const RENEW_SCRIPT: &str = r#"-- evolve jobs: renew
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Records a finished run and releases its lease, atomically.
///
/// `KEYS[1]` the lease, `KEYS[2]` the last done slot, `KEYS[3]` the latest record,
/// `KEYS[4]` the run history; `ARGV[1]` the run's token, `ARGV[2]` the record (JSON),
/// `ARGV[3]` the slot or empty, `ARGV[4]` the history length, `ARGV[5]` the slot
/// marker's TTL in ms. The lease is deleted only if it is still this run's. Replies 1 if
/// it was, 0 if it had expired (and maybe been taken by another run).
pub const FINISH_SCRIPT: &str = r#"-- evolve jobs: finish
redis.call('SET', KEYS[3], ARGV[2])
redis.call('LPUSH', KEYS[4], ARGV[2])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
if ARGV[3] ~= '' then
  local done = tonumber(redis.call('GET', KEYS[2]) or '')
  if not done or tonumber(ARGV[3]) > done then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[5])
  end
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// SHA-1 of [`ACQUIRE_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const ACQUIRE_SHA1: &str = "38fe607df70b1a623e971bd3c2f48645c8581e0d";
/// SHA-1 of [`RENEW_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const RENEW_SHA1: &str = "b1a78bd6841f5f1f70a79e793a9c683ceeb144fd";
/// SHA-1 of [`FINISH_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const FINISH_SHA1: &str = "d1a2ba3b94e4b157a24b07f452fc7a172d61db21";

/// What [`ACQUIRE_SCRIPT`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The run holds the lease.
    Lease,
    /// Another run holds it (its token, when it was still there to read).
    Busy { holder: String },
    /// A run of this slot has already finished.
    SlotDone { slot_ms: u64 },
}

impl Acquired {
    /// Reads the script's reply, flattened to its strings.
    pub fn parse(reply: &[String]) -> Option<Acquired> {
        match reply {
            [kind, value] => match kind.as_str() {
                "ok" => Some(Acquired::Lease),
                "busy" => Some(Acquired::Busy {
                    holder: value.clone(),
                }),
                "done" => value
                    .parse()
                    .ok()
                    .map(|slot_ms| Acquired::SlotDone { slot_ms }),
                _ => None,
            },
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration

/// Everything the jobs need, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    pub redis_url: RedisUrl,
    pub pg_url: PgUrl,
    /// Chat history older than this many days is removed.
    pub history_retention_days: u32,
    /// Monthly partitions kept ready after the current month.
    pub partitions_ahead_months: u32,
    /// How long one run may work before it stops (and resumes on its next run).
    pub budget: Duration,
    /// How long partition DDL waits for its lock before giving up until the next run.
    pub lock_timeout: Duration,
    /// Rows one cleanup statement deletes at most.
    pub cleanup_batch_size: u32,
    /// Profiles one warm-up loads at most.
    pub cache_warm_count: u32,
    /// How long a warmed profile stays fresh (the chat component's profile TTL).
    pub profile_ttl: Duration,
}

impl JobsConfig {
    pub const DEFAULT_RETENTION_DAYS: u64 = 30;
    pub const DEFAULT_PARTITIONS_AHEAD: u64 = 3;
    pub const DEFAULT_BUDGET_MS: u64 = 20_000;
    pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 1_000;
    pub const DEFAULT_CLEANUP_BATCH: u64 = 5_000;
    pub const DEFAULT_WARM_COUNT: u64 = 200;

    /// Builds the configuration from a variable lookup (`None` or empty: unset).
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name) {
                Ok(Some(value)) if !value.trim().is_empty() => Ok(Some(value)),
                Ok(_) => Ok(None),
                Err(e) => Err(ConfigError::Unreadable {
                    name,
                    reason: e.to_string(),
                }),
            }
        };
        let required = |name: &'static str| get(name)?.ok_or(ConfigError::Missing { name });
        let number = |name: &'static str, default: u64, min: u64, max: u64| match get(name)? {
            Some(value) => parse_ranged(name, &value, min, max),
            None => Ok(default),
        };
        Ok(JobsConfig {
            redis_url: RedisUrl::parse("redis_url", &required("redis_url")?)?,
            pg_url: PgUrl::parse("pg_url", &required("pg_url")?)?,
            history_retention_days: number(
                "history_retention_days",
                Self::DEFAULT_RETENTION_DAYS,
                1,
                3_650,
            )? as u32,
            partitions_ahead_months: number(
                "partitions_ahead_months",
                Self::DEFAULT_PARTITIONS_AHEAD,
                1,
                36,
            )? as u32,
            budget: Duration::from_millis(number(
                "job_budget_ms",
                Self::DEFAULT_BUDGET_MS,
                100,
                3_600_000,
            )?),
            lock_timeout: Duration::from_millis(number(
                "job_lock_timeout_ms",
                Self::DEFAULT_LOCK_TIMEOUT_MS,
                10,
                60_000,
            )?),
            cleanup_batch_size: number(
                "cleanup_batch_size",
                Self::DEFAULT_CLEANUP_BATCH,
                1,
                1_000_000,
            )? as u32,
            cache_warm_count: number("cache_warm_count", Self::DEFAULT_WARM_COUNT, 0, 10_000)?
                as u32,
            profile_ttl: Duration::from_secs(number(
                "profile_cache_ttl_seconds",
                crate::profile::DEFAULT_TTL_SECONDS,
                1,
                86_400,
            )?),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Partitions and retention

/// The default partition of `chat_history`, where rows outside every month land.
pub const DEFAULT_PARTITION: &str = "chat_history_default";

/// A calendar month in UTC: one partition of `chat_history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Month {
    /// A month whose partition name has a four-digit year.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1_000..=9_999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The month containing `ms` (Unix ms, UTC).
    pub fn containing(ms: i64) -> Option<Month> {
        let at = utc(ms)?;
        Month::new(at.year(), at.month())
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The month `n` months later.
    pub fn plus(self, n: u32) -> Option<Month> {
        let index = self.year as i64 * 12 + (self.month as i64 - 1) + n as i64;
        Month::new((index / 12) as i32, (index % 12) as u32 + 1)
    }

    /// The month `n` months earlier.
    pub fn minus(self, n: u32) -> Option<Month> {
        let index = self.year as i64 * 12 + (self.month as i64 - 1) - n as i64;
        Month::new(index.div_euclid(12) as i32, index.rem_euclid(12) as u32 + 1)
    }

    /// The first instant of the month (Unix ms): the partition's lower bound.
    pub fn start_ms(self) -> i64 {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("the first of a valid month exists")
            .timestamp_millis()
    }

    /// The first instant of the next month: the partition's (exclusive) upper bound.
    pub fn end_ms(self) -> i64 {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
            .single()
            .expect("the first of a valid month exists")
            .timestamp_millis()
    }

    /// `chat_history_yYYYYmMM`, as the first migration names them.
    pub fn partition_name(self) -> String {
        format!("chat_history_y{:04}m{:02}", self.year, self.month)
    }

    /// The month of a partition named by [`Month::partition_name`]; `None` for other names.
    pub fn from_partition_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("chat_history_y")?;
        let (year, month) = rest.split_once('m')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        Month::new(year.parse().ok()?, month.parse().ok()?)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// What the cleanup does, given the partitions that exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Month partitions wholly older than the cut-off: detached and dropped, oldest first.
    pub drop: Vec<Month>,
    /// Tables whose rows before the cut-off are deleted in batches: the month partition
    /// that contains the cut-off, and the default partition.
    pub trim: Vec<String>,
}

/// Plans the cleanup for the partitions named `partitions` (other tables are ignored).
pub fn plan_retention(partitions: &[String], cutoff_ms: i64) -> RetentionPlan {
    let mut months: Vec<Month> = partitions
        .iter()
        .filter_map(|name| Month::from_partition_name(name))
        .collect();
    months.sort();
    let mut plan = RetentionPlan::default();
    for month in months {
        if month.end_ms() <= cutoff_ms {
            plan.drop.push(month);
        } else if month.start_ms() < cutoff_ms {
            plan.trim.push(month.partition_name());
        }
    }
    if partitions.iter().any(|name| name == DEFAULT_PARTITION) {
        plan.trim.push(DEFAULT_PARTITION.to_owned());
    }
    plan
}

/// Plans the partition job: the months to create, oldest first.
///
/// Wanted are the current month and `ahead` months after it, so that no insert lands in
/// the default partition, and every month that holds rows in the default partition
/// (`stray_months`) from the cut-off's month up to that horizon, so those rows can move
/// into their month. Strays wholly older than the cut-off are left to the cleanup, which
/// deletes them; strays beyond the horizon move once their month comes within it.
pub fn plan_partitions(
    partitions: &[String],
    stray_months: &[Month],
    now_ms: i64,
    cutoff_ms: i64,
    ahead: u32,
) -> Vec<Month> {
    let existing: Vec<Month> = partitions
        .iter()
        .filter_map(|name| Month::from_partition_name(name))
        .collect();
    let Some(current) = Month::containing(now_ms) else {
        return Vec::new();
    };
    let horizon = current.plus(ahead).unwrap_or(current);
    let mut wanted: Vec<Month> = (0..=ahead).filter_map(|n| current.plus(n)).collect();
    wanted.extend(
        stray_months
            .iter()
            .copied()
            .filter(|m| m.end_ms() > cutoff_ms && *m <= horizon),
    );
    wanted.sort();
    wanted.dedup();
    wanted.retain(|m| !existing.contains(m));
    wanted
}

// ---------------------------------------------------------------------------------------
// Cache metrics

/// How many snapshots the cache metrics series keeps: a day at one per 5 minutes.
pub const CACHE_METRICS_LEN: u64 = 288;

/// Hits and misses of one cache prefix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrefixCounts {
    pub hits: u64,
    pub misses: u64,
    /// Percent, as the seed's `get_cache_stats` reports it.
    pub hit_rate: f64,
}

/// Hits and misses between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub seconds: f64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

/// One point of the cache metrics series. Counters are cumulative (since Redis started
/// or the counters were reset); `window` is the application cache's hit rate since the
/// previous snapshot, which is what an alert on "hit rate below 50 %" wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSnapshot {
    pub at_ms: u64,
    /// The application cache, per prefix (`profile`), from the shared counters.
    pub prefixes: BTreeMap<String, PrefixCounts>,
    /// All prefixes together.
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    /// Redis' own counters (every key lookup, not only the cache's).
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub keyspace_hit_rate: f64,
    pub used_memory_bytes: u64,
    pub evicted_keys: u64,
    pub keys: u64,
    pub window: Option<Window>,
}

impl CacheSnapshot {
    /// Builds a snapshot from the counters hash (`<prefix>:hits`, `:stale`, `:misses`),
    /// the text of Redis `INFO`, the key count and the previous snapshot.
    pub fn new(
        at_ms: u64,
        counters: &HashMap<String, String>,
        info: &str,
        keys: u64,
        previous: Option<&CacheSnapshot>,
    ) -> CacheSnapshot {
        let mut prefixes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (field, value) in counters {
            let Ok(value) = value.trim().parse::<i64>() else {
                continue;
            };
            let value = value.max(0) as u64;
            // Stale answers were served from the cache: they count as hits here.
            if let Some(prefix) = field
                .strip_suffix(":hits")
                .or_else(|| field.strip_suffix(":stale"))
            {
                prefixes.entry(prefix.to_owned()).or_default().0 += value;
            } else if let Some(prefix) = field.strip_suffix(":misses") {
                prefixes.entry(prefix.to_owned()).or_default().1 += value;
            }
        }
        let hits: u64 = prefixes.values().map(|c| c.0).sum();
        let misses: u64 = prefixes.values().map(|c| c.1).sum();
        let keyspace_hits = info_number(info, "keyspace_hits").unwrap_or(0);
        let keyspace_misses = info_number(info, "keyspace_misses").unwrap_or(0);
        let window = previous.and_then(|p| {
            let seconds = at_ms.checked_sub(p.at_ms)? as f64 / 1_000.0;
            // Counters that went down were reset: no window across a reset.
            let hits = hits.checked_sub(p.hits)?;
            let misses = misses.checked_sub(p.misses)?;
            (seconds > 0.0).then(|| Window {
                seconds,
                hits,
                misses,
                hit_rate: crate::cache::hit_rate(hits, misses),
            })
        });
        CacheSnapshot {
            at_ms,
            prefixes: prefixes
                .into_iter()
                .map(|(prefix, (hits, misses))| {
                    let rate = crate::cache::hit_rate(hits, misses);
                    (
                        prefix,
                        PrefixCounts {
                            hits,
                            misses,
                            hit_rate: rate,
                        },
                    )
                })
                .collect(),
            hits,
            misses,
            hit_rate: crate::cache::hit_rate(hits, misses),
            keyspace_hits,
            keyspace_misses,
            keyspace_hit_rate: crate::cache::hit_rate(keyspace_hits, keyspace_misses),
            used_memory_bytes: info_number(info, "used_memory").unwrap_or(0),
            evicted_keys: info_number(info, "evicted_keys").unwrap_or(0),
            keys,
            window,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("snapshots serialize")
    }

    pub fn from_json(text: &[u8]) -> Option<CacheSnapshot> {
        serde_json::from_slice(text).ok()
    }
}

/// A whole-number field of Redis `INFO` output (`name:value` lines).
pub fn info_number(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim_end_matches('\r').split_once(':')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }

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
    fn every_schedule_parses_and_has_the_seed_timing() {
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

    #[test]
    fn status_shows_the_next_run_in_the_seed_format() {
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

    #[test]
    fn acquire_replies_parse() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(Acquired::parse(&s(&["ok", "t"])), Some(Acquired::Lease));
        assert_eq!(
            Acquired::parse(&s(&["busy", "x"])),
            Some(Acquired::Busy { holder: "x".into() })
        );
        assert_eq!(
            Acquired::parse(&s(&["done", "42"])),
            Some(Acquired::SlotDone { slot_ms: 42 })
        );
        assert_eq!(Acquired::parse(&s(&["what", "x"])), None);
        assert_eq!(Acquired::parse(&s(&["ok"])), None);
    }

    #[test]
    fn script_digests_match_the_scripts() {
        for (script, digest) in [
            (ACQUIRE_SCRIPT, ACQUIRE_SHA1),
            (RENEW_SCRIPT, RENEW_SHA1),
            (FINISH_SCRIPT, FINISH_SHA1),
        ] {
            assert_eq!(
                sha1_smol::Sha1::from(script).digest().to_string(),
                digest,
                "update the digest after changing the script"
            );
        }
    }

    #[test]
    fn the_lease_outlives_the_budget() {
        let ttl = lease_ttl(Duration::from_secs(20), Duration::from_secs(1));
        assert_eq!(ttl, Duration::from_secs(51));
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| Ok(map.get(name).cloned())
    }

    #[test]
    fn config_has_defaults_and_names_bad_variables() {
        let base = [
            ("redis_url", "redis://127.0.0.1:6390"),
            ("pg_url", "postgres://evolve:evolve@127.0.0.1:5440/evolve"),
        ];
        let config = JobsConfig::try_from_lookup(lookup(&base)).unwrap();
        assert_eq!(config.history_retention_days, 30);
        assert_eq!(config.partitions_ahead_months, 3);
        assert_eq!(config.budget, Duration::from_secs(20));
        assert_eq!(config.lock_timeout, Duration::from_secs(1));
        assert_eq!(config.cleanup_batch_size, 5_000);
        assert_eq!(config.cache_warm_count, 200);
        assert_eq!(config.profile_ttl, Duration::from_secs(300));

        let mut pairs = base.to_vec();
        pairs.push(("partitions_ahead_months", "0"));
        let error = JobsConfig::try_from_lookup(lookup(&pairs)).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    name: "partitions_ahead_months",
                    ..
                }
            ),
            "{error}"
        );
        let error = JobsConfig::try_from_lookup(lookup(&base[..1])).unwrap_err();
        assert_eq!(error, ConfigError::Missing { name: "pg_url" });
    }

    fn month(year: i32, month: u32) -> Month {
        Month::new(year, month).unwrap()
    }

    #[test]
    fn months_have_utc_bounds_and_partition_names() {
        let m = month(2024, 12);
        assert_eq!(m.partition_name(), "chat_history_y2024m12");
        assert_eq!(m.start_ms(), ms("2024-12-01T00:00:00Z") as i64);
        assert_eq!(m.end_ms(), ms("2025-01-01T00:00:00Z") as i64);
        assert_eq!(m.plus(1), Some(month(2025, 1)));
        assert_eq!(m.plus(14), Some(month(2026, 2)));
        assert_eq!(m.minus(12), Some(month(2023, 12)));
        assert_eq!(month(2025, 1).minus(1), Some(m));
        assert_eq!(month(2025, 3).minus(14), Some(month(2024, 1)));
        assert_eq!(month(2024, 2).end_ms(), ms("2024-03-01T00:00:00Z") as i64);
        assert_eq!(
            Month::containing(ms("2025-01-31T23:59:59.999Z") as i64),
            Some(month(2025, 1))
        );
        assert_eq!(
            Month::containing(ms("2025-02-01T00:00:00Z") as i64),
            Some(month(2025, 2))
        );
        assert_eq!(Month::from_partition_name("chat_history_y2024m12"), Some(m));
        for bad in [
            "chat_history_default",
            "chat_history_y2024m13",
            "chat_history_y2024m00",
            "chat_history_y24m01",
            "chat_history_y2024m1",
            "chat_history_y2024m012",
            "chat_history_y+024m01",
            "users",
        ] {
            assert_eq!(Month::from_partition_name(bad), None, "{bad}");
        }
        assert_eq!(Month::new(2024, 0), None);
        assert_eq!(Month::new(999, 1), None);
        assert_eq!(month(2024, 3).to_string(), "2024-03");
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn retention_drops_wholly_expired_months_and_trims_the_boundary() {
        let partitions = names(&[
            "chat_history_y2025m03",
            "chat_history_y2024m12",
            "chat_history_default",
            "chat_history_y2025m01",
            "chat_history_y2025m02",
            "chat_history_y2025m04",
            "chat_history_extra",
        ]);
        let cutoff = ms("2025-02-08T12:00:00Z") as i64;
        let plan = plan_retention(&partitions, cutoff);
        assert_eq!(plan.drop, vec![month(2024, 12), month(2025, 1)]);
        assert_eq!(
            plan.trim,
            names(&["chat_history_y2025m02", "chat_history_default"])
        );

        // A cut-off exactly on a month boundary drops the month before and trims nothing
        // but the default partition.
        let plan = plan_retention(&partitions, ms("2025-02-01T00:00:00Z") as i64);
        assert_eq!(plan.drop, vec![month(2024, 12), month(2025, 1)]);
        assert_eq!(plan.trim, names(&["chat_history_default"]));

        assert_eq!(plan_retention(&[], cutoff), RetentionPlan::default());
    }

    #[test]
    fn partitions_are_planned_ahead_and_for_strays_within_retention() {
        let now = ms("2025-03-10T12:00:00Z") as i64;
        let cutoff = crate::retention::cutoff_ms(now, 30);
        let existing = names(&[
            "chat_history_y2025m03",
            "chat_history_y2025m04",
            "chat_history_default",
        ]);
        assert_eq!(
            plan_partitions(&existing, &[], now, cutoff, 3),
            vec![month(2025, 5), month(2025, 6)]
        );
        // Strays: one month wholly expired (left to the cleanup), the cut-off's month,
        // and one beyond the horizon (left until it comes within it).
        let strays = [month(2025, 1), month(2025, 2), month(2025, 9)];
        assert_eq!(
            plan_partitions(&existing, &strays, now, cutoff, 3),
            vec![month(2025, 2), month(2025, 5), month(2025, 6)]
        );
        // Nothing to do when everything exists.
        let all = names(&[
            "chat_history_y2025m03",
            "chat_history_y2025m04",
            "chat_history_y2025m05",
            "chat_history_y2025m06",
        ]);
        assert!(plan_partitions(&all, &[], now, cutoff, 3).is_empty());
        // Across a year end.
        let december = ms("2025-12-31T23:00:00Z") as i64;
        assert_eq!(
            plan_partitions(&[], &[], december, december, 1),
            vec![month(2025, 12), month(2026, 1)]
        );
    }

    #[test]
    fn snapshots_sum_prefixes_and_compute_the_window() {
        let counters: HashMap<String, String> = [
            ("profile:hits", "90"),
            ("profile:misses", "10"),
            ("other:hits", "0"),
            ("other:misses", "5"),
            ("junk", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let info = "# Stats\r\nkeyspace_hits:300\r\nkeyspace_misses:100\r\nevicted_keys:2\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        let first = CacheSnapshot::new(1_000, &counters, info, 42, None);
        assert_eq!(first.prefixes["profile"].hit_rate, 90.0);
        assert_eq!(first.prefixes["other"].misses, 5);
        assert_eq!((first.hits, first.misses), (90, 15));
        assert_eq!(first.keyspace_hit_rate, 75.0);
        assert_eq!(first.used_memory_bytes, 1_048_576);
        assert_eq!(first.evicted_keys, 2);
        assert_eq!(first.keys, 42);
        assert_eq!(first.window, None);

        let mut later_counters = counters.clone();
        later_counters.insert("profile:hits".into(), "120".into());
        later_counters.insert("profile:misses".into(), "20".into());
        let second = CacheSnapshot::new(301_000, &later_counters, info, 42, Some(&first));
        let window = second.window.unwrap();
        assert_eq!((window.hits, window.misses), (30, 10));
        assert_eq!(window.hit_rate, 75.0);
        assert_eq!(window.seconds, 300.0);
        // After a reset the counters went down: no window.
        let reset = CacheSnapshot::new(601_000, &HashMap::new(), info, 0, Some(&second));
        assert_eq!(reset.window, None);
        assert_eq!(
            CacheSnapshot::from_json(second.to_json().as_bytes()),
            Some(second)
        );
    }

    #[test]
    fn info_numbers_are_read_by_exact_name() {
        let info = "used_memory:10\r\nused_memory_rss:20\r\n";
        assert_eq!(info_number(info, "used_memory"), Some(10));
        assert_eq!(info_number(info, "used_memory_rss"), Some(20));
        assert_eq!(info_number(info, "used"), None);
    }
}
