//! `POST /api/chat/messages/{id}/voice` asks for the voice of one of the caller's
//! assistant messages; `GET` fetches it. The audio is made by the work queue's voice
//! task (see `evolve_platform::queue`), so a POST answers at once: `202` with where to
//! look, or `200` when the audio exists.

use evolve_core::input::MessageId;
use evolve_core::problem::Problem;
use evolve_core::queue::{Kind, NewTask};
use evolve_core::sql;
use evolve_platform::http::{Request, Response};
use evolve_platform::pg::{ParameterValue, Pg, PgError};
use evolve_platform::queue::{self, ReferenceState, VoiceTask};
use evolve_platform::reply;
use serde_json::json;
use std::rc::Rc;
use std::time::Duration;

use crate::context::{self, Context};
use crate::profile;

/// Seconds a client waits before asking again while the voice is being made.
const POLL_AFTER_SECS: u64 = 2;

/// How long a second POST for the same message is folded into the first task.
const DEDUP_TTL: Duration = Duration::from_secs(3_600);

pub async fn post(context: &Context, id: MessageId) -> Response {
    let (pg, user_id) = match own_message(context, id).await {
        Ok(found) => found,
        Err(problem) => return reply::problem(&problem),
    };
    match has_voice(&pg, id, user_id).await {
        Ok(true) => return reply::json(200, &status("ready", id)),
        Ok(false) => {}
        Err(error) => return reply::problem(&profile::unavailable(&error)),
    }
    let Ok(redis) = context.redis.get().await else {
        return reply::problem(&queue_unavailable());
    };
    let settings = match context.queue_settings().await {
        Ok(settings) => settings,
        Err(problem) => return reply::problem(&problem),
    };
    let payload = serde_json::to_string(&VoiceTask {
        message_id: id.0,
        user_id,
    })
    .expect("payloads serialize");
    let task =
        NewTask::new(Kind::Voice, payload).with_reference(queue::voice_reference(id.0), DEDUP_TTL);
    match queue::enqueue(redis, &task, &settings.channel).await {
        Ok(_) => reply::json(202, &status("pending", id))
            .with_header("location", url(id))
            .with_header("retry-after", POLL_AFTER_SECS.to_string()),
        Err(_) => reply::problem(&queue_unavailable()),
    }
}

pub async fn get(context: &Context, request: &Request, id: MessageId) -> Response {
    let (pg, user_id) = match own_message(context, id).await {
        Ok(found) => found,
        Err(problem) => return reply::problem(&problem),
    };
    let params = [ParameterValue::Int64(id.0), ParameterValue::Int64(user_id)];
    let stored = match pg.query(sql::VOICE_AUDIO, &params).await {
        Ok(rows) => rows.rows().next().and_then(|row| {
            Some((
                row.get::<String>("content_type")?,
                row.get::<Vec<u8>>("audio")?,
                row.get::<String>("etag")?,
            ))
        }),
        Err(error) => return reply::problem(&profile::unavailable(&error)),
    };
    if let Some((content_type, audio, etag)) = stored {
        let fresh = request
            .header("if-none-match")
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let response = if fresh {
            Response::new(304, Vec::new())
        } else {
            Response::new(200, audio).with_header("content-type", content_type)
        };
        // The audio of a message never changes: a client may keep it.
        return response
            .with_header("etag", etag)
            .with_header("cache-control", "private, max-age=86400");
    }
    let Ok(redis) = context.redis.get().await else {
        return reply::problem(&queue_unavailable());
    };
    match queue::reference_state(redis, &queue::voice_reference(id.0)).await {
        Ok(ReferenceState::Pending) => reply::json(202, &status("pending", id))
            .with_header("retry-after", POLL_AFTER_SECS.to_string()),
        Ok(ReferenceState::Dead) => reply::problem(&Problem::voice_failed()),
        Ok(ReferenceState::Unknown) => reply::problem(
            &Problem::from_status(404)
                .with_detail("no voice was asked for this message; POST to this URL first"),
        ),
        Err(_) => reply::problem(&queue_unavailable()),
    }
}

/// The caller's own assistant message `id` within retention, with the caller's user id;
/// 404 for anyone else's message, a user message, or no message at all (the answer is
/// the same, so ids of other users' messages cannot be probed).
async fn own_message(context: &Context, id: MessageId) -> Result<(Rc<Pg>, i64), Problem> {
    let history = context.history_settings().await?;
    let (user, _) = profile::load(context)
        .await
        .map_err(|e| profile::unavailable(&e))?;
    let pg = context
        .pg
        .get()
        .await
        .map_err(|e| profile::unavailable(&e))?;
    let found = pg
        .query(
            sql::ASSISTANT_MESSAGE,
            &[
                ParameterValue::Int64(user.user_id),
                ParameterValue::Int64(id.0),
                ParameterValue::Int64(context::history_cutoff_ms(&history)),
            ],
        )
        .await
        .map_err(|e| profile::unavailable(&e))?;
    if found.rows().next().is_none() {
        return Err(Problem::from_status(404).with_detail("no such assistant message"));
    }
    Ok((pg, user.user_id))
}

async fn has_voice(pg: &Pg, id: MessageId, user_id: i64) -> Result<bool, PgError> {
    let params = [ParameterValue::Int64(id.0), ParameterValue::Int64(user_id)];
    Ok(pg
        .query(sql::VOICE_TAG, &params)
        .await?
        .rows()
        .next()
        .is_some())
}

fn url(id: MessageId) -> String {
    format!("/api/chat/messages/{}/voice", id.0)
}

fn status(state: &str, id: MessageId) -> serde_json::Value {
    json!({"status": state, "message_id": id.0, "url": url(id)})
}

fn queue_unavailable() -> Problem {
    Problem::service_unavailable("the work queue is unavailable", Some(5))
}
