//! Every Redis key this service uses, in one place, so that their shapes, hash tags and
//! the absence of collisions can be read (and tested) together.
//!
//! All keys start with [`PREFIX`]. Where one Lua script touches several keys, those keys
//! share a Redis Cluster hash tag (the part in `{...}`) so that they land in one slot;
//! per-user keys are tagged by user even when a script touches only one, so that a user's
//! limiter and idempotency records stay together as scripts grow.
//!
//! | what | key | type |
//! |---|---|---|
//! | LLM breaker state | `evolve:{breaker:llm}:state` | hash |
//! | speech model breaker state | `evolve:{breaker:tts}:state` | hash |
//! | work queue: streams, delayed retries, dead letters, counters, states | `evolve:{queue}:...` | see below |
//! | dialog analysis turn counter | `evolve:{analysis:<user>}:turns` | string |
//! | cache entry | `evolve:cache:<prefix>:{<id>}` | string |
//! | cache loader lock | `evolve:cache:<prefix>:{<id>}:lock` | string |
//! | cache counters | `evolve:cache:stats`, fields `<prefix>:hits`, `<prefix>:stale`, `<prefix>:misses` | hash |
//! | request, LLM and job metrics | `evolve:metrics`, fields in `crate::metrics` | hash |
//! | chat rate limit | `evolve:{rl:<user>}:chat` | sorted set |
//! | idempotency record | `evolve:{idem:<user>}:<key>` | string |

use std::fmt::Write as _;

use crate::ids::{IdempotencyKey, UserRef};

/// The prefix of every key.
pub const PREFIX: &str = "evolve:";

/// The LLM breaker's state hash (see `breaker`); the half-open probe's lease is a field
/// of it, so every breaker decision touches this one key.
pub const BREAKER_STATE: &str = "evolve:{breaker:llm}:state";

/// The speech model's breaker: its own state, so a failing TTS model does not silence
/// chat replies (and the other way round), shared by every instance the same way.
pub const BREAKER_TTS: &str = "evolve:{breaker:tts}:state";

/// The hash of per-prefix cache hit and miss counters.
pub const CACHE_STATS: &str = "evolve:cache:stats";

/// A kind of cached value, named in its keys and counters (`profile`). Names are 1 to 32
/// characters of `a-z 0-9 _`, so a prefix is safe inside a `SCAN MATCH` pattern and can
/// never contain the `:` that separates it from the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CachePrefix(&'static str);

impl CachePrefix {
    /// User profiles, keyed by the user's external id.
    pub const PROFILE: CachePrefix = CachePrefix::new("profile");

    /// A prefix; an invalid name fails the build when used in a `const`.
    pub const fn new(name: &'static str) -> CachePrefix {
        let bytes = name.as_bytes();
        assert!(
            !bytes.is_empty() && bytes.len() <= 32,
            "cache prefix length"
        );
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            assert!(
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
                "cache prefix characters"
            );
            i += 1;
        }
        CachePrefix(name)
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

/// What a cache entry is keyed by. The id is the entry's hash tag, so that the entry and
/// its lock share a slot (the cache's scripts touch both). It is written so that no id can
/// change that tag or make an entry key equal another id's lock key: `:`, `{` and `}` are
/// percent-encoded (user ids never contain `%`, so this stays one-to-one).
pub trait CacheId {
    fn write_cache_id(&self, out: &mut String);
}

impl CacheId for UserRef {
    fn write_cache_id(&self, out: &mut String) {
        write_escaped_id(self.as_str(), out);
    }
}

fn write_escaped_id(id: &str, out: &mut String) {
    for c in id.chars() {
        match c {
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

impl CacheId for i64 {
    fn write_cache_id(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

/// The key of a cached value.
pub fn cache_entry(prefix: CachePrefix, id: &impl CacheId) -> String {
    let mut key = format!("{PREFIX}cache:{}:{{", prefix.as_str());
    id.write_cache_id(&mut key);
    key.push('}');
    key
}

/// The key of the lock one loader holds while it refreshes an entry.
pub fn cache_lock(prefix: CachePrefix, id: &impl CacheId) -> String {
    let mut key = cache_entry(prefix, id);
    key.push_str(":lock");
    key
}

/// A `SCAN MATCH` pattern for every key of one prefix (entries and their locks).
pub fn cache_pattern(prefix: CachePrefix) -> String {
    format!("{PREFIX}cache:{}:*", prefix.as_str())
}

/// A user's profile entry: [`cache_entry`] with [`CachePrefix::PROFILE`].
pub fn profile(user: &UserRef) -> String {
    cache_entry(CachePrefix::PROFILE, user)
}

/// The sorted set of a user's recent chat turns that the rate limiter counts.
pub fn chat_rate_limit(user: &UserRef) -> String {
    format!("{PREFIX}{{rl:{user}}}:chat")
}

/// The record of one `Idempotency-Key` of one user: keys are scoped per user, so two
/// users choosing the same key never see each other's answers. The key follows the
/// closing brace, so braces in it cannot change the hash tag.
pub fn idempotency(user: &UserRef, key: &IdempotencyKey) -> String {
    format!("{PREFIX}{{idem:{user}}}:{key}")
}

/// The Redis Cluster hash tag of a key: what its slot is computed from. The text
/// between the first `{` and the next `}` when that is not empty, else the whole key.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash of request, LLM and job counters that `/metrics` renders (fields in
/// `crate::metrics`). One hash, so a request's figures are one script call and a scrape
/// one `HGETALL`.
pub const METRICS: &str = "evolve:metrics";

/// Every cache prefix in use: the admin's invalidation accepts only these.
pub const CACHE_PREFIXES: &[CachePrefix] = &[CachePrefix::PROFILE];

impl CachePrefix {
    /// The known prefix of this name ([`CACHE_PREFIXES`]).
    pub fn find(name: &str) -> Option<CachePrefix> {
        CACHE_PREFIXES.iter().copied().find(|p| p.as_str() == name)
    }
}

/// An id given as text (by an operator): written as a [`UserRef`] is, so that the admin's
/// invalidation of `("profile", "tg:alice")` removes exactly the key the cache wrote.
pub struct CacheIdText<'a>(pub &'a str);

impl CacheId for CacheIdText<'_> {
    fn write_cache_id(&self, out: &mut String) {
        write_escaped_id(self.0, out);
    }
}

#[cfg(test)]
mod admin_keys_tests {
    use super::*;

    #[test]
    fn text_ids_are_written_as_user_ids_are() {
        let user = UserRef::parse("tg:alice").unwrap();
        assert_eq!(
            cache_entry(CachePrefix::PROFILE, &CacheIdText("tg:alice")),
            profile(&user)
        );
        assert_eq!(CachePrefix::find("profile"), Some(CachePrefix::PROFILE));
        assert_eq!(CachePrefix::find("nope"), None);
        assert!(METRICS.starts_with(PREFIX));
        // The counters are not inside any prefix's key space.
        for prefix in CACHE_PREFIXES {
            assert!(!CACHE_STATS.starts_with(&format!("{PREFIX}cache:{}:", prefix.as_str())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRef {
        UserRef::parse(id).unwrap()
    }

    #[test]
    fn keys_have_the_documented_shapes() {
        let alice = user("alice");
        assert_eq!(profile(&alice), "evolve:cache:profile:{alice}");
        assert_eq!(
            cache_lock(CachePrefix::PROFILE, &alice),
            "evolve:cache:profile:{alice}:lock"
        );
        assert_eq!(
            cache_entry(CachePrefix::PROFILE, &42_i64),
            "evolve:cache:profile:{42}"
        );
        assert_eq!(
            cache_pattern(CachePrefix::PROFILE),
            "evolve:cache:profile:*"
        );
        assert_eq!(chat_rate_limit(&alice), "evolve:{rl:alice}:chat");
        let key = IdempotencyKey::parse("k-1").unwrap();
        assert_eq!(idempotency(&alice, &key), "evolve:{idem:alice}:k-1");
    }

    #[test]
    fn keys_one_script_touches_share_a_hash_tag() {
        assert_eq!(hash_tag(BREAKER_STATE), "breaker:llm");

        // A cache entry and its lock, whatever the id.
        for id in ["tg:alice@x.y", "a{b}c", "}{", "{}"] {
            let id = CacheIdText(id);
            let entry = cache_entry(CachePrefix::PROFILE, &id);
            let lock = cache_lock(CachePrefix::PROFILE, &id);
            assert_eq!(hash_tag(&entry), hash_tag(&lock), "{entry}");
            assert!(!hash_tag(&entry).contains(['{', '}']), "{entry}");
        }

        let alice = user("tg:alice@x.y");
        assert_eq!(hash_tag(&chat_rate_limit(&alice)), "rl:tg:alice@x.y");
        // One MGET reads the bypass marker and the user's last write.
        for name in ["alice", "tg:bob@x.y"] {
            assert_eq!(
                hash_tag(&replica_written(&user(name))),
                hash_tag(REPLICA_BYPASS)
            );
        }
        // Braces in an idempotency key come after the tag and do not move it.
        for raw in ["plain", "{other}", "}{", "a{b}c"] {
            let key = IdempotencyKey::parse(raw).unwrap();
            assert_eq!(
                hash_tag(&idempotency(&alice, &key)),
                "idem:tg:alice@x.y",
                "{raw}"
            );
        }
    }

    #[test]
    fn every_key_has_the_prefix() {
        let alice = user("alice");
        let key = IdempotencyKey::parse("k").unwrap();
        for k in [
            BREAKER_STATE.to_string(),
            CACHE_STATS.to_string(),
            profile(&alice),
            cache_lock(CachePrefix::PROFILE, &alice),
            chat_rate_limit(&alice),
            idempotency(&alice, &key),
        ] {
            assert!(k.starts_with(PREFIX), "{k}");
        }
    }

    #[test]
    fn hash_tag_follows_the_cluster_rule() {
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{}b"), "a{}b");
        assert_eq!(hash_tag("a{b"), "a{b");
        assert_eq!(hash_tag("a{x}{y}"), "x");
        assert_eq!(hash_tag("{x}"), "x");
    }

    #[test]
    fn an_entry_key_is_never_another_ids_lock_key() {
        // "x:lock" would otherwise have the entry key of x's lock.
        let x = user("x");
        let sly = user("x:lock");
        assert_ne!(profile(&sly), cache_lock(CachePrefix::PROFILE, &x));
        assert_eq!(profile(&sly), "evolve:cache:profile:{x%3Alock}");
        // Escaping keeps glob characters out of ids too (user ids have none to begin
        // with), so a per-prefix pattern matches only that prefix's keys.
        assert!(!profile(&sly).contains(['*', '?', '[', ']', '\\']));
    }
}

// Each job's keys share the hash tag `{job:<name>}`: one script takes the lease and
// checks the slot, another records the run and releases the lease.

/// The job's cluster-wide lease: the token of the run that holds it (string, PX).
pub fn job_lease(job: &str) -> String {
    format!("{PREFIX}{{job:{job}}}:lease")
}

/// The schedule slot (Unix ms) of the job's latest finished cron run (string).
pub fn job_slot(job: &str) -> String {
    format!("{PREFIX}{{job:{job}}}:slot")
}

/// The job's latest run that did work, ok or error (string, JSON run record).
pub fn job_last(job: &str) -> String {
    format!("{PREFIX}{{job:{job}}}:last")
}

/// The job's latest skipped run (string, JSON run record). Kept apart from the history:
/// every instance fires every schedule, and their skips would crowd out the real runs.
pub fn job_skipped(job: &str) -> String {
    format!("{PREFIX}{{job:{job}}}:skipped")
}

/// The job's recent runs that did work, newest first (list of JSON run records, capped).
pub fn job_history(job: &str) -> String {
    format!("{PREFIX}{{job:{job}}}:history")
}

/// The cache metrics series, newest first (list of JSON snapshots, capped).
pub const CACHE_METRICS: &str = "evolve:cache:metrics";

/// Hit and miss counters of the cache warm-up, kept apart from [`CACHE_STATS`] so that
/// preloading does not count as users' misses.
pub const CACHE_WARM_STATS: &str = "evolve:cache:warm_stats";

#[cfg(test)]
mod job_keys_tests {
    use super::*;

    #[test]
    fn a_jobs_keys_share_its_hash_tag() {
        let keys = [
            job_lease("cleanup"),
            job_slot("cleanup"),
            job_last("cleanup"),
            job_skipped("cleanup"),
            job_history("cleanup"),
        ];
        assert_eq!(keys[0], "evolve:{job:cleanup}:lease");
        for key in &keys {
            assert!(key.starts_with(PREFIX), "{key}");
            assert_eq!(hash_tag(key), "job:cleanup", "{key}");
        }
        assert_ne!(
            hash_tag(&job_lease("cleanup")),
            hash_tag(&job_lease("partitions"))
        );
    }

    #[test]
    fn job_and_metrics_keys_are_not_cache_entries() {
        // No prefix's invalidation pattern can reach them.
        for key in [CACHE_METRICS, CACHE_WARM_STATS, CACHE_STATS] {
            assert!(!key.ends_with(':'), "{key}");
            assert_eq!(key.matches(':').count(), 2, "{key}");
        }
    }
}

// The work queue's keys all share the hash tag `{queue}`: its scripts move tasks between
// the streams, the delayed set and the dead letters atomically, so they must be one slot.

/// The stream of one priority (`high`, `default`, `low`).
pub fn queue_stream(priority: &str) -> String {
    format!("{PREFIX}{{queue}}:stream:{priority}")
}

/// Retries waiting for their time, scored by when they are due (sorted set).
pub const QUEUE_DELAYED: &str = "evolve:{queue}:delayed";

/// Tasks that will not be tried again, with their last error (stream).
pub const QUEUE_DEAD: &str = "evolve:{queue}:dead";

/// Counters per kind and outcome, and task durations (hash).
pub const QUEUE_STATS: &str = "evolve:{queue}:stats";

/// What became of tasks that carry a reference: `pending` or `dead` (hash, field per
/// reference; removed when the task is done).
pub const QUEUE_STATUS: &str = "evolve:{queue}:status";

/// Recent results, newest first (list of JSON records, capped).
pub const QUEUE_RESULTS: &str = "evolve:{queue}:results";

/// The de-duplication marker of one task reference (string, PX).
pub fn queue_dedup(reference: &str) -> String {
    format!("{PREFIX}{{queue}}:dedup:{reference}")
}

/// A user's chat turns counted towards the next dialog analysis (string counter). In the
/// queue's slot: one script counts the turn and enqueues the analysis.
pub fn analysis_turns(user: &UserRef) -> String {
    format!("{PREFIX}{{queue}}:analysis-turns:{user}")
}

// --- the PostgreSQL read replica (see `crate::replica`) ---------------------------------

/// Set while the replica is bypassed by everyone (string, PX): it failed or lagged.
pub const REPLICA_BYPASS: &str = "evolve:{replica}:bypass";

/// A user's last write position on the primary (string, PX). In the replica's slot, so a
/// read fetches it and [`REPLICA_BYPASS`] in one `MGET`.
pub fn replica_written(user: &UserRef) -> String {
    format!("{PREFIX}{{replica}}:written:{user}")
}

#[cfg(test)]
mod queue_keys_tests {
    use super::*;

    #[test]
    fn every_queue_key_is_in_one_slot() {
        let keys = [
            queue_stream("high"),
            queue_stream("default"),
            queue_stream("low"),
            QUEUE_DELAYED.to_owned(),
            QUEUE_DEAD.to_owned(),
            QUEUE_STATS.to_owned(),
            QUEUE_STATUS.to_owned(),
            QUEUE_RESULTS.to_owned(),
            queue_dedup("voice:42"),
            // A reference with braces cannot move the tag: the tag comes first.
            queue_dedup("x{y}z"),
            analysis_turns(&UserRef::parse("u-1").unwrap()),
        ];
        for key in &keys {
            assert!(key.starts_with(PREFIX), "{key}");
            assert_eq!(hash_tag(key), "queue", "{key}");
        }
    }
}
