//! The snapshots the `cache-metrics` job records: the cache's hit and miss counters,
//! Redis' own statistics, and the hit rate since the previous snapshot.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// How many snapshots the cache metrics series keeps: a day at one per 5 minutes.
pub const CACHE_METRICS_LEN: u64 = 288;

/// Hits and misses of one cache prefix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrefixCounts {
    pub hits: u64,
    pub misses: u64,
    /// Percent, as the FastAPI service's `get_cache_stats` reports it.
    pub hit_rate: f64,
}

/// Hits and misses between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub seconds: f64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

/// One point of the cache metrics series. Counters are cumulative (since Redis started
/// or the counters were reset); `window` is the application cache's hit rate since the
/// previous snapshot, which is what an alert on "hit rate below 50 %" wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSnapshot {
    pub at_ms: u64,
    /// The application cache, per prefix (`profile`), from the shared counters.
    pub prefixes: BTreeMap<String, PrefixCounts>,
    /// All prefixes together.
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    /// Redis' own counters (every key lookup, not only the cache's).
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub keyspace_hit_rate: f64,
    pub used_memory_bytes: u64,
    pub evicted_keys: u64,
    pub keys: u64,
    pub window: Option<Window>,
}

impl CacheSnapshot {
    /// Builds a snapshot from the counters hash (`<prefix>:hits`, `:stale`, `:misses`),
    /// the text of Redis `INFO`, the key count and the previous snapshot.
    pub fn new(
        at_ms: u64,
        counters: &HashMap<String, String>,
        info: &str,
        keys: u64,
        previous: Option<&CacheSnapshot>,
    ) -> CacheSnapshot {
        let mut prefixes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (field, value) in counters {
            let Ok(value) = value.trim().parse::<i64>() else {
                continue;
            };
            let value = value.max(0) as u64;
            // Stale answers were served from the cache: they count as hits here.
            if let Some(prefix) = field
                .strip_suffix(":hits")
                .or_else(|| field.strip_suffix(":stale"))
            {
                prefixes.entry(prefix.to_owned()).or_default().0 += value;
            } else if let Some(prefix) = field.strip_suffix(":misses") {
                prefixes.entry(prefix.to_owned()).or_default().1 += value;
            }
        }
        let hits: u64 = prefixes.values().map(|c| c.0).sum();
        let misses: u64 = prefixes.values().map(|c| c.1).sum();
        let keyspace_hits = info_number(info, "keyspace_hits").unwrap_or(0);
        let keyspace_misses = info_number(info, "keyspace_misses").unwrap_or(0);
        let window = previous.and_then(|p| {
            let seconds = at_ms.checked_sub(p.at_ms)? as f64 / 1_000.0;
            // Counters that went down were reset: no window across a reset.
            let hits = hits.checked_sub(p.hits)?;
            let misses = misses.checked_sub(p.misses)?;
            (seconds > 0.0).then(|| Window {
                seconds,
                hits,
                misses,
                hit_rate: crate::cache::hit_rate(hits, misses),
            })
        });
        CacheSnapshot {
            at_ms,
            prefixes: prefixes
                .into_iter()
                .map(|(prefix, (hits, misses))| {
                    let rate = crate::cache::hit_rate(hits, misses);
                    (
                        prefix,
                        PrefixCounts {
                            hits,
                            misses,
                            hit_rate: rate,
                        },
                    )
                })
                .collect(),
            hits,
            misses,
            hit_rate: crate::cache::hit_rate(hits, misses),
            keyspace_hits,
            keyspace_misses,
            keyspace_hit_rate: crate::cache::hit_rate(keyspace_hits, keyspace_misses),
            used_memory_bytes: info_number(info, "used_memory").unwrap_or(0),
            evicted_keys: info_number(info, "evicted_keys").unwrap_or(0),
            keys,
            window,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("snapshots serialize")
    }

    pub fn from_json(text: &[u8]) -> Option<CacheSnapshot> {
        serde_json::from_slice(text).ok()
    }
}

/// A whole-number field of Redis `INFO` output (`name:value` lines).
pub fn info_number(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim_end_matches('\r').split_once(':')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_sum_prefixes_and_compute_the_window() {
        let counters: HashMap<String, String> = [
            ("profile:hits", "90"),
            ("profile:misses", "10"),
            ("other:hits", "0"),
            ("other:misses", "5"),
            ("junk", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let info = "# Stats\r\nkeyspace_hits:300\r\nkeyspace_misses:100\r\nevicted_keys:2\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        let first = CacheSnapshot::new(1_000, &counters, info, 42, None);
        assert_eq!(first.prefixes["profile"].hit_rate, 90.0);
        assert_eq!(first.prefixes["other"].misses, 5);
        assert_eq!((first.hits, first.misses), (90, 15));
        assert_eq!(first.keyspace_hit_rate, 75.0);
        assert_eq!(first.used_memory_bytes, 1_048_576);
        assert_eq!(first.evicted_keys, 2);
        assert_eq!(first.keys, 42);
        assert_eq!(first.window, None);

        let mut later_counters = counters.clone();
        later_counters.insert("profile:hits".into(), "120".into());
        later_counters.insert("profile:misses".into(), "20".into());
        let second = CacheSnapshot::new(301_000, &later_counters, info, 42, Some(&first));
        let window = second.window.unwrap();
        assert_eq!((window.hits, window.misses), (30, 10));
        assert_eq!(window.hit_rate, 75.0);
        assert_eq!(window.seconds, 300.0);
        // After a reset the counters went down: no window.
        let reset = CacheSnapshot::new(601_000, &HashMap::new(), info, 0, Some(&second));
        assert_eq!(reset.window, None);
        assert_eq!(
            CacheSnapshot::from_json(second.to_json().as_bytes()),
            Some(second)
        );
    }

    #[test]
    fn info_numbers_are_read_by_exact_name() {
        let info = "used_memory:10\r\nused_memory_rss:20\r\n";
        assert_eq!(info_number(info, "used_memory"), Some(10));
        assert_eq!(info_number(info, "used_memory_rss"), Some(20));
        assert_eq!(info_number(info, "used"), None);
    }
}
