//! How runs on many instances are kept from overlapping: the lease scripts run with
//! `EVALSHA`, their digests, the TTLs passed to them and what they answer.

use std::time::Duration;

/// How long the "slot done" marker is kept: far longer than any clock difference
/// between instances, and than a daily job's period.
pub const SLOT_MARKER_TTL: Duration = Duration::from_secs(7 * 86_400);

/// What the lease adds to the job's budget: a step started just before the deadline
/// (one batch, one DDL statement waiting for its lock) finishes inside it.
pub const LEASE_GRACE: Duration = Duration::from_secs(30);

/// How long a run's lease lasts (renewed between steps).
pub fn lease_ttl(budget: Duration, lock_timeout: Duration) -> Duration {
    budget + lock_timeout + LEASE_GRACE
}

/// Takes a job's lease for a run, unless the run's slot is already done.
///
/// `KEYS[1]` the lease, `KEYS[2]` the job's last done slot; `ARGV[1]` the run's token,
/// `ARGV[2]` the lease TTL in ms, `ARGV[3]` the run's slot (Unix ms) or empty. Replies
/// `{'ok', token}`, `{'busy', holder}` or `{'done', slot}`.
pub const ACQUIRE_SCRIPT: &str = r#"-- evolve jobs: acquire
if ARGV[3] ~= '' then
  local done = tonumber(redis.call('GET', KEYS[2]) or '')
  if done and done >= tonumber(ARGV[3]) then
    return {'done', tostring(done)}
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'ok', ARGV[1]}
end
return {'busy', redis.call('GET', KEYS[1]) or ''}
"#;

/// Extends the lease if the run still holds it.
///
/// `KEYS[1]` the lease; `ARGV[1]` the run's token, `ARGV[2]` the TTL in ms. Replies 1 if
/// extended, 0 if the lease is gone or someone else's.
pub const RENEW_SCRIPT: &str = r#"-- evolve jobs: renew
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Records a finished run and releases its lease, atomically.
///
/// `KEYS[1]` the lease, `KEYS[2]` the last done slot, `KEYS[3]` the latest record,
/// `KEYS[4]` the run history; `ARGV[1]` the run's token, `ARGV[2]` the record (JSON),
/// `ARGV[3]` the slot or empty, `ARGV[4]` the history length, `ARGV[5]` the slot
/// marker's TTL in ms. The lease is deleted only if it is still this run's. Replies 1 if
/// it was, 0 if it had expired (and maybe been taken by another run).
pub const FINISH_SCRIPT: &str = r#"-- evolve jobs: finish
redis.call('SET', KEYS[3], ARGV[2])
redis.call('LPUSH', KEYS[4], ARGV[2])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
if ARGV[3] ~= '' then
  local done = tonumber(redis.call('GET', KEYS[2]) or '')
  if not done or tonumber(ARGV[3]) > done then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[5])
  end
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// SHA-1 of [`ACQUIRE_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const ACQUIRE_SHA1: &str = "38fe607df70b1a623e971bd3c2f48645c8581e0d";
/// SHA-1 of [`RENEW_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const RENEW_SHA1: &str = "b1a78bd6841f5f1f70a79e793a9c683ceeb144fd";
/// SHA-1 of [`FINISH_SCRIPT`], for `EVALSHA` (a unit test keeps it in step).
pub const FINISH_SHA1: &str = "d1a2ba3b94e4b157a24b07f452fc7a172d61db21";

/// What [`ACQUIRE_SCRIPT`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The run holds the lease.
    Lease,
    /// Another run holds it (its token, when it was still there to read).
    Busy { holder: String },
    /// A run of this slot has already finished.
    SlotDone { slot_ms: u64 },
}

impl Acquired {
    /// Reads the script's reply, flattened to its strings.
    pub fn parse(reply: &[String]) -> Option<Acquired> {
        match reply {
            [kind, value] => match kind.as_str() {
                "ok" => Some(Acquired::Lease),
                "busy" => Some(Acquired::Busy {
                    holder: value.clone(),
                }),
                "done" => value
                    .parse()
                    .ok()
                    .map(|slot_ms| Acquired::SlotDone { slot_ms }),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_replies_parse() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(Acquired::parse(&s(&["ok", "t"])), Some(Acquired::Lease));
        assert_eq!(
            Acquired::parse(&s(&["busy", "x"])),
            Some(Acquired::Busy { holder: "x".into() })
        );
        assert_eq!(
            Acquired::parse(&s(&["done", "42"])),
            Some(Acquired::SlotDone { slot_ms: 42 })
        );
        assert_eq!(Acquired::parse(&s(&["what", "x"])), None);
        assert_eq!(Acquired::parse(&s(&["ok"])), None);
    }

    #[test]
    fn script_digests_match_the_scripts() {
        for (script, digest) in [
            (ACQUIRE_SCRIPT, ACQUIRE_SHA1),
            (RENEW_SCRIPT, RENEW_SHA1),
            (FINISH_SCRIPT, FINISH_SHA1),
        ] {
            assert_eq!(
                sha1_smol::Sha1::from(script).digest().to_string(),
                digest,
                "update the digest after changing the script"
            );
        }
    }

    #[test]
    fn the_lease_outlives_the_budget() {
        let ttl = lease_ttl(Duration::from_secs(20), Duration::from_secs(1));
        assert_eq!(ttl, Duration::from_secs(51));
    }
}
