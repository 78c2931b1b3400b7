//! The shared cache's rules, apart from the I/O: how an entry is stored, when it is
//! fresh, when it may still be served stale, and how long a loader may hold a key.
//!
//! An entry lives in Redis for `ttl + stale_for`; inside it is the moment it stops being
//! fresh. A fresh entry is served as is. A stale one is served to everyone but the one
//! caller that won the key's loader lock and refreshes it, so a popular key never sends a
//! crowd to PostgreSQL when it expires (stampede protection). On a plain miss the callers
//! that lost the lock wait briefly for the winner's value instead of loading too.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

mod load;
pub mod scripts;

pub use load::{get_or_load, CacheKey, CacheStore, Counter, Unavailable};

/// How one kind of entry (one key prefix) is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long an entry is fresh.
    pub ttl: Duration,
    /// How long after that it may still be served while one caller refreshes it.
    pub stale_for: Duration,
    /// How long a loader holds the key's lock at most (a crashed loader frees it then).
    pub lock_ttl: Duration,
    /// How long a caller that lost the lock on a miss waits for the winner's value.
    pub wait: Duration,
    /// How often that caller looks again.
    pub poll_every: Duration,
}

impl CachePolicy {
    /// A policy with the given freshness and the usual stale window, lock and wait.
    pub fn with_ttl(ttl: Duration) -> Self {
        CachePolicy {
            ttl,
            stale_for: Duration::from_secs(60).min(ttl),
            lock_ttl: Duration::from_secs(5),
            wait: Duration::from_millis(1_000),
            poll_every: Duration::from_millis(10),
        }
    }

    /// How long Redis keeps the entry: fresh time plus stale time.
    pub fn keep_for(&self) -> Duration {
        self.ttl + self.stale_for
    }
}

/// What is stored under a cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<T> {
    /// Unix milliseconds after which the value is stale.
    #[serde(rename = "f")]
    pub fresh_until_ms: u64,
    #[serde(rename = "v")]
    pub value: T,
}

impl<T: Serialize> Entry<T> {
    pub fn new(value: T, now_ms: u64, policy: &CachePolicy) -> Self {
        Entry {
            fresh_until_ms: now_ms + policy.ttl.as_millis() as u64,
            value,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cache entries serialize")
    }
}

/// What a read of a cache key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    Fresh(T),
    Stale(T),
    /// Nothing usable: absent, or written in a shape this build does not read (then it is
    /// replaced on the next load, which is how a deploy that changes a cached type heals).
    Miss,
}

/// Reads a stored entry.
pub fn lookup<T: DeserializeOwned>(stored: Option<&[u8]>, now_ms: u64) -> Lookup<T> {
    let Some(bytes) = stored else {
        return Lookup::Miss;
    };
    match serde_json::from_slice::<Entry<T>>(bytes) {
        Ok(entry) if now_ms < entry.fresh_until_ms => Lookup::Fresh(entry.value),
        Ok(entry) => Lookup::Stale(entry.value),
        Err(_) => Lookup::Miss,
    }
}

/// How a value was obtained, for the counters and for callers that report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the cache, fresh.
    Hit,
    /// From the cache, stale, while another caller refreshes it (counted as `stale`).
    StaleHit,
    /// Loaded from the origin by this caller, which stored it.
    Loaded,
    /// Loaded from the origin without storing it: the cache is unavailable, or the
    /// winner of the lock did not deliver in time.
    Bypassed,
}

impl Source {
    /// Whether the counters record this as a hit (served from the cache).
    pub fn is_hit(self) -> bool {
        matches!(self, Source::Hit | Source::StaleHit)
    }
}

/// Hit rate in percent, as the FastAPI service's `get_cache_stats` reports it (0 when unused).
pub fn hit_rate(hits: u64, misses: u64) -> f64 {
    let total = hits + misses;
    if total == 0 {
        0.0
    } else {
        (hits as f64 * 10_000.0 / total as f64).round() / 100.0
    }
}

/// Whether a hit is written to the shared counters. Counting every hit would cost each
/// cached read its own Redis connection on Spin (outbound Redis is not pooled), so hits
/// are sampled: one in `every` is recorded, with weight `every`. `random` is uniform in
/// [0, 1). Misses always go to Redis anyway and are counted exactly.
pub fn sample_hit(every: u32, random: f64) -> Option<u64> {
    match every {
        0 | 1 => Some(1),
        n => (random * f64::from(n) < 1.0).then_some(u64::from(n)),
    }
}

/// The counters of one cache prefix (see [`Counter`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCounters {
    pub hits: u64,
    pub stale: u64,
    pub misses: u64,
}

/// The counters per prefix from the `keys::CACHE_STATS` hash (`<prefix>:hits`,
/// `<prefix>:stale`, `<prefix>:misses`); other fields are ignored.
pub fn prefix_counters(counters: &HashMap<String, String>) -> BTreeMap<String, PrefixCounters> {
    let mut out: BTreeMap<String, PrefixCounters> = BTreeMap::new();
    for (field, value) in counters {
        let Some((prefix, which)) = field.rsplit_once(':') else {
            continue;
        };
        let Ok(n) = value.trim().parse::<i64>() else {
            continue;
        };
        let n = n.max(0) as u64;
        match which {
            "hits" => out.entry(prefix.to_owned()).or_default().hits += n,
            "stale" => out.entry(prefix.to_owned()).or_default().stale += n,
            "misses" => out.entry(prefix.to_owned()).or_default().misses += n,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy::with_ttl(Duration::from_secs(300))
    }

    #[test]
    fn entries_are_fresh_then_stale_then_gone() {
        let entry = Entry::new("v".to_string(), 1_000, &policy());
        let bytes = entry.encode();
        assert_eq!(
            lookup::<String>(Some(&bytes), 1_000),
            Lookup::Fresh("v".into())
        );
        assert_eq!(
            lookup::<String>(Some(&bytes), 300_999),
            Lookup::Fresh("v".into())
        );
        assert_eq!(
            lookup::<String>(Some(&bytes), 301_000),
            Lookup::Stale("v".into())
        );
        assert_eq!(lookup::<String>(None, 0), Lookup::Miss);
        assert_eq!(policy().keep_for(), Duration::from_secs(360));
    }

    #[test]
    fn an_entry_of_another_shape_is_a_miss() {
        assert_eq!(
            lookup::<u32>(Some(br#"{"f":9,"v":"text"}"#), 0),
            Lookup::Miss
        );
        assert_eq!(lookup::<u32>(Some(b"not json"), 0), Lookup::Miss);
    }

    #[test]
    fn hit_rate_is_a_percentage() {
        assert_eq!(hit_rate(0, 0), 0.0);
        assert_eq!(hit_rate(3, 1), 75.0);
        assert_eq!(hit_rate(2, 1), 66.67);
    }

    #[test]
    fn sampled_hits_keep_their_expected_weight() {
        assert_eq!(sample_hit(1, 0.99), Some(1));
        assert_eq!(sample_hit(16, 0.01), Some(16));
        assert_eq!(sample_hit(16, 0.5), None);
        let counted: u64 = (0..16_000)
            .filter_map(|i| sample_hit(16, i as f64 / 16_000.0))
            .sum();
        assert_eq!(counted, 16_000);
    }

    #[test]
    fn short_ttls_keep_a_proportionate_stale_window() {
        let p = CachePolicy::with_ttl(Duration::from_secs(5));
        assert_eq!(p.stale_for, Duration::from_secs(5));
    }
}
