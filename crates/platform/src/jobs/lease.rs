//! A job's cluster-wide lease: the scripts of `evolve_core::jobs`, one round trip each.

use std::time::Duration;

use evolve_core::jobs::{
    self, Acquired, Job, RunRecord, ACQUIRE_SCRIPT, ACQUIRE_SHA1, FINISH_SCRIPT, FINISH_SHA1,
    RENEW_SCRIPT, RENEW_SHA1,
};
use evolve_core::keys;

use crate::redis::{Redis, RedisError, RedisResult};
use crate::script::{ms, LuaScript};

const ACQUIRE: LuaScript = LuaScript::new(ACQUIRE_SCRIPT, ACQUIRE_SHA1);
const RENEW: LuaScript = LuaScript::new(RENEW_SCRIPT, RENEW_SHA1);
const FINISH: LuaScript = LuaScript::new(FINISH_SCRIPT, FINISH_SHA1);

fn bad_reply(operation: &str, reply: &[RedisResult]) -> RedisError {
    RedisError {
        operation: operation.to_owned(),
        message: format!("unexpected reply {reply:?}"),
    }
}

fn text(item: &RedisResult) -> Option<String> {
    match item {
        RedisResult::Binary(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisResult::Status(status) => Some(status.clone()),
        RedisResult::Int64(n) => Some(n.to_string()),
        RedisResult::Nil => None,
    }
}

/// Takes the job's lease for the run `token`, unless the run's slot is done.
pub(super) async fn acquire(
    redis: &Redis,
    job: Job,
    token: &str,
    ttl: Duration,
    slot_ms: Option<u64>,
) -> Result<Acquired, RedisError> {
    let slot = slot_ms.map(|s| s.to_string()).unwrap_or_default();
    let reply = ACQUIRE
        .run(
            redis,
            &[&keys::job_lease(job.name()), &keys::job_slot(job.name())],
            &[token, &ms(ttl), &slot],
        )
        .await?;
    let strings: Option<Vec<String>> = reply.iter().map(text).collect();
    strings
        .and_then(|s| Acquired::parse(&s))
        .ok_or_else(|| bad_reply("job lease acquire", &reply))
}

/// A lease this run holds.
pub(super) struct Lease<'r> {
    redis: &'r Redis,
    job: Job,
    token: String,
    ttl: Duration,
}

impl<'r> Lease<'r> {
    pub(super) fn new(redis: &'r Redis, job: Job, token: String, ttl: Duration) -> Self {
        Lease {
            redis,
            job,
            token,
            ttl,
        }
    }

    /// Extends the lease by its full TTL; false if it is no longer this run's.
    pub(super) async fn renew(&self) -> Result<bool, RedisError> {
        let reply = RENEW
            .run(
                self.redis,
                &[&keys::job_lease(self.job.name())],
                &[&self.token, &ms(self.ttl)],
            )
            .await?;
        match reply.as_slice() {
            [RedisResult::Int64(n)] => Ok(*n == 1),
            other => Err(bad_reply("job lease renew", other)),
        }
    }

    /// Stores the run's record (latest and history), marks its slot done, and releases
    /// the lease if it is still this run's; false if it had expired.
    pub(super) async fn finish(
        &self,
        record: &RunRecord,
        slot_ms: Option<u64>,
    ) -> Result<bool, RedisError> {
        let name = self.job.name();
        let slot = slot_ms.map(|s| s.to_string()).unwrap_or_default();
        let reply = FINISH
            .run(
                self.redis,
                &[
                    &keys::job_lease(name),
                    &keys::job_slot(name),
                    &keys::job_last(name),
                    &keys::job_history(name),
                ],
                &[
                    &self.token,
                    &record.to_json(),
                    &slot,
                    &jobs::HISTORY_LEN.to_string(),
                    &ms(jobs::SLOT_MARKER_TTL),
                ],
            )
            .await?;
        match reply.as_slice() {
            [RedisResult::Int64(n)] => Ok(*n == 1),
            other => Err(bad_reply("job finish", other)),
        }
    }
}
