//! The `cache-metrics` job: a snapshot of the cache's hit and miss counters and of
//! Redis' own statistics, pushed onto a capped list that `/admin/cache_stats` shows as
//! history. Each snapshot also carries the hit rate since the previous one.

use evolve_core::jobs::{CacheSnapshot, CACHE_METRICS_LEN};
use evolve_core::keys;

use super::{bin, JobError, Run, Work};
use crate::redis::{Redis, RedisError, RedisParameter, RedisResult};
use crate::time;

fn bulk_text(reply: Vec<RedisResult>) -> String {
    reply
        .into_iter()
        .map(|item| match item {
            RedisResult::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            RedisResult::Status(text) => text,
            _ => String::new(),
        })
        .collect()
}

/// Takes a snapshot now and appends it to the series (newest first, capped at
/// [`CACHE_METRICS_LEN`]).
pub async fn snapshot_cache(redis: &Redis) -> Result<CacheSnapshot, RedisError> {
    let counters = redis.hgetall(keys::CACHE_STATS).await?;
    let mut info = bulk_text(redis.execute("INFO", &[bin("stats")]).await?);
    info.push_str(&bulk_text(redis.execute("INFO", &[bin("memory")]).await?));
    let keys_count = match redis.execute("DBSIZE", &[]).await?.first() {
        Some(RedisResult::Int64(n)) => (*n).max(0) as u64,
        _ => 0,
    };
    let previous = match redis
        .execute(
            "LINDEX",
            &[bin(keys::CACHE_METRICS), RedisParameter::Int64(0)],
        )
        .await?
        .into_iter()
        .next()
    {
        Some(RedisResult::Binary(bytes)) => CacheSnapshot::from_json(&bytes),
        _ => None,
    };
    let snapshot = CacheSnapshot::new(
        time::now_ms(),
        &counters,
        &info,
        keys_count,
        previous.as_ref(),
    );
    redis
        .execute(
            "LPUSH",
            &[bin(keys::CACHE_METRICS), bin(&snapshot.to_json())],
        )
        .await?;
    redis
        .execute(
            "LTRIM",
            &[
                bin(keys::CACHE_METRICS),
                RedisParameter::Int64(0),
                RedisParameter::Int64(CACHE_METRICS_LEN as i64 - 1),
            ],
        )
        .await?;
    Ok(snapshot)
}

/// The `n` newest snapshots, newest first.
pub async fn cache_metrics_history(
    redis: &Redis,
    n: u64,
) -> Result<Vec<CacheSnapshot>, RedisError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let reply = redis
        .execute(
            "LRANGE",
            &[
                bin(keys::CACHE_METRICS),
                RedisParameter::Int64(0),
                RedisParameter::Int64(n.min(CACHE_METRICS_LEN) as i64 - 1),
            ],
        )
        .await?;
    Ok(reply
        .into_iter()
        .filter_map(|item| match item {
            RedisResult::Binary(bytes) => CacheSnapshot::from_json(&bytes),
            _ => None,
        })
        .collect())
}

pub(super) async fn run(run: &Run<'_>, work: &mut Work) -> Result<(), JobError> {
    let snapshot = snapshot_cache(run.redis).await?;
    work.rows = 1;
    work.note(format!(
        "cache hit rate {:.2} % ({} hits, {} misses); since the previous snapshot {}",
        snapshot.hit_rate,
        snapshot.hits,
        snapshot.misses,
        snapshot
            .window
            .map(|w| format!("{:.2} %", w.hit_rate))
            .unwrap_or_else(|| "n/a".to_owned())
    ));
    Ok(())
}
