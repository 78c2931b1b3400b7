//! What a drain needs, from Spin variables: the stores, the queue's settings, and the
//! models its tasks call (the chat model for dialog analysis, a speech model for voice).

use std::fmt;
use std::time::Duration;

use super::config::QueueConfig;
use crate::breaker::BreakerThresholds;
use crate::config::Deadlines;
use crate::llm::{self, Endpoint, LlmConfig};
use crate::variables::{ConfigError, PgUrl, RedisUrl, Variables};

/// Everything a drain needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub redis_url: RedisUrl,
    pub pg_url: PgUrl,
    pub deadlines: Deadlines,
    pub queue: QueueConfig,
    /// The chat model (dialog analysis).
    pub llm: LlmConfig,
    /// The speech model: the chat model's origin and key, its own model.
    pub tts: LlmConfig,
    /// The prebuilt voice voice messages are spoken in.
    pub voice: String,
    /// Both breakers' thresholds (each model has its own breaker state).
    pub breaker: BreakerThresholds,
    /// Chat history older than this is not analysed or voiced.
    pub retention_days: u32,
    /// Recipients per second one broadcast is delivered at (0: unpaced).
    pub broadcast_rate: u32,
}

impl WorkerConfig {
    pub const DEFAULT_TTS_MODEL: &str = "gemini-2.5-flash-preview-tts";
    pub const DEFAULT_VOICE: &str = "Kore";

    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(&lookup);
        let llm = LlmConfig::try_from_lookup(&lookup)?;
        let tts_model = v.get("gemini_tts_model")?;
        let base_url = v.get("gemini_base_url")?;
        let tts = LlmConfig {
            endpoint: Endpoint::new(
                base_url.as_deref().unwrap_or(LlmConfig::DEFAULT_BASE_URL),
                tts_model.as_deref().unwrap_or(Self::DEFAULT_TTS_MODEL),
            )?,
            ..llm.clone()
        };
        let voice = v
            .get("tts_voice")?
            .unwrap_or_else(|| Self::DEFAULT_VOICE.to_owned());
        if voice.len() > 64 || !voice.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ConfigError::Invalid {
                name: "tts_voice",
                reason: "a prebuilt voice name (letters, digits, '-')".to_owned(),
            });
        }
        Ok(WorkerConfig {
            redis_url: RedisUrl::parse("redis_url", &v.required("redis_url")?)?,
            pg_url: PgUrl::parse("pg_url", &v.required("pg_url")?)?,
            deadlines: Deadlines::try_from_lookup(&lookup)?,
            queue: QueueConfig::try_from_lookup(&lookup)?,
            llm,
            tts,
            voice,
            breaker: BreakerThresholds::try_from_lookup(&lookup, llm::probe_lease(&lookup)?)?,
            retention_days: v.number("history_retention_days", 30, 1, 3_650)? as u32,
            broadcast_rate: v.number("broadcast_recipients_per_second", 5_000, 0, 1_000_000)?
                as u32,
        })
    }

    /// The budget of one model call made by a task with `deadline`: the task's deadline
    /// bounds every attempt and wait of the call.
    pub fn call_budget(config: &LlmConfig, deadline: Duration) -> LlmConfig {
        let mut config = config.clone();
        config.retry.total_budget = config.retry.total_budget.min(deadline);
        config.attempt_timeout = config.attempt_timeout.min(deadline);
        config
    }
}
