//! Broadcasts and on-demand dialog analysis, both run by the work queue:
//! - `POST /admin/broadcasts` `{message, segment: all|free|premium}`: 202 with the id;
//!   delivery runs as chained low-priority page tasks;
//! - `GET /admin/broadcasts/{id}`: status, total, delivered, started and finished;
//! - `POST /admin/broadcasts/{id}/cancel`: no further page delivers;
//! - `POST /admin/users/{user}/analysis`: a dialog analysis of the user now.

use evolve_core::ids::UserRef;
use evolve_core::input::{self, BroadcastRequest};
use evolve_core::problem::Problem;
use evolve_core::sql;
use evolve_platform::http::{Request, Response};
use evolve_platform::pg::{ParameterValue, PgError};
use evolve_platform::queue::{self, AnalysisTask, BroadcastPage};
use evolve_platform::time;
use serde_json::json;

use crate::{reply, Context};

/// The routes of this module, by the labels metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Create,
    Show(&'a str),
    Cancel(&'a str),
    Analyse(&'a str),
}

impl<'a> Route<'a> {
    pub fn parse(path: &'a str) -> Option<Route<'a>> {
        if path == "/admin/broadcasts" {
            return Some(Route::Create);
        }
        if let Some(rest) = path.strip_prefix("/admin/broadcasts/") {
            return Some(match rest.strip_suffix("/cancel") {
                Some(id) => Route::Cancel(id),
                None => Route::Show(rest),
            });
        }
        let user = path
            .strip_prefix("/admin/users/")?
            .strip_suffix("/analysis")?;
        Some(Route::Analyse(user))
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::Create => "/admin/broadcasts",
            Route::Show(_) => "/admin/broadcasts/{id}",
            Route::Cancel(_) => "/admin/broadcasts/{id}/cancel",
            Route::Analyse(_) => "/admin/users/{user}/analysis",
        }
    }

    fn allowed(self) -> &'static [&'static str] {
        match self {
            Route::Show(_) => &["GET"],
            _ => &["POST"],
        }
    }
}

pub async fn serve(context: &Context, request: &Request, path: &str, route: Route<'_>) -> Response {
    let method = request.method().as_str();
    if !route.allowed().contains(&method) {
        return reply::method_not_allowed(method, path, route.allowed());
    }
    let id = match route {
        // Canonical decimal only: `01` or `+1` name no broadcast.
        Route::Show(text) | Route::Cancel(text) => match text.parse::<i64>() {
            Ok(id) if id > 0 && id.to_string() == text => Some(id),
            _ => return reply::problem(&Problem::not_found(path)),
        },
        _ => None,
    };
    match (route, id) {
        (Route::Create, _) => create(context, request).await,
        (Route::Show(_), Some(id)) => show(context, path, id).await,
        (Route::Cancel(_), Some(id)) => cancel(context, path, id).await,
        (Route::Analyse(user), _) => analyse(context, path, user).await,
        _ => reply::problem(&Problem::not_found(path)),
    }
}

async fn create(context: &Context, request: &Request) -> Response {
    let parsed = input::require_json(request.header("content-type"))
        .and_then(|()| BroadcastRequest::parse(request.body()));
    let broadcast = match parsed {
        Ok(broadcast) => broadcast,
        Err(error) => return reply::problem(&error.into()),
    };
    let pg = match context.pg.get().await {
        Ok(pg) => pg,
        Err(error) => return reply::unavailable("PostgreSQL", &error),
    };
    let redis = match context.redis.get().await {
        Ok(redis) => redis,
        Err(error) => return reply::unavailable("Redis", &error),
    };
    let created = pg
        .query(
            sql::CREATE_BROADCAST,
            &[
                ParameterValue::Str(broadcast.message),
                ParameterValue::Str(broadcast.segment.as_str().to_owned()),
            ],
        )
        .await;
    let created = created.map(|rows| {
        rows.rows()
            .next()
            .and_then(|r| Some((r.get::<i64>("id")?, r.get::<i64>("created_ms")?)))
    });
    let (id, created_ms) = match created {
        Ok(Some(created)) => created,
        Ok(None) => return reply::unavailable("PostgreSQL", &"no id returned"),
        Err(error) => return reply::unavailable("PostgreSQL", &error),
    };
    let first = BroadcastPage {
        broadcast_id: id,
        created_ms,
        after_user_id: 0,
    };
    // If this fails the broadcast stays pending with nothing queued: the operator sees
    // the 503 and cancels it or sends it again.
    if let Err(error) = queue::enqueue(redis, &first.task(), &context.config.queue_channel).await {
        return reply::unavailable("Redis", &error);
    }
    match load(context, id).await {
        Ok(Some(body)) => {
            reply::json(202, &body).with_header("location", format!("/admin/broadcasts/{id}"))
        }
        Ok(None) => reply::problem(&Problem::from_status(404)),
        Err(error) => reply::unavailable("PostgreSQL", &error),
    }
}

async fn load(context: &Context, id: i64) -> Result<Option<serde_json::Value>, PgError> {
    let pg = context.pg.get().await?;
    let rows = pg
        .query(sql::BROADCAST, &[ParameterValue::Int64(id)])
        .await?;
    let body = rows.rows().next().map(|row| {
        json!({
            "id": id,
            "segment": row.get::<String>("segment"),
            "status": row.get::<String>("status"),
            "total": row.get::<i64>("total"),
            "delivered": row.get::<i64>("delivered"),
            "created_ms": row.get::<i64>("created_ms"),
            "started_ms": row.get::<Option<i64>>("started_ms").flatten(),
            "finished_ms": row.get::<Option<i64>>("finished_ms").flatten(),
            "page_users": queue::PAGE_USERS,
        })
    });
    Ok(body)
}

async fn show(context: &Context, path: &str, id: i64) -> Response {
    match load(context, id).await {
        Ok(Some(body)) => reply::json(200, &body),
        Ok(None) => reply::problem(&Problem::not_found(path)),
        Err(error) => reply::unavailable("PostgreSQL", &error),
    }
}

async fn cancel(context: &Context, path: &str, id: i64) -> Response {
    let cancelled = match context.pg.get().await {
        Ok(pg) => {
            pg.execute(sql::CANCEL_BROADCAST, &[ParameterValue::Int64(id)])
                .await
        }
        Err(error) => Err(error),
    };
    match (cancelled, load(context, id).await) {
        (Ok(1), Ok(Some(body))) => reply::json(200, &body),
        (Ok(_), Ok(Some(body))) => reply::problem(&Problem::conflict(format!(
            "broadcast {id} is already {}",
            body["status"].as_str().unwrap_or("finished")
        ))),
        (Ok(_), Ok(None)) => reply::problem(&Problem::not_found(path)),
        (Err(error), _) | (_, Err(error)) => reply::unavailable("PostgreSQL", &error),
    }
}

async fn analyse(context: &Context, path: &str, user: &str) -> Response {
    let Ok(user) = UserRef::parse(user) else {
        return reply::problem(&Problem::not_found(path));
    };
    let found = match context.pg.get().await {
        Ok(pg) => {
            pg.query(
                sql::USER_ID,
                &[ParameterValue::Str(user.as_str().to_owned())],
            )
            .await
        }
        Err(error) => Err(error),
    };
    let user_id = match found.map(|rows| rows.rows().next().and_then(|r| r.get::<i64>("id"))) {
        Ok(Some(id)) => id,
        Ok(None) => return reply::problem(&Problem::not_found(path)),
        Err(error) => return reply::unavailable("PostgreSQL", &error),
    };
    let redis = match context.redis.get().await {
        Ok(redis) => redis,
        Err(error) => return reply::unavailable("Redis", &error),
    };
    // The operator's runs are their own windows: one per millisecond at most.
    let task = AnalysisTask::enqueue_for(user_id, &user, time::now_ms());
    match queue::enqueue(redis, &task, &context.config.queue_channel).await {
        Ok(_) => reply::json(
            202,
            &json!({"user": user.as_str(), "kind": "analysis", "status": "pending"}),
        ),
        Err(error) => reply::unavailable("Redis", &error),
    }
}
