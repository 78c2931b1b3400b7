//! The `worker` component: drains the work queue (`evolve_platform::queue`).
//!
//! One build, two triggers, the same drain:
//! - Spin's Redis trigger calls it for each wake-up an enqueue publishes on the queue's
//!   channel, so a task starts within milliseconds. Pub/sub delivers at most once and
//!   only to subscribers listening at that moment: the message is a hint, never the task
//!   (the task is in the stream), so its content is ignored.
//! - Spin's cron trigger calls it every few seconds, which drains on platforms without
//!   the Redis trigger and catches any wake-up that was lost.
//!
//! `POST /admin/queues/drain` runs the same drain from the admin component.

#[cfg(feature = "p3")]
extern crate spin_sdk6 as spin_sdk;

use evolve_platform::queue::{drain_queue, WorkerContext};

evolve_platform::cron_component!(on_schedule);

/// The cron trigger's entry: one drain.
async fn on_schedule(_fired_at: u64) -> Result<(), String> {
    drain("cron").await
}

#[cfg(feature = "p3")]
#[spin_sdk::redis_subscriber]
async fn on_wake(_message: Vec<u8>) -> anyhow::Result<()> {
    drain("wake-up").await.map_err(anyhow::Error::msg)
}

#[cfg(feature = "p2")]
#[spin_sdk::redis_component]
async fn on_wake(_message: bytes::Bytes) -> anyhow::Result<()> {
    drain("wake-up").await.map_err(anyhow::Error::msg)
}

/// Drains once and logs one line; a drain that could not reach Redis is an error for
/// the trigger to log. Tasks it claimed go back to the queue by themselves.
async fn drain(trigger: &str) -> Result<(), String> {
    let mut ctx = WorkerContext::from_variables()
        .await
        .map_err(|e| format!("worker: configuration: {e}"))?;
    // One task at a time here: Spin 4.0.2's CPU-time call hook (a default feature) panics,
    // and takes the trigger down, when a Redis- or cron-triggered guest has host calls of
    // several tasks in flight at once. HTTP exports are not affected, so
    // `POST /admin/queues/drain` keeps `queue_concurrency`; more drains come from more
    // instances and more wake-ups.
    ctx.config.queue.concurrency = 1;
    let report = drain_queue(&ctx)
        .await
        .map_err(|e| format!("worker ({trigger}): {e}"))?;
    if report.claimed > 0 {
        println!(
            "worker ({trigger}): {} claimed, {} done, {} retried, {} dead, {} released in {} ms",
            report.claimed,
            report.done,
            report.retried,
            report.dead,
            report.released,
            report.duration_ms
        );
    }
    for error in &report.errors {
        println!("worker ({trigger}): task failed: {error}");
    }
    Ok(())
}
