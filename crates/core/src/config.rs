//! The typed configuration of the `ready` and `chat` components, read from Spin variables
//! (through `crate::variables`) and validated, in the pieces the routes read.

use std::fmt;
use std::time::Duration;

use crate::breaker::BreakerThresholds;
use crate::llm::LlmConfig;
use crate::variables::{ConfigError, DependencyTimeout, PgUrl, RedisUrl, Secret, Variables};

/// How long one call to Redis or PostgreSQL may take before the request gives up on it
/// and on its connection, answering as if that store were down. Enforced on the WASIp3
/// build; a WASIp2 host call cannot be abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub redis: Duration,
    pub pg: Duration,
}

impl Deadlines {
    pub const DEFAULT_REDIS_MS: u64 = 250;
    pub const DEFAULT_PG_MS: u64 = 2_000;

    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        Ok(Deadlines {
            redis: Duration::from_millis(v.number(
                "redis_timeout_ms",
                Self::DEFAULT_REDIS_MS,
                10,
                60_000,
            )?),
            pg: Duration::from_millis(v.number(
                "pg_timeout_ms",
                Self::DEFAULT_PG_MS,
                10,
                600_000,
            )?),
        })
    }
}

/// Everything the `ready` component needs, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyConfig {
    pub redis_url: RedisUrl,
    pub pg_url: PgUrl,
    /// How long the LLM breaker stays open, needed to compute `retry_in`.
    pub breaker_open: Duration,
    pub dependency_timeout: DependencyTimeout,
}

impl ReadyConfig {
    /// Used when `breaker_open_seconds` is not set: the FastAPI service's recovery timeout.
    pub const DEFAULT_BREAKER_OPEN_SECONDS: u64 = 60;
    const MAX_BREAKER_OPEN_SECONDS: u64 = 86_400;

    /// Builds the configuration from a variable lookup that returns `None` for unset
    /// variables. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::try_from_lookup(|name| Ok::<_, std::convert::Infallible>(lookup(name)))
    }

    /// Like [`ReadyConfig::from_lookup`], for a lookup that can fail (a variables
    /// provider that is down); the failure is reported with the variable's name.
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        let redis_url = RedisUrl::parse("redis_url", &v.required("redis_url")?)?;
        let pg_url = PgUrl::parse("pg_url", &v.required("pg_url")?)?;
        let breaker_open_seconds = v.number(
            "breaker_open_seconds",
            Self::DEFAULT_BREAKER_OPEN_SECONDS,
            1,
            Self::MAX_BREAKER_OPEN_SECONDS,
        )?;
        let dependency_timeout = match v.get("dependency_timeout_ms")? {
            Some(value) => DependencyTimeout::parse("dependency_timeout_ms", &value)?,
            None => DependencyTimeout::DEFAULT,
        };
        Ok(ReadyConfig {
            redis_url,
            pg_url,
            breaker_open: Duration::from_secs(breaker_open_seconds),
            dependency_timeout,
        })
    }
}

/// What every `chat` route reads: where the stores are, how long one call to them may
/// take, and the secret that verifies the caller's token. The rest is read by the routes
/// that use it ([`ProfileSettings`], [`HistorySettings`], [`TurnSettings`]): on Spin every
/// variable is resolved through the providers, so a cached profile read resolves seven
/// variables, not the twenty a chat turn needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAccess {
    pub redis_url: RedisUrl,
    pub pg_url: PgUrl,
    pub jwt_secret: Secret,
    pub deadlines: Deadlines,
}

impl ChatAccess {
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(&lookup);
        Ok(ChatAccess {
            redis_url: RedisUrl::parse("redis_url", &v.required("redis_url")?)?,
            pg_url: PgUrl::parse("pg_url", &v.required("pg_url")?)?,
            jwt_secret: Secret::new(v.required("jwt_secret")?),
            deadlines: Deadlines::try_from_lookup(&lookup)?,
        })
    }
}

/// How the caller's profile is cached (every route reads the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSettings {
    pub profile_ttl: Duration,
    /// One cached read in this many is written to the hit counters.
    pub cache_hit_sample: u32,
}

impl ProfileSettings {
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        Ok(ProfileSettings {
            profile_ttl: Duration::from_secs(v.number(
                "profile_cache_ttl_seconds",
                crate::profile::DEFAULT_TTL_SECONDS,
                1,
                86_400,
            )?),
            cache_hit_sample: v.number("cache_hit_sample", 64, 1, 1_000)? as u32,
        })
    }
}

/// How far back the chat history reaches (history pages and a turn's prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    pub retention_days: u32,
}

impl HistorySettings {
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        Ok(HistorySettings {
            retention_days: v.number("history_retention_days", 30, 1, 3_650)? as u32,
        })
    }
}

/// What a chat turn adds: its limits, the LLM and its circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSettings {
    /// Earlier turns sent to the LLM with a new message.
    pub history_turns: u32,
    /// Chat turns per user per minute; 0 turns the limit off.
    pub rate_limit_per_minute: u32,
    pub max_message_chars: usize,
    pub llm: LlmConfig,
    pub breaker: BreakerThresholds,
    /// Every this many user turns a dialog analysis is enqueued; 0 turns it off.
    pub analysis_every_turns: u32,
    /// The work queue's wake-up channel.
    pub queue_channel: String,
}

impl TurnSettings {
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(&lookup);
        // The origin alone: it is also the component's allowed_outbound_hosts entry,
        // which Spin refuses when it has a path.
        if let Some(base_url) = v.get("gemini_base_url")? {
            let has_path = base_url
                .trim_end_matches('/')
                .split_once("://")
                .is_some_and(|(_, rest)| rest.contains('/'));
            if has_path {
                return Err(ConfigError::Invalid {
                    name: "gemini_base_url",
                    reason: "expected scheme://host[:port] without a path".to_owned(),
                });
            }
        }
        Ok(TurnSettings {
            history_turns: v.number("history_turns", 10, 0, 100)? as u32,
            rate_limit_per_minute: v.number("chat_rate_limit_per_minute", 20, 0, 1_000_000)? as u32,
            max_message_chars: v.number("chat_max_message_chars", 4_000, 1, 16_000)? as usize,
            llm: LlmConfig::try_from_lookup(&lookup)?,
            breaker: BreakerThresholds::try_from_lookup(
                &lookup,
                crate::llm::probe_lease(&lookup)?,
            )?,
            analysis_every_turns: v.number("analysis_every_turns", 10, 0, 100_000)? as u32,
            queue_channel: crate::queue::QueueConfig::try_from_lookup(&lookup)?.channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("redis_url", "redis://127.0.0.1:6390"),
        ("pg_url", "postgres://evolve:evolve@127.0.0.1:5440/evolve"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut pairs: Vec<_> = BASE
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        pairs.extend_from_slice(extra);
        pairs
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset() {
        let config = ReadyConfig::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(config.redis_url.expose(), "redis://127.0.0.1:6390");
        assert_eq!(
            config.pg_url.expose(),
            "postgres://evolve:evolve@127.0.0.1:5440/evolve"
        );
        assert_eq!(config.breaker_open, Duration::from_secs(60));
        assert_eq!(config.dependency_timeout, DependencyTimeout::DEFAULT);
    }

    #[test]
    fn reads_numbers() {
        let pairs = with(&[
            ("breaker_open_seconds", "30"),
            ("dependency_timeout_ms", " 250 "),
        ]);
        let config = ReadyConfig::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(config.breaker_open, Duration::from_secs(30));
        assert_eq!(
            config.dependency_timeout.as_duration(),
            Duration::from_millis(250)
        );
        assert_eq!(config.dependency_timeout.as_millis_f64(), 250.0);
    }

    #[test]
    fn errors_name_the_variable() {
        let err = ReadyConfig::from_lookup(lookup(&[("pg_url", "postgres://h/db")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing { name: "redis_url" });
        assert_eq!(err.to_string(), "variable `redis_url` is not set");

        let pairs = with(&[("redis_url", "   ")]);
        let err = ReadyConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(err, ConfigError::Missing { name: "redis_url" });

        let pairs = with(&[("pg_url", "mysql://u:p@h/db")]);
        let err = ReadyConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { name: "pg_url", .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("u:p"), "{err}");

        let pairs = with(&[("redis_url", "redis://:secret@/0")]);
        let err = ReadyConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(err.to_string().contains("names no host"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");

        let pairs = with(&[("breaker_open_seconds", "soon")]);
        let err = ReadyConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "breaker_open_seconds",
                ..
            }
        ));

        let pairs = with(&[("dependency_timeout_ms", "0")]);
        let err = ReadyConfig::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable `dependency_timeout_ms` is invalid: 0 is outside 1 to 60000"
        );
    }

    #[test]
    fn lookup_failures_are_reported_with_the_name() {
        let err = ReadyConfig::try_from_lookup(|name| {
            if name == "pg_url" {
                Err("provider unavailable")
            } else {
                Ok(Some("redis://localhost".to_owned()))
            }
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable `pg_url` could not be read: provider unavailable"
        );
    }

    #[test]
    fn debug_output_hides_passwords() {
        let pairs = with(&[("redis_url", "rediss://default:hunter2@cache.example:6380/0")]);
        let config = ReadyConfig::from_lookup(lookup(&pairs)).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(":evolve@"), "{shown}");
        assert!(
            shown.contains("rediss://default:***@cache.example:6380/0"),
            "{shown}"
        );
        assert_eq!(
            config.pg_url.to_string(),
            "postgres://evolve:***@127.0.0.1:5440/evolve"
        );
    }

    /// The names a reader asks for, with every variable unset.
    fn names_read<C>(
        read: impl Fn(&dyn Fn(&str) -> Result<Option<String>, String>) -> C,
    ) -> Vec<String> {
        let names = std::cell::RefCell::new(Vec::new());
        let base: HashMap<&str, &str> = BASE
            .iter()
            .copied()
            .chain([("jwt_secret", "s"), ("gemini_api_key", "k")])
            .collect();
        let lookup = |name: &str| -> Result<Option<String>, String> {
            names.borrow_mut().push(name.to_owned());
            Ok(base.get(name).map(|v| v.to_string()))
        };
        let _ = read(&lookup);
        let mut names = names.into_inner();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn a_cached_profile_read_resolves_only_its_seven_variables() {
        let mut names = names_read(|l| ChatAccess::try_from_lookup(l).map(drop));
        names.extend(names_read(|l| {
            ProfileSettings::try_from_lookup(l).map(drop)
        }));
        names.sort();
        assert_eq!(
            names,
            [
                "cache_hit_sample",
                "jwt_secret",
                "pg_timeout_ms",
                "pg_url",
                "profile_cache_ttl_seconds",
                "redis_timeout_ms",
                "redis_url",
            ]
        );
    }

    #[test]
    fn a_turn_reads_the_llm_and_breaker_settings() {
        let names = names_read(|l| TurnSettings::try_from_lookup(l).map(drop));
        for name in [
            "gemini_api_key",
            "llm_timeout_ms",
            "breaker_failure_threshold",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "jwt_secret"));
    }

    #[test]
    fn store_deadlines_default_and_are_bounded() {
        let none = |_: &str| Ok::<_, String>(None);
        let d = Deadlines::try_from_lookup(none).unwrap();
        assert_eq!(d.redis, Duration::from_millis(250));
        assert_eq!(d.pg, Duration::from_millis(2_000));
        let zero =
            |name: &str| Ok::<_, String>((name == "redis_timeout_ms").then(|| "0".to_owned()));
        assert!(Deadlines::try_from_lookup(zero).is_err());
    }
}
