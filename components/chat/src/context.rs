//! What every route needs: the configuration it reads, the authenticated user, and the
//! request's lazily opened Redis and PostgreSQL connections (primary and read replica).
//!
//! Every route reads the caller's profile, so the access settings and the profile's cache
//! settings are read for every request; history and turn settings only by the routes
//! that use them (see `evolve_core::config::ChatAccess`).

use evolve_core::auth;
use evolve_core::config::{ChatAccess, HistorySettings, ProfileSettings, TurnSettings};
use evolve_core::ids::UserRef;
use evolve_core::problem::Problem;
use evolve_core::queue::QueueConfig;
use evolve_core::retention;
use evolve_core::variables::ConfigError;
use evolve_platform::http::Request;
use evolve_platform::pg::PgSession;
use evolve_platform::redis::RedisSession;
use evolve_platform::replica::Replica;
use evolve_platform::{time, variables};

pub struct Context {
    pub profile: ProfileSettings,
    pub user: UserRef,
    pub redis: RedisSession,
    /// The primary: every write, and the reads the replica cannot answer.
    pub pg: PgSession,
    /// The read replica, when one is set.
    pub replica: Replica,
}

impl Context {
    /// Reads the configuration and authenticates the caller (401 otherwise).
    pub async fn for_request(request: &Request) -> Result<Context, Problem> {
        let (access, profile) = variables::load(|lookup| {
            Ok::<_, ConfigError>((
                ChatAccess::try_from_lookup(lookup)?,
                ProfileSettings::try_from_lookup(lookup)?,
            ))
        })
        .await
        .map_err(unreadable)?;
        let token = auth::bearer(request.header("authorization"))?;
        let claims = auth::verify(
            token,
            access.jwt_secret.expose().as_bytes(),
            time::now_ms() / 1_000,
        )?;
        Ok(Context {
            redis: RedisSession::new(access.redis_url.clone(), access.deadlines.redis),
            pg: PgSession::new(access.pg_url.clone(), access.deadlines.pg),
            replica: Replica::new(),
            profile,
            user: claims.sub,
        })
    }

    /// How far back the history reaches.
    pub async fn history_settings(&self) -> Result<HistorySettings, Problem> {
        variables::load(|lookup| HistorySettings::try_from_lookup(lookup))
            .await
            .map_err(unreadable)
    }

    /// The work queue's settings (voice messages are enqueued).
    pub async fn queue_settings(&self) -> Result<QueueConfig, Problem> {
        variables::load(|lookup| QueueConfig::try_from_lookup(lookup))
            .await
            .map_err(unreadable)
    }

    /// What a chat turn adds: limits, the LLM and its breaker.
    pub async fn turn_settings(&self) -> Result<TurnSettings, Problem> {
        variables::load(|lookup| TurnSettings::try_from_lookup(lookup))
            .await
            .map_err(unreadable)
    }
}

/// Messages older than this (Unix milliseconds) are expired (see `core::retention`).
pub fn history_cutoff_ms(history: &HistorySettings) -> i64 {
    retention::cutoff_ms(time::now_ms() as i64, history.retention_days)
}

fn unreadable(error: ConfigError) -> Problem {
    Problem::service_unavailable(format!("configuration: {error}"), None)
}
