//! The parts of a Spin manifest (`spin.toml`, version 2) that this host understands.
//!
//! Spin reads the same file; anything here that Spin would reject we reject too, so that
//! a manifest that runs on this host runs on Spin unchanged.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

/// Application-wide trigger settings (`[application.trigger.*]`).
#[derive(Debug, Default, Deserialize)]
pub struct ApplicationTriggers {
    #[serde(default)]
    pub redis: Option<RedisTriggerGlobal>,
}

#[derive(Debug, Deserialize)]
pub struct RedisTriggerGlobal {
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    #[serde(default)]
    pub cron: Vec<CronTrigger>,
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub route: HttpRoute,
    pub component: String,
    #[serde(default)]
    pub executor: Option<toml::Value>,
}

/// A route is a pattern, or `{ private = true }` for components reachable only
/// through service chaining.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HttpRoute {
    Pattern(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
pub struct CronTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub component: String,
    pub cron_expression: String,
}

#[derive(Debug, Deserialize)]
pub struct RedisTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub component: String,
    pub channel: String,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ComponentDecl {
    pub source: ComponentSource,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<toml::Value>,
    #[serde(default)]
    pub build: Option<toml::Value>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ComponentSource {
    Path(String),
    Remote(toml::Value),
}

impl Manifest {
    /// Reads and checks a manifest: version 2, every trigger names a declared component,
    /// component variables name only declared application variables.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Keeps only the given components and the triggers that run them, as
    /// `spin up --component-id` does (Spin's `retain_components`): an unknown id is an
    /// error, and a component no kept trigger runs is dropped.
    pub fn retain_components(&mut self, ids: &[String]) -> Result<()> {
        for id in ids {
            if !self.component.contains_key(id) {
                bail!("Specified component {id:?} not found in application");
            }
        }
        let kept = |component: &String| ids.contains(component);
        self.trigger.http.retain(|t| kept(&t.component));
        self.trigger.cron.retain(|t| kept(&t.component));
        self.trigger.redis.retain(|t| kept(&t.component));
        let triggered: std::collections::BTreeSet<String> = self.triggered().cloned().collect();
        self.component.retain(|id, _| triggered.contains(id));
        Ok(())
    }

    /// The component of every trigger.
    fn triggered(&self) -> impl Iterator<Item = &String> {
        (self.trigger.http.iter().map(|t| &t.component))
            .chain(self.trigger.cron.iter().map(|t| &t.component))
            .chain(self.trigger.redis.iter().map(|t| &t.component))
    }

    fn validate(&self) -> Result<()> {
        if self.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version must be 2, found {}",
                self.spin_manifest_version
            );
        }
        for name in self.variables.keys() {
            crate::variables::check_name(name)?;
        }
        for (name, decl) in &self.variables {
            if decl.required && decl.default.is_some() {
                bail!("variable {name:?}: a required variable cannot have a default");
            }
            if !decl.required && decl.default.is_none() {
                bail!("variable {name:?}: give a default or mark it required = true");
            }
        }
        for component in self.triggered() {
            if !self.component.contains_key(component) {
                bail!("a trigger names component {component:?}, which is not declared");
            }
        }
        for (id, component) in &self.component {
            for (name, template) in &component.variables {
                crate::variables::check_name(name).with_context(|| format!("component {id:?}"))?;
                for reference in crate::variables::template_references(template)? {
                    if !self.variables.contains_key(&reference) {
                        bail!("component {id:?} variable {name:?} refers to undeclared variable {reference:?}");
                    }
                }
            }
            for host in &component.allowed_outbound_hosts {
                for reference in crate::variables::template_references(host)? {
                    if !self.variables.contains_key(&reference) {
                        bail!("component {id:?} allowed_outbound_hosts refers to undeclared variable {reference:?}");
                    }
                }
            }
        }
        if !self.trigger.redis.is_empty()
            && self.application.trigger.redis.is_none()
            && self.trigger.redis.iter().any(|t| t.address.is_none())
        {
            bail!("a redis trigger has no address and [application.trigger.redis] sets none");
        }
        Ok(())
    }

    /// The file a component's `source` points at, relative to the manifest's folder.
    pub fn component_path(&self, manifest_dir: &Path, id: &str) -> Result<PathBuf> {
        let decl = self
            .component
            .get(id)
            .with_context(|| format!("no component {id:?}"))?;
        match &decl.source {
            ComponentSource::Path(p) => Ok(manifest_dir.join(p)),
            ComponentSource::Remote(_) => {
                bail!("component {id:?}: only local file sources are supported by this host")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let manifest: Manifest = toml::from_str(
            r#"
            spin_manifest_version = 2
            [application]
            name = "app"
            [application.trigger.redis]
            address = "redis://127.0.0.1:6379"
            [[trigger.http]]
            route = "/..."
            component = "web"
            [[trigger.cron]]
            component = "tick"
            cron_expression = "*/5 * * * * *"
            [[trigger.redis]]
            channel = "wake"
            component = "worker"
            [component.web]
            source = "web.wasm"
            [component.tick]
            source = "worker.wasm"
            [component.worker]
            source = "worker.wasm"
            "#,
        )
        .unwrap();
        manifest.validate().unwrap();
        manifest
    }

    #[test]
    fn retained_components_keep_only_their_triggers() {
        let mut m = manifest();
        m.retain_components(&["web".into(), "tick".into()]).unwrap();
        assert_eq!(m.component.keys().collect::<Vec<_>>(), ["tick", "web"]);
        assert_eq!(m.trigger.http.len(), 1);
        assert_eq!(m.trigger.cron.len(), 1);
        assert!(m.trigger.redis.is_empty(), "no Redis trigger left to run");

        let mut m = manifest();
        m.retain_components(&["worker".into()]).unwrap();
        assert_eq!(m.component.keys().collect::<Vec<_>>(), ["worker"]);
        assert!(m.trigger.http.is_empty() && m.trigger.cron.is_empty());
        assert_eq!(m.trigger.redis.len(), 1);
    }

    #[test]
    fn an_unknown_component_id_is_refused() {
        let error = manifest()
            .retain_components(&["web".into(), "nope".into()])
            .unwrap_err();
        assert!(error.to_string().contains("\"nope\" not found"), "{error}");
    }
}
