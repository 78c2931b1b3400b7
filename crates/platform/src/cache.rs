//! The shared cache: get-or-load over Redis, with the rules of `evolve_core::cache`.
//!
//! Reads go through Spin's key-value store labelled `cache`, which the runtime config
//! maps to the same Redis: Spin keeps that store's connection open across requests, so a
//! cached read costs one round trip on an open connection and no TCP connect (outbound
//! Redis makes a new connection on every `open`). Writes, loader locks and counters need
//! commands the key-value API lacks (`SET .. PX`, `SET .. NX`, `HINCRBY`) and use the
//! request's outbound [`RedisSession`], opened only when needed.
//!
//! When Redis is unreachable the cache steps aside: values come straight from the origin
//! and the caller learns it from [`Source::Bypassed`].

use evolve_core::cache::{lookup, sample_hit, CachePolicy, Entry, Lookup, Source};
use serde::{de::DeserializeOwned, Serialize};
use spin_sdk::key_value::Store;

use crate::redis::RedisSession;
use crate::time;

/// The key-value store label the cache reads through.
pub const STORE_LABEL: &str = "cache";

/// Where one cached value lives, and the counters it feeds.
pub struct CacheKey<'a> {
    /// The counter prefix (`profile`).
    pub prefix: &'a str,
    /// The entry's Redis key.
    pub entry: &'a str,
    /// The loader lock's Redis key.
    pub lock: &'a str,
    /// The hash holding `<prefix>:hits` and `<prefix>:misses`.
    pub stats: &'a str,
}

/// A request's view of the cache.
pub struct Cache<'r> {
    store: Option<Store>,
    redis: &'r RedisSession,
    /// One hit in this many is written to the counters (see `core::cache::sample_hit`).
    pub hit_sample: u32,
}

impl<'r> Cache<'r> {
    /// Opens the cache's key-value store; if that fails the cache reads nothing and
    /// every value is loaded from the origin.
    pub fn open(redis: &'r RedisSession, hit_sample: u32) -> Self {
        Cache {
            store: Store::open(STORE_LABEL).ok(),
            redis,
            hit_sample,
        }
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>, ()> {
        match &self.store {
            Some(store) => store.get(key).map_err(|_| ()),
            None => Err(()),
        }
    }

    /// The value under `key`, loading it with `load` when the cache has nothing usable.
    /// Only the caller holding the key's lock loads; others serve the stale value or wait
    /// for the loader (up to `policy.wait`).
    pub fn get_or_load<T, E>(
        &self,
        key: &CacheKey<'_>,
        policy: &CachePolicy,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, Source), E>
    where
        T: Serialize + DeserializeOwned,
    {
        let Ok(stored) = self.read(key.entry) else {
            return load().map(|v| (v, Source::Bypassed));
        };
        let stale = match lookup::<T>(stored.as_deref(), time::now_ms()) {
            Lookup::Fresh(value) => {
                self.count_hit(key);
                return Ok((value, Source::Hit));
            }
            Lookup::Stale(value) => Some(value),
            Lookup::Miss => None,
        };

        let Ok(redis) = self.redis.get() else {
            return load().map(|v| (v, Source::Bypassed));
        };
        let token = format!("{:016x}", wasi::random::random::get_random_u64());
        match redis.set_nx_px(key.lock, &token, policy.lock_ttl) {
            Ok(true) => {
                // The previous holder may have stored the value and released the lock
                // between this caller's read and its lock: look once more before loading.
                if let Ok(Some(bytes)) = self.read(key.entry) {
                    if let Lookup::Fresh(value) = lookup::<T>(Some(&bytes), time::now_ms()) {
                        let _ = redis.del(&[key.lock]);
                        self.count_hit(key);
                        return Ok((value, Source::Hit));
                    }
                }
                let loaded = load();
                let value = match loaded {
                    Ok(value) => value,
                    Err(error) => {
                        let _ = redis.del(&[key.lock]);
                        return Err(error);
                    }
                };
                let entry = Entry::new(value, time::now_ms(), policy);
                let _ = redis.set_px(key.entry, &entry.encode(), policy.keep_for());
                let _ = redis.del(&[key.lock]);
                let _ = redis.hincrby(key.stats, &format!("{}:misses", key.prefix), 1);
                Ok((entry.value, Source::Loaded))
            }
            Ok(false) => {
                if let Some(value) = stale {
                    self.count_hit(key);
                    return Ok((value, Source::StaleHit));
                }
                self.wait_for_loader(key, policy, load)
            }
            Err(_) => load().map(|v| (v, Source::Bypassed)),
        }
    }

    /// Another caller is loading a missing key: look again until it is there.
    fn wait_for_loader<T, E>(
        &self,
        key: &CacheKey<'_>,
        policy: &CachePolicy,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, Source), E>
    where
        T: Serialize + DeserializeOwned,
    {
        let deadline = time::now_ms() + policy.wait.as_millis() as u64;
        while time::now_ms() < deadline {
            time::sleep(policy.poll_every);
            if let Ok(stored) = self.read(key.entry) {
                match lookup::<T>(stored.as_deref(), time::now_ms()) {
                    Lookup::Fresh(value) | Lookup::Stale(value) => {
                        self.count_hit(key);
                        return Ok((value, Source::Hit));
                    }
                    Lookup::Miss => {}
                }
            }
        }
        if let Ok(redis) = self.redis.get() {
            let _ = redis.hincrby(key.stats, &format!("{}:misses", key.prefix), 1);
        }
        load().map(|v| (v, Source::Bypassed))
    }

    fn count_hit(&self, key: &CacheKey<'_>) {
        if let Some(weight) = sample_hit(self.hit_sample, time::random_fraction()) {
            if let Ok(redis) = self.redis.get() {
                let _ = redis.hincrby(key.stats, &format!("{}:hits", key.prefix), weight as i64);
            }
        }
    }
}
