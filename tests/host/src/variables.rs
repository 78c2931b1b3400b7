//! Application variables as Spin resolves them.
//!
//! Application variables are declared once in `[variables]` with a default or
//! `required = true`; a component sees only the names in its own `[component.x.variables]`
//! table, whose values are templates over the application variables (`"{{ redis_url }}"`).
//! Values come from the environment provider first (`SPIN_VARIABLE_<NAME>`), then the
//! default, as `spin up` does with no other provider configured.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};

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

/// Resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct ApplicationVariables {
    values: HashMap<String, String>,
    secrets: Vec<String>,
}

impl ApplicationVariables {
    /// Resolves every application variable; a required variable with no value is an
    /// error at start-up, as it is for `spin up`.
    pub fn resolve(manifest: &Manifest, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut values = HashMap::new();
        let mut secrets = Vec::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            match env(&env_name(name)).or_else(|| decl.default.clone()) {
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
        Ok(Self { values, secrets })
    }

    /// Expands a template such as `"redis://{{ redis_host }}"`.
    pub fn expand(&self, template: &str) -> Result<String> {
        let mut out = String::new();
        for part in parse_template(template)? {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Variable(name) => match self.values.get(name) {
                    Some(v) => out.push_str(v),
                    None => bail!("template refers to unknown variable {name:?}"),
                },
            }
        }
        Ok(out)
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

/// The variables one component may read, already expanded.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    values: BTreeMap<String, String>,
}

impl ComponentVariables {
    pub fn new(app: &ApplicationVariables, templates: &BTreeMap<String, String>) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (name, template) in templates {
            values.insert(name.clone(), app.expand(template)?);
        }
        Ok(Self { values })
    }

    /// What the guest's `variables.get` answers.
    pub fn get(&self, name: &str) -> Result<String, GetError> {
        if check_name(name).is_err() {
            return Err(GetError::InvalidName(name.to_string()));
        }
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| GetError::Undefined(name.to_string()))
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
        let mut app = ApplicationVariables::default();
        app.values.insert("host".into(), "127.0.0.1:6379".into());
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
    fn component_sees_only_its_own_names() {
        let mut app = ApplicationVariables::default();
        app.values.insert("secret".into(), "s3".into());
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
