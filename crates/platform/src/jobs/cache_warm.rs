//! The `cache-warm` job (and `POST /admin/cache/warm`): the profiles of the most
//! recently active users are loaded through the same cache code the chat component
//! reads them with, so a user coming back finds their profile cached. The FastAPI service warmed
//! the cache at start-up; serverless instances have no start-up, so this runs on a
//! schedule and on demand.
//!
//! Its loads and hits are counted in their own hash ([`keys::CACHE_WARM_STATS`]), so
//! that preloading does not show up as users' cache misses.

use crate::pg::ParameterValue;
use evolve_core::cache::{CachePolicy, Source};
use evolve_core::ids::UserRef;
use evolve_core::keys;
use evolve_core::sql;
use serde::Serialize;

use super::{JobError, JobsContext, Run, Work};
use crate::cache::{Cache, ProfileKeys};
use crate::store;
use crate::time;

/// How far back "recently active" looks.
const ACTIVE_WITHIN_HOURS: i32 = 24;

/// What a warm-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    /// Recently active users found (at most the count asked for).
    pub users: u64,
    /// Profiles loaded from PostgreSQL and stored in the cache.
    pub loaded: u64,
    /// Profiles that were already cached and fresh.
    pub cached: u64,
    /// Profiles loaded but not stored (the cache was unavailable).
    pub not_stored: u64,
    /// False when the time budget ran out before every user was visited.
    pub complete: bool,
}

/// Loads the profiles of up to `count` most recently active users into the cache,
/// within the configured time budget.
pub async fn warm_cache(ctx: &JobsContext, count: u32) -> Result<WarmReport, JobError> {
    let deadline_ms = time::now_ms() + ctx.config.budget.as_millis() as u64;
    let pg = ctx.pg.get().await?;
    let rows = pg
        .query(
            sql::RECENTLY_ACTIVE_USERS,
            &[
                ParameterValue::Int32(ACTIVE_WITHIN_HOURS),
                ParameterValue::Int64(i64::from(count)),
            ],
        )
        .await?;
    let users: Vec<String> = rows
        .rows()
        .filter_map(|row| row.get::<Option<String>>("external_id").flatten())
        .collect();
    let mut report = WarmReport {
        users: users.len() as u64,
        complete: true,
        ..WarmReport::default()
    };
    let cache = Cache::open(&ctx.redis, keys::CACHE_WARM_STATS, 1).await;
    let policy = CachePolicy::with_ttl(ctx.config.profile_ttl);
    for id in &users {
        if time::now_ms() >= deadline_ms {
            report.complete = false;
            break;
        }
        // Ids the chat API could not have cached are skipped.
        let Ok(user) = UserRef::parse(id) else {
            continue;
        };
        let keys = ProfileKeys::new(&user);
        let (_, source) = cache
            .get_or_load(&keys.key(), &policy, || store::load_profile(&pg, id))
            .await?;
        match source {
            Source::Loaded => report.loaded += 1,
            Source::Hit | Source::StaleHit => report.cached += 1,
            Source::Bypassed => report.not_stored += 1,
        }
    }
    Ok(report)
}

pub(super) async fn run(run: &Run<'_>, work: &mut Work) -> Result<(), JobError> {
    let report = warm_cache(run.ctx, run.ctx.config.cache_warm_count).await?;
    work.rows = report.loaded;
    work.note(format!(
        "{} recently active users: {} profiles loaded, {} already cached, {} not stored{}",
        report.users,
        report.loaded,
        report.cached,
        report.not_stored,
        if report.complete {
            ""
        } else {
            "; time budget spent"
        }
    ));
    Ok(())
}
