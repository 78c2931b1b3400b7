//! Connections the host keeps across requests, modelled on Spin 3.6 so that
//! measurements here predict Spin:
//! - outbound Redis: every `open` makes a new connection (no pool), unless the host was
//!   started with `--shared-redis`, which keeps one multiplexed connection per address
//!   (to measure what pooling would gain);
//! - outbound PostgreSQL: one pool per address, at most 64 connections;
//! - key-value stores backed by Redis: one connection manager per store, for all requests.
//!
//! Each capability reaches these through its own small trait (`RedisConnector`,
//! `PgClientFactory`, `KeyValueStores`), implemented here.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

use crate::runtime_config::{KeyValueStoreConfig, RuntimeConfig};

/// The most connections Spin's PostgreSQL pool keeps per address.
pub const PG_POOL_SIZE: usize = 64;

pub struct Services {
    shared_redis: bool,
    redis_connections: Mutex<HashMap<String, Arc<OnceCell<redis::aio::MultiplexedConnection>>>>,
    /// Keyed by address and the extra CA root a connection builder may add.
    pg_pools: Mutex<HashMap<(String, Option<String>), deadpool_postgres::Pool>>,
    kv_stores: HashMap<String, KvBackend>,
    /// How many Redis connections `open` has made, for tests and benchmarks.
    pub redis_opens: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub enum KvBackend {
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
    Redis {
        url: String,
        manager: Arc<OnceCell<redis::aio::ConnectionManager>>,
    },
}

impl Services {
    pub fn new(runtime_config: &RuntimeConfig, shared_redis: bool) -> Self {
        let mut kv_stores = HashMap::new();
        for (label, config) in &runtime_config.key_value_store {
            let backend = match config {
                KeyValueStoreConfig::Redis { url } => KvBackend::Redis {
                    url: url.clone(),
                    manager: Arc::new(OnceCell::new()),
                },
                KeyValueStoreConfig::Spin { .. } => KvBackend::Memory(Default::default()),
            };
            kv_stores.insert(label.clone(), backend);
        }
        kv_stores
            .entry("default".to_string())
            .or_insert_with(|| KvBackend::Memory(Default::default()));
        Self {
            shared_redis,
            redis_connections: Mutex::default(),
            pg_pools: Mutex::default(),
            kv_stores,
            redis_opens: Default::default(),
        }
    }

    /// A Redis connection for one guest `open`.
    pub async fn redis_open(
        &self,
        address: &str,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        if !self.shared_redis {
            self.redis_opens
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return redis::Client::open(address)?
                .get_multiplexed_async_connection()
                .await;
        }
        let cell = self
            .redis_connections
            .lock()
            .unwrap()
            .entry(address.to_string())
            .or_default()
            .clone();
        let conn = cell
            .get_or_try_init(|| async {
                self.redis_opens
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                redis::Client::open(address)?
                    .get_multiplexed_async_connection()
                    .await
            })
            .await?;
        Ok(conn.clone())
    }

    /// The pool for a PostgreSQL address (and extra CA root), made on first use.
    pub fn pg_pool(&self, address: &str, ca_root: Option<&str>) -> Result<deadpool_postgres::Pool> {
        let key = (address.to_string(), ca_root.map(str::to_string));
        let mut pools = self.pg_pools.lock().unwrap();
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let config: tokio_postgres::Config =
            address.parse().context("invalid PostgreSQL address")?;
        // As Spin's PostgreSQL factor: `Clean` recycling (a round trip per checkout that
        // resets session state), and TLS with the system's roots unless `sslmode=disable`.
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Clean,
        };
        let manager = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            let mut connector = native_tls::TlsConnector::builder();
            if let Some(pem) = ca_root {
                connector.add_root_certificate(
                    native_tls::Certificate::from_pem(pem.as_bytes())
                        .context("invalid CA root certificate")?,
                );
            }
            let tls = postgres_native_tls::MakeTlsConnector::new(
                connector.build().context("building the TLS connector")?,
            );
            deadpool_postgres::Manager::from_config(config, tls, manager_config)
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(PG_POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("building PostgreSQL pool")?;
        pools.insert(key, pool.clone());
        Ok(pool)
    }

    pub fn kv_store(&self, label: &str) -> Option<KvBackend> {
        self.kv_stores.get(label).cloned()
    }
}

impl crate::spin_redis::RedisConnector for Services {
    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> futures::future::BoxFuture<'a, redis::RedisResult<redis::aio::MultiplexedConnection>> {
        Box::pin(self.redis_open(address))
    }
}

impl crate::spin_pg::PgClientFactory for Services {
    fn get_client<'a>(
        &'a self,
        address: &'a str,
        ca_root: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<deadpool_postgres::Object>> {
        Box::pin(async move { Ok(self.pg_pool(address, ca_root)?.get().await?) })
    }
}

impl crate::spin_kv::KeyValueStores for Services {
    fn store(&self, label: &str) -> Option<KvBackend> {
        self.kv_store(label)
    }
}
