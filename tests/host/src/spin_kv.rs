//! `fermyon:spin/key-value@2.0.0`: the stores a runtime config names, or the embedded
//! `default` store. A component may open only the labels in its `key_value_stores`.

use redis::AsyncCommands;
use wasmtime::component::Resource;

use crate::bindings::key_value::fermyon::spin2_0_0::key_value::{Error, Host, HostStore};
use crate::services::KvBackend;
use crate::state::State;

/// The guest's handle on one open store.
pub struct KvStore {
    backend: Backend,
}

enum Backend {
    Memory(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>),
    Redis(redis::aio::ConnectionManager),
}

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

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

fn other(e: redis::RedisError) -> Error {
    Error::Other(e.to_string())
}

impl Host for State {}

impl HostStore for State {
    async fn open(&mut self, label: String) -> Outcome<Resource<KvStore>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let backend = match self.services.kv_store(&label) {
            None => return Ok(Err(Error::NoSuchStore)),
            Some(KvBackend::Memory(map)) => Backend::Memory(map),
            Some(KvBackend::Redis { url, manager }) => {
                let manager = manager
                    .get_or_try_init(|| async {
                        let client = redis::Client::open(url.as_str())?;
                        redis::aio::ConnectionManager::new_with_config(client, reconnect_config())
                            .await
                    })
                    .await;
                match manager {
                    Ok(m) => Backend::Redis(m.clone()),
                    Err(e) => return Ok(Err(other(e))),
                }
            }
        };
        Ok(Ok(self.table.push(KvStore { backend })?))
    }

    async fn get(&mut self, rep: Resource<KvStore>, key: String) -> Outcome<Option<Vec<u8>>> {
        Ok(match &mut self.table.get_mut(&rep)?.backend {
            Backend::Memory(map) => Ok(map.lock().unwrap().get(&key).cloned()),
            Backend::Redis(conn) => conn.get(key).await.map_err(other),
        })
    }

    async fn set(&mut self, rep: Resource<KvStore>, key: String, value: Vec<u8>) -> Outcome<()> {
        Ok(match &mut self.table.get_mut(&rep)?.backend {
            Backend::Memory(map) => {
                map.lock().unwrap().insert(key, value);
                Ok(())
            }
            Backend::Redis(conn) => conn.set(key, value).await.map_err(other),
        })
    }

    async fn delete(&mut self, rep: Resource<KvStore>, key: String) -> Outcome<()> {
        Ok(match &mut self.table.get_mut(&rep)?.backend {
            Backend::Memory(map) => {
                map.lock().unwrap().remove(&key);
                Ok(())
            }
            Backend::Redis(conn) => conn.del::<_, i64>(key).await.map(|_| ()).map_err(other),
        })
    }

    async fn exists(&mut self, rep: Resource<KvStore>, key: String) -> Outcome<bool> {
        Ok(match &mut self.table.get_mut(&rep)?.backend {
            Backend::Memory(map) => Ok(map.lock().unwrap().contains_key(&key)),
            Backend::Redis(conn) => conn.exists(key).await.map_err(other),
        })
    }

    async fn get_keys(&mut self, rep: Resource<KvStore>) -> Outcome<Vec<String>> {
        Ok(match &mut self.table.get_mut(&rep)?.backend {
            Backend::Memory(map) => Ok(map.lock().unwrap().keys().cloned().collect()),
            Backend::Redis(conn) => conn.keys("*").await.map_err(other),
        })
    }

    async fn drop(&mut self, rep: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
