//! The scheduled jobs of the real `spin.toml`, each fired through the local host's cron
//! trigger (`evolve_host::cron::fire`, as the cron plugin calls them) against real
//! PostgreSQL and Redis with prepared data. (The lease scripts on their own are in the
//! platform tests, `lease_scripts.rs`.)
//!
//! Tests that change the schema or every user work in a scratch database of their own,
//! created, migrated and dropped (even when the test fails), so they neither disturb nor
//! see the other tests; each test claims its own Redis database.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use chrono::Datelike;
use evolve_core::jobs::{self, Job, JobsConfig, Month, Outcome, RunRecord, Trigger, JOBS};
use evolve_core::keys;
use redis::AsyncCommands;
use tokio_postgres::Client;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

// --- scratch databases, the app, records -------------------------------------------------

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("test PostgreSQL is not reachable");
    tokio::spawn(async move {
        // Ends when the client is dropped; errors then are expected.
        let _ = connection.await;
    });
    client
}

/// The application on Redis database `db` and the PostgreSQL at `pg`, with `vars` set.
async fn app(db: u8, pg: &str, vars: &[(&str, String)]) -> Arc<evolve_host::App> {
    flush_redis_db(db).await;
    let mut options = app_options(&redis_db(db), pg);
    for (name, value) in vars {
        set_var(&mut options, name, value);
    }
    evolve_host::App::load(&options)
        .await
        .expect("the application loads")
}

/// Fires the job's cron component as the plugin does at `at_ms` (sent in seconds).
async fn fire(app: &evolve_host::App, job: Job, at_ms: i64) -> anyhow::Result<()> {
    evolve_host::cron::fire(app, &job.spec().component(), (at_ms / 1_000) as u64).await
}

async fn record_at(db: u8, key: &str) -> Option<RunRecord> {
    let bytes: Option<Vec<u8>> = redis_in(db).await.get(key).await.unwrap();
    bytes.map(|b| RunRecord::from_json(&b).expect("a stored run record parses"))
}

async fn last_run(db: u8, job: Job) -> Option<RunRecord> {
    record_at(db, &keys::job_last(job.name())).await
}

async fn last_skip(db: u8, job: Job) -> Option<RunRecord> {
    record_at(db, &keys::job_skipped(job.name())).await
}

async fn history(db: u8, job: Job) -> Vec<RunRecord> {
    let items: Vec<Vec<u8>> = redis_in(db)
        .await
        .lrange(keys::job_history(job.name()), 0, -1)
        .await
        .unwrap();
    items
        .iter()
        .map(|b| RunRecord::from_json(b).unwrap())
        .collect()
}

async fn new_user(client: &Client, external_id: &str) -> i64 {
    client
        .query_one(
            "INSERT INTO users (external_id) VALUES ($1) RETURNING id",
            &[&external_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Inserts one message per `(label, created_at_ms)`; returns where each landed.
async fn insert_messages(
    client: &Client,
    user_id: i64,
    rows: &[(String, i64)],
) -> BTreeMap<String, String> {
    let mut landed = BTreeMap::new();
    for (label, at_ms) in rows {
        let partition: String = client
            .query_one(
                "INSERT INTO chat_history (user_id, role, content, created_at)
                 VALUES ($1, 'user', $2, timestamptz 'epoch' + $3::int8 * interval '1 millisecond')
                 RETURNING tableoid::regclass::text",
                &[&user_id, label, at_ms],
            )
            .await
            .unwrap()
            .get(0);
        landed.insert(label.clone(), partition);
    }
    landed
}

/// Every message left, by label, with the partition it is in.
async fn messages(client: &Client) -> BTreeMap<String, String> {
    client
        .query(
            "SELECT content, tableoid::regclass::text FROM chat_history",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

async fn partitions(client: &Client) -> BTreeSet<String> {
    client
        .query(
            "SELECT inhrelid::regclass::text FROM pg_inherits
              WHERE inhparent = 'chat_history'::regclass",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Creates a month partition the way an operator (or an earlier month's job) did.
async fn create_partition(client: &Client, month: Month) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {} PARTITION OF chat_history FOR VALUES FROM ('{}') TO ('{}')",
            month.partition_name(),
            jobs::rfc3339(month.start_ms() as u64),
            jobs::rfc3339(month.end_ms() as u64),
        ))
        .await
        .unwrap();
}

/// A retention period that puts the cut-off in the previous month, at least 18 days in:
/// ten days before the end of that month, whatever today's date.
fn retention_into_last_month(now: i64) -> u32 {
    chrono::DateTime::from_timestamp_millis(now).unwrap().day() + 10
}

fn set(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(|s| s.to_string()).collect()
}

// --- the schedules ---------------------------------------------------------------------

#[test]
fn spin_toml_declares_every_job_with_the_core_schedule() {
    let text = std::fs::read_to_string(workspace().join("spin.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&text).unwrap();

    let declared: BTreeMap<String, String> = manifest["trigger"]["cron"]
        .as_array()
        .expect("spin.toml has [[trigger.cron]] entries")
        .iter()
        .map(|t| {
            (
                t["component"].as_str().unwrap().to_owned(),
                t["cron_expression"].as_str().unwrap().to_owned(),
            )
        })
        // The work queue's drain is on the cron trigger too, but it is not a job: every
        // instance drains, no lease.
        .filter(|(component, _)| component != "worker-cron")
        .collect();
    let expected: BTreeMap<String, String> = JOBS
        .iter()
        .map(|spec| (spec.component(), spec.schedule.to_owned()))
        .collect();
    assert_eq!(
        declared, expected,
        "spin.toml's cron schedules must equal evolve_core::jobs::JOBS"
    );

    let job_variables = [
        "redis_url",
        "pg_url",
        "redis_timeout_ms",
        "pg_timeout_ms",
        "history_retention_days",
        "partitions_ahead_months",
        "job_budget_ms",
        "job_lock_timeout_ms",
        "cleanup_batch_size",
        "cache_warm_count",
        "profile_cache_ttl_seconds",
    ];
    for spec in JOBS {
        let component = &manifest["component"][spec.component()];
        assert_eq!(
            component["source"].as_str(),
            Some("target/wasm32-wasip2/release/evolve_jobs.wasm"),
            "{}",
            spec.name
        );
        let variables = component["variables"].as_table().unwrap();
        assert_eq!(variables["job"].as_str(), Some(spec.name));
        for name in job_variables {
            assert_eq!(
                variables.get(name).and_then(|v| v.as_str()),
                Some(format!("{{{{ {name} }}}}").as_str()),
                "{} passes {name}",
                spec.component()
            );
        }
        // The host's cron trigger (the plugin's parser) accepts it too.
        evolve_host::cron::schedule(spec.schedule).unwrap();
    }

    // The manifest's defaults are the ones the code falls back to.
    let defaults = &manifest["variables"];
    for (name, default) in [
        ("history_retention_days", JobsConfig::DEFAULT_RETENTION_DAYS),
        (
            "partitions_ahead_months",
            JobsConfig::DEFAULT_PARTITIONS_AHEAD,
        ),
        ("job_budget_ms", JobsConfig::DEFAULT_BUDGET_MS),
        ("job_lock_timeout_ms", JobsConfig::DEFAULT_LOCK_TIMEOUT_MS),
        ("cleanup_batch_size", JobsConfig::DEFAULT_CLEANUP_BATCH),
        ("cache_warm_count", JobsConfig::DEFAULT_WARM_COUNT),
    ] {
        assert_eq!(
            defaults[name]["default"].as_str(),
            Some(default.to_string().as_str()),
            "{name}"
        );
    }
}

// --- cleanup ---------------------------------------------------------------------------

/// Messages on both sides of every boundary that matters, the cut-off put in the previous
/// month; the month before that has a partition (to be dropped), the one before has none
/// (its rows are strays in the default partition), and so does a future month.
async fn cleanup_scenario(db: u8, boundary_partitioned: bool) {
    let scratch = ScratchDb::migrated("jobs").await;
    let url = scratch.url.clone();
    let client = connect(&url).await;
    let now = now_ms();
    let retention = retention_into_last_month(now);
    let cutoff = evolve_core::retention::cutoff_ms(now, retention);
    let current = Month::containing(now).unwrap();
    let boundary = current.minus(1).unwrap();
    let old = current.minus(2).unwrap();
    let older = current.minus(3).unwrap();
    let future = current.plus(3).unwrap();
    assert_eq!(Month::containing(cutoff), Some(boundary));

    create_partition(&client, old).await;
    if boundary_partitioned {
        create_partition(&client, boundary).await;
    }
    let user = new_user(&client, "retention-user").await;
    let mut rows = vec![
        ("older-stray".to_owned(), older.start_ms() + 10 * DAY),
        ("old-first".to_owned(), old.start_ms() + SECOND),
        ("old-last".to_owned(), old.end_ms() - SECOND),
        ("boundary-first".to_owned(), boundary.start_ms() + SECOND),
        // The job computes its cut-off a little later than this test: two minutes
        // of margin on the kept side.
        ("boundary-after-cutoff".to_owned(), cutoff + 2 * MINUTE),
        ("boundary-last".to_owned(), boundary.end_ms() - SECOND),
        ("current-first".to_owned(), current.start_ms() + SECOND),
        ("current-recent".to_owned(), now - MINUTE),
        ("future-stray".to_owned(), future.start_ms() + DAY),
    ];
    for i in 1..=5 {
        rows.push((format!("boundary-before-cutoff-{i}"), cutoff - i * MINUTE));
    }
    let landed = insert_messages(&client, user, &rows).await;
    let boundary_table = if boundary_partitioned {
        boundary.partition_name()
    } else {
        jobs::DEFAULT_PARTITION.to_owned()
    };
    assert_eq!(landed["older-stray"], jobs::DEFAULT_PARTITION);
    assert_eq!(landed["future-stray"], jobs::DEFAULT_PARTITION);
    assert_eq!(landed["old-last"], old.partition_name());
    assert_eq!(landed["boundary-before-cutoff-1"], boundary_table);
    assert_eq!(landed["boundary-after-cutoff"], boundary_table);

    let app = app(
        db,
        &url,
        &[
            ("history_retention_days", retention.to_string()),
            // Several batches per table.
            ("cleanup_batch_size", "2".to_string()),
        ],
    )
    .await;
    fire(&app, Job::Cleanup, now).await.unwrap();

    let left: BTreeSet<String> = messages(&client).await.into_keys().collect();
    assert_eq!(
        left,
        set(&[
            "boundary-after-cutoff",
            "boundary-last",
            "current-first",
            "current-recent",
            "future-stray",
        ]),
        "exactly the expired messages are gone"
    );
    let tables = partitions(&client).await;
    assert!(!tables.contains(&old.partition_name()), "{tables:?}");
    assert!(tables.contains(jobs::DEFAULT_PARTITION), "{tables:?}");
    assert_eq!(
        tables.contains(&boundary.partition_name()),
        boundary_partitioned
    );

    let record = last_run(db, Job::Cleanup)
        .await
        .expect("the run is recorded");
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(record.trigger, Trigger::Cron);
    // Deleted by statement: the older stray, the boundary month's first message and
    // the five before the cut-off (the dropped partition's rows are not counted).
    assert_eq!(record.rows_affected, 7, "{record:?}");
    assert!(
        record
            .detail
            .contains(&format!("dropped {}", old.partition_name())),
        "{record:?}"
    );
    assert_eq!(
        record.slot_ms,
        Job::Cleanup.spec().parsed_schedule().slot_ms(now as u64)
    );
    assert_eq!(history(db, Job::Cleanup).await, vec![record]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_exactly_the_expired_rows_across_month_boundaries() {
    let rdb = RedisDb::claim().await;
    cleanup_scenario(rdb.number, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_trims_a_boundary_month_that_is_still_in_the_default_partition() {
    let rdb = RedisDb::claim().await;
    cleanup_scenario(rdb.number, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_stops_at_its_budget_and_the_next_run_resumes() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("jobs").await;
    let url = scratch.url.clone();
    let client = connect(&url).await;
    let now = now_ms();
    let user = new_user(&client, "budget-user").await;
    // 3,000 expired rows in the default partition.
    client
        .execute(
            "INSERT INTO chat_history (user_id, role, content, created_at)
             SELECT $1, 'user', 'old ' || i, timestamptz '2001-01-01' + i * interval '1 minute'
             FROM generate_series(1, 3000) i",
            &[&user],
        )
        .await
        .unwrap();
    let app = app(
        rdb.number,
        &url,
        &[
            ("cleanup_batch_size", "1".to_string()),
            ("job_budget_ms", "100".to_string()),
        ],
    )
    .await;
    fire(&app, Job::Cleanup, now).await.unwrap();
    let first = last_run(rdb.number, Job::Cleanup).await.unwrap();
    assert_eq!(first.outcome, Outcome::Ok);
    assert!(
        first.rows_affected > 0 && first.rows_affected < 3_000,
        "{first:?}"
    );
    assert!(first.detail.contains("time budget spent"), "{first:?}");

    // Runs on later days go on where the previous one stopped, until nothing is left.
    let mut total = first.rows_affected;
    let mut day = 1;
    loop {
        let left: i64 = client
            .query_one("SELECT count(*) FROM chat_history", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(3_000 - total as i64, left, "the records count what went");
        if left == 0 {
            break;
        }
        assert!(
            day < 500,
            "the cleanup does not progress ({left} rows left)"
        );
        fire(&app, Job::Cleanup, now + day * DAY).await.unwrap();
        total += last_run(rdb.number, Job::Cleanup)
            .await
            .unwrap()
            .rows_affected;
        day += 1;
    }
}

// --- partitions ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn partitions_are_created_ahead_and_strays_move_into_them() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("jobs").await;
    let url = scratch.url.clone();
    let client = connect(&url).await;
    let now = now_ms();
    let retention = retention_into_last_month(now);
    let current = Month::containing(now).unwrap();
    let last_month = current.minus(1).unwrap();
    let user = new_user(&client, "partition-user").await;
    let landed = insert_messages(
        &client,
        user,
        &[
            // Within retention, but its month has no partition.
            ("last-month".to_owned(), last_month.end_ms() - HOUR),
            // Wholly expired: the cleanup's to delete.
            (
                "expired".to_owned(),
                current.minus(3).unwrap().start_ms() + DAY,
            ),
            // Within the three months ahead.
            (
                "ahead".to_owned(),
                current.plus(2).unwrap().start_ms() + DAY,
            ),
            ("ahead-2".to_owned(), current.plus(2).unwrap().end_ms() - 1),
            // Beyond them.
            (
                "beyond".to_owned(),
                current.plus(6).unwrap().start_ms() + DAY,
            ),
        ],
    )
    .await;
    assert!(
        landed.values().all(|p| p == jobs::DEFAULT_PARTITION),
        "{landed:?}"
    );

    let app = app(
        rdb.number,
        &url,
        &[
            ("history_retention_days", retention.to_string()),
            ("partitions_ahead_months", "3".to_string()),
        ],
    )
    .await;
    // Two runs at once (as two instances whose events belong to different slots).
    let (a, b) = tokio::join!(
        fire(&app, Job::Partitions, now),
        fire(&app, Job::Partitions, now + DAY)
    );
    a.unwrap();
    b.unwrap();

    let mut expected: BTreeSet<String> = (0..=3)
        .map(|n| current.plus(n).unwrap().partition_name())
        .collect();
    expected.insert(last_month.partition_name());
    expected.insert(jobs::DEFAULT_PARTITION.to_owned());
    assert_eq!(partitions(&client).await, expected);

    let placed = messages(&client).await;
    assert_eq!(placed["last-month"], last_month.partition_name());
    assert_eq!(placed["ahead"], current.plus(2).unwrap().partition_name());
    assert_eq!(placed["ahead-2"], current.plus(2).unwrap().partition_name());
    assert_eq!(placed["expired"], jobs::DEFAULT_PARTITION);
    assert_eq!(placed["beyond"], jobs::DEFAULT_PARTITION);

    // One run's work: the rows moved once, whether the other run was skipped (it
    // found the lease taken) or ran after it and found nothing to do.
    let runs = history(rdb.number, Job::Partitions).await;
    assert!(runs.iter().all(|r| r.outcome == Outcome::Ok), "{runs:?}");
    assert_eq!(
        runs.iter().map(|r| r.rows_affected).sum::<u64>(),
        3,
        "{runs:?}"
    );
    match runs.len() {
        1 => {
            let skip = last_skip(rdb.number, Job::Partitions)
                .await
                .expect("a skip recorded");
            assert_eq!(skip.outcome, Outcome::Skipped);
            assert_eq!(skip.lease, runs[0].lease, "the skip names the lease holder");
        }
        2 => assert!(runs.iter().any(|r| r.rows_affected == 0), "{runs:?}"),
        n => panic!("{n} runs recorded"),
    }

    // New messages for those months land in their partitions, not in the default.
    let landed = insert_messages(
        &client,
        user,
        &[(
            "new-ahead".to_owned(),
            current.plus(3).unwrap().start_ms() + HOUR,
        )],
    )
    .await;
    assert_eq!(
        landed["new-ahead"],
        current.plus(3).unwrap().partition_name()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_ddl_gives_up_on_a_held_lock_and_the_next_run_retries() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("jobs").await;
    let client = connect(&scratch.url).await;
    let now = now_ms();
    let third = Month::containing(now).unwrap().plus(3).unwrap();
    assert!(!partitions(&client).await.contains(&third.partition_name()));

    // Another session holds a lock that ATTACH PARTITION needs (reads and writes still go
    // on beside it), as a long maintenance statement would.
    let holder = connect(&scratch.url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE chat_history IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let app = app(
        rdb.number,
        &scratch.url,
        &[
            ("partitions_ahead_months", "3".to_string()),
            ("job_lock_timeout_ms", "200".to_string()),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    fire(&app, Job::Partitions, now).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run waited {:?}",
        started.elapsed()
    );
    let run = last_run(rdb.number, Job::Partitions).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
    assert!(
        run.detail.contains("lock not granted within 200 ms"),
        "{run:?}"
    );
    assert!(!partitions(&client).await.contains(&third.partition_name()));
    // The chat path is not blocked meanwhile.
    let user = new_user(&client, "lock-user").await;
    insert_messages(&client, user, &[("while-locked".to_owned(), now)]).await;

    // Once the lock is gone, the next run creates the partition.
    holder.batch_execute("COMMIT").await.unwrap();
    fire(&app, Job::Partitions, now + DAY).await.unwrap();
    assert!(partitions(&client).await.contains(&third.partition_name()));
}

// --- subscriptions -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_expire_exactly_those_past_due_and_their_cache_entries_go() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("jobs").await;
    let url = scratch.url.clone();
    let client = connect(&url).await;
    // (external id, plan, premium_until relative to now in hours)
    let users: [(&str, &str, Option<i64>); 5] = [
        ("sub-past-due", "premium", Some(-1)),
        ("sub-long-past", "premium", Some(-24 * 40)),
        ("sub-still-paid", "premium", Some(1)),
        ("sub-no-end", "premium", None),
        ("sub-free", "free", Some(-1)),
    ];
    for (id, plan, hours) in users {
        client
            .execute(
                "INSERT INTO users (external_id, plan, premium_until)
                 VALUES ($1, $2, now() + make_interval(hours => $3::int4))",
                &[&id, &plan, &hours.map(|h| h as i32)],
            )
            .await
            .unwrap();
    }
    let app = app(rdb.number, &url, &[]).await;
    let mut redis = redis_in(rdb.number).await;
    for (id, _, _) in users {
        let user = evolve_core::ids::UserRef::parse(id).unwrap();
        let _: () = redis.set(keys::profile(&user), "cached").await.unwrap();
    }

    fire(&app, Job::Subscriptions, now_ms()).await.unwrap();

    let plans: BTreeMap<String, String> = client
        .query("SELECT external_id, plan FROM users", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let expected: BTreeMap<String, String> = [
        ("sub-past-due", "free"),
        ("sub-long-past", "free"),
        ("sub-still-paid", "premium"),
        ("sub-no-end", "premium"),
        ("sub-free", "free"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(plans, expected);
    for (id, _, _) in users {
        let user = evolve_core::ids::UserRef::parse(id).unwrap();
        let cached: bool = redis.exists(keys::profile(&user)).await.unwrap();
        let expired = id == "sub-past-due" || id == "sub-long-past";
        assert_eq!(cached, !expired, "{id}");
    }
    let record = last_run(rdb.number, Job::Subscriptions).await.unwrap();
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(record.rows_affected, 2, "{record:?}");

    // An hour later there is nothing left to expire.
    fire(&app, Job::Subscriptions, now_ms() + HOUR)
        .await
        .unwrap();
    let record = last_run(rdb.number, Job::Subscriptions).await.unwrap();
    assert_eq!(record.rows_affected, 0, "{record:?}");
}

// --- cache metrics, the lease --------------------------------------------------------------

async fn snapshots(db: u8) -> Vec<jobs::CacheSnapshot> {
    let items: Vec<Vec<u8>> = redis_in(db)
        .await
        .lrange(keys::CACHE_METRICS, 0, -1)
        .await
        .unwrap();
    items
        .iter()
        .map(|b| jobs::CacheSnapshot::from_json(b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_runs_of_one_job_do_one_runs_work() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let app = app(rdb.number, &pg_url(), &[]).await;
    let mut redis = redis_in(rdb.number).await;
    let _: () = redis
        .hset_multiple(
            keys::CACHE_STATS,
            &[("profile:hits", "30"), ("profile:misses", "10")],
        )
        .await
        .unwrap();

    // The same schedule slot fired on two instances at once, their clocks a little apart.
    let now = now_ms() / (5 * MINUTE) * (5 * MINUTE);
    let (a, b) = tokio::join!(
        fire(&app, Job::CacheMetrics, now + SECOND),
        fire(&app, Job::CacheMetrics, now + 2 * SECOND)
    );
    a.unwrap();
    b.unwrap();
    let series = snapshots(rdb.number).await;
    assert_eq!(series.len(), 1, "one snapshot for one slot");
    assert_eq!(series[0].prefixes["profile"].hit_rate, 75.0);
    let runs = history(rdb.number, Job::CacheMetrics).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Outcome::Ok);
    assert_eq!(runs[0].rows_affected, 1);
    let skip = last_skip(rdb.number, Job::CacheMetrics)
        .await
        .expect("the other run is recorded");
    assert_eq!(skip.outcome, Outcome::Skipped);
    assert_eq!(skip.slot_ms, runs[0].slot_ms);

    // A late event of the same slot (an instance whose clock is behind) skips too.
    fire(&app, Job::CacheMetrics, now + 5_000).await.unwrap();
    assert_eq!(snapshots(rdb.number).await.len(), 1);

    // The next slot snapshots again, with the hit rate since the previous snapshot.
    let _: () = redis
        .hset_multiple(
            keys::CACHE_STATS,
            &[("profile:hits", "40"), ("profile:misses", "20")],
        )
        .await
        .unwrap();
    fire(&app, Job::CacheMetrics, now + 5 * MINUTE)
        .await
        .unwrap();
    let series = snapshots(rdb.number).await;
    assert_eq!(series.len(), 2);
    let window = series[0]
        .window
        .expect("a window since the previous snapshot");
    assert_eq!((window.hits, window.misses), (10, 10));
    assert!(series[0].used_memory_bytes > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lease_makes_runs_skip_until_it_expires() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let app = app(rdb.number, &pg_url(), &[]).await;
    let mut redis = redis_in(rdb.number).await;
    // A run that crashed while holding the lease.
    let lease = keys::job_lease(Job::CacheMetrics.name());
    let _: () = redis.pset_ex(&lease, "crashed-run", 1_500).await.unwrap();

    let now = now_ms();
    fire(&app, Job::CacheMetrics, now).await.unwrap();
    assert!(
        snapshots(rdb.number).await.is_empty(),
        "a skipped run does nothing"
    );
    let skip = last_skip(rdb.number, Job::CacheMetrics).await.unwrap();
    assert_eq!(skip.outcome, Outcome::Skipped);
    assert_eq!(skip.lease, "crashed-run");
    assert_eq!(last_run(rdb.number, Job::CacheMetrics).await, None);

    // Once the lease has expired the same slot runs (no run of it finished).
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    fire(&app, Job::CacheMetrics, now).await.unwrap();
    assert_eq!(snapshots(rdb.number).await.len(), 1);
    let run = last_run(rdb.number, Job::CacheMetrics).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok);
    // The lease is released at the end of the run.
    let held: bool = redis.exists(&lease).await.unwrap();
    assert!(!held);
}

// --- cache warm-up -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn cache_warm_loads_the_most_recently_active_users_profiles() {
    let rdb = RedisDb::claim().await;
    let scratch = ScratchDb::migrated("jobs").await;
    let url = scratch.url.clone();
    let client = connect(&url).await;
    let now = now_ms();
    for (id, ago) in [
        ("warm-a", 50 * MINUTE),
        ("warm-b", 30 * MINUTE),
        ("warm-c", 10 * MINUTE),
        ("warm-idle", 3 * DAY),
    ] {
        let user = new_user(&client, id).await;
        insert_messages(&client, user, &[(format!("{id} says hi"), now - ago)]).await;
    }
    let app = app(rdb.number, &url, &[("cache_warm_count", "2".to_string())]).await;
    fire(&app, Job::CacheWarm, now).await.unwrap();

    let mut redis = redis_in(rdb.number).await;
    for (id, warmed) in [
        ("warm-a", false),
        ("warm-b", true),
        ("warm-c", true),
        ("warm-idle", false),
    ] {
        let user = evolve_core::ids::UserRef::parse(id).unwrap();
        let entry: Option<String> = redis.get(keys::profile(&user)).await.unwrap();
        assert_eq!(entry.is_some(), warmed, "{id}");
        if let Some(entry) = entry {
            // The chat component's cache format, holding the profile.
            let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
            assert!(entry["v"]["user_id"].as_i64().is_some(), "{entry}");
        }
    }
    let record = last_run(rdb.number, Job::CacheWarm).await.unwrap();
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(record.rows_affected, 2);
    // Warm-up loads are counted apart from users' misses.
    let warm: BTreeMap<String, i64> = redis.hgetall(keys::CACHE_WARM_STATS).await.unwrap();
    assert_eq!(warm.get("profile:misses"), Some(&2));
    let users: BTreeMap<String, i64> = redis.hgetall(keys::CACHE_STATS).await.unwrap();
    assert!(users.is_empty(), "{users:?}");

    // The next run finds them cached.
    fire(&app, Job::CacheWarm, now + 10 * MINUTE).await.unwrap();
    let record = last_run(rdb.number, Job::CacheWarm).await.unwrap();
    assert_eq!(record.rows_affected, 0, "{record:?}");
    assert!(record.detail.contains("2 already cached"), "{record:?}");
}

// --- running without the cron plugin ------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_route_runs_a_job_under_the_same_lease() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let options = app_options(&redis_db(rdb.number), &pg_url());
    let running = start(&options, HTTP_ONLY).await;
    let post = |path: &str, token: Option<&str>| {
        let mut request = client().post(url(running.addr, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    const TOKEN: Option<&str> = Some("test-admin-token");

    let response = post("/admin/jobs/cache-metrics/run", TOKEN).await.unwrap();
    assert_eq!(response.status(), 200);
    let record: RunRecord = response.json().await.unwrap();
    assert_eq!(record.outcome, Outcome::Ok);
    assert_eq!(record.trigger, Trigger::Admin);
    assert_eq!(record.slot_ms, None);
    assert_eq!(
        last_run(rdb.number, Job::CacheMetrics).await,
        Some(record.clone())
    );
    assert_eq!(snapshots(rdb.number).await.len(), 1);

    // The recorded run is what /admin/scheduler_status shows, next to the schedule.
    let status: serde_json::Value = client()
        .get(url(running.addr, "/admin/scheduler_status"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = status["scheduler"]["jobs"].as_array().unwrap();
    assert_eq!(listed.len(), JOBS.len(), "{status}");
    let shown = listed
        .iter()
        .find(|j| j["name"] == "cache-metrics")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(shown["schedule"], Job::CacheMetrics.spec().schedule);
    assert_eq!(shown["id"], "collect_cache_metrics");
    let shown_run: RunRecord = serde_json::from_value(shown["last_run"].clone()).unwrap();
    assert_eq!(shown_run, record);

    // A run holding the lease (a cron run, say) makes the route answer 409, doing nothing.
    let mut redis = redis_in(rdb.number).await;
    let _: () = redis
        .pset_ex(
            keys::job_lease(Job::CacheMetrics.name()),
            "cron-run",
            60_000,
        )
        .await
        .unwrap();
    let response = post("/admin/jobs/cache-metrics/run", TOKEN).await.unwrap();
    assert_eq!(response.status(), 409);
    let record: RunRecord = response.json().await.unwrap();
    assert_eq!(record.outcome, Outcome::Skipped);
    assert_eq!(record.lease, "cron-run");
    assert_eq!(snapshots(rdb.number).await.len(), 1);

    // Errors: no token, unknown job, wrong method.
    let response = post("/admin/jobs/cache-metrics/run", None).await.unwrap();
    assert_eq!(response.status(), 401);
    let response = post("/admin/jobs/nightly/run", TOKEN).await.unwrap();
    assert_eq!(response.status(), 404);
    let response = client()
        .get(url(running.addr, "/admin/jobs/cleanup/run"))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}
