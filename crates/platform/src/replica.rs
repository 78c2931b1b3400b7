//! Reads that may go to the PostgreSQL read replica, and the note of a write that keeps
//! them fresh for its writer. The rules are `evolve_core::replica`'s; this module does the
//! I/O: the Redis memory of writes and of a bypassed replica, and the gated queries.
//!
//! A replica read never fails a request: any error, refusal or missed deadline sends the
//! read to the primary.

use std::cell::OnceCell;
use std::time::Instant;

use evolve_core::ids::UserRef;
use evolve_core::keys;
use evolve_core::profile::{Message, Profile};
use evolve_core::replica::{
    self, Lsn, Memory, ReplicaReport, ReplicaSettings, ReplicaStatus, Route, Verdict,
};
use evolve_core::sql;

use crate::pg::{ParameterValue, Pg, PgSession, RowSet};
use crate::redis::{Redis, RedisSession};
use crate::sdk::redis::{RedisParameter, RedisResult};
use crate::{store, variables};

/// A request's view of the replica: its settings (read on first use) and its connection.
pub struct Replica {
    settings: OnceCell<Option<(ReplicaSettings, PgSession)>>,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

impl Replica {
    pub fn new() -> Replica {
        Replica {
            settings: OnceCell::new(),
        }
    }

    /// The settings and the replica's session; `None` without a replica. Settings that do
    /// not parse leave the replica unused (`/ready` reports why).
    async fn configured(&self) -> Option<&(ReplicaSettings, PgSession)> {
        if self.settings.get().is_none() {
            let settings = variables::load(|lookup| ReplicaSettings::try_from_lookup(lookup))
                .await
                .ok()
                .and_then(|settings| {
                    let url = settings.url.clone()?;
                    let session = PgSession::new(url, settings.timeout);
                    Some((settings, session))
                });
            let _ = self.settings.set(settings);
        }
        self.settings.get().and_then(Option::as_ref)
    }

    /// After `user`'s write on the primary connection `pg`: keeps the primary's WAL
    /// position for the user's next reads. Without a replica, nothing is done.
    pub async fn note_write(&self, pg: &Pg, redis: &RedisSession, user: &UserRef) {
        if self.configured().await.is_none() {
            return;
        }
        let Ok(rows) = pg.query(sql::CURRENT_WAL_POSITION, &[]).await else {
            return;
        };
        let Some(lsn) = rows
            .rows()
            .next()
            .and_then(|row| row.get::<String>("lsn"))
            .and_then(|text| Lsn::parse(&text))
        else {
            return;
        };
        if let Ok(redis) = redis.get().await {
            let _ = redis
                .set_px(
                    &keys::replica_written(user),
                    lsn.as_str().as_bytes(),
                    replica::WRITE_MEMORY,
                )
                .await;
        }
    }

    /// The user's profile from the replica, if it may answer and the user exists there.
    pub async fn profile(&self, redis: &RedisSession, user: &UserRef) -> Option<Profile> {
        let params = vec![ParameterValue::Str(user.as_str().to_owned())];
        let rows = self
            .read(redis, user, sql::REPLICA_PROFILE_BY_EXTERNAL_ID, params)
            .await?;
        let row = rows.rows().find(|row| !row.is_null("user_id"))?;
        store::profile_from_row(&row).ok()
    }

    /// A history page from the replica, if it may answer (arguments as
    /// [`store::history_page`]).
    pub async fn history_page(
        &self,
        redis: &RedisSession,
        user: &UserRef,
        user_id: i64,
        cutoff_ms: i64,
        limit: i64,
        before: Option<(i64, i64)>,
    ) -> Option<Vec<Message>> {
        let (statement, params) = match before {
            None => (
                sql::REPLICA_HISTORY_FIRST_PAGE,
                store::history_params(user_id, cutoff_ms, limit, None),
            ),
            Some(cursor) => (
                sql::REPLICA_HISTORY_PAGE_BEFORE,
                store::history_params(user_id, cutoff_ms, limit, Some(cursor)),
            ),
        };
        let rows = self.read(redis, user, statement, params).await?;
        rows.rows()
            .filter(|row| !row.is_null("id"))
            .map(|row| store::message_from_row(&row))
            .collect::<Result<Vec<_>, _>>()
            .ok()
    }

    /// Runs a gated statement (its own parameters, then the gate's two) on the replica;
    /// `None` sends the read to the primary.
    async fn read(
        &self,
        redis: &RedisSession,
        user: &UserRef,
        statement: &str,
        mut params: Vec<ParameterValue>,
    ) -> Option<RowSet> {
        let (settings, session) = self.configured().await?;
        let redis = redis.get().await.ok()?;
        let memory = remembered(redis, user).await;
        let Route::Replica { after } = replica::route(memory.as_ref()) else {
            return None;
        };
        params.push(match &after {
            Some(lsn) => ParameterValue::Str(lsn.as_str().to_owned()),
            None => ParameterValue::DbNull,
        });
        params.push(ParameterValue::Int64(settings.max_lag_ms as i64));
        let answer = match session.get().await {
            Ok(pg) => pg.query(statement, &params).await,
            Err(error) => Err(error),
        };
        let rows = match answer {
            Ok(rows) => rows,
            Err(error) => {
                // A replica that fails is left alone for a while, by every instance.
                session.release();
                bypass(redis, &error.to_string()).await;
                return None;
            }
        };
        let gate = rows.rows().next()?;
        let lag_ms = gate.get::<i64>("replica_lag_ms");
        let caught_up = gate.get::<bool>("replica_caught_up").unwrap_or(false);
        match Verdict::of(lag_ms, caught_up, settings.max_lag_ms) {
            Verdict::Current => Some(rows),
            Verdict::Behind => None,
            Verdict::Lagging { lag_ms } => {
                let reason = match lag_ms {
                    Some(lag) => format!("lagging {lag} ms"),
                    None => "lag unknown".to_owned(),
                };
                bypass(redis, &reason).await;
                None
            }
        }
    }
}

/// The replica's report for `/ready` and `/admin/db_metrics`, each call within the
/// replica's deadline (`pg_read_timeout_ms`); `None` when no replica is set.
pub async fn report() -> Option<ReplicaReport> {
    let settings = match variables::load(|lookup| ReplicaSettings::try_from_lookup(lookup)).await {
        Ok(settings) => settings,
        Err(error) => {
            return Some(ReplicaReport::failed(
                format!("configuration: {error}"),
                ReplicaSettings::DEFAULT_MAX_LAG_MS,
            ))
        }
    };
    let url = settings.url.as_ref()?;
    let started = Instant::now();
    let answer = match Pg::open(url, settings.timeout).await {
        Ok(pg) => pg.query(sql::REPLICA_STATUS, &[]).await,
        Err(error) => Err(error),
    };
    let latency = started.elapsed();
    let found = answer.map(|rows| {
        rows.rows().next().map(|row| ReplicaStatus {
            in_recovery: row.get::<bool>("in_recovery").unwrap_or(true),
            lag_ms: row.get::<i64>("lag_ms"),
            replay_paused: row.get::<bool>("replay_paused").unwrap_or(false),
            replayed: row.get::<String>("replayed"),
        })
    });
    Some(match found {
        Ok(Some(found)) => ReplicaReport::answered(latency, found, settings.max_lag_ms),
        Ok(None) => ReplicaReport::failed("no status row", settings.max_lag_ms),
        Err(error) => ReplicaReport::failed(error.to_string(), settings.max_lag_ms),
    })
}

/// What Redis remembers of the replica and of `user`'s last write; `None` when it cannot
/// be read.
async fn remembered(redis: &Redis, user: &UserRef) -> Option<Memory> {
    let reply = redis
        .execute(
            "MGET",
            &[
                RedisParameter::Binary(keys::REPLICA_BYPASS.as_bytes().to_vec()),
                RedisParameter::Binary(keys::replica_written(user).into_bytes()),
            ],
        )
        .await
        .ok()?;
    let text = |value: Option<&RedisResult>| match value {
        Some(RedisResult::Binary(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(RedisResult::Status(text)) => Some(text.clone()),
        _ => None,
    };
    Some(Memory {
        bypassed: text(reply.first()).is_some(),
        written: text(reply.get(1)),
    })
}

/// Marks the replica bypassed for everyone, with the reason, for `BYPASS_FOR`.
async fn bypass(redis: &Redis, reason: &str) {
    let _ = redis
        .set_px(keys::REPLICA_BYPASS, reason.as_bytes(), replica::BYPASS_FOR)
        .await;
}
