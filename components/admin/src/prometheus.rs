//! `GET /metrics`: Prometheus text for the whole service, whichever instance answers.
//!
//! Request, LLM, cache and breaker figures come from Redis, where every instance adds to
//! them; Redis and PostgreSQL figures are read from the servers at scrape time. A
//! dependency that cannot be read is reported as `evolve_redis_up 0` or `evolve_pg_up 0`
//! and its families are left out, so a scrape still succeeds and the outage is visible.

use evolve_core::admin::Figure;
use evolve_core::breaker;
use evolve_core::keys;
use evolve_core::metrics::{self, BreakerFigures, Exposition, Kind};
use evolve_core::queue::scripts;
use evolve_core::queue::stats::QueueStats;
use evolve_platform::http::Response;
use evolve_platform::queue::RedisQueue;
use evolve_platform::redis::{Redis, RedisError};
use evolve_platform::{metrics as recorded, time};

use crate::db::Snapshot;
use crate::{cache, reply, Context};

pub async fn get(context: &Context) -> Response {
    let mut out = Exposition::new();
    let redis_up = match context.redis.get().await {
        Ok(redis) => write_redis(&mut out, redis, context).await.is_ok(),
        Err(_) => false,
    };
    out.family(
        "evolve_redis_up",
        Kind::Gauge,
        "1 when this scrape could read Redis.",
    );
    out.sample("evolve_redis_up", &[], if redis_up { 1.0 } else { 0.0 });

    let snapshot = match context.pg.get().await {
        Ok(pg) => Snapshot::read(&pg).await,
        Err(error) => Err(error),
    };
    out.family(
        "evolve_pg_up",
        Kind::Gauge,
        "1 when this scrape could read PostgreSQL.",
    );
    out.sample(
        "evolve_pg_up",
        &[],
        if snapshot.is_ok() { 1.0 } else { 0.0 },
    );
    if let Ok(snapshot) = snapshot {
        write_pg(&mut out, &snapshot);
    }
    reply::text(200, metrics::CONTENT_TYPE, out.finish())
}

/// Everything kept in Redis, then Redis' own figures. Fails as a whole if a read fails,
/// so that `evolve_redis_up` says whether the families are complete.
async fn write_redis(
    out: &mut Exposition,
    redis: &Redis,
    context: &Context,
) -> Result<(), RedisError> {
    let fields = recorded::recorded(redis).await?;
    let counters = redis.hgetall(keys::CACHE_STATS).await?;
    let breaker_fields = redis.hgetall(keys::BREAKER_STATE).await?;
    let tts_fields = redis.hgetall(keys::BREAKER_TTS).await?;
    let queue_reply = RedisQueue::new(redis).call(&scripts::stats()).await?;
    let info = cache::info(redis).await?;
    let keys_count = cache::dbsize(redis).await?;

    metrics::render_recorded(out, &fields);
    metrics::render_cache(out, &counters);
    let open_ms = context.config.breaker.open.as_millis() as u64;
    let now = time::now_ms();
    let llm = breaker::parse_stats(&breaker_fields, open_ms, now);
    let tts = breaker::parse_stats(&tts_fields, open_ms, now);
    let figures: Vec<BreakerFigures> = [("llm", &llm, &breaker_fields), ("tts", &tts, &tts_fields)]
        .into_iter()
        .filter_map(|(name, stats, fields)| {
            Some(BreakerFigures {
                name,
                stats: stats.as_ref().ok()?,
                fields,
            })
        })
        .collect();
    metrics::render_breakers(out, &figures);
    if let Ok(queue) = QueueStats::parse(&queue_reply, now) {
        queue.render(out);
    }
    crate::scheduler::write_metrics(out, redis).await;

    for (name, kind, help, value) in [
        (
            "evolve_redis_used_memory_bytes",
            Kind::Gauge,
            "Memory Redis uses (INFO used_memory).",
            info.number("used_memory"),
        ),
        (
            "evolve_redis_connected_clients",
            Kind::Gauge,
            "Client connections to Redis.",
            info.number("connected_clients"),
        ),
        (
            "evolve_redis_keys",
            Kind::Gauge,
            "Keys in the application's Redis database.",
            Some(keys_count),
        ),
        (
            "evolve_redis_keyspace_hits_total",
            Kind::Counter,
            "Successful key lookups, server-wide.",
            info.number("keyspace_hits"),
        ),
        (
            "evolve_redis_keyspace_misses_total",
            Kind::Counter,
            "Failed key lookups, server-wide.",
            info.number("keyspace_misses"),
        ),
        (
            "evolve_redis_commands_processed_total",
            Kind::Counter,
            "Commands Redis processed (its operations per second is the rate of this).",
            info.number("total_commands_processed"),
        ),
    ] {
        if let Some(value) = value {
            out.family(name, kind, help);
            out.sample(name, &[], value as f64);
        }
    }
    Ok(())
}

/// PostgreSQL's figures; an unreadable figure leaves its sample out (see `/admin/db_metrics`
/// for why it could not be read).
fn write_pg(out: &mut Exposition, snapshot: &Snapshot) {
    let sample =
        |out: &mut Exposition, name: &str, labels: &[(&str, &str)], figure: &Figure<i64>| {
            if let Some(value) = figure.value() {
                out.sample(name, labels, *value as f64);
            }
        };
    out.family(
        "evolve_pg_connections",
        Kind::Gauge,
        "Client connections to the PostgreSQL server, by state.",
    );
    if let Some(by_state) = snapshot.by_state.value() {
        for (state, count) in by_state {
            out.sample("evolve_pg_connections", &[("state", state)], *count as f64);
        }
    }
    out.family(
        "evolve_pg_max_connections",
        Kind::Gauge,
        "PostgreSQL's max_connections.",
    );
    sample(
        out,
        "evolve_pg_max_connections",
        &[],
        &snapshot.max_connections,
    );
    out.family(
        "evolve_pg_transactions_total",
        Kind::Counter,
        "Transactions of the application's database, by outcome.",
    );
    sample(
        out,
        "evolve_pg_transactions_total",
        &[("outcome", "commit")],
        &snapshot.xact_commit,
    );
    sample(
        out,
        "evolve_pg_transactions_total",
        &[("outcome", "rollback")],
        &snapshot.xact_rollback,
    );
    out.family(
        "evolve_pg_blocks_total",
        Kind::Counter,
        "Block reads of the application's database, by source (hit: buffer cache, read: disk or OS).",
    );
    sample(
        out,
        "evolve_pg_blocks_total",
        &[("source", "hit")],
        &snapshot.blks_hit,
    );
    sample(
        out,
        "evolve_pg_blocks_total",
        &[("source", "read")],
        &snapshot.blks_read,
    );
    out.family(
        "evolve_pg_deadlocks_total",
        Kind::Counter,
        "Deadlocks detected in the application's database.",
    );
    sample(out, "evolve_pg_deadlocks_total", &[], &snapshot.deadlocks);
    out.family(
        "evolve_pg_slow_queries",
        Kind::Gauge,
        "Active statements running longer than 1 s at scrape time.",
    );
    sample(out, "evolve_pg_slow_queries", &[], &snapshot.slow_queries);
    out.family(
        "evolve_pg_longest_query_seconds",
        Kind::Gauge,
        "Running time of the longest active statement at scrape time.",
    );
    if let Some(seconds) = snapshot.longest_query_seconds.value() {
        out.sample("evolve_pg_longest_query_seconds", &[], *seconds);
    }
    out.family(
        "evolve_pg_table_size_bytes",
        Kind::Gauge,
        "Size of each table, indexes included (a partitioned table: all its partitions).",
    );
    if let Some(tables) = snapshot.tables.value() {
        for table in tables {
            sample(
                out,
                "evolve_pg_table_size_bytes",
                &[("table", &table.name)],
                &table.size_bytes,
            );
        }
    }
}
