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
