//! What the jobs need from Spin variables, read and validated once per run.

use std::fmt;
use std::time::Duration;

use crate::variables::{parse_ranged, ConfigError, PgUrl, RedisUrl};

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
    /// Store deadlines; a job's PostgreSQL calls may take its whole budget (a batch
    /// delete or a partition move is not a request's quick read).
    pub deadlines: crate::config::Deadlines,
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
        let budget = Duration::from_millis(number(
            "job_budget_ms",
            Self::DEFAULT_BUDGET_MS,
            100,
            3_600_000,
        )?);
        let deadlines = crate::config::Deadlines::try_from_lookup(&lookup)?;
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
            budget,
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
            deadlines: crate::config::Deadlines {
                pg: deadlines.pg.max(budget),
                ..deadlines
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}
