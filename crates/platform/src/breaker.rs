//! The shared LLM circuit breaker on Redis: `acquire` before a call, `record` after it.
//!
//! Each is one Lua script ([`evolve_core::breaker::ACQUIRE_SCRIPT`],
//! [`evolve_core::breaker::RECORD_SCRIPT`]) run by digest on the request's one Redis
//! connection, so every decision is atomic across instances. The rules and their tests
//! are in `evolve_core::breaker`; this module only moves arguments and replies.

use crate::redis::{Redis, RedisError, RedisResult};
use crate::script::LuaScript;
use evolve_core::breaker::{
    self, BreakerParseError, BreakerState, BreakerStats, BreakerThresholds, Decision, Outcome,
    ProbeId,
};
use evolve_core::keys;

const ACQUIRE: LuaScript = LuaScript::new(breaker::ACQUIRE_SCRIPT, breaker::ACQUIRE_SHA1);
const RECORD: LuaScript = LuaScript::new(breaker::RECORD_SCRIPT, breaker::RECORD_SHA1);

/// The breaker, as seen from one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    thresholds: BreakerThresholds,
    key: String,
}

impl Breaker {
    /// The application's breaker, in [`keys::BREAKER_STATE`].
    pub fn new(thresholds: BreakerThresholds) -> Self {
        Self::with_key(thresholds, keys::BREAKER_STATE)
    }

    /// A breaker kept in another hash (tests use their own).
    pub fn with_key(thresholds: BreakerThresholds, key: impl Into<String>) -> Self {
        Breaker {
            thresholds,
            key: key.into(),
        }
    }

    pub fn thresholds(&self) -> &BreakerThresholds {
        &self.thresholds
    }

    /// May a call go to the LLM now? `now_ms` is Unix time in milliseconds.
    pub async fn acquire(&self, redis: &Redis, now_ms: u64) -> Result<Decision, RedisError> {
        let args = self.thresholds.acquire_args(now_ms);
        let reply = ACQUIRE
            .run(redis, &[&self.key], &args.each_ref().map(String::as_str))
            .await?;
        let bad = |error: BreakerParseError| bad_reply("breaker acquire", error.to_string());
        match reply.as_slice() {
            [decision, RedisResult::Int64(retry_in_ms), RedisResult::Int64(probe_id)] => {
                Decision::from_reply(&text(decision)?, *retry_in_ms, *probe_id).map_err(bad)
            }
            other => Err(bad_reply("breaker acquire", format!("{other:?}"))),
        }
    }

    /// Reports how a call let through by [`Breaker::acquire`] went; `probe` is the
    /// decision's [`Decision::probe`]. Returns the breaker's new state.
    pub async fn record(
        &self,
        redis: &Redis,
        outcome: Outcome,
        probe: Option<ProbeId>,
        now_ms: u64,
    ) -> Result<BreakerState, RedisError> {
        let args = self.thresholds.record_args(outcome, probe, now_ms);
        let reply = RECORD
            .run(redis, &[&self.key], &args.each_ref().map(String::as_str))
            .await?;
        match reply.as_slice() {
            [state] => {
                let state = text(state)?;
                BreakerState::from_stored(&state)
                    .ok_or_else(|| bad_reply("breaker record", format!("state {state:?}")))
            }
            other => Err(bad_reply("breaker record", format!("{other:?}"))),
        }
    }

    /// The operator's view: state, counters, success rate and `retry_in`.
    pub async fn stats(&self, redis: &Redis, now_ms: u64) -> Result<BreakerStats, RedisError> {
        let fields = redis.hgetall(&self.key).await?;
        let open_ms = u64::try_from(self.thresholds.open.as_millis()).unwrap_or(u64::MAX);
        breaker::parse_stats(&fields, open_ms, now_ms)
            .map_err(|error| bad_reply("breaker stats", error.to_string()))
    }
}

fn text(item: &RedisResult) -> Result<String, RedisError> {
    match item {
        RedisResult::Binary(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        RedisResult::Status(status) => Ok(status.clone()),
        other => Err(bad_reply(
            "breaker",
            format!("expected text, got {other:?}"),
        )),
    }
}

fn bad_reply(operation: &str, message: String) -> RedisError {
    RedisError {
        operation: operation.to_owned(),
        message: format!("unexpected reply: {message}"),
    }
}
