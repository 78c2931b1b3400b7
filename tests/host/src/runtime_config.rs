//! The runtime configuration file (`spin up --runtime-config-file`), as far as this
//! host uses it: key-value stores. A label with no entry falls back to the embedded
//! store for `default`, as in Spin; any other unknown label does not exist.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub key_value_store: BTreeMap<String, KeyValueStoreConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyValueStoreConfig {
    /// A store kept in a Redis server; one connection serves every request.
    Redis { url: String },
    /// Spin's embedded store; here it lives in the host's memory.
    Spin {
        #[serde(default)]
        path: Option<String>,
    },
}

impl RuntimeConfig {
    /// The runtime config this application needs: its `cache` store in `redis_url`'s
    /// Redis. The one writer of such files, for the tests, the benchmarks and
    /// `evolve-host runtime-config`.
    pub fn with_cache_in(redis_url: &str) -> String {
        let mut stores = toml::Table::new();
        let mut cache = toml::Table::new();
        cache.insert("type".into(), "redis".into());
        cache.insert("url".into(), redis_url.into());
        stores.insert("cache".into(), cache.into());
        let mut root = toml::Table::new();
        root.insert("key_value_store".into(), stores.into());
        root.to_string()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading runtime config {}", path.display()))?;
        let config: RuntimeConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for (label, store) in &config.key_value_store {
            if let KeyValueStoreConfig::Redis { url } = store {
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    bail!("key_value_store.{label}: url must start with redis://");
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_loads_back_with_its_cache_store() {
        let dir = std::env::temp_dir().join(format!("evolve-rc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("runtime-config.toml");
        std::fs::write(
            &path,
            RuntimeConfig::with_cache_in("redis://127.0.0.1:6391/7"),
        )
        .unwrap();
        let config = RuntimeConfig::load(&path).unwrap();
        match &config.key_value_store["cache"] {
            KeyValueStoreConfig::Redis { url } => assert_eq!(url, "redis://127.0.0.1:6391/7"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
