//! [`QueueStore`] over a request's Redis connection, and the calls a request makes.

use evolve_core::keys;
use evolve_core::queue::drain::{Clock, QueueStore, StoreError};
use std::time::Duration;

use evolve_core::queue::scripts::{self, Counted, Enqueued, Reply, ScriptCall};
use evolve_core::queue::NewTask;

use crate::redis::{Redis, RedisError, RedisParameter, RedisResult};
use crate::script::LuaScript;
use crate::time;

/// The queue's scripts, run on one Redis connection.
pub struct RedisQueue<'a> {
    redis: &'a Redis,
}

impl<'a> RedisQueue<'a> {
    pub fn new(redis: &'a Redis) -> Self {
        RedisQueue { redis }
    }

    pub async fn call(&self, call: &ScriptCall) -> Result<Vec<Reply>, RedisError> {
        let script = LuaScript::new(call.script.source, call.script.sha1);
        let keys: Vec<&str> = call.keys.iter().map(String::as_str).collect();
        let args: Vec<&str> = call.args.iter().map(String::as_str).collect();
        let reply = script.run(self.redis, &keys, &args).await?;
        Ok(reply.into_iter().map(to_reply).collect())
    }
}

impl QueueStore for RedisQueue<'_> {
    async fn run(&self, call: &ScriptCall) -> Result<Vec<Reply>, StoreError> {
        self.call(call)
            .await
            .map_err(|error| StoreError(error.to_string()))
    }
}

fn to_reply(item: RedisResult) -> Reply {
    match item {
        RedisResult::Binary(bytes) => Reply::Text(String::from_utf8_lossy(&bytes).into_owned()),
        RedisResult::Status(status) => Reply::Text(status),
        RedisResult::Int64(n) => Reply::Int(n),
        RedisResult::Nil => Reply::Nil,
    }
}

/// The host's clock and randomness.
pub struct SpinClock;

impl Clock for SpinClock {
    fn now_ms(&self) -> u64 {
        time::now_ms()
    }

    fn random_u64(&self) -> u64 {
        time::random_u64()
    }
}

/// Enqueues `task` on `redis` (the request's own connection), waking the workers on
/// `channel` (none when empty). One script call.
pub async fn enqueue(redis: &Redis, task: &NewTask, channel: &str) -> Result<Enqueued, RedisError> {
    let id = format!("{:016x}", time::random_u64());
    let call = scripts::enqueue(task, &id, time::now_ms(), channel);
    let reply = RedisQueue::new(redis).call(&call).await?;
    scripts::parse_enqueue(&reply).map_err(|error| RedisError {
        operation: "enqueue".to_owned(),
        message: error.to_string(),
    })
}

/// Counts one event on `counter` and, on every `every`-th, enqueues `task` (its
/// reference gets the window number appended), waking the workers on `channel`. One
/// script call on `redis`, the request's own connection.
pub async fn enqueue_every(
    redis: &Redis,
    task: &NewTask,
    counter: &str,
    every: u32,
    counter_ttl: Duration,
    channel: &str,
) -> Result<Counted, RedisError> {
    let id = format!("{:016x}", time::random_u64());
    let call = scripts::enqueue_every(
        task,
        counter,
        every,
        counter_ttl,
        &id,
        time::now_ms(),
        channel,
    );
    let reply = RedisQueue::new(redis).call(&call).await?;
    scripts::parse_enqueue_every(&reply).map_err(|error| RedisError {
        operation: "enqueue".to_owned(),
        message: error.to_string(),
    })
}

/// What became of the task with a reference, as far as the queue knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceState {
    /// Waiting, running, or waiting for a retry.
    Pending,
    /// In the dead letters.
    Dead,
    /// Nothing known: never enqueued, or done.
    Unknown,
}

pub async fn reference_state(redis: &Redis, reference: &str) -> Result<ReferenceState, RedisError> {
    let reply = redis
        .execute(
            "HGET",
            &[
                RedisParameter::Binary(keys::QUEUE_STATUS.as_bytes().to_vec()),
                RedisParameter::Binary(reference.as_bytes().to_vec()),
            ],
        )
        .await?;
    Ok(match reply.first() {
        Some(RedisResult::Binary(state)) if state == b"pending" => ReferenceState::Pending,
        Some(RedisResult::Binary(state)) if state == b"dead" => ReferenceState::Dead,
        _ => ReferenceState::Unknown,
    })
}
