//! Users, profiles and chat history in PostgreSQL: the statements of
//! `evolve_core::sql`, with their parameters and rows mapped to domain types.

use crate::pg::ParameterValue;
use evolve_core::profile::{Message, Profile, Role};
use evolve_core::sql;

use crate::pg::{Pg, PgError, Row};

fn bad_row(what: &str) -> PgError {
    PgError {
        operation: "query",
        message: format!("unexpected row shape: {what}"),
        sqlstate: None,
    }
}

fn jsonb(value: &serde_json::Value) -> ParameterValue {
    ParameterValue::Jsonb(serde_json::to_vec(value).expect("json values serialize"))
}

/// The user with this external id and their profile, created on first contact.
pub async fn load_profile(pg: &Pg, external_id: &str) -> Result<Profile, PgError> {
    let param = [ParameterValue::Str(external_id.to_owned())];
    if let Some(profile) = read_profile(pg, &param).await? {
        return Ok(profile);
    }
    pg.execute(sql::ENSURE_USER, &param).await?;
    read_profile(pg, &param)
        .await?
        .ok_or_else(|| bad_row("user missing right after creation"))
}

async fn read_profile(pg: &Pg, param: &[ParameterValue]) -> Result<Option<Profile>, PgError> {
    let rows = pg.query(sql::PROFILE_BY_EXTERNAL_ID, param).await?;
    let profile = match rows.rows().next() {
        Some(row) => profile_from_row(&row).map(Some),
        None => Ok(None),
    };
    profile
}

/// A row of [`sql::PROFILE_BY_EXTERNAL_ID`] (or its replica form).
pub(crate) fn profile_from_row(row: &Row<'_>) -> Result<Profile, PgError> {
    Ok(Profile {
        user_id: row
            .get::<i64>("user_id")
            .ok_or_else(|| bad_row("user_id"))?,
        plan: row.get::<String>("plan").ok_or_else(|| bad_row("plan"))?,
        premium_until_ms: row.get::<Option<i64>>("premium_until_ms").flatten(),
        data: row
            .get::<serde_json::Value>("data")
            .ok_or_else(|| bad_row("data"))?,
        memory: row
            .get::<serde_json::Value>("memory")
            .ok_or_else(|| bad_row("memory"))?,
        updated_at_ms: row
            .get::<i64>("updated_at_ms")
            .ok_or_else(|| bad_row("updated_at_ms"))?,
    })
}

/// Sets `set`'s fields and removes `remove` in the profile's data; returns the new data.
pub async fn patch_profile(
    pg: &Pg,
    user_id: i64,
    set: &serde_json::Value,
    remove: &[String],
) -> Result<serde_json::Value, PgError> {
    let remove = ParameterValue::ArrayStr(remove.iter().cloned().map(Some).collect());
    let rows = pg
        .query(
            sql::PATCH_PROFILE_DATA,
            &[ParameterValue::Int64(user_id), jsonb(set), remove],
        )
        .await?;
    let row = rows
        .rows()
        .next()
        .ok_or_else(|| bad_row("no row from update"))?;
    row.get::<serde_json::Value>("data")
        .ok_or_else(|| bad_row("data"))
}

/// The newest `limit` turns (not fallback replies), oldest first, for the prompt.
pub async fn recent_turns(
    pg: &Pg,
    user_id: i64,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<(Role, String)>, PgError> {
    let rows = pg
        .query(
            sql::RECENT_TURNS,
            &[
                ParameterValue::Int64(user_id),
                ParameterValue::Int64(cutoff_ms),
                ParameterValue::Int64(limit),
            ],
        )
        .await?;
    let mut turns = Vec::new();
    for row in rows.rows() {
        let role = row
            .get::<String>("role")
            .and_then(|r| Role::parse(&r))
            .ok_or_else(|| bad_row("role"))?;
        turns.push((
            role,
            row.get::<String>("content")
                .ok_or_else(|| bad_row("content"))?,
        ));
    }
    turns.reverse();
    Ok(turns)
}

/// The ids of a stored turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredTurn {
    pub user_message_id: i64,
    pub reply_id: i64,
}

/// Stores the user's message and the reply in one statement.
pub async fn insert_turn(
    pg: &Pg,
    user_id: i64,
    message: &str,
    reply: &str,
    degraded: bool,
) -> Result<StoredTurn, PgError> {
    let rows = pg
        .query(
            sql::INSERT_TURN,
            &[
                ParameterValue::Int64(user_id),
                ParameterValue::Str(message.to_owned()),
                ParameterValue::Str(reply.to_owned()),
                ParameterValue::Boolean(degraded),
            ],
        )
        .await?;
    let (mut user_message_id, mut reply_id) = (None, None);
    for row in rows.rows() {
        let id = row.get::<i64>("id");
        match row.get::<String>("role").as_deref() {
            Some("user") => user_message_id = id,
            Some("assistant") => reply_id = id,
            _ => {}
        }
    }
    match (user_message_id, reply_id) {
        (Some(user_message_id), Some(reply_id)) => Ok(StoredTurn {
            user_message_id,
            reply_id,
        }),
        _ => Err(bad_row("insert did not return both ids")),
    }
}

/// A page of the user's history, newest first, after the cursor `(created_at_us, id)`.
pub async fn history_page(
    pg: &Pg,
    user_id: i64,
    cutoff_ms: i64,
    limit: i64,
    before: Option<(i64, i64)>,
) -> Result<Vec<Message>, PgError> {
    let statement = match before {
        None => sql::HISTORY_FIRST_PAGE,
        Some(_) => sql::HISTORY_PAGE_BEFORE,
    };
    let params = history_params(user_id, cutoff_ms, limit, before);
    let rows = pg.query(statement, &params).await?;
    rows.rows().map(|row| message_from_row(&row)).collect()
}

/// The parameters of [`sql::HISTORY_FIRST_PAGE`], or of [`sql::HISTORY_PAGE_BEFORE`] with
/// a cursor.
pub(crate) fn history_params(
    user_id: i64,
    cutoff_ms: i64,
    limit: i64,
    before: Option<(i64, i64)>,
) -> Vec<ParameterValue> {
    let mut params = vec![
        ParameterValue::Int64(user_id),
        ParameterValue::Int64(cutoff_ms),
        ParameterValue::Int64(limit),
    ];
    if let Some((created_at_us, id)) = before {
        params.push(ParameterValue::Int64(created_at_us));
        params.push(ParameterValue::Int64(id));
    }
    params
}

/// A row of a history page.
pub(crate) fn message_from_row(row: &Row<'_>) -> Result<Message, PgError> {
    Ok(Message {
        id: row.get::<i64>("id").ok_or_else(|| bad_row("id"))?,
        role: row
            .get::<String>("role")
            .and_then(|r| Role::parse(&r))
            .ok_or_else(|| bad_row("role"))?,
        content: row
            .get::<String>("content")
            .ok_or_else(|| bad_row("content"))?,
        degraded: row
            .get::<bool>("degraded")
            .ok_or_else(|| bad_row("degraded"))?,
        broadcast: row.get::<bool>("broadcast").unwrap_or(false),
        created_at_us: row
            .get::<i64>("created_at_us")
            .ok_or_else(|| bad_row("created_at_us"))?,
    })
}
