//! The voice task: speaks one assistant message with the speech model, behind that
//! model's own shared breaker, and stores it as WAV.
//!
//! Idempotent by the message: a voice already stored ends the task at once, and the
//! insert does nothing on a second row for the message, so a task run twice (its drain
//! died after the insert) stores one voice.

use std::time::Duration;

use evolve_core::keys;
use evolve_core::llm::speech;
use evolve_core::queue::drain::TaskError;
use evolve_core::queue::{Task, WorkerConfig};
use evolve_core::retention;
use evolve_core::sql;
use serde::{Deserialize, Serialize};

use super::work::{acquire_or_defer, failed, WorkerContext};
use crate::breaker::Breaker;
use crate::llm;
use crate::sdk::pg::ParameterValue;
use crate::time;

/// The task's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceTask {
    pub message_id: i64,
    pub user_id: i64,
}

/// The queue reference of a message's voice: one pending task per message.
pub fn voice_reference(message_id: i64) -> String {
    format!("voice:{message_id}")
}

pub(super) async fn run(
    ctx: &WorkerContext,
    task: &Task,
    deadline: Duration,
) -> Result<String, TaskError> {
    let input: VoiceTask = serde_json::from_str(&task.payload)
        .map_err(|e| TaskError::Permanent(format!("voice payload: {e}")))?;
    let pg = ctx.pg.get().await.map_err(failed)?;
    let ids = [
        ParameterValue::Int64(input.message_id),
        ParameterValue::Int64(input.user_id),
    ];
    if pg
        .query(sql::VOICE_TAG, &ids)
        .await
        .map_err(failed)?
        .rows()
        .next()
        .is_some()
    {
        return Ok("already voiced".to_owned());
    }
    let cutoff = retention::cutoff_ms(time::now_ms() as i64, ctx.config.retention_days);
    let message = pg
        .query(
            sql::ASSISTANT_MESSAGE,
            &[
                ParameterValue::Int64(input.user_id),
                ParameterValue::Int64(input.message_id),
                ParameterValue::Int64(cutoff),
            ],
        )
        .await
        .map_err(failed)?;
    let Some((text, message_at_ms)) = message.rows().next().and_then(|row| {
        Some((
            row.get::<String>("content")?,
            row.get::<i64>("created_at_ms")?,
        ))
    }) else {
        return Ok("message gone (retention or deleted): nothing to voice".to_owned());
    };

    let redis = ctx.redis.get().await.map_err(failed)?;
    let breaker = Breaker::with_key(ctx.config.breaker, keys::BREAKER_TTS);
    let decision = acquire_or_defer(&breaker, redis, "speech model's").await?;
    let config = WorkerConfig::call_budget(&ctx.config.tts, deadline);
    let call = llm::call_speech(&config, &speech::speech_request(&text, &ctx.config.voice)).await;
    // The outcome counts even if recording it fails; the breaker is advisory here.
    let _ = breaker
        .record(
            redis,
            call.breaker_outcome(),
            decision.probe(),
            time::now_ms(),
        )
        .await;
    let pcm = call
        .result
        .map_err(|e| TaskError::Failed(format!("speech model: {e}")))?;
    let audio = speech::wav(&pcm);
    let etag = speech::etag(&audio);
    pg.execute(
        sql::INSERT_VOICE,
        &[
            ParameterValue::Int64(input.message_id),
            ParameterValue::Int64(input.user_id),
            ParameterValue::Int64(message_at_ms),
            ParameterValue::Str(speech::WAV_CONTENT_TYPE.to_owned()),
            ParameterValue::Binary(audio.clone()),
            ParameterValue::Str(etag),
            ParameterValue::Str(ctx.config.voice.clone()),
        ],
    )
    .await
    .map_err(failed)?;
    Ok(format!("voiced: {} bytes of audio", audio.len()))
}
