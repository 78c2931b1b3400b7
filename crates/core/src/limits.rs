//! The per-user chat rate limit and `Idempotency-Key` handling: the Lua scripts that
//! keep their state in Redis, the arguments those scripts take and the reading of their
//! replies. Running a script is the caller's; every decision is one script, one round
//! trip, atomic across all instances.
//!
//! # Rate limit: a sliding-window log
//!
//! Each allowed turn adds one member to the user's sorted set ([`keys::chat_rate_limit`]),
//! scored by the time it was allowed; a turn is allowed while fewer than `limit` members
//! are younger than the window. This is exact — never more than `limit` turns in any
//! window, unlike a fixed-window counter that lets twice the limit through across a
//! window boundary — and it yields an exact `Retry-After`: the moment the oldest counted
//! turn leaves the window. It costs one small set per active user (at most `limit`
//! members, expiring with the window). Refused turns are not recorded, so a client that
//! keeps retrying too early is not locked out for longer.
//!
//! The script takes the time as an argument, as the breaker's scripts do: the caller's
//! clock (every instance's wall clock, kept by NTP), so tests drive the window by passing
//! times instead of sleeping. Skew between instances shifts a turn's place in the window by
//! the skew (milliseconds against a window of a minute).
//!
//! When Redis is unreachable the caller cannot count; the chat path lets the turn through
//! and marks the answer degraded rather than refusing every user.
//!
//! # Idempotency: claim, finish, replay
//!
//! `POST /api/chat` with an `Idempotency-Key` first claims the key's record
//! ([`keys::idempotency`]) with [`IDEMPOTENCY_BEGIN_SCRIPT`]: if there is none, a
//! *pending* record with a lease is written and the turn runs; if there is one, its
//! content decides ([`Begin`]): replay the stored answer, answer 409 while the first
//! request still runs, or 422 when the key was used for a different request (the
//! request's [`Fingerprint`] differs). When the turn has its answer,
//! [`IDEMPOTENCY_FINISH_SCRIPT`] replaces the pending record with the *done* record — only
//! if the pending record is still this request's, so a request whose lease ran out
//! cannot overwrite the one that took over. A request that ends without an answer worth
//! replaying releases its claim with [`IDEMPOTENCY_ABANDON_SCRIPT`], so the client's
//! retry runs at once instead of waiting out the lease.
//!
//! Records are JSON (see [`Claim`] and [`StoredResponse`]):
//! `{"v":1,"state":"pending","token":"..","fingerprint":".."}` and
//! `{"v":1,"state":"done","fingerprint":"..","status":200,"content_type":"application/json","body":"{..}"}`.
//!
//! [`keys::chat_rate_limit`]: crate::keys::chat_rate_limit
//! [`keys::idempotency`]: crate::keys::idempotency

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// A reply of one of these scripts that does not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from a limits script: {0}")]
pub struct ReplyError(String);

// ---------------------------------------------------------------------------------------
// Rate limit

/// Counts one turn if the user has turns left in the window.
///
/// `KEYS[1]`: the user's sorted set. `ARGV[1]`: the limit (turns per window).
/// `ARGV[2]`: the window, milliseconds. `ARGV[3]`: now, Unix milliseconds. Returns
/// `{allowed (0|1), retry_after_ms, remaining}`. Members are `<now>:<count>`: unique even
/// for two turns in one millisecond, since the count then differs.
pub const RATE_LIMIT_SCRIPT: &str = r#"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if limit < 1 then
  return {0, window, 0}
end
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. used)
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0, limit - used - 1}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = tonumber(oldest[2]) + window - now
if retry < 1 then
  retry = 1
end
return {0, retry, 0}
"#;

/// SHA-1 of [`RATE_LIMIT_SCRIPT`], for `EVALSHA`.
pub const RATE_LIMIT_SHA1: &str = "19f00c02e897777e0945b89a05ed43b74bb9d9e5";

/// How many chat turns one user may start per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Turns per window; 0 turns the limit off.
    pub limit: u32,
    /// The window, milliseconds.
    pub window_ms: u64,
}

impl RateLimit {
    /// `chat_rate_limit_per_minute` turns per rolling minute. Zero means no limit: an
    /// operator who sets 0 is switching the limit off, not shutting every user out.
    pub fn per_minute(turns: u32) -> RateLimit {
        RateLimit {
            limit: turns,
            window_ms: 60_000,
        }
    }

    /// Whether turns are counted at all; when not, the script need not run.
    pub fn is_enabled(&self) -> bool {
        self.limit > 0
    }

    /// `ARGV` of [`RATE_LIMIT_SCRIPT`], at `now_ms`.
    pub fn script_args(&self, now_ms: u64) -> [String; 3] {
        [
            self.limit.to_string(),
            self.window_ms.to_string(),
            now_ms.to_string(),
        ]
    }

    /// Reads the script's reply.
    pub fn decision(&self, reply: &[i64]) -> Result<RateDecision, ReplyError> {
        let bad = || ReplyError(format!("rate limit reply {reply:?}"));
        let &[allowed, retry_after_ms, remaining] = reply else {
            return Err(bad());
        };
        match allowed {
            1 => Ok(RateDecision::Allowed {
                remaining: u32::try_from(remaining).map_err(|_| bad())?,
            }),
            0 => Ok(RateDecision::Limited {
                retry_after_ms: u64::try_from(retry_after_ms)
                    .map_err(|_| bad())?
                    .clamp(1, self.window_ms.max(1)),
            }),
            _ => Err(bad()),
        }
    }
}

/// Whether a turn may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Counted; `remaining` more turns fit in the window now.
    Allowed { remaining: u32 },
    /// Not counted; a turn fits again after `retry_after_ms`.
    Limited { retry_after_ms: u64 },
}

impl RateDecision {
    /// Whole seconds for `Retry-After`, rounded up so that a client that waits exactly
    /// that long is allowed; `None` when allowed.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match *self {
            RateDecision::Allowed { .. } => None,
            RateDecision::Limited { retry_after_ms } => Some(retry_after_ms.div_ceil(1000).max(1)),
        }
    }

    /// The 429 answer of a limited turn (with `Retry-After`); `None` when allowed.
    pub fn problem(&self) -> Option<Problem> {
        self.retry_after_secs().map(Problem::too_many_requests)
    }
}

// ---------------------------------------------------------------------------------------
// Idempotency

/// How long a pending claim holds its key: longer than the slowest chat turn (LLM budget
/// 30 s plus storage), short enough that a crashed request frees the key soon.
pub const IDEMPOTENCY_LEASE: Duration = Duration::from_secs(60);

/// How long a finished answer is replayed: a day, as the IETF idempotency-key draft and
/// common payment APIs do; clients retry within minutes.
pub const IDEMPOTENCY_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// Claims a key. `KEYS[1]`: the record. `ARGV[1]`: the pending record to write.
/// `ARGV[2]`: its lease, milliseconds. Returns nil when the claim was written, else the
/// record already there (untouched).
pub const IDEMPOTENCY_BEGIN_SCRIPT: &str = r#"
local existing = redis.call('GET', KEYS[1])
if existing then
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"#;

/// SHA-1 of [`IDEMPOTENCY_BEGIN_SCRIPT`], for `EVALSHA`.
pub const IDEMPOTENCY_BEGIN_SHA1: &str = "29d13623e3d6e0831623a91de03e3332a63295f3";

/// Stores the answer. `KEYS[1]`: the record. `ARGV[1]`: this request's pending record.
/// `ARGV[2]`: the done record. `ARGV[3]`: how long to keep it, milliseconds. Returns 1
/// when stored, 0 when the record is no longer this request's claim.
pub const IDEMPOTENCY_FINISH_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"#;

/// SHA-1 of [`IDEMPOTENCY_FINISH_SCRIPT`], for `EVALSHA`.
pub const IDEMPOTENCY_FINISH_SHA1: &str = "055c37c4b492dc8ce4190d2c86dffb430776f41f";

/// Releases a claim without an answer. `KEYS[1]`: the record. `ARGV[1]`: this request's
/// pending record. Returns 1 when released, 0 when it was not (or no longer) ours.
pub const IDEMPOTENCY_ABANDON_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// SHA-1 of [`IDEMPOTENCY_ABANDON_SCRIPT`], for `EVALSHA`.
pub const IDEMPOTENCY_ABANDON_SHA1: &str = "55d885e5dc47cd61d043b8c310c65857aff0d8df";

/// What a request is, for telling a retry from a different request that reuses the key:
/// SHA-256 over the parts (each prefixed with its length, so parts cannot run into each
/// other), in hex. For a chat turn: the method and path, and the validated message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(parts: &[&[u8]]) -> Fingerprint {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Fingerprint(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An answer kept for replay: status, media type and body exactly as first sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// The record format, version 1.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    Pending {
        v: u32,
        token: String,
        fingerprint: Fingerprint,
    },
    Done {
        v: u32,
        fingerprint: Fingerprint,
        #[serde(flatten)]
        response: StoredResponse,
    },
}

const RECORD_VERSION: u32 = 1;

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key was free and is now this request's: run the turn, then finish or abandon.
    Started,
    /// An earlier request with this key and the same content is still running.
    InProgress,
    /// An earlier request with this key and the same content finished: send this.
    Done(StoredResponse),
    /// The key was used for a request with different content.
    Mismatch,
}

impl Begin {
    /// The refusal to answer with: 409 (with `Retry-After: 1`) while in progress, 422 on
    /// a mismatch; `None` when the request runs or is replayed.
    pub fn refusal(&self) -> Option<Problem> {
        match self {
            Begin::Started | Begin::Done(_) => None,
            Begin::InProgress => {
                let mut problem = Problem::conflict(
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                );
                problem.retry_after = Some(1);
                Some(problem)
            }
            Begin::Mismatch => Some(Problem::unprocessable(
                "this Idempotency-Key was already used for a different request",
            )),
        }
    }
}

/// One request's claim on an idempotency key: the exact pending record it writes, which
/// is also how finishing and abandoning recognise the claim as theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    fingerprint: Fingerprint,
    record: String,
}

impl Claim {
    /// A claim for a request with this fingerprint. `token` must be unique to this
    /// attempt (random, from the caller), so two attempts never write the same record.
    pub fn new(token: &str, fingerprint: Fingerprint) -> Claim {
        let record = Record::Pending {
            v: RECORD_VERSION,
            token: token.to_owned(),
            fingerprint: fingerprint.clone(),
        };
        Claim {
            record: serde_json::to_string(&record).expect("records serialize"),
            fingerprint,
        }
    }

    /// The pending record as stored.
    pub fn record(&self) -> &str {
        &self.record
    }

    /// `ARGV` of [`IDEMPOTENCY_BEGIN_SCRIPT`].
    pub fn begin_args(&self, lease: Duration) -> [String; 2] {
        [self.record.clone(), millis(lease)]
    }

    /// Reads [`IDEMPOTENCY_BEGIN_SCRIPT`]'s reply: `None` (nil) when the claim was
    /// written, else the record found.
    pub fn begin_outcome(&self, reply: Option<&str>) -> Result<Begin, ReplyError> {
        let Some(stored) = reply else {
            return Ok(Begin::Started);
        };
        let record: Record = serde_json::from_str(stored)
            .map_err(|error| ReplyError(format!("idempotency record: {error}")))?;
        let (version, fingerprint) = match &record {
            Record::Pending { v, fingerprint, .. } | Record::Done { v, fingerprint, .. } => {
                (*v, fingerprint)
            }
        };
        if version != RECORD_VERSION {
            return Err(ReplyError(format!("idempotency record version {version}")));
        }
        if *fingerprint != self.fingerprint {
            return Ok(Begin::Mismatch);
        }
        Ok(match record {
            Record::Pending { .. } => Begin::InProgress,
            Record::Done { response, .. } => Begin::Done(response),
        })
    }

    /// `ARGV` of [`IDEMPOTENCY_FINISH_SCRIPT`]: replace this claim with the answer,
    /// kept for `keep`.
    pub fn finish_args(&self, response: &StoredResponse, keep: Duration) -> [String; 3] {
        let done = Record::Done {
            v: RECORD_VERSION,
            fingerprint: self.fingerprint.clone(),
            response: response.clone(),
        };
        [
            self.record.clone(),
            serde_json::to_string(&done).expect("records serialize"),
            millis(keep),
        ]
    }

    /// `ARGV` of [`IDEMPOTENCY_ABANDON_SCRIPT`].
    pub fn abandon_args(&self) -> [String; 1] {
        [self.record.clone()]
    }
}

/// Reads the reply of [`IDEMPOTENCY_FINISH_SCRIPT`] or [`IDEMPOTENCY_ABANDON_SCRIPT`]:
/// whether the claim was still this request's.
pub fn claim_was_ours(reply: i64) -> Result<bool, ReplyError> {
    match reply {
        1 => Ok(true),
        0 => Ok(false),
        other => Err(ReplyError(format!("claim reply {other}"))),
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_arguments() {
        let limit = RateLimit::per_minute(20);
        assert_eq!(limit.script_args(7), ["20", "60000", "7"].map(String::from));
        assert!(limit.is_enabled());
        assert!(!RateLimit::per_minute(0).is_enabled());
    }

    #[test]
    fn rate_limit_replies() {
        let limit = RateLimit::per_minute(20);
        assert_eq!(
            limit.decision(&[1, 0, 19]),
            Ok(RateDecision::Allowed { remaining: 19 })
        );
        let limited = limit.decision(&[0, 2_500, 0]).unwrap();
        assert_eq!(
            limited,
            RateDecision::Limited {
                retry_after_ms: 2_500
            }
        );
        assert_eq!(limited.retry_after_secs(), Some(3));
        let problem = limited.problem().unwrap();
        assert_eq!(problem.status, 429);
        assert_eq!(problem.headers(), vec![("retry-after", "3".to_string())]);

        // A retry after of under a second still asks for one second, never zero.
        let soon = limit.decision(&[0, 1, 0]).unwrap();
        assert_eq!(soon.retry_after_secs(), Some(1));
        // Nonsense from the script is bounded by the window.
        let late = limit.decision(&[0, 10_000_000, 0]).unwrap();
        assert_eq!(late.retry_after_secs(), Some(60));
        assert_eq!(
            RateDecision::Allowed { remaining: 0 }.retry_after_secs(),
            None
        );

        for bad in [
            &[][..],
            &[1, 0],
            &[2, 0, 0],
            &[1, 0, -1],
            &[0, -5, 0],
            &[1, 0, 0, 0],
        ] {
            assert!(limit.decision(bad).is_err(), "{bad:?}");
        }
    }

    fn chat_fingerprint(message: &str) -> Fingerprint {
        Fingerprint::of(&[b"POST /api/chat", message.as_bytes()])
    }

    #[test]
    fn fingerprints_separate_parts() {
        let a = Fingerprint::of(&[b"ab", b"c"]);
        let b = Fingerprint::of(&[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(a, Fingerprint::of(&[b"ab", b"c"]));
        assert!(a
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn a_free_key_is_started() {
        let claim = Claim::new("t1", chat_fingerprint("hi"));
        let [record, lease] = claim.begin_args(IDEMPOTENCY_LEASE);
        assert_eq!(lease, "60000");
        let value: serde_json::Value = serde_json::from_str(&record).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["state"], "pending");
        assert_eq!(value["token"], "t1");
        assert_eq!(claim.begin_outcome(None), Ok(Begin::Started));
        assert_eq!(Begin::Started.refusal(), None);
    }

    #[test]
    fn a_pending_record_is_in_progress_or_a_mismatch() {
        let first = Claim::new("t1", chat_fingerprint("hi"));
        let retry = Claim::new("t2", chat_fingerprint("hi"));
        assert_eq!(
            retry.begin_outcome(Some(first.record())),
            Ok(Begin::InProgress)
        );
        let refusal = Begin::InProgress.refusal().unwrap();
        assert_eq!(refusal.status, 409);
        assert_eq!(refusal.retry_after, Some(1));

        let other = Claim::new("t3", chat_fingerprint("something else"));
        assert_eq!(
            other.begin_outcome(Some(first.record())),
            Ok(Begin::Mismatch)
        );
        assert_eq!(Begin::Mismatch.refusal().unwrap().status, 422);
    }

    #[test]
    fn a_done_record_replays_the_answer() {
        let first = Claim::new("t1", chat_fingerprint("hi"));
        let response = StoredResponse {
            status: 200,
            content_type: "application/json".into(),
            body: r#"{"reply":"Привет","message_id":7,"degraded":false}"#.into(),
        };
        let [pending, done, keep] = first.finish_args(&response, IDEMPOTENCY_KEEP);
        assert_eq!(pending, first.record());
        assert_eq!(keep, "86400000");
        let value: serde_json::Value = serde_json::from_str(&done).unwrap();
        assert_eq!(value["state"], "done");
        assert_eq!(value["status"], 200);
        assert_eq!(value["content_type"], "application/json");

        let retry = Claim::new("t2", chat_fingerprint("hi"));
        assert_eq!(
            retry.begin_outcome(Some(&done)),
            Ok(Begin::Done(response.clone()))
        );
        assert_eq!(Begin::Done(response).refusal(), None);
        let other = Claim::new("t3", chat_fingerprint("bye"));
        assert_eq!(other.begin_outcome(Some(&done)), Ok(Begin::Mismatch));
        assert_eq!(first.abandon_args(), [first.record().to_string()]);
    }

    #[test]
    fn unreadable_records_are_reply_errors() {
        let claim = Claim::new("t", chat_fingerprint("hi"));
        for stored in [
            "",
            "garbage",
            r#"{"state":"pending"}"#,
            r#"{"v":2,"state":"pending","token":"x","fingerprint":"y"}"#,
            r#"{"v":1,"state":"exploded","fingerprint":"y"}"#,
        ] {
            assert!(claim.begin_outcome(Some(stored)).is_err(), "{stored}");
        }
        assert_eq!(claim_was_ours(1), Ok(true));
        assert_eq!(claim_was_ours(0), Ok(false));
        assert!(claim_was_ours(2).is_err());
    }

    #[test]
    fn script_digests_match_the_scripts() {
        for (script, digest) in [
            (RATE_LIMIT_SCRIPT, RATE_LIMIT_SHA1),
            (IDEMPOTENCY_BEGIN_SCRIPT, IDEMPOTENCY_BEGIN_SHA1),
            (IDEMPOTENCY_FINISH_SCRIPT, IDEMPOTENCY_FINISH_SHA1),
            (IDEMPOTENCY_ABANDON_SCRIPT, IDEMPOTENCY_ABANDON_SHA1),
        ] {
            assert_eq!(
                sha1_smol::Sha1::from(script).digest().to_string(),
                digest,
                "update the digest after changing the script"
            );
        }
    }
}
