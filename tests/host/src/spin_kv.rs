//! Spin's key-value interfaces: `fermyon:spin/key-value@2.0.0` (blocking, WASIp2) and
//! `spin:key-value/key-value@3.0.0` (async, WASIp3): the stores a runtime config names,
//! or the embedded `default` store. A component may open only the labels in its
//! `key_value_stores`. Stores come from a `KeyValueStores` (the host's `Services`,
//! which keeps one Redis connection manager per store across requests, as Spin does).

use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

use crate::bindings::key_value::fermyon::spin2_0_0::key_value as v2;
use crate::bindings::key_value3::spin::key_value::key_value as v3;
use crate::services::KvBackend;

/// The stores the runtime config defines, by label.
pub trait KeyValueStores: Send + Sync {
    fn store(&self, label: &str) -> Option<KvBackend>;
}

/// The guest's handle on one open store.
pub struct KvStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
    Redis(redis::aio::ConnectionManager),
}

/// Why a key-value call failed, before it is said in an interface's own error type.
#[derive(Debug, PartialEq)]
pub enum KvError {
    AccessDenied,
    NoSuchStore,
    Other(String),
}

impl From<redis::RedisError> for KvError {
    fn from(e: redis::RedisError) -> Self {
        KvError::Other(e.to_string())
    }
}

/// How the store's connection comes back after Redis went away. Spin builds its manager
/// with the redis crate's defaults; in the redis release this host uses, those back off
/// for minutes between reconnect attempts (a factor of 100 on a one-second base), so every
/// key-value call during an outage would hang that long. One retry after about a second,
/// with a one-second connect timeout, keeps an outage visible to the guest as a prompt
/// error, which is what older redis releases (and so Spin's behaviour in practice) give:
/// at most a few seconds of retries.
fn reconnect_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_factor(1)
        .set_max_delay(1_000)
        .set_connection_timeout(std::time::Duration::from_secs(1))
}

pub struct KvState {
    allowed: Arc<[String]>,
    stores: Arc<dyn KeyValueStores>,
    table: ResourceTable,
}

/// Links the key-value interfaces to `KvState` (WASIp3's through an `Accessor`).
pub struct KvData;

impl HasData for KvData {
    type Data<'a> = &'a mut KvState;
}

impl KvState {
    pub fn new(allowed: Arc<[String]>, stores: Arc<dyn KeyValueStores>) -> Self {
        Self {
            allowed,
            stores,
            table: ResourceTable::new(),
        }
    }

    fn opener(&self) -> Opener {
        Opener {
            allowed: self.allowed.clone(),
            stores: self.stores.clone(),
        }
    }

    fn backend(&self, rep: &Resource<KvStore>) -> wasmtime::Result<Backend> {
        Ok(self.table.get(rep)?.backend.clone())
    }
}

struct Opener {
    allowed: Arc<[String]>,
    stores: Arc<dyn KeyValueStores>,
}

impl Opener {
    async fn open(&self, label: &str) -> Result<Backend, KvError> {
        if !self.allowed.iter().any(|l| l == label) {
            return Err(KvError::AccessDenied);
        }
        match self.stores.store(label) {
            None => Err(KvError::NoSuchStore),
            Some(KvBackend::Memory(map)) => Ok(Backend::Memory(map)),
            Some(KvBackend::Redis { url, manager }) => {
                let manager = manager
                    .get_or_try_init(|| async {
                        let client = redis::Client::open(url.as_str())?;
                        redis::aio::ConnectionManager::new_with_config(client, reconnect_config())
                            .await
                    })
                    .await?;
                // Spin pings a Redis-backed store on every open (its `after_open`), and
                // ignores the answer: the connection manager reconnects by itself.
                let mut ping = manager.clone();
                let _: Result<(), _> = redis::cmd("PING").query_async(&mut ping).await;
                Ok(Backend::Redis(manager.clone()))
            }
        }
    }
}

impl Backend {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Backend::Memory(map) => Ok(map.lock().unwrap().get(&key).cloned()),
            Backend::Redis(conn) => Ok(conn.get(key).await?),
        }
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        match self {
            Backend::Memory(map) => {
                map.lock().unwrap().insert(key, value);
                Ok(())
            }
            Backend::Redis(conn) => Ok(conn.set(key, value).await?),
        }
    }

    async fn delete(&mut self, key: String) -> Result<(), KvError> {
        match self {
            Backend::Memory(map) => {
                map.lock().unwrap().remove(&key);
                Ok(())
            }
            Backend::Redis(conn) => Ok(conn.del::<_, i64>(key).await.map(|_| ())?),
        }
    }

    async fn exists(&mut self, key: String) -> Result<bool, KvError> {
        match self {
            Backend::Memory(map) => Ok(map.lock().unwrap().contains_key(&key)),
            Backend::Redis(conn) => Ok(conn.exists(key).await?),
        }
    }

    async fn keys(&mut self) -> Result<Vec<String>, KvError> {
        match self {
            Backend::Memory(map) => Ok(map.lock().unwrap().keys().cloned().collect()),
            Backend::Redis(conn) => Ok(conn.keys("*").await?),
        }
    }
}

// ---- fermyon:spin/key-value@2.0.0 ----

type Outcome<T> = wasmtime::Result<Result<T, v2::Error>>;

fn v2_error(e: KvError) -> v2::Error {
    match e {
        KvError::AccessDenied => v2::Error::AccessDenied,
        KvError::NoSuchStore => v2::Error::NoSuchStore,
        KvError::Other(m) => v2::Error::Other(m),
    }
}

impl v2::Host for KvState {}

impl v2::HostStore for KvState {
    async fn open(&mut self, label: String) -> Outcome<Resource<KvStore>> {
        match self.opener().open(&label).await {
            Ok(backend) => Ok(Ok(self.table.push(KvStore { backend })?)),
            Err(e) => Ok(Err(v2_error(e))),
        }
    }

    async fn get(&mut self, rep: Resource<KvStore>, key: String) -> Outcome<Option<Vec<u8>>> {
        Ok(self.backend(&rep)?.get(key).await.map_err(v2_error))
    }

    async fn set(&mut self, rep: Resource<KvStore>, key: String, value: Vec<u8>) -> Outcome<()> {
        Ok(self.backend(&rep)?.set(key, value).await.map_err(v2_error))
    }

    async fn delete(&mut self, rep: Resource<KvStore>, key: String) -> Outcome<()> {
        Ok(self.backend(&rep)?.delete(key).await.map_err(v2_error))
    }

    async fn exists(&mut self, rep: Resource<KvStore>, key: String) -> Outcome<bool> {
        Ok(self.backend(&rep)?.exists(key).await.map_err(v2_error))
    }

    async fn get_keys(&mut self, rep: Resource<KvStore>) -> Outcome<Vec<String>> {
        Ok(self.backend(&rep)?.keys().await.map_err(v2_error))
    }

    async fn drop(&mut self, rep: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

// ---- spin:key-value/key-value@3.0.0 ----

type Outcome3<T> = wasmtime::Result<Result<T, v3::Error>>;

fn v3_error(e: KvError) -> v3::Error {
    match e {
        KvError::AccessDenied => v3::Error::AccessDenied,
        KvError::NoSuchStore => v3::Error::NoSuchStore,
        KvError::Other(m) => v3::Error::Other(m),
    }
}

impl v3::Host for KvState {}

impl v3::HostStore for KvState {
    async fn drop(&mut self, rep: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl KvData {
    fn backend<T>(
        accessor: &Accessor<T, Self>,
        rep: &Resource<KvStore>,
    ) -> Result<Backend, v3::Error> {
        // As Spin: a handle that names no open store is `no-such-store`.
        accessor
            .with(|mut access| access.get().backend(rep))
            .map_err(|_| v3::Error::NoSuchStore)
    }
}

impl v3::HostStoreWithStore for KvData {
    async fn open<T>(accessor: &Accessor<T, Self>, label: String) -> Outcome3<Resource<KvStore>> {
        let opener = accessor.with(|mut access| access.get().opener());
        let backend = match opener.open(&label).await {
            Ok(backend) => backend,
            Err(e) => return Ok(Err(v3_error(e))),
        };
        accessor.with(
            |mut access| match access.get().table.push(KvStore { backend }) {
                Ok(rep) => Ok(Ok(rep)),
                Err(_) => Ok(Err(v3::Error::StoreTableFull)),
            },
        )
    }

    async fn get<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<KvStore>,
        key: String,
    ) -> Outcome3<Option<Vec<u8>>> {
        let mut backend = match Self::backend(accessor, &rep) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.get(key).await.map_err(v3_error))
    }

    async fn set<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> Outcome3<()> {
        let mut backend = match Self::backend(accessor, &rep) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.set(key, value).await.map_err(v3_error))
    }

    async fn delete<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<KvStore>,
        key: String,
    ) -> Outcome3<()> {
        let mut backend = match Self::backend(accessor, &rep) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.delete(key).await.map_err(v3_error))
    }

    async fn exists<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<KvStore>,
        key: String,
    ) -> Outcome3<bool> {
        let mut backend = match Self::backend(accessor, &rep) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.exists(key).await.map_err(v3_error))
    }

    async fn get_keys<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<KvStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), v3::Error>>)> {
        let (keys_tx, keys_rx) = tokio::sync::mpsc::channel(16);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        match Self::backend(accessor, &rep) {
            Ok(mut backend) => {
                tokio::spawn(async move {
                    let outcome = match backend.keys().await {
                        Ok(keys) => {
                            for key in keys {
                                if keys_tx.send(key).await.is_err() {
                                    break;
                                }
                            }
                            Ok(())
                        }
                        Err(e) => Err(v3_error(e)),
                    };
                    drop(keys_tx);
                    let _ = done_tx.send(outcome);
                });
            }
            Err(e) => {
                let _ = done_tx.send(Err(e));
            }
        }
        accessor.with(|mut access| {
            let keys = StreamReader::new(
                &mut access,
                crate::wasi_async::ChannelProducer::new(keys_rx),
            )?;
            let done = FutureReader::new(&mut access, done_rx)?;
            Ok((keys, done))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneMemoryStore(Arc<Mutex<HashMap<String, Vec<u8>>>>);

    impl KeyValueStores for OneMemoryStore {
        fn store(&self, label: &str) -> Option<KvBackend> {
            (label == "default").then(|| KvBackend::Memory(self.0.clone()))
        }
    }

    fn state(allowed: &[&str]) -> KvState {
        KvState::new(
            allowed.iter().map(|s| s.to_string()).collect(),
            Arc::new(OneMemoryStore(Default::default())),
        )
    }

    #[tokio::test]
    async fn a_store_not_in_key_value_stores_is_access_denied() {
        let s = state(&["default"]);
        assert!(matches!(
            s.opener().open("cache").await,
            Err(KvError::AccessDenied)
        ));
        let s = state(&[]);
        assert!(matches!(
            s.opener().open("default").await,
            Err(KvError::AccessDenied)
        ));
    }

    #[tokio::test]
    async fn an_allowed_label_without_a_store_is_no_such_store() {
        let s = state(&["default", "cache"]);
        assert!(matches!(
            s.opener().open("cache").await,
            Err(KvError::NoSuchStore)
        ));
    }

    #[tokio::test]
    async fn v2_round_trip_through_the_resource_table() {
        use v2::HostStore;
        let mut s = state(&["default"]);
        let rep = s.open("default".into()).await.unwrap().unwrap();
        let again = Resource::<KvStore>::new_borrow(rep.rep());
        s.set(Resource::new_borrow(rep.rep()), "k".into(), b"v".to_vec())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.get(again, "k".into()).await.unwrap().unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            s.get_keys(Resource::new_borrow(rep.rep()))
                .await
                .unwrap()
                .unwrap(),
            vec!["k".to_string()]
        );
        HostStore::drop(&mut s, rep).await.unwrap();
    }
}
