//! The `subscriptions` job: premium users whose `premium_until` has passed become free
//! in one statement, and their cached profiles are deleted so that no instance serves the
//! old plan for the rest of the cache TTL.

use evolve_core::ids::UserRef;
use evolve_core::sql;

use super::{JobError, Run, Work};
use crate::cache::{self, ProfileKeys};

pub(super) async fn run(run: &Run<'_>, work: &mut Work) -> Result<(), JobError> {
    let pg = run.pg().await?;
    let rows = pg.query(sql::EXPIRE_SUBSCRIPTIONS, &[]).await?;
    let expired: Vec<Option<String>> = rows
        .rows()
        .map(|row| row.get::<Option<String>>("external_id").flatten())
        .collect();
    work.rows = expired.len() as u64;
    work.note(format!("{} subscriptions expired", expired.len()));

    // The plan change is committed; now the cache. Users one by one: on Redis Cluster
    // users' keys live in different slots.
    let mut invalidated = 0u64;
    let mut failure = None;
    for id in expired.iter().flatten() {
        // Ids the chat API could not have cached are skipped.
        let Ok(user) = UserRef::parse(id) else {
            continue;
        };
        match cache::invalidate(run.redis, &ProfileKeys::new(&user).key()).await {
            Ok(_) => invalidated += 1,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    work.note(format!("{invalidated} cached profiles invalidated"));
    match failure {
        // Those users keep the premium plan in the cache until their entries expire:
        // the record says so as an error.
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}
