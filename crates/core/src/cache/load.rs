//! Get-or-load: the cache's algorithm, apart from the store it runs on.
//!
//! The steps race with other callers and with writers on every instance, so they are
//! written once, here, against [`CacheStore`]: Redis in the platform crate, memory in the
//! tests below, where the interleavings are driven step by step.
//!
//! The loader lock doubles as the entry's version. A loader may store its value only while
//! its own token still holds the lock ([`STORE_IF_LOCKED_SCRIPT`]); an invalidation drops
//! the entry and the lock together. So a loader that read the origin before a write cannot
//! put the old value back after the write's invalidation: its lock is gone, and the store
//! is refused.
//!
//! [`STORE_IF_LOCKED_SCRIPT`]: super::scripts::STORE_IF_LOCKED_SCRIPT

use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::time::Duration;

use super::{lookup, sample_hit, CachePolicy, Entry, Lookup, Source};

/// The store could not be reached; the cache steps aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Where one cached value lives.
#[derive(Debug, Clone, Copy)]
pub struct CacheKey<'a> {
    /// The counter prefix (`profile`).
    pub prefix: &'a str,
    /// The entry's key.
    pub entry: &'a str,
    /// The loader lock's key (same hash tag as the entry).
    pub lock: &'a str,
}

/// A counter a read feeds, per prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Served fresh from the cache.
    Hit,
    /// Served stale from the cache while another caller refreshes it.
    Stale,
    /// Loaded from the origin.
    Miss,
}

impl Counter {
    /// The field of the counters hash: `<prefix>:hits`, `<prefix>:stale`, `<prefix>:misses`.
    pub fn field(self, prefix: &str) -> String {
        let name = match self {
            Counter::Hit => "hits",
            Counter::Stale => "stale",
            Counter::Miss => "misses",
        };
        format!("{prefix}:{name}")
    }
}

/// What get-or-load needs from a store, with its clock and randomness, so that tests can
/// control both.
#[allow(async_fn_in_trait)] // implemented and awaited within one single-threaded guest
pub trait CacheStore {
    /// The bytes under `key`, `None` when absent.
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable>;
    /// Takes `lock` with `token` for `ttl` unless someone holds it (`SET NX PX`).
    async fn lock(&self, lock: &str, token: &str, ttl: Duration) -> Result<bool, Unavailable>;
    /// Stores `value` under `entry` for `ttl` and releases `lock`, only while `lock` still
    /// holds `token`; false (and nothing written) otherwise.
    async fn store_if_locked(
        &self,
        entry: &str,
        lock: &str,
        token: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Unavailable>;
    /// Releases `lock` if it still holds `token` (a newer loader's lock is left alone).
    async fn unlock(&self, lock: &str, token: &str) -> Result<(), Unavailable>;
    /// Adds `by` to the counter `field`; errors are the store's to drop.
    async fn count(&self, field: &str, by: u64);
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;
    /// A uniform random number in [0, 1) (hit sampling).
    fn random(&self) -> f64;
    /// A token no other loader uses.
    fn token(&self) -> String;
}

/// The value under `key`, loading it with `load` when the cache has nothing usable.
/// Only the caller holding the key's lock loads; others serve the stale value or wait for
/// the loader (up to `policy.wait`). One hit in `hit_sample` is counted, with that weight.
pub async fn get_or_load<S, T, E, F>(
    store: &S,
    key: &CacheKey<'_>,
    policy: &CachePolicy,
    hit_sample: u32,
    load: impl FnOnce() -> F,
) -> Result<(T, Source), E>
where
    S: CacheStore,
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    let Ok(stored) = store.read(key.entry).await else {
        return load().await.map(|v| (v, Source::Bypassed));
    };
    let stale = match lookup::<T>(stored.as_deref(), store.now_ms()) {
        Lookup::Fresh(value) => {
            count_hit(store, key, hit_sample).await;
            return Ok((value, Source::Hit));
        }
        Lookup::Stale(value) => Some(value),
        Lookup::Miss => None,
    };

    let token = store.token();
    match store.lock(key.lock, &token, policy.lock_ttl).await {
        Ok(true) => refresh(store, key, policy, hit_sample, &token, load).await,
        Ok(false) => match stale {
            Some(value) => {
                store.count(&Counter::Stale.field(key.prefix), 1).await;
                Ok((value, Source::StaleHit))
            }
            None => wait_for_loader(store, key, policy, hit_sample, load).await,
        },
        Err(Unavailable) => load().await.map(|v| (v, Source::Bypassed)),
    }
}

/// This caller holds the lock: load and store, unless the previous holder stored a fresh
/// value between this caller's read and its lock.
async fn refresh<S, T, E, F>(
    store: &S,
    key: &CacheKey<'_>,
    policy: &CachePolicy,
    hit_sample: u32,
    token: &str,
    load: impl FnOnce() -> F,
) -> Result<(T, Source), E>
where
    S: CacheStore,
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    if let Ok(Some(bytes)) = store.read(key.entry).await {
        if let Lookup::Fresh(value) = lookup::<T>(Some(&bytes), store.now_ms()) {
            let _ = store.unlock(key.lock, token).await;
            count_hit(store, key, hit_sample).await;
            return Ok((value, Source::Hit));
        }
    }
    let value = match load().await {
        Ok(value) => value,
        Err(error) => {
            let _ = store.unlock(key.lock, token).await;
            return Err(error);
        }
    };
    let entry = Entry::new(value, store.now_ms(), policy);
    // Refused when an invalidation took the lock away while loading: the value this caller
    // read may predate that write, so it is served to this caller only, never stored.
    let _ = store
        .store_if_locked(
            key.entry,
            key.lock,
            token,
            &entry.encode(),
            policy.keep_for(),
        )
        .await;
    store.count(&Counter::Miss.field(key.prefix), 1).await;
    Ok((entry.value, Source::Loaded))
}

/// Another caller is loading a missing key: look again until it is there.
async fn wait_for_loader<S, T, E, F>(
    store: &S,
    key: &CacheKey<'_>,
    policy: &CachePolicy,
    hit_sample: u32,
    load: impl FnOnce() -> F,
) -> Result<(T, Source), E>
where
    S: CacheStore,
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, E>>,
{
    let deadline = store.now_ms() + policy.wait.as_millis() as u64;
    while store.now_ms() < deadline {
        store.sleep(policy.poll_every).await;
        if let Ok(stored) = store.read(key.entry).await {
            match lookup::<T>(stored.as_deref(), store.now_ms()) {
                Lookup::Fresh(value) => {
                    count_hit(store, key, hit_sample).await;
                    return Ok((value, Source::Hit));
                }
                Lookup::Stale(value) => {
                    store.count(&Counter::Stale.field(key.prefix), 1).await;
                    return Ok((value, Source::StaleHit));
                }
                Lookup::Miss => {}
            }
        }
    }
    store.count(&Counter::Miss.field(key.prefix), 1).await;
    load().await.map(|v| (v, Source::Bypassed))
}

async fn count_hit<S: CacheStore>(store: &S, key: &CacheKey<'_>, hit_sample: u32) {
    if let Some(weight) = sample_hit(hit_sample, store.random()) {
        store.count(&Counter::Hit.field(key.prefix), weight).await;
    }
}

#[cfg(test)]
mod tests {
    //! The store is a map behind a `RefCell`; every operation yields once first, so
    //! callers joined on one executor interleave at each store call, as requests on
    //! several instances do at each round trip.

    use super::*;
    use futures::executor::block_on;
    use futures::future::join_all;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemoryStore {
        values: RefCell<HashMap<String, Vec<u8>>>,
        counters: RefCell<HashMap<String, u64>>,
        clock_ms: Cell<u64>,
        tokens: Cell<u64>,
        down: Cell<bool>,
    }

    impl MemoryStore {
        fn counter(&self, field: &str) -> u64 {
            self.counters.borrow().get(field).copied().unwrap_or(0)
        }

        fn check(&self) -> Result<(), Unavailable> {
            if self.down.get() {
                Err(Unavailable)
            } else {
                Ok(())
            }
        }

        /// What a write's invalidation does: the entry and its lock go together.
        fn invalidate(&self, key: &CacheKey<'_>) {
            let mut values = self.values.borrow_mut();
            values.remove(key.entry);
            values.remove(key.lock);
        }
    }

    impl CacheStore for MemoryStore {
        async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
            yield_now().await;
            self.check()?;
            Ok(self.values.borrow().get(key).cloned())
        }

        async fn lock(&self, lock: &str, token: &str, _ttl: Duration) -> Result<bool, Unavailable> {
            yield_now().await;
            self.check()?;
            let mut values = self.values.borrow_mut();
            if values.contains_key(lock) {
                return Ok(false);
            }
            values.insert(lock.to_owned(), token.as_bytes().to_vec());
            Ok(true)
        }

        async fn store_if_locked(
            &self,
            entry: &str,
            lock: &str,
            token: &str,
            value: &[u8],
            _ttl: Duration,
        ) -> Result<bool, Unavailable> {
            yield_now().await;
            self.check()?;
            let mut values = self.values.borrow_mut();
            if values.get(lock).map(Vec::as_slice) != Some(token.as_bytes()) {
                return Ok(false);
            }
            values.insert(entry.to_owned(), value.to_vec());
            values.remove(lock);
            Ok(true)
        }

        async fn unlock(&self, lock: &str, token: &str) -> Result<(), Unavailable> {
            yield_now().await;
            self.check()?;
            let mut values = self.values.borrow_mut();
            if values.get(lock).map(Vec::as_slice) == Some(token.as_bytes()) {
                values.remove(lock);
            }
            Ok(())
        }

        async fn count(&self, field: &str, by: u64) {
            *self
                .counters
                .borrow_mut()
                .entry(field.to_owned())
                .or_default() += by;
        }

        async fn sleep(&self, duration: Duration) {
            self.clock_ms
                .set(self.clock_ms.get() + duration.as_millis() as u64);
            yield_now().await;
        }

        fn now_ms(&self) -> u64 {
            self.clock_ms.get()
        }

        fn random(&self) -> f64 {
            0.0
        }

        fn token(&self) -> String {
            self.tokens.set(self.tokens.get() + 1);
            format!("t{}", self.tokens.get())
        }
    }

    /// Returns `Pending` once, so that other joined futures run.
    async fn yield_now() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await
    }

    const KEY: CacheKey<'static> = CacheKey {
        prefix: "profile",
        entry: "evolve:cache:profile:{alice}",
        lock: "evolve:cache:profile:{alice}:lock",
    };

    fn policy() -> CachePolicy {
        CachePolicy::with_ttl(Duration::from_secs(300))
    }

    fn get(store: &MemoryStore, origin: &Cell<u32>) -> (u32, Source) {
        block_on(get_or_load(store, &KEY, &policy(), 1, || async {
            Ok::<_, ()>(origin.get())
        }))
        .unwrap()
    }

    #[test]
    fn a_miss_loads_and_stores_then_hits() {
        let store = MemoryStore::default();
        let origin = Cell::new(7);
        assert_eq!(get(&store, &origin), (7, Source::Loaded));
        origin.set(8);
        assert_eq!(get(&store, &origin), (7, Source::Hit));
        assert!(
            !store.values.borrow().contains_key(KEY.lock),
            "lock released"
        );
        assert_eq!(store.counter("profile:misses"), 1);
        assert_eq!(store.counter("profile:hits"), 1);
    }

    #[test]
    fn a_write_during_a_load_is_not_undone_by_the_loader() {
        let store = MemoryStore::default();
        let origin = Cell::new(1);
        // The loader reads the origin (1); a write (2) commits and invalidates before the
        // loader stores.
        let (value, source) = block_on(get_or_load(&store, &KEY, &policy(), 1, || async {
            let read = origin.get();
            origin.set(2);
            store.invalidate(&KEY);
            Ok::<_, ()>(read)
        }))
        .unwrap();
        assert_eq!((value, source), (1, Source::Loaded));
        assert!(
            !store.values.borrow().contains_key(KEY.entry),
            "the pre-write value was not stored"
        );
        assert_eq!(get(&store, &origin), (2, Source::Loaded));
    }

    #[test]
    fn a_write_racing_many_loaders_is_seen_by_the_next_read() {
        for write_after_polls in 0..12 {
            let store = MemoryStore::default();
            let origin = Cell::new(1);
            let policy = policy();
            let readers = (0..8).map(|_| {
                get_or_load(&store, &KEY, &policy, 1, || async {
                    let read = origin.get();
                    yield_now().await; // the origin round trip
                    Ok::<_, ()>(read)
                })
            });
            let writer = async {
                for _ in 0..write_after_polls {
                    yield_now().await;
                }
                origin.set(2);
                store.invalidate(&KEY);
                Ok::<_, ()>((0, Source::Bypassed))
            };
            let mut all: Vec<_> = readers.map(futures::future::Either::Left).collect();
            all.push(futures::future::Either::Right(writer));
            block_on(join_all(all));
            assert_eq!(
                get(&store, &origin).0,
                2,
                "write after {write_after_polls} polls was undone"
            );
        }
    }

    #[test]
    fn a_slow_loader_does_not_release_a_newer_loaders_lock() {
        let store = MemoryStore::default();
        let origin = Cell::new(1);
        block_on(get_or_load(&store, &KEY, &policy(), 1, || async {
            // This loader's lock expired and a newer loader took it.
            store
                .values
                .borrow_mut()
                .insert(KEY.lock.to_owned(), b"newer".to_vec());
            Err::<u32, _>("origin failed")
        }))
        .unwrap_err();
        assert_eq!(
            store.values.borrow().get(KEY.lock).map(Vec::as_slice),
            Some(&b"newer"[..]),
            "the failed loader left the newer lock alone"
        );
        // Nor does a successful one: its store is refused and the newer lock stays.
        store.values.borrow_mut().remove(KEY.lock);
        let (value, source) = block_on(get_or_load(&store, &KEY, &policy(), 1, || async {
            store
                .values
                .borrow_mut()
                .insert(KEY.lock.to_owned(), b"newer".to_vec());
            Ok::<_, ()>(origin.get())
        }))
        .unwrap();
        assert_eq!((value, source), (1, Source::Loaded));
        assert_eq!(
            store.values.borrow().get(KEY.lock).map(Vec::as_slice),
            Some(&b"newer"[..])
        );
        assert!(!store.values.borrow().contains_key(KEY.entry));
    }

    #[test]
    fn a_waiter_handed_a_stale_value_says_stale() {
        let store = MemoryStore::default();
        let origin = Cell::new(1);
        get(&store, &origin);
        // The entry has gone stale and a loader elsewhere holds the lock.
        store.clock_ms.set(301_000);
        store
            .values
            .borrow_mut()
            .insert(KEY.lock.to_owned(), b"elsewhere".to_vec());
        assert_eq!(get(&store, &origin), (1, Source::StaleHit));
        assert_eq!(store.counter("profile:stale"), 1);
        assert_eq!(store.counter("profile:hits"), 0);

        // A waiter on a miss that finds a stale value written meanwhile says stale too.
        let store = MemoryStore::default();
        store
            .values
            .borrow_mut()
            .insert(KEY.lock.to_owned(), b"elsewhere".to_vec());
        let stale = Entry::new(5_u32, 0, &policy()).encode();
        store.clock_ms.set(400_000);
        let policy = policy();
        let waiting = get_or_load(&store, &KEY, &policy, 1, || async { Ok::<_, ()>(9) });
        let writing = async {
            yield_now().await;
            yield_now().await;
            store
                .values
                .borrow_mut()
                .insert(KEY.entry.to_owned(), stale.clone());
        };
        let (got, ()) = block_on(futures::future::join(waiting, writing));
        assert_eq!(got.unwrap(), (5, Source::StaleHit));
        assert_eq!(store.counter("profile:stale"), 1);
    }

    #[test]
    fn a_waiter_whose_loader_never_delivers_loads_itself_after_the_wait() {
        let store = MemoryStore::default();
        store
            .values
            .borrow_mut()
            .insert(KEY.lock.to_owned(), b"elsewhere".to_vec());
        let origin = Cell::new(3);
        assert_eq!(get(&store, &origin), (3, Source::Bypassed));
        assert!(store.now_ms() >= policy().wait.as_millis() as u64);
        assert_eq!(store.counter("profile:misses"), 1);
    }

    #[test]
    fn an_unreachable_store_is_bypassed() {
        let store = MemoryStore::default();
        store.down.set(true);
        assert_eq!(get(&store, &Cell::new(4)), (4, Source::Bypassed));
    }

    #[test]
    fn counter_fields_are_per_prefix() {
        assert_eq!(Counter::Hit.field("profile"), "profile:hits");
        assert_eq!(Counter::Stale.field("profile"), "profile:stale");
        assert_eq!(Counter::Miss.field("profile"), "profile:misses");
    }
}
