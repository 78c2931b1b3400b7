//! The per-user rate limit and `Idempotency-Key` records on Redis: the scripts of
//! `evolve_core::limits`, each one round trip on the request's connection.

use evolve_core::limits::{
    self, Begin, Claim, RateDecision, RateLimit, StoredResponse, IDEMPOTENCY_KEEP,
    IDEMPOTENCY_LEASE,
};

use crate::redis::{Redis, RedisError, RedisResult};
use crate::script::LuaScript;

const RATE_LIMIT: LuaScript = LuaScript::new(limits::RATE_LIMIT_SCRIPT, limits::RATE_LIMIT_SHA1);
const BEGIN: LuaScript = LuaScript::new(
    limits::IDEMPOTENCY_BEGIN_SCRIPT,
    limits::IDEMPOTENCY_BEGIN_SHA1,
);
const FINISH: LuaScript = LuaScript::new(
    limits::IDEMPOTENCY_FINISH_SCRIPT,
    limits::IDEMPOTENCY_FINISH_SHA1,
);
const ABANDON: LuaScript = LuaScript::new(
    limits::IDEMPOTENCY_ABANDON_SCRIPT,
    limits::IDEMPOTENCY_ABANDON_SHA1,
);

fn bad_reply(operation: &str, message: impl ToString) -> RedisError {
    RedisError {
        operation: operation.to_owned(),
        message: message.to_string(),
    }
}

/// Counts one turn against `key`'s window, if it fits.
pub async fn check_rate(
    redis: &Redis,
    key: &str,
    limit: &RateLimit,
) -> Result<RateDecision, RedisError> {
    let args = limit.script_args(crate::time::now_ms());
    let reply = RATE_LIMIT
        .run(redis, &[key], &args.each_ref().map(String::as_str))
        .await?;
    let numbers: Vec<i64> = reply
        .iter()
        .map(|item| match item {
            RedisResult::Int64(n) => Ok(*n),
            other => Err(bad_reply(
                "rate limit",
                format!("unexpected item {other:?}"),
            )),
        })
        .collect::<Result<_, _>>()?;
    limit
        .decision(&numbers)
        .map_err(|e| bad_reply("rate limit", e))
}

/// Claims `key` for this request, or finds what an earlier request with it left.
pub async fn begin(redis: &Redis, key: &str, claim: &Claim) -> Result<Begin, RedisError> {
    let args = claim.begin_args(IDEMPOTENCY_LEASE);
    let reply = BEGIN
        .run(redis, &[key], &args.each_ref().map(String::as_str))
        .await?;
    let stored = match reply.first() {
        None | Some(RedisResult::Nil) => None,
        Some(RedisResult::Binary(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(RedisResult::Status(text)) => Some(text.clone()),
        // Lua `false` reaches the client as nil; an integer is not a record.
        Some(RedisResult::Int64(_)) => None,
    };
    claim
        .begin_outcome(stored.as_deref())
        .map_err(|e| bad_reply("idempotency begin", e))
}

/// Replaces this request's claim with its answer, kept for replay.
pub async fn finish(
    redis: &Redis,
    key: &str,
    claim: &Claim,
    response: &StoredResponse,
) -> Result<bool, RedisError> {
    let args = claim.finish_args(response, IDEMPOTENCY_KEEP);
    let reply = FINISH
        .run(redis, &[key], &args.each_ref().map(String::as_str))
        .await?;
    claim_reply("idempotency finish", &reply)
}

/// Releases this request's claim, so the client's retry runs at once.
pub async fn abandon(redis: &Redis, key: &str, claim: &Claim) -> Result<bool, RedisError> {
    let args = claim.abandon_args();
    let reply = ABANDON
        .run(redis, &[key], &args.each_ref().map(String::as_str))
        .await?;
    claim_reply("idempotency abandon", &reply)
}

fn claim_reply(operation: &str, reply: &[RedisResult]) -> Result<bool, RedisError> {
    match reply {
        [RedisResult::Int64(n)] => limits::claim_was_ours(*n).map_err(|e| bad_reply(operation, e)),
        other => Err(bad_reply(operation, format!("unexpected reply {other:?}"))),
    }
}
