//! Broadcasts: one message from the operators into the history of every user of a
//! segment, delivered as a chain of low-priority page tasks, so chat and voice work is
//! never queued behind them.
//!
//! Each page task delivers one keyset page of users in one statement
//! ([`sql::DELIVER_BROADCAST_PAGE`]): a delivery row per (broadcast, user) makes a
//! retried page deliver nobody twice. It then enqueues the next page, de-duplicated by
//! the page's position, so a page that runs twice chains one successor. The position
//! names the broadcast by id and creation time: an id used again (a database restored
//! under a Redis that remembers) is another broadcast, not a duplicate.
//!
//! A page waits out the rest of its share of time at `broadcast_recipients_per_second`
//! before chaining the next ([`pace::page_pause`]), so a broadcast to many users leaves
//! PostgreSQL's capacity to chat turns.

use std::time::Duration;

use evolve_core::queue::drain::TaskError;
use evolve_core::queue::{pace, Kind, NewTask, Task};
use evolve_core::sql;
use serde::{Deserialize, Serialize};

use super::store::enqueue;
use super::work::{failed, WorkerContext};
use crate::pg::ParameterValue;
use crate::time;

/// Users one page delivers to.
pub const PAGE_USERS: i64 = 1_000;

/// The segments a broadcast can go to.
pub const SEGMENTS: [&str; 3] = ["all", "free", "premium"];

/// A page task's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastPage {
    pub broadcast_id: i64,
    /// When the broadcast was created (Unix ms), with the id naming it in references.
    #[serde(default)]
    pub created_ms: i64,
    /// The last user id of the previous page (0 for the first).
    pub after_user_id: i64,
}

impl BroadcastPage {
    pub fn task(&self) -> NewTask {
        let payload = serde_json::to_string(self).expect("payloads serialize");
        NewTask::new(Kind::Broadcast, payload).with_reference(
            format!(
                "broadcast:{}.{}:{}",
                self.broadcast_id, self.created_ms, self.after_user_id
            ),
            Duration::from_secs(86_400),
        )
    }
}

pub(super) async fn run(
    ctx: &WorkerContext,
    task: &Task,
    deadline: Duration,
) -> Result<String, TaskError> {
    let started = time::now_ms();
    let page: BroadcastPage = serde_json::from_str(&task.payload)
        .map_err(|e| TaskError::Permanent(format!("broadcast payload: {e}")))?;
    let pg = ctx.pg.get().await.map_err(failed)?;
    let id = ParameterValue::Int64(page.broadcast_id);
    let found = pg
        .query(sql::BROADCAST, std::slice::from_ref(&id))
        .await
        .map_err(failed)?;
    let Some((message, segment, status, created_ms)) = found.rows().next().and_then(|row| {
        Some((
            row.get::<String>("message")?,
            row.get::<String>("segment")?,
            row.get::<String>("status")?,
            row.get::<i64>("created_ms")?,
        ))
    }) else {
        return Ok("broadcast gone".to_owned());
    };
    if status == "cancelled" || status == "done" {
        return Ok(format!("broadcast {status}: nothing to deliver"));
    }
    pg.execute(sql::START_BROADCAST, std::slice::from_ref(&id))
        .await
        .map_err(failed)?;
    let rows = pg
        .query(
            sql::DELIVER_BROADCAST_PAGE,
            &[
                id.clone(),
                ParameterValue::Int64(page.after_user_id),
                ParameterValue::Int64(PAGE_USERS),
                ParameterValue::Str(message),
                ParameterValue::Str(segment),
            ],
        )
        .await
        .map_err(failed)?;
    let row = rows.rows().next();
    let page_users = row
        .as_ref()
        .and_then(|r| r.get::<i64>("page_users"))
        .unwrap_or(0);
    let delivered = row
        .as_ref()
        .and_then(|r| r.get::<i64>("delivered"))
        .unwrap_or(0);
    let last = row
        .as_ref()
        .and_then(|r| r.get::<Option<i64>>("last_user_id"))
        .flatten();
    match last {
        Some(last) if page_users == PAGE_USERS => {
            let elapsed = Duration::from_millis(time::now_ms().saturating_sub(started));
            let pause = pace::page_pause(
                u64::try_from(delivered).unwrap_or(0),
                ctx.config.broadcast_rate,
                elapsed,
                deadline,
            );
            if !pause.is_zero() {
                time::sleep(pause).await;
            }
            let next = BroadcastPage {
                broadcast_id: page.broadcast_id,
                created_ms,
                after_user_id: last,
            };
            let redis = ctx.redis.get().await.map_err(failed)?;
            enqueue(redis, &next.task(), &ctx.config.queue.channel)
                .await
                .map_err(failed)?;
        }
        _ => {
            pg.execute(sql::FINISH_BROADCAST, &[id])
                .await
                .map_err(failed)?;
        }
    }
    Ok(format!(
        "page after user {}: {delivered} delivered",
        page.after_user_id
    ))
}
