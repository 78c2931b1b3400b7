//! The shared stores stopped for real under load: three instances behind nginx on a Redis
//! and a PostgreSQL of the test's own, with a steady chat load through nginx. Redis is
//! stopped for 10 s and started again (empty), then PostgreSQL is stopped for 10 s and
//! started again. The instances run without the Redis trigger, and the worker that runs
//! it ends with its connection, as on Spin, and is started again once Redis is back.
//! Meanwhile every turn answers 200 (degraded without Redis) or a clean
//! 503 with `Retry-After`, none outlasts the model budget plus 1 s, and `/ready` names the
//! store that is down; the service recovers within 30 s of the restart. At the end every
//! turn that answered 200 is stored with its reply, and none is half-stored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::load::{assert_all_stored, Load, Turn};
use crate::common::nginx::Nginx;
use crate::common::postgres::OwnPostgres;
use crate::common::process::HostProcess;
use crate::common::*;
use crate::faults::{options, LLM_BUDGET_MS};
use evolve_mock_gemini::{MockConfig, MockGemini};
use serde_json::Value;

const OUTAGE: Duration = Duration::from_secs(10);
/// Recovery must come within this long of the restart.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// `/ready` answers within this long, and names the store that is down.
const READY_BOUND: Duration = Duration::from_secs(5);
/// The turn budget of `faults::options` plus 1 s.
const TURN_BOUND: Duration = Duration::from_millis(LLM_BUDGET_MS + 1_000);

async fn ready(addr: SocketAddr) -> Value {
    client()
        .get(url(addr, "/ready"))
        .timeout(READY_BOUND)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// How long after `since` every instance's `/ready` says `store` is `status`.
async fn ready_says(addrs: &[SocketAddr], store: &str, status: &str, since: Instant) -> Duration {
    for addr in addrs {
        let seen = eventually(RECOVERY_BOUND, || async {
            (ready(*addr).await[store]["status"] == status).then_some(())
        })
        .await;
        assert!(
            seen.is_some(),
            "{addr}'s /ready never said {store} {status}"
        );
    }
    since.elapsed()
}

/// How long after `restarted` the load's turns get real replies again (the first turn
/// sent after it that answered with the model's reply), within the bound.
async fn recovery(load: &Load, restarted: Instant) -> Duration {
    let back = eventually(RECOVERY_BOUND, || async {
        load.since(restarted)
            .iter()
            .find(|t| t.answered())
            .map(|t| t.ended().duration_since(restarted))
    })
    .await;
    back.unwrap_or_else(|| panic!("no real reply within {RECOVERY_BOUND:?} of the restart"))
}

/// The turns that ended during an outage (from its start to the recovery): each a 200 or
/// a 503 with `Retry-After`, each within the turn bound. Returns how many were 503.
fn check_outage_turns(name: &str, turns: &[Turn]) -> usize {
    assert!(!turns.is_empty(), "no turn during the {name} outage");
    for turn in turns {
        assert!(
            turn.status == 200 || (turn.status == 503 && turn.retry_after.is_some()),
            "{name} outage: {turn:?}"
        );
        assert!(turn.took <= TURN_BOUND, "{name} outage: {turn:?}");
    }
    turns.iter().filter(|t| t.status == 503).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_stores_are_named_refused_cleanly_and_recovered_from() {
    let _machine = whole_machine().await;
    let mut redis = OwnRedis::start().await;
    let pg = OwnPostgres::start().migrated().await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let options = options(&redis.url, &pg.url, &mock);
    // The instances serve HTTP and cron; the worker (the Redis trigger) runs apart, as the
    // README's deployment does: Spin ends a process whose Redis trigger lost Redis.
    let serving = without_redis_trigger(&options);
    let instances = futures::future::join_all((0..3).map(|_| HostProcess::start(&serving))).await;
    let mut worker = HostProcess::start(&redis_trigger_only(&options)).await;
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
    let nginx = Nginx::start(&addrs).await;
    let load = Load::start(nginx.addr, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Redis stopped for 10 s: turns go on degraded (or 503), /ready names Redis.
    let stopped = Instant::now();
    redis.stop();
    let redis_named = ready_says(&addrs, "redis", "unhealthy", stopped).await;
    let worker_ended = loop {
        if worker.child.try_wait().unwrap().is_some() {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < OUTAGE,
            "the worker's Redis trigger outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    redis.start_again().await;
    let restarted = Instant::now();
    // Restarted as a supervisor would: it subscribes again once Redis is back.
    worker = HostProcess::start(&redis_trigger_only(&options)).await;
    let redis_recovered = recovery(&load, restarted).await;
    let redis_ready = ready_says(&addrs, "redis", "healthy", restarted).await;
    let during = load.ended_since(stopped);
    let redis_503 = check_outage_turns("Redis", &during);
    let redis_turns = during.len();

    // PostgreSQL stopped for 10 s: turns are refused with 503 and Retry-After (nothing
    // can be stored), /ready names PostgreSQL.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    pg.stop();
    let pg_named = ready_says(&addrs, "postgres", "unhealthy", stopped).await;
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    pg.start_again();
    let restarted = Instant::now();
    let pg_recovered = recovery(&load, restarted).await;
    let pg_ready = ready_says(&addrs, "postgres", "healthy", restarted).await;
    let during = load.ended_since(stopped);
    let pg_503 = check_outage_turns("PostgreSQL", &during);
    let pg_turns = during.len();
    assert!(pg_503 > 0, "no turn was refused while PostgreSQL was down");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let turns = load.finish().await;
    let failed: Vec<&Turn> = turns
        .iter()
        .filter(|t| t.status != 200 && t.status != 503)
        .collect();
    assert!(failed.is_empty(), "turns neither 200 nor 503: {failed:?}");
    assert_all_stored(&pg.url, &turns).await;
    let ok = turns.iter().filter(|t| t.status == 200).count();
    eprintln!(
        "outages: {} turns through nginx, {ok} answered 200 and every one of them stored, none \
         half-stored. Redis stopped {OUTAGE:?}: {redis_turns} turns ended meanwhile, {redis_503} \
         of them 503; /ready named it after {redis_named:?}; the worker exited after {worker_ended:?}; real replies {redis_recovered:?} \
         and /ready healthy on all {redis_ready:?} after the restart. PostgreSQL stopped \
         {OUTAGE:?}: {pg_turns} turns, {pg_503} of them 503 with Retry-After; /ready named it \
         after {pg_named:?}; real replies {pg_recovered:?} and /ready healthy {pg_ready:?} after \
         the restart",
        turns.len()
    );
    drop((instances, worker));
}
