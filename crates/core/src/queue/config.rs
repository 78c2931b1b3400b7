//! How drains run, from Spin variables, validated once per drain.

use std::fmt;
use std::time::Duration;

use crate::variables::{ConfigError, Variables};

/// The queue's settings (see `spin.toml` for each variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The pub/sub channel an enqueue publishes to, which the worker's Redis trigger
    /// listens on; empty: no wake-up (the cron drain still runs).
    pub channel: String,
    /// One drain works at most this long, then leaves the rest to the next.
    pub drain_budget: Duration,
    /// One task's deadline.
    pub task_timeout: Duration,
    /// A delivery idle this long belongs to a drain that died: another reclaims it.
    /// Longer than `task_timeout`, so a live drain's task is never taken from it.
    pub visibility: Duration,
    /// Deliveries of one entry after which it goes to the dead letters unfinished.
    pub max_deliveries: u32,
    /// Entries one claim takes at most.
    pub batch: u32,
    /// Tasks one drain runs at once (on WASIp2 they run one after another).
    pub concurrency: u32,
    /// Retry backoff: the first retry waits up to this, doubling per attempt.
    pub retry_base: Duration,
    /// The longest retry wait.
    pub retry_cap: Duration,
}

impl QueueConfig {
    /// Builds the configuration from a variable lookup (`None` or empty: the default).
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        let number = |name, default, min, max| v.number(name, default, min, max);
        let ms = Duration::from_millis;
        let channel = v.get("queue_channel")?.unwrap_or_default();
        if channel.len() > 128 || channel.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError::Invalid {
                name: "queue_channel",
                reason: "at most 128 characters, no spaces".to_owned(),
            });
        }
        let config = QueueConfig {
            channel,
            drain_budget: ms(number("queue_drain_budget_ms", 25_000, 500, 3_600_000)?),
            task_timeout: ms(number("queue_task_timeout_ms", 20_000, 100, 3_600_000)?),
            visibility: ms(number("queue_visibility_ms", 60_000, 200, 86_400_000)?),
            max_deliveries: number("queue_max_deliveries", 5, 1, 100)? as u32,
            batch: number("queue_batch", 16, 1, 1_000)? as u32,
            concurrency: number("queue_concurrency", 4, 1, 64)? as u32,
            retry_base: ms(number("queue_retry_base_ms", 1_000, 1, 3_600_000)?),
            retry_cap: ms(number("queue_retry_cap_ms", 300_000, 1, 86_400_000)?),
        };
        if config.visibility <= config.task_timeout {
            return Err(ConfigError::Invalid {
                name: "queue_visibility_ms",
                reason: "must be longer than queue_task_timeout_ms, or live tasks are taken from their drains".to_owned(),
            });
        }
        Ok(config)
    }

    /// The wait before retry number `attempt` (1 for the first retry): full jitter over
    /// an exponential ceiling, so retries of many failed tasks spread out instead of
    /// arriving together. `random` is any uniformly random 64-bit value.
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let base = self.retry_base.as_millis() as u64;
        let ceiling = base
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
            .min(self.retry_cap.as_millis() as u64)
            .max(1);
        Duration::from_millis(random % (ceiling + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<QueueConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        QueueConfig::try_from_lookup(|name| Ok::<_, String>(map.get(name).cloned()))
    }

    #[test]
    fn defaults_fit_a_spin_request() {
        let c = config(&[]).unwrap();
        assert!(c.drain_budget <= Duration::from_secs(30));
        assert!(c.visibility > c.task_timeout);
        assert_eq!(c.channel, "");
    }

    #[test]
    fn visibility_must_outlast_a_task() {
        let error = config(&[
            ("queue_task_timeout_ms", "5000"),
            ("queue_visibility_ms", "5000"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("queue_visibility_ms"), "{error}");
        assert!(config(&[("queue_channel", "a b")]).is_err());
        assert!(config(&[("queue_batch", "0")]).is_err());
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        let c = config(&[
            ("queue_retry_base_ms", "100"),
            ("queue_retry_cap_ms", "1000"),
        ])
        .unwrap();
        assert_eq!(
            c.backoff(1, u64::MAX - 1),
            Duration::from_millis((u64::MAX - 1) % 101)
        );
        for attempt in 1..40 {
            let ceiling = (100u64 << (attempt - 1).min(30)).min(1000);
            for random in [0, 1, 7, 99, 12345, u64::MAX] {
                let wait = c.backoff(attempt, random).as_millis() as u64;
                assert!(wait <= ceiling, "attempt {attempt}: {wait} > {ceiling}");
            }
            assert_eq!(c.backoff(attempt, ceiling).as_millis() as u64, ceiling);
        }
        assert_eq!(c.backoff(1, 0), Duration::ZERO);
    }
}
