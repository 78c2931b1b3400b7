//! `GET /api/profile` and `PUT /api/profile`.

use evolve_core::cache::{CachePolicy, Source};
use evolve_core::input::ProfilePatch;
use evolve_core::keys;
use evolve_core::problem::Problem;
use evolve_core::profile::Profile;
use evolve_platform::cache::{self, Cache, ProfileKeys};
use evolve_platform::http::{Request, Response};
use evolve_platform::pg::PgError;
use evolve_platform::store;
use serde_json::json;

use crate::context::Context;
use evolve_platform::reply;

/// The caller's profile through the shared cache; `degraded` when the cache was
/// unavailable and the profile came straight from PostgreSQL. A miss reads the replica
/// when it may answer, else the primary (which creates a first-time user).
pub async fn load(context: &Context) -> Result<(Profile, Source), PgError> {
    let keys = ProfileKeys::new(&context.user);
    let cache = Cache::open(
        &context.redis,
        keys::CACHE_STATS,
        context.profile.cache_hit_sample,
    )
    .await;
    cache
        .get_or_load(
            &keys.key(),
            &CachePolicy::with_ttl(context.profile.profile_ttl),
            || async {
                if let Some(profile) = context.replica.profile(&context.redis, &context.user).await
                {
                    return Ok(profile);
                }
                let pg = context.pg.get().await?;
                store::load_profile(&pg, context.user.as_str()).await
            },
        )
        .await
}

pub fn unavailable(error: &PgError) -> Problem {
    Problem::service_unavailable(
        format!("the profile store is unavailable ({})", error.operation),
        Some(5),
    )
}

fn render(context: &Context, profile: &Profile, source: Source) -> serde_json::Value {
    json!({
        "user": context.user.as_str(),
        "plan": profile.plan,
        "premium_until_ms": profile.premium_until_ms,
        "data": profile.data,
        "memory": profile.memory,
        "updated_at_ms": profile.updated_at_ms,
        "degraded": source == Source::Bypassed,
    })
}

pub async fn get(context: &Context) -> Response {
    match load(context).await {
        Ok((profile, source)) => {
            let mut response = reply::json(200, &render(context, &profile, source));
            // Where the answer came from, for operators and load tests.
            let cache = match source {
                Source::Hit => "hit",
                Source::StaleHit => "stale",
                Source::Loaded => "miss",
                Source::Bypassed => "bypass",
            };
            response.set_header("x-cache", cache);
            response
        }
        Err(error) => reply::problem(&unavailable(&error)),
    }
}

pub async fn put(context: &Context, request: &Request) -> Response {
    let content_type = request.header("content-type");
    if let Err(error) = evolve_core::input::require_json(content_type) {
        return reply::problem(&error.into());
    }
    let patch = match ProfilePatch::parse(request.body()) {
        Ok(patch) => patch,
        Err(error) => return reply::problem(&error.into()),
    };
    let (profile, _) = match load(context).await {
        Ok(found) => found,
        Err(error) => return reply::problem(&unavailable(&error)),
    };
    let mut set = serde_json::Map::new();
    let mut remove = Vec::new();
    for (field, value) in patch.changes() {
        match value {
            Some(value) => {
                set.insert(field.as_str().to_owned(), value.clone());
            }
            None => remove.push(field.as_str().to_owned()),
        }
    }
    let patched = match context.pg.get().await {
        Ok(pg) => {
            let set = serde_json::Value::Object(set);
            let patched = store::patch_profile(&pg, profile.user_id, &set, &remove).await;
            if patched.is_ok() {
                context
                    .replica
                    .note_write(&pg, &context.redis, &context.user)
                    .await;
            }
            patched
        }
        Err(error) => Err(error),
    };
    let data = match patched {
        Ok(data) => data,
        Err(error) => return reply::problem(&unavailable(&error)),
    };
    // The next read, on any instance, must see this write: drop the entry (and any
    // loader's lock, so a load that read the old row cannot store it) before answering.
    // If Redis is down the entry cannot be dropped; say so rather than let a stale
    // profile be served for up to its TTL unannounced.
    let invalidated = match context.redis.get().await {
        Ok(redis) => cache::invalidate(redis, &ProfileKeys::new(&context.user).key())
            .await
            .is_ok(),
        Err(_) => false,
    };
    let updated = Profile { data, ..profile };
    let mut body = render(context, &updated, Source::Loaded);
    body["degraded"] = json!(!invalidated);
    reply::json(200, &body)
}
