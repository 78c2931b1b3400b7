//! What every route needs: the configuration, the authenticated user, and the request's
//! lazily opened Redis and PostgreSQL connections.

use evolve_core::auth;
use evolve_core::config::ChatConfig;
use evolve_core::ids::UserRef;
use evolve_core::problem::Problem;
use evolve_core::retention;
use evolve_platform::pg::PgSession;
use evolve_platform::redis::RedisSession;
use evolve_platform::{time, variables};
use spin_sdk::http::Request;

pub struct Context {
    pub config: ChatConfig,
    pub user: UserRef,
    pub redis: RedisSession,
    pub pg: PgSession,
}

impl Context {
    /// Reads the configuration and authenticates the caller (401 otherwise).
    pub fn for_request(request: &Request) -> Result<Context, Problem> {
        let config = ChatConfig::try_from_lookup(variables::lookup).map_err(|error| {
            Problem::service_unavailable(format!("configuration: {error}"), None)
        })?;
        let header = request
            .header("authorization")
            .and_then(|value| value.as_str());
        let token = auth::bearer(header)?;
        let claims = auth::verify(
            token,
            config.jwt_secret.expose().as_bytes(),
            time::now_ms() / 1_000,
        )?;
        Ok(Context {
            redis: RedisSession::new(config.redis_url.clone()),
            pg: PgSession::new(config.pg_url.clone()),
            config,
            user: claims.sub,
        })
    }

    /// Messages older than this (Unix milliseconds) are expired (see `core::retention`).
    pub fn history_cutoff_ms(&self) -> i64 {
        retention::cutoff_ms(time::now_ms() as i64, self.config.history_retention_days)
    }
}
