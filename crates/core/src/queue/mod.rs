//! The work queue: heavy work (voice messages, dialog analysis, broadcasts) taken off the
//! request path and run by drains on any instance, with retries, priorities and dead
//! letters, on Redis Streams shared by every instance.
//!
//! - A task is enqueued by one script ([`scripts::enqueue`]): an entry in the stream of
//!   its priority, an optional de-duplication marker, and a `PUBLISH` that wakes a worker.
//! - A drain ([`drain::drain`]) claims batches with one script: deliveries whose drain
//!   died are reclaimed first, due retries are promoted, then new entries are read high,
//!   default, low. Each task runs under its own deadline; a success is acknowledged and
//!   removed, a failure is retried later with backoff, or moved to the dead letters.
//! - Delivery is at least once: a drain killed mid-task leaves the entry pending, and
//!   another drain reclaims it after the visibility timeout. Every kind's effect is
//!   idempotent, so a task run twice has its effect once.
//!
//! The scripts and the loop are here, apart from Redis, so that the platform crate (on
//! Spin) and the native tests (on the `redis` crate) run the same steps through
//! [`drain::QueueStore`].

pub mod config;
pub mod drain;
mod lua;
pub mod pace;
pub mod scripts;
pub mod stats;
pub mod task;
pub mod worker;

pub use config::QueueConfig;
pub use task::{Delivery, Kind, NewTask, Priority, Task};
pub use worker::WorkerConfig;
