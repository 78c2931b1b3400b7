//! Application variables as Spin resolves them.
//!
//! Application variables are declared once in `[variables]` with a default or
//! `required = true`; a component sees only the names in its own `[component.x.variables]`
//! table, whose values are templates over the application variables (`"{{ redis_url }}"`).
//! Values come from the providers in Spin's order: `--variable` values, then the
//! environment (`SPIN_VARIABLE_<NAME>`), then the default.
//!
//! Start-up resolves every variable once, so a missing required one stops the host as it
//! stops `spin up`, and templates outside components (allowed hosts, trigger settings)
//! are expanded then. A component's `get`, like Spin's, resolves its template through
//! the providers on every call, reading the environment in `block_in_place` as Spin's
//! environment provider does: a guest that asks for its configuration on every request
//! pays here what it pays on Spin.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::manifest::Manifest;

/// Spin's rule for variable names: lowercase ASCII letters, digits and single
/// underscores, starting with a letter.
pub fn check_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !ok {
        bail!("invalid variable name {name:?}: use lowercase letters, digits and single underscores, starting with a letter");
    }
    Ok(())
}

/// One piece of a parsed template.
#[derive(Debug, PartialEq)]
enum Part<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unterminated '{{{{' in template {template:?}");
        };
        let name = after[..end].trim();
        check_name(name)?;
        parts.push(Part::Variable(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Ok(parts)
}

/// The application variables a template refers to.
pub fn template_references(template: &str) -> Result<Vec<String>> {
    Ok(parse_template(template)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Variable(name) => Some(name.to_string()),
            Part::Literal(_) => None,
        })
        .collect())
}

/// The environment variable that overrides application variable `name`.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Reads one environment variable: the process environment ([`read_env`]), or a test's.
type Environment = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where values come from, in the order Spin asks its providers.
#[derive(Default)]
struct Providers {
    /// `--variable name=value`, keyed by environment name (Spin's static provider).
    overrides: HashMap<String, String>,
    /// `SPIN_VARIABLE_<NAME>` (Spin's environment provider).
    environment: Option<Environment>,
    /// The manifest's defaults.
    defaults: HashMap<String, String>,
}

impl Providers {
    fn lookup(&self, name: &str) -> Option<String> {
        let env_key = env_name(name);
        if let Some(value) = self.overrides.get(&env_key) {
            return Some(value.clone());
        }
        if let Some(value) = self.environment.as_ref().and_then(|read| read(&env_key)) {
            return Some(value);
        }
        self.defaults.get(name).cloned()
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: only the names.
        f.debug_struct("Providers")
            .field("overrides", &self.overrides.keys().collect::<Vec<_>>())
            .field("environment", &self.environment.is_some())
            .field("defaults", &self.defaults.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Spin's environment provider reads the environment inside `block_in_place`, which
/// hands the worker's other tasks to another thread for the call; the same here (a
/// current-thread runtime, as in unit tests, reads it directly).
fn read_env(key: &str) -> Option<String> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let read = || std::env::var(key).ok();
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(read)
        }
        _ => read(),
    }
}

/// Resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct ApplicationVariables {
    values: HashMap<String, String>,
    secrets: Vec<String>,
    providers: Arc<Providers>,
}

impl ApplicationVariables {
    /// Resolves every application variable from `overrides` (keyed by environment name),
    /// the environment and the defaults; a required variable with no value is an error
    /// at start-up, as it is for `spin up`.
    pub fn resolve(manifest: &Manifest, overrides: HashMap<String, String>) -> Result<Self> {
        Self::resolve_from(manifest, overrides, Arc::new(read_env))
    }

    fn resolve_from(
        manifest: &Manifest,
        overrides: HashMap<String, String>,
        environment: Environment,
    ) -> Result<Self> {
        let providers = Providers {
            overrides,
            environment: Some(environment),
            defaults: manifest
                .variables
                .iter()
                .filter_map(|(name, decl)| Some((name.clone(), decl.default.clone()?)))
                .collect(),
        };
        let mut values = HashMap::new();
        let mut secrets = Vec::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            match providers.lookup(name) {
                Some(value) => {
                    if decl.secret && !value.is_empty() {
                        secrets.push(value.clone());
                    }
                    values.insert(name.clone(), value);
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            bail!(
                "no value for required variable(s) {}: set {}",
                missing.join(", "),
                missing
                    .iter()
                    .map(|n| env_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Self {
            values,
            secrets,
            providers: Arc::new(providers),
        })
    }

    /// Variables with fixed values and no environment (for tests).
    pub fn fixed(values: &[(&str, &str)]) -> Self {
        let values: HashMap<String, String> = values
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let providers = Providers {
            overrides: values
                .iter()
                .map(|(name, value)| (env_name(name), value.clone()))
                .collect(),
            ..Providers::default()
        };
        Self {
            values,
            secrets: Vec::new(),
            providers: Arc::new(providers),
        }
    }

    /// Expands a template such as `"redis://{{ redis_host }}"` with the values resolved
    /// at start-up.
    pub fn expand(&self, template: &str) -> Result<String> {
        expand(template, |name| self.values.get(name).cloned())
    }

    /// Replaces every secret value in `text`, so host logs never carry secrets.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        out
    }
}

fn expand(template: &str, value: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    for part in parse_template(template)? {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Variable(name) => match value(name) {
                Some(v) => out.push_str(&v),
                None => bail!("template refers to unknown variable {name:?}"),
            },
        }
    }
    Ok(out)
}

/// The variables one component may read: its templates, resolved on every `get`.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    templates: BTreeMap<String, String>,
    providers: Arc<Providers>,
}

impl ComponentVariables {
    /// Checks that every template expands (an unknown variable is a start-up error).
    pub fn new(app: &ApplicationVariables, templates: &BTreeMap<String, String>) -> Result<Self> {
        for template in templates.values() {
            app.expand(template)?;
        }
        Ok(Self {
            templates: templates.clone(),
            providers: app.providers.clone(),
        })
    }

    /// What the guest's `variables.get` answers.
    pub fn get(&self, name: &str) -> Result<String, GetError> {
        if check_name(name).is_err() {
            return Err(GetError::InvalidName(name.to_string()));
        }
        let template = self
            .templates
            .get(name)
            .ok_or_else(|| GetError::Undefined(name.to_string()))?;
        // Checked at start-up; a value that has since gone reads as undefined.
        expand(template, |variable| self.providers.lookup(variable))
            .map_err(|_| GetError::Undefined(name.to_string()))
    }
}

#[derive(Debug, PartialEq)]
pub enum GetError {
    InvalidName(String),
    Undefined(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spin_rules() {
        assert!(check_name("redis_url").is_ok());
        assert!(check_name("a1").is_ok());
        for bad in ["", "Redis", "1a", "a__b", "a-b", "a_", "_a"] {
            assert!(check_name(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn templates_expand_and_list_references() {
        let app = ApplicationVariables::fixed(&[("host", "127.0.0.1:6379")]);
        assert_eq!(
            app.expand("redis://{{ host }}").unwrap(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(app.expand("{{host}}/x").unwrap(), "127.0.0.1:6379/x");
        assert_eq!(app.expand("plain").unwrap(), "plain");
        assert!(app.expand("{{ nope }}").is_err());
        assert!(app.expand("{{ host").is_err());
        assert_eq!(
            template_references("a{{ x }}b{{y}}").unwrap(),
            vec!["x".to_string(), "y".to_string()]
        );
    }

    #[test]
    fn gets_resolve_through_the_providers_in_spins_order_on_every_call() {
        let manifest: Manifest = toml::from_str(
            r#"
            spin_manifest_version = 2
            [application]
            name = "t"
            [variables]
            evolve_test_flag = { default = "from-default" }
            evolve_test_env = { default = "from-default" }
            evolve_test_plain = { default = "from-default" }
            "#,
        )
        .unwrap();
        // An environment of the test's own (the process's is shared by parallel tests).
        let env = Arc::new(std::sync::Mutex::new(HashMap::from([
            (env_name("evolve_test_flag"), "from-env".to_string()),
            (env_name("evolve_test_env"), "from-env".to_string()),
        ])));
        let read = {
            let env = env.clone();
            Arc::new(move |key: &str| env.lock().unwrap().get(key).cloned())
        };
        let flags = HashMap::from([(env_name("evolve_test_flag"), "from-flag".to_string())]);
        let app = ApplicationVariables::resolve_from(&manifest, flags, read).unwrap();
        let templates = BTreeMap::from([
            ("flag".to_string(), "{{ evolve_test_flag }}".to_string()),
            ("env".to_string(), "{{ evolve_test_env }}".to_string()),
            ("plain".to_string(), "x-{{ evolve_test_plain }}".to_string()),
        ]);
        let vars = ComponentVariables::new(&app, &templates).unwrap();
        assert_eq!(vars.get("flag").unwrap(), "from-flag");
        assert_eq!(vars.get("env").unwrap(), "from-env");
        assert_eq!(vars.get("plain").unwrap(), "x-from-default");

        // Resolved when asked, as Spin does, not once at start-up.
        let key = env_name("evolve_test_env");
        env.lock()
            .unwrap()
            .insert(key.clone(), "changed".to_string());
        assert_eq!(vars.get("env").unwrap(), "changed");
        env.lock().unwrap().remove(&key);
        assert_eq!(vars.get("env").unwrap(), "from-default");
    }

    #[test]
    fn component_sees_only_its_own_names() {
        let app = ApplicationVariables::fixed(&[("secret", "s3")]);
        let templates = BTreeMap::from([("token".to_string(), "{{ secret }}".to_string())]);
        let vars = ComponentVariables::new(&app, &templates).unwrap();
        assert_eq!(vars.get("token").unwrap(), "s3");
        assert_eq!(
            vars.get("secret"),
            Err(GetError::Undefined("secret".into()))
        );
        assert_eq!(vars.get("BAD"), Err(GetError::InvalidName("BAD".into())));
    }
}
