//! The dialog analysis task: reads a user's messages since the last analysis, asks the
//! chat model (through the shared LLM breaker) for facts, mood, topics and a summary as
//! structured output, merges them into the profile's memory, and invalidates the cached
//! profile so the next chat turn's prompt carries the new memory.
//!
//! Idempotent by the watermark: the memory and the id of the last message read are
//! written in one UPDATE conditioned on the watermark the task read, so a second run of
//! the same task (its drain died after the update) finds nothing new, or loses the race
//! and changes nothing.

use std::time::Duration;

use evolve_core::ids::UserRef;
use evolve_core::llm::analysis::{self, DialogLine};
use evolve_core::queue::drain::TaskError;
use evolve_core::queue::scripts::Counted;
use evolve_core::queue::{Kind, NewTask, Task, WorkerConfig};
use evolve_core::{retention, sql};
use serde::{Deserialize, Serialize};

use super::store::enqueue_every;
use super::work::{acquire_or_defer, failed, WorkerContext};
use crate::breaker::Breaker;
use crate::cache::{self, ProfileKeys};
use crate::llm;
use crate::pg::ParameterValue;
use crate::redis::{Redis, RedisError};
use crate::time;
use evolve_core::keys;

/// The task's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisTask {
    pub user_id: i64,
    /// The user's external id: the profile cache is keyed by it.
    pub user: String,
}

impl AnalysisTask {
    /// An on-demand task for `user`, de-duplicated per `window` (the admin's runs use the
    /// time in ms; counted runs number their windows from 1, so the two never meet).
    pub fn enqueue_for(user_id: i64, user: &UserRef, window: u64) -> NewTask {
        Self::new_task(user_id, user, format!("analysis:{user_id}:{window}"))
    }

    fn new_task(user_id: i64, user: &UserRef, reference: String) -> NewTask {
        let payload = serde_json::to_string(&AnalysisTask {
            user_id,
            user: user.as_str().to_owned(),
        })
        .expect("payloads serialize");
        NewTask::new(Kind::Analysis, payload).with_reference(reference, Duration::from_secs(86_400))
    }
}

/// A user's turn counter lives this long after their last turn: a user back after a
/// month starts a new count.
const TURNS_KEPT: Duration = Duration::from_secs(30 * 86_400);

/// Counts one of `user`'s turns towards their next dialog analysis and, every `every`-th
/// turn, enqueues one (0: never): one script on the turn's own Redis connection, so a
/// turn pays one round trip. True when it enqueued.
pub async fn count_turn(
    redis: &Redis,
    user: &UserRef,
    user_id: i64,
    every: u32,
    channel: &str,
) -> Result<bool, RedisError> {
    if every == 0 {
        return Ok(false);
    }
    let task = AnalysisTask::new_task(user_id, user, format!("analysis:{user_id}:"));
    let counted = enqueue_every(
        redis,
        &task,
        &keys::analysis_turns(user),
        every,
        TURNS_KEPT,
        channel,
    )
    .await?;
    Ok(matches!(counted, Counted::Added { .. }))
}

pub(super) async fn run(
    ctx: &WorkerContext,
    task: &Task,
    deadline: Duration,
) -> Result<String, TaskError> {
    let input: AnalysisTask = serde_json::from_str(&task.payload)
        .map_err(|e| TaskError::Permanent(format!("analysis payload: {e}")))?;
    let user = UserRef::parse(&input.user)
        .map_err(|e| TaskError::Permanent(format!("analysis payload: {e}")))?;
    let pg = ctx.pg.get().await.map_err(failed)?;
    let profile = pg
        .query(sql::MEMORY, &[ParameterValue::Int64(input.user_id)])
        .await
        .map_err(failed)?;
    let Some((memory, watermark)) = profile.rows().next().and_then(|row| {
        Some((
            row.get::<serde_json::Value>("memory")?,
            row.get::<i64>("memory_watermark")?,
        ))
    }) else {
        return Ok("user gone: nothing to analyse".to_owned());
    };
    let cutoff = retention::cutoff_ms(time::now_ms() as i64, ctx.config.retention_days);
    let rows = pg
        .query(
            sql::MESSAGES_AFTER,
            &[
                ParameterValue::Int64(input.user_id),
                ParameterValue::Int64(watermark),
                ParameterValue::Int64(cutoff),
                ParameterValue::Int64(analysis::MAX_MESSAGES),
            ],
        )
        .await
        .map_err(failed)?;
    let mut last_id = watermark;
    let mut dialog = Vec::new();
    for row in rows.rows() {
        let (Some(id), Some(role), Some(text)) = (
            row.get::<i64>("id"),
            row.get::<String>("role"),
            row.get::<String>("content"),
        ) else {
            continue;
        };
        last_id = last_id.max(id);
        dialog.push(DialogLine {
            from_user: role == "user",
            text,
        });
    }
    if !dialog.iter().any(|line| line.from_user) {
        return Ok("no new messages from the user".to_owned());
    }

    let redis = ctx.redis.get().await.map_err(failed)?;
    let breaker = Breaker::new(ctx.config.breaker);
    let decision = acquire_or_defer(&breaker, redis, "LLM").await?;
    let config = WorkerConfig::call_budget(&ctx.config.llm, deadline);
    let call = llm::call_gemini(&config, &analysis::analysis_request(&dialog)).await;
    let parsed = call
        .result
        .clone()
        .and_then(|reply| analysis::parse_analysis(&reply.text));
    // A reply that is not the schema's JSON is the model failing, for the breaker too.
    let outcome = evolve_core::llm::breaker_outcome(&parsed, call.slow);
    let _ = breaker
        .record(redis, outcome, decision.probe(), time::now_ms())
        .await;
    let analysis = parsed.map_err(|e| TaskError::Failed(format!("chat model: {e}")))?;

    let merged = analysis::merge(&memory, &analysis);
    let stored = pg
        .execute(
            sql::STORE_MEMORY,
            &[
                ParameterValue::Int64(input.user_id),
                ParameterValue::Jsonb(serde_json::to_vec(&merged).expect("json serializes")),
                ParameterValue::Int64(last_id),
                ParameterValue::Int64(watermark),
            ],
        )
        .await
        .map_err(failed)?;
    if stored == 0 {
        return Ok("another run analysed these messages first".to_owned());
    }
    // A failed invalidation leaves the old memory cached until the entry expires.
    let _ = cache::invalidate(redis, &ProfileKeys::new(&user).key()).await;
    Ok(format!(
        "analysed {} messages: {} facts, {} topics",
        dialog.len(),
        analysis.facts.len(),
        analysis.topics.len()
    ))
}
