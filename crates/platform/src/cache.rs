//! The shared cache on Spin: `evolve_core::cache::get_or_load` over Redis.
//!
//! Reads go through Spin's key-value store labelled `cache`, which the runtime config
//! maps to the same Redis: Spin keeps that store's connection open across requests, so a
//! cached read costs one round trip on an open connection and no TCP connect (outbound
//! Redis makes a new connection on every `open`). Locks, compare-on-token stores and
//! counters need commands the key-value API lacks and use the request's outbound
//! [`RedisSession`], opened only when needed.
//!
//! When Redis is unreachable the cache steps aside: values come straight from the origin
//! and the caller learns it from [`Source::Bypassed`].

use crate::sdk::kv::Store;
use evolve_core::cache::scripts::{
    STORE_IF_LOCKED_SCRIPT, STORE_IF_LOCKED_SHA1, UNLOCK_SCRIPT, UNLOCK_SHA1,
};
use evolve_core::cache::{self, CachePolicy, CacheStore, Source, Unavailable};
use evolve_core::ids::UserRef;
use evolve_core::keys::{self, CachePrefix};
use serde::{de::DeserializeOwned, Serialize};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::redis::{Redis, RedisError, RedisResult, RedisSession};
use crate::script::{ms, LuaScript};
use crate::time;

pub use evolve_core::cache::CacheKey;

/// The key-value store label the cache reads through.
pub const STORE_LABEL: &str = "cache";

const STORE_IF_LOCKED: LuaScript = LuaScript::new(STORE_IF_LOCKED_SCRIPT, STORE_IF_LOCKED_SHA1);
const UNLOCK: LuaScript = LuaScript::new(UNLOCK_SCRIPT, UNLOCK_SHA1);

thread_local! {
    /// The store, once this instance has opened it. Spin pings Redis on every open of a
    /// Redis-backed store, which would double a cached read's round trips; an instance
    /// Spin 4 reuses opens it once (a WASIp2 instance serves one request anyway).
    static OPENED: RefCell<Option<Rc<Store>>> = const { RefCell::new(None) };
}

/// A request's view of the cache.
pub struct Cache<'r> {
    store: Option<Rc<Store>>,
    redis: &'r RedisSession,
    /// The counters hash this view feeds (`keys::CACHE_STATS` for users' reads).
    stats: &'r str,
    /// One hit in this many is written to the counters (see `core::cache::sample_hit`).
    hit_sample: u32,
}

impl<'r> Cache<'r> {
    /// Opens the cache's key-value store; if that fails the cache reads nothing and
    /// every value is loaded from the origin.
    pub async fn open(redis: &'r RedisSession, stats: &'r str, hit_sample: u32) -> Self {
        let store = match OPENED.with(|opened| opened.borrow().clone()) {
            Some(store) => Some(store),
            None if redis.failed() => None,
            None => match time::within(redis.deadline(), Store::open(STORE_LABEL)).await {
                Some(Ok(store)) => {
                    let store = Rc::new(store);
                    OPENED.with(|opened| *opened.borrow_mut() = Some(store.clone()));
                    Some(store)
                }
                Some(Err(_)) => None,
                None => {
                    redis.give_up();
                    None
                }
            },
        };
        Cache {
            store,
            redis,
            stats,
            hit_sample,
        }
    }

    /// The value under `key`, loading it with `load` when the cache has nothing usable.
    pub async fn get_or_load<T, E, F>(
        &self,
        key: &CacheKey<'_>,
        policy: &CachePolicy,
        load: impl FnOnce() -> F,
    ) -> Result<(T, Source), E>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, E>>,
    {
        cache::get_or_load(self, key, policy, self.hit_sample, load).await
    }

    async fn redis(&self) -> Result<&Redis, Unavailable> {
        self.redis.get().await.map_err(|_| Unavailable)
    }
}

fn unavailable(_: RedisError) -> Unavailable {
    Unavailable
}

impl CacheStore for Cache<'_> {
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        // The store is the same Redis as the session's, under the same deadline; a
        // store that misses it counts as that Redis being down for this request.
        let store = self.store.as_ref().ok_or(Unavailable)?;
        if self.redis.failed() {
            return Err(Unavailable);
        }
        match time::within(self.redis.deadline(), store.get(key)).await {
            Some(Ok(value)) => Ok(value),
            Some(Err(_)) => Err(Unavailable),
            None => {
                self.redis.give_up();
                Err(Unavailable)
            }
        }
    }

    async fn lock(&self, lock: &str, token: &str, ttl: Duration) -> Result<bool, Unavailable> {
        self.redis()
            .await?
            .set_nx_px(lock, token, ttl)
            .await
            .map_err(unavailable)
    }

    async fn store_if_locked(
        &self,
        entry: &str,
        lock: &str,
        token: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        // Entries are JSON, so the value travels as text.
        let value = std::str::from_utf8(value).map_err(|_| Unavailable)?;
        let reply = STORE_IF_LOCKED
            .run(
                self.redis().await?,
                &[entry, lock],
                &[token, value, &ms(ttl)],
            )
            .await
            .map_err(unavailable)?;
        Ok(matches!(reply.as_slice(), [RedisResult::Int64(1)]))
    }

    async fn unlock(&self, lock: &str, token: &str) -> Result<(), Unavailable> {
        UNLOCK
            .run(self.redis().await?, &[lock], &[token])
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn count(&self, field: &str, by: u64) {
        if let Ok(redis) = self.redis().await {
            let _ = redis.hincrby(self.stats, field, by as i64).await;
        }
    }

    async fn sleep(&self, duration: Duration) {
        time::sleep(duration).await;
    }

    fn now_ms(&self) -> u64 {
        time::now_ms()
    }

    fn random(&self) -> f64 {
        time::random_fraction()
    }

    fn token(&self) -> String {
        format!("{:016x}", time::random_u64())
    }
}

/// Drops an entry and its loader lock together: the next read loads from the origin, and
/// a loader that read the origin before the write can no longer store what it read.
pub async fn invalidate(redis: &Redis, key: &CacheKey<'_>) -> Result<(), RedisError> {
    redis.del(&[key.entry, key.lock]).await.map(drop)
}

/// The keys of one user's cached profile, owned (a [`CacheKey`] borrows them).
pub struct ProfileKeys {
    entry: String,
    lock: String,
}

impl ProfileKeys {
    pub fn new(user: &UserRef) -> Self {
        ProfileKeys {
            entry: keys::profile(user),
            lock: keys::cache_lock(CachePrefix::PROFILE, user),
        }
    }

    pub fn key(&self) -> CacheKey<'_> {
        CacheKey {
            prefix: CachePrefix::PROFILE.as_str(),
            entry: &self.entry,
            lock: &self.lock,
        }
    }
}
