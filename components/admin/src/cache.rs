//! `GET /admin/cache_stats` and `POST /admin/cache/invalidate`.

use evolve_core::admin::{self, CacheStats, Invalidation, RedisInfo};
use evolve_core::keys;
use evolve_platform::http::{Request, Response};
use evolve_platform::jobs;
use evolve_platform::redis::{Redis, RedisError, RedisResult};
use serde_json::json;

use crate::{reply, Context};

/// The text of `INFO` (all default sections).
pub async fn info(redis: &Redis) -> Result<RedisInfo, RedisError> {
    let reply = redis.execute("INFO", &[]).await?;
    match reply.as_slice() {
        [RedisResult::Binary(bytes)] => Ok(RedisInfo::parse(&String::from_utf8_lossy(bytes))),
        [RedisResult::Status(text)] => Ok(RedisInfo::parse(text)),
        other => Err(RedisError {
            operation: "INFO".to_owned(),
            message: format!("unexpected reply {other:?}"),
        }),
    }
}

/// Keys in the application's database.
pub async fn dbsize(redis: &Redis) -> Result<u64, RedisError> {
    match redis.execute("DBSIZE", &[]).await?.as_slice() {
        [RedisResult::Int64(n)] => Ok((*n).max(0) as u64),
        other => Err(RedisError {
            operation: "DBSIZE".to_owned(),
            message: format!("unexpected reply {other:?}"),
        }),
    }
}

/// Snapshots of the `cache-metrics` job shown as history: one hour at its 5-minute pace.
const HISTORY_LEN: u64 = 12;

pub async fn stats(context: &Context) -> Response {
    let read = async {
        let redis = context.redis.get().await?;
        let info = info(redis).await?;
        let total_keys = dbsize(redis).await?;
        let counters = redis.hgetall(keys::CACHE_STATS).await?;
        let history = jobs::cache_metrics_history(redis, HISTORY_LEN).await?;
        Ok::<_, RedisError>((CacheStats::new(&info, total_keys, &counters), history))
    }
    .await;
    match read {
        Ok((stats, history)) => {
            let mut body = serde_json::to_value(&stats).expect("cache stats serialize");
            // Newest first, as the cache-metrics job recorded them.
            body["history"] = json!(history);
            reply::json(200, &body)
        }
        Err(error) => reply::unavailable("Redis", &error),
    }
}

/// `POST /admin/cache/warm`: the cache-warm job's work, now, without its schedule or
/// lease (loading a profile is safe to repeat; the cache's loader lock keeps two warm-ups
/// from loading the same one twice). `POST /admin/jobs/cache-warm/run` runs it as a job.
pub async fn warm() -> Response {
    let jobs_context = match jobs::JobsContext::from_variables().await {
        Ok(jobs_context) => jobs_context,
        Err(error) => {
            return reply::problem(&evolve_core::problem::Problem::service_unavailable(
                format!("configuration: {error}"),
                None,
            ))
        }
    };
    let count = jobs_context.config.cache_warm_count;
    match jobs::warm_cache(&jobs_context, count).await {
        Ok(report) => reply::json(200, &report),
        Err(error) => reply::unavailable("the cache warm-up", &error),
    }
}

pub async fn invalidate(context: &Context, request: &Request) -> Response {
    let content_type = request.header("content-type");
    if let Err(error) = evolve_core::input::require_json(content_type) {
        return reply::problem(&error.into());
    }
    let invalidation = match admin::parse_invalidation(request.body()) {
        Ok(invalidation) => invalidation,
        Err(problem) => return reply::problem(&problem),
    };
    let redis = match context.redis.get().await {
        Ok(redis) => redis,
        Err(error) => return reply::unavailable("Redis", &error),
    };
    let done = match &invalidation {
        Invalidation::Key { entry, lock } => redis
            .del(&[entry, lock])
            .await
            .map(|deleted| json!({ "key": entry, "deleted": deleted })),
        Invalidation::Pattern(pattern) => redis
            .delete_matching(pattern)
            .await
            .map(|deleted| json!({ "pattern": pattern, "deleted": deleted })),
    };
    match done {
        Ok(body) => reply::json(200, &body),
        Err(error) => reply::unavailable("Redis", &error),
    }
}
