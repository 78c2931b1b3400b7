//! Lua scripts on Redis, sent by digest.
//!
//! `EVALSHA` sends 40 bytes instead of the script; Redis keeps scripts until restarted or
//! `SCRIPT FLUSH`ed, so the first call after that gets `NOSCRIPT` and is repeated once
//! with `EVAL`, which also puts the script back in Redis' cache for everyone else.

use crate::redis::{Redis, RedisError, RedisParameter, RedisResult};

/// A script and the SHA-1 of its text (kept in step by a unit test where it is defined).
#[derive(Debug, Clone, Copy)]
pub struct LuaScript {
    pub source: &'static str,
    pub sha1: &'static str,
}

impl LuaScript {
    pub const fn new(source: &'static str, sha1: &'static str) -> Self {
        LuaScript { source, sha1 }
    }

    /// Runs the script with `keys` as `KEYS` and `args` as `ARGV`; the reply flattened
    /// the way Spin's Redis interface returns it.
    pub async fn run(
        &self,
        redis: &Redis,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Vec<RedisResult>, RedisError> {
        let tail = || {
            std::iter::once(RedisParameter::Int64(keys.len() as i64))
                .chain(keys.iter().chain(args).map(|s| bytes(s)))
        };
        let by_digest: Vec<RedisParameter> =
            std::iter::once(bytes(self.sha1)).chain(tail()).collect();
        match redis.execute("EVALSHA", &by_digest).await {
            Err(error) if is_noscript(&error) => {
                let by_source: Vec<RedisParameter> =
                    std::iter::once(bytes(self.source)).chain(tail()).collect();
                redis.execute("EVAL", &by_source).await
            }
            other => other,
        }
    }
}

/// A duration as a script argument: whole milliseconds, at least 1 (Redis refuses a
/// zero expiry).
pub fn ms(duration: std::time::Duration) -> String {
    duration.as_millis().max(1).to_string()
}

fn bytes(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

/// Redis answers `NOSCRIPT No matching script...`; clients render the code differently
/// (`NOSCRIPT`, `NoScriptError`), so match loosely.
pub(crate) fn is_noscript(error: &RedisError) -> bool {
    error.message.to_ascii_lowercase().contains("noscript")
}
