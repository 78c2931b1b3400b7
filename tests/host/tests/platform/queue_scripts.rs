//! The work queue's scripts and drain loop (`evolve_core::queue`), run natively on the
//! real test Redis: the same scripts and the same loop the worker runs on Spin, with a
//! store on the `redis` crate, a test runner in place of the task handlers, and drains
//! interleaved (and killed) by the test.
//!
//! Each test claims a Redis database of its own: the queue's keys are application-wide.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::common::*;
use evolve_core::keys;
use evolve_core::queue::drain::{self, Clock, QueueStore, StoreError, TaskError, TaskRunner};
use evolve_core::queue::scripts::{self, Enqueued, Reply, ScriptCall};
use evolve_core::queue::stats::QueueStats;
use evolve_core::queue::{Kind, NewTask, Priority, QueueConfig, Task};
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

/// The scripts on a `redis` crate connection, replies flattened as Spin flattens them.
#[derive(Clone)]
struct NativeStore(MultiplexedConnection);

fn flatten(value: redis::Value, out: &mut Vec<Reply>) {
    match value {
        redis::Value::Nil => out.push(Reply::Nil),
        redis::Value::Int(n) => out.push(Reply::Int(n)),
        redis::Value::BulkString(bytes) => {
            out.push(Reply::Text(String::from_utf8_lossy(&bytes).into_owned()))
        }
        redis::Value::SimpleString(text) => out.push(Reply::Text(text)),
        redis::Value::Okay => out.push(Reply::Text("OK".to_owned())),
        redis::Value::Array(items) => items.into_iter().for_each(|v| flatten(v, out)),
        other => panic!("unexpected reply {other:?}"),
    }
}

impl QueueStore for NativeStore {
    async fn run(&self, call: &ScriptCall) -> Result<Vec<Reply>, StoreError> {
        let mut conn = self.0.clone();
        let value: redis::Value = redis::cmd("EVAL")
            .arg(call.script.source)
            .arg(call.keys.len())
            .arg(&call.keys)
            .arg(&call.args)
            .query_async(&mut conn)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        let mut out = Vec::new();
        flatten(value, &mut out);
        Ok(out)
    }
}

struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }
    fn random_u64(&self) -> u64 {
        rand_u64()
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(WallClock.now_ms());
    h.finish()
}

/// A runner whose behaviour per task id the test sets; it records every run, and its
/// effect is idempotent (`SADD` of the task id), as the real handlers' effects are.
#[derive(Clone, Default)]
struct TestRunner {
    /// Attempts that fail before one succeeds, per task id (absent: succeed).
    fail_first: Rc<RefCell<HashMap<String, u32>>>,
    always_fail: Rc<Cell<bool>>,
    /// Each run sleeps this long first.
    work: Rc<Cell<Duration>>,
    runs: Rc<Cell<u64>>,
    effects: Option<NativeStore>,
}

impl TaskRunner for TestRunner {
    async fn run(&self, _kind: Kind, task: &Task, deadline: Duration) -> Result<String, TaskError> {
        self.runs.set(self.runs.get() + 1);
        let work = self.work.get();
        if work > deadline {
            tokio::time::sleep(deadline).await;
            return Err(TaskError::TimedOut(deadline.as_millis() as u64));
        }
        tokio::time::sleep(work).await;
        if self.always_fail.get() {
            return Err(TaskError::Failed("told to fail".to_owned()));
        }
        if let Some(left) = self.fail_first.borrow_mut().get_mut(&task.id) {
            if *left > 0 {
                *left -= 1;
                return Err(TaskError::Failed(format!("failing, {left} more")));
            }
        }
        if let Some(store) = &self.effects {
            let mut conn = store.0.clone();
            let _: i64 = conn.sadd("effects", &task.id).await.unwrap();
        }
        Ok(format!("did {}", task.id))
    }
}

fn config(pairs: &[(&str, &str)]) -> QueueConfig {
    let map: HashMap<&str, &str> = pairs.iter().copied().collect();
    QueueConfig::try_from_lookup(|name| Ok::<_, String>(map.get(name).map(|v| v.to_string())))
        .unwrap()
}

async fn setup() -> (RedisDb, NativeStore) {
    let db = RedisDb::claim().await;
    let conn = redis_in(db.number).await;
    (db, NativeStore(conn))
}

async fn enqueue(store: &NativeStore, task: &NewTask, id: &str) -> Enqueued {
    let reply = store
        .run(&scripts::enqueue(task, id, WallClock.now_ms(), ""))
        .await
        .unwrap();
    scripts::parse_enqueue(&reply).unwrap()
}

fn probe(priority: Priority) -> NewTask {
    let mut task = NewTask::new(Kind::Probe, "{}".to_owned());
    task.priority = priority;
    task
}

async fn stats(store: &NativeStore) -> QueueStats {
    let reply = store.run(&scripts::stats()).await.unwrap();
    QueueStats::parse(&reply, WallClock.now_ms()).unwrap()
}

/// Drains until the queue has nothing due and nothing delayed, or `limit` passes.
async fn drain_all(
    store: &NativeStore,
    runner: &TestRunner,
    config: &QueueConfig,
    limit: Duration,
) {
    let until = std::time::Instant::now() + limit;
    loop {
        let consumer = format!("drain-{:016x}", rand_u64());
        drain::drain(store, runner, &WallClock, config, &consumer)
            .await
            .unwrap();
        let s = stats(store).await;
        if s.delayed == 0 && s.streams.iter().all(|st| st.length == 0) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "queue not drained: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_high_task_enqueued_after_low_ones_runs_first() {
    let (_db, store) = setup().await;
    for i in 0..5 {
        enqueue(&store, &probe(Priority::Low), &format!("low-{i}")).await;
    }
    enqueue(&store, &probe(Priority::Default), "default-0").await;
    enqueue(&store, &probe(Priority::High), "high-0").await;
    let reply = store
        .run(&scripts::claim(
            "c",
            WallClock.now_ms(),
            Duration::from_secs(60),
            5,
            3,
        ))
        .await
        .unwrap();
    let claimed = scripts::parse_claim(&reply).unwrap();
    let ids: Vec<&str> = claimed.iter().map(|d| d.task.id.as_str()).collect();
    assert_eq!(ids, ["high-0", "default-0", "low-0"]);
    assert_eq!(claimed[0].priority, Priority::High);
    assert_eq!(claimed[0].deliveries, 1);
}

#[tokio::test]
async fn a_reference_is_enqueued_once_while_pending() {
    let (_db, store) = setup().await;
    let task = probe(Priority::High).with_reference("voice:7".into(), Duration::from_secs(60));
    assert!(matches!(
        enqueue(&store, &task, "first").await,
        Enqueued::Added { .. }
    ));
    assert_eq!(
        enqueue(&store, &task, "second").await,
        Enqueued::Duplicate {
            task: "first".into()
        }
    );
    let mut conn = store.0.clone();
    let state: Option<String> = conn.hget(keys::QUEUE_STATUS, "voice:7").await.unwrap();
    assert_eq!(state.as_deref(), Some("pending"));
    assert_eq!(stats(&store).await.streams[0].length, 1);
    // Done: the state is gone (the effect itself is the record).
    drain_all(
        &store,
        &TestRunner::default(),
        &config(&[]),
        Duration::from_secs(10),
    )
    .await;
    let state: Option<String> = conn.hget(keys::QUEUE_STATUS, "voice:7").await.unwrap();
    assert_eq!(state, None);
}

#[tokio::test]
async fn a_counted_enqueue_adds_one_task_per_window_even_when_counted_concurrently() {
    let (_db, store) = setup().await;
    let counter = "evolve:{queue}:analysis-turns:test-user";
    let task = probe(Priority::Low).with_reference("count:".into(), Duration::from_secs(60));
    // 30 events from 6 concurrent counters: windows of 4 complete 7 times.
    let counted = futures::future::join_all((0..6).map(|c| {
        let (store, task) = (store.clone(), task.clone());
        async move {
            let mut added = Vec::new();
            for i in 0..5 {
                let call = scripts::enqueue_every(
                    &task,
                    counter,
                    4,
                    Duration::from_secs(60),
                    &format!("t-{c}-{i}"),
                    WallClock.now_ms(),
                    "",
                );
                let reply = store.run(&call).await.unwrap();
                added.push(scripts::parse_enqueue_every(&reply).unwrap());
            }
            added
        }
    }))
    .await;
    let added = counted
        .iter()
        .flatten()
        .filter(|c| matches!(c, scripts::Counted::Added { .. }))
        .count();
    assert_eq!(added, 7);
    let mut conn = store.0.clone();
    let count: u64 = conn.get(counter).await.unwrap();
    assert_eq!(count, 30);
    let ttl: i64 = conn.pttl(counter).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    let states: HashMap<String, String> = conn.hgetall(keys::QUEUE_STATUS).await.unwrap();
    let mut references: Vec<&str> = states.keys().map(String::as_str).collect();
    references.sort_unstable();
    assert_eq!(
        references,
        ["count:1", "count:2", "count:3", "count:4", "count:5", "count:6", "count:7"]
    );
    assert!(states.values().all(|state| state == "pending"));
    assert_eq!(stats(&store).await.streams[2].length, 7);
}

#[tokio::test]
async fn a_task_that_fails_twice_then_succeeds_is_done_once_with_two_retries() {
    let (_db, store) = setup().await;
    let runner = TestRunner::default();
    runner.fail_first.borrow_mut().insert("flaky".into(), 2);
    enqueue(&store, &probe(Priority::Default), "flaky").await;
    let config = config(&[("queue_retry_base_ms", "20")]);
    drain_all(&store, &runner, &config, Duration::from_secs(20)).await;
    assert_eq!(runner.runs.get(), 3);
    let probe = &stats(&store).await.kinds["probe"];
    assert_eq!(
        (probe.done, probe.failed, probe.retried, probe.dead),
        (1, 2, 2, 0)
    );
    let mut conn = store.0.clone();
    let records: Vec<String> = conn.lrange(keys::QUEUE_RESULTS, 0, -1).await.unwrap();
    assert_eq!(records.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(record["task"], "flaky");
    assert_eq!(record["attempts"], 3);
}

#[tokio::test]
async fn a_task_that_always_fails_is_dead_after_its_attempts_and_runs_again_when_retried() {
    let (_db, store) = setup().await;
    let runner = TestRunner::default();
    runner.always_fail.set(true);
    let task = probe(Priority::Low).with_reference("probe:doomed".into(), Duration::from_secs(60));
    enqueue(&store, &task, "doomed").await;
    let config = config(&[("queue_retry_base_ms", "20")]);
    drain_all(&store, &runner, &config, Duration::from_secs(20)).await;
    assert_eq!(runner.runs.get() as u32, Kind::Probe.max_attempts());
    let s = stats(&store).await;
    assert_eq!(s.dead, 1);
    assert_eq!(s.kinds["probe"].dead, 1);
    let dead = scripts::parse_dead(&store.run(&scripts::list_dead(10)).await.unwrap()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task, "doomed");
    assert_eq!(dead[0].priority, "low");
    assert_eq!(dead[0].attempts, Kind::Probe.max_attempts());
    assert_eq!(dead[0].error, "told to fail");
    let mut conn = store.0.clone();
    let state: Option<String> = conn.hget(keys::QUEUE_STATUS, "probe:doomed").await.unwrap();
    assert_eq!(state.as_deref(), Some("dead"));

    // The operator fixes the cause and retries it: it runs again, with fresh attempts.
    runner.always_fail.set(false);
    let retried = store
        .run(&scripts::retry_dead(&dead[0].entry, WallClock.now_ms()))
        .await
        .unwrap();
    assert_eq!(scripts::parse_count(&retried).unwrap(), 1);
    drain_all(&store, &runner, &config, Duration::from_secs(10)).await;
    let s = stats(&store).await;
    assert_eq!((s.dead, s.kinds["probe"].done), (0, 1));
    let state: Option<String> = conn.hget(keys::QUEUE_STATUS, "probe:doomed").await.unwrap();
    assert_eq!(state, None);
    // A second retry of the same letter finds nothing.
    let again = store
        .run(&scripts::retry_dead(&dead[0].entry, 0))
        .await
        .unwrap();
    assert_eq!(scripts::parse_count(&again).unwrap(), 0);
}

#[tokio::test]
async fn a_drain_killed_mid_task_leaves_it_for_another_after_the_visibility_timeout() {
    let (_db, store) = setup().await;
    let config = config(&[
        ("queue_task_timeout_ms", "5000"),
        ("queue_visibility_ms", "5500"),
    ]);
    let runner = TestRunner {
        effects: Some(store.clone()),
        ..TestRunner::default()
    };
    runner.work.set(Duration::from_secs(3));
    enqueue(&store, &probe(Priority::High), "slow").await;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (s, r, c) = (store.clone(), runner.clone(), config.clone());
            let killed = tokio::task::spawn_local(async move {
                drain::drain(&s, &r, &WallClock, &c, "doomed-drain").await
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            killed.abort();
            assert!(killed.await.unwrap_err().is_cancelled());
        })
        .await;
    assert_eq!(runner.runs.get(), 1);
    // Within the visibility timeout nobody takes it.
    runner.work.set(Duration::from_millis(10));
    let report = drain::drain(&store, &runner, &WallClock, &config, "early")
        .await
        .unwrap();
    assert_eq!(report.claimed, 0);
    assert_eq!(stats(&store).await.streams[0].pending, 1);
    tokio::time::sleep(Duration::from_millis(5_600)).await;
    let report = drain::drain(&store, &runner, &WallClock, &config, "late")
        .await
        .unwrap();
    assert_eq!((report.claimed, report.done), (1, 1));
    let mut conn = store.0.clone();
    let effects: i64 = conn.scard("effects").await.unwrap();
    assert_eq!(effects, 1);
    let s = stats(&store).await;
    assert_eq!(
        (
            s.streams[0].length,
            s.streams[0].pending,
            s.kinds["probe"].done
        ),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn a_task_that_kills_every_drain_goes_to_the_dead_letters() {
    let (_db, store) = setup().await;
    let config = config(&[
        ("queue_task_timeout_ms", "100"),
        ("queue_visibility_ms", "200"),
        ("queue_max_deliveries", "2"),
    ]);
    enqueue(&store, &probe(Priority::Default), "poison").await;
    // Two deliveries whose drains die (claimed, never finished).
    for consumer in ["a", "b"] {
        let reply = store
            .run(&scripts::claim(
                consumer,
                WallClock.now_ms(),
                config.visibility,
                2,
                1,
            ))
            .await
            .unwrap();
        assert_eq!(scripts::parse_claim(&reply).unwrap().len(), 1, "{consumer}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reply = store
        .run(&scripts::claim(
            "c",
            WallClock.now_ms(),
            config.visibility,
            2,
            1,
        ))
        .await
        .unwrap();
    assert!(scripts::parse_claim(&reply).unwrap().is_empty());
    let dead = scripts::parse_dead(&store.run(&scripts::list_dead(10)).await.unwrap()).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "delivered 2 times without finishing");
    let s = stats(&store).await;
    assert_eq!((s.streams[1].length, s.streams[1].pending), (0, 0));
}

#[tokio::test]
async fn ten_thousand_tasks_three_drains_one_killed_twice_each_done_once() {
    let (_db, store) = setup().await;
    const TASKS: usize = 10_000;
    // Enqueued in pipelined batches (the script per task, as requests do).
    let mut conn = store.0.clone();
    let now = WallClock.now_ms();
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let call = scripts::enqueue(&probe(Priority::Default), &format!("t{i}"), now, "");
            pipe.cmd("EVAL")
                .arg(call.script.source)
                .arg(call.keys.len())
                .arg(&call.keys)
                .arg(&call.args)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
    }
    assert_eq!(stats(&store).await.streams[1].length, TASKS as u64);

    let config = config(&[
        ("queue_task_timeout_ms", "1000"),
        ("queue_visibility_ms", "1500"),
        ("queue_batch", "50"),
        ("queue_concurrency", "8"),
        ("queue_drain_budget_ms", "2000"),
    ]);
    let runner = TestRunner {
        effects: Some(store.clone()),
        ..TestRunner::default()
    };
    runner.work.set(Duration::from_millis(1));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let worker = |name: &'static str| {
                let (s, r, c) = (store.clone(), runner.clone(), config.clone());
                tokio::task::spawn_local(async move {
                    for round in 0.. {
                        let consumer = format!("{name}-{round}");
                        drain::drain(&s, &r, &WallClock, &c, &consumer)
                            .await
                            .unwrap();
                        let st = stats(&s).await;
                        if st.delayed == 0 && st.streams.iter().all(|x| x.length == 0) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            };
            let steady = [worker("b"), worker("c")];
            // Drain "a" is killed twice mid-batch, then runs to the end.
            for _ in 0..2 {
                let doomed = worker("a");
                tokio::time::sleep(Duration::from_millis(300)).await;
                doomed.abort();
                let _ = doomed.await;
            }
            let last = worker("a");
            for handle in steady {
                tokio::time::timeout(Duration::from_secs(120), handle)
                    .await
                    .expect("drains finish")
                    .unwrap();
            }
            tokio::time::timeout(Duration::from_secs(120), last)
                .await
                .expect("drain a finishes")
                .unwrap();
        })
        .await;
    // Whatever "a" held when killed was reclaimed after the visibility timeout.
    drain_all(&store, &runner, &config, Duration::from_secs(30)).await;
    let effects: usize = conn.scard("effects").await.unwrap();
    assert_eq!(effects, TASKS, "every task has its effect");
    let s = stats(&store).await;
    assert_eq!(
        s.kinds["probe"].done, TASKS as u64,
        "each counted done once"
    );
    assert_eq!((s.delayed, s.dead), (0, 0));
    for stream in &s.streams {
        assert_eq!((stream.length, stream.pending), (0, 0), "{stream:?}");
    }
    // At least once: the killed drains' tasks may have run twice, never lost.
    assert!(runner.runs.get() >= TASKS as u64);
}
