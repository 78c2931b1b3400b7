//! `GET /api/chat/history?limit=&before=`: the caller's messages, newest first, from the
//! read replica when it may answer (see `evolve_platform::replica`).

use evolve_core::input::{Cursor, HistoryQuery};
use evolve_platform::http::{Request, Response};
use evolve_platform::store;
use serde_json::json;

use crate::context::{self, Context};
use crate::profile;
use evolve_platform::reply;

pub async fn get(context: &Context, request: &Request) -> Response {
    let query = match HistoryQuery::parse(request.query()) {
        Ok(query) => query,
        Err(error) => return reply::problem(&error.into()),
    };
    let history = match context.history_settings().await {
        Ok(history) => history,
        Err(problem) => return reply::problem(&problem),
    };
    let (user, _) = match profile::load(context).await {
        Ok(found) => found,
        Err(error) => return reply::problem(&profile::unavailable(&error)),
    };
    let cutoff_ms = context::history_cutoff_ms(&history);
    let limit = i64::from(query.limit);
    let before = query.before.map(|c| (c.created_at_micros, c.id));
    let on_replica = context
        .replica
        .history_page(
            &context.redis,
            &context.user,
            user.user_id,
            cutoff_ms,
            limit,
            before,
        )
        .await;
    let page = match on_replica {
        Some(messages) => Ok(messages),
        None => match context.pg.get().await {
            Ok(pg) => store::history_page(&pg, user.user_id, cutoff_ms, limit, before).await,
            Err(error) => Err(error),
        },
    };
    let messages = match page {
        Ok(messages) => messages,
        Err(error) => return reply::problem(&profile::unavailable(&error)),
    };
    // A full page may have more behind it; the cursor points after its last message.
    let next = (messages.len() == query.limit as usize)
        .then(|| messages.last())
        .flatten()
        .map(|last| {
            Cursor {
                created_at_micros: last.created_at_us,
                id: last.id,
            }
            .encode()
        });
    reply::json(200, &json!({ "messages": messages, "next_before": next }))
}
