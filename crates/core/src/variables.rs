//! Reading Spin variables into checked values: the one place that turns a variable's text
//! into a number, a URL or a secret, and names the variable when it cannot.
//!
//! A wrong value should be reported as "variable X: what is wrong", not surface later as
//! a confusing failure deep inside a request. Connection URLs carry passwords, so their
//! types never print the password, and [`redact_url`] / [`scrub`] remove it from any
//! text that might be logged or returned. Nothing here knows which component reads what:
//! the typed configurations are in `config` and next to the logic they configure.

use std::fmt;
use std::time::Duration;

/// A configuration variable is missing or unusable. Never contains the value itself,
/// because the value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("variable `{name}` is not set")]
    Missing { name: &'static str },
    #[error("variable `{name}` is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("variable `{name}` could not be read: {reason}")]
    Unreadable { name: &'static str, reason: String },
}

/// The Redis URL (`redis://` or `rediss://`). Prints with its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Accepts a `redis://` or `rediss://` URL that names a host.
    pub fn parse(name: &'static str, value: &str) -> Result<Self, ConfigError> {
        parse_url(name, value, &["redis://", "rediss://"], "Redis").map(RedisUrl)
    }

    /// The full URL, password included: only for handing to the connection call.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its secrets, safe to show.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// Removes this URL's secrets from `text`.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.0)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The PostgreSQL URL (`postgres://` or `postgresql://`). Prints with its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Accepts a `postgres://` or `postgresql://` URL that names a host. (The key=value
    /// connection-string form is refused: `allowed_outbound_hosts` needs a URL anyway.)
    pub fn parse(name: &'static str, value: &str) -> Result<Self, ConfigError> {
        parse_url(name, value, &["postgres://", "postgresql://"], "PostgreSQL").map(PgUrl)
    }

    /// The full URL, password included: only for handing to the connection call.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its secrets, safe to show.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// Removes this URL's secrets from `text`.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.0)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({:?})", self.redacted())
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Checks the scheme and that a host is named; the error never quotes the value.
fn parse_url(
    name: &'static str,
    value: &str,
    schemes: &[&str],
    what: &str,
) -> Result<String, ConfigError> {
    let value = value.trim();
    let rest = schemes
        .iter()
        .find_map(|scheme| value.strip_prefix(scheme))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!(
                "expected a {what} URL starting with {}",
                schemes.join(" or ")
            ),
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("the {what} URL names no host"),
        });
    }
    Ok(value.to_owned())
}

/// How long a dependency may take to answer before it counts as too slow for request
/// paths. `/ready` reports a dependency that answered, but slower than this, as degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependencyTimeout(Duration);

impl DependencyTimeout {
    /// Used when `dependency_timeout_ms` is not set: generous for a loopback or in-region
    /// dependency, short enough that a user still gets an answer.
    pub const DEFAULT: DependencyTimeout = DependencyTimeout(Duration::from_millis(1_000));
    const MAX_MS: u64 = 60_000;

    /// Parses milliseconds, 1 to 60000.
    pub fn parse(name: &'static str, value: &str) -> Result<Self, ConfigError> {
        parse_ranged(name, value, 1, Self::MAX_MS)
            .map(|ms| DependencyTimeout(Duration::from_millis(ms)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_millis_f64(self) -> f64 {
        self.0.as_secs_f64() * 1_000.0
    }
}

/// A secret setting (API key, signing secret): never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads variables for a component's configuration: empty counts as unset, and every
/// failure names the variable. Every `*Config::try_from_lookup` reads through this.
pub(crate) struct Variables<L> {
    lookup: L,
}

impl<L, E> Variables<L>
where
    L: Fn(&str) -> Result<Option<String>, E>,
    E: fmt::Display,
{
    pub(crate) fn new(lookup: L) -> Self {
        Variables { lookup }
    }

    pub(crate) fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match (self.lookup)(name) {
            Ok(Some(value)) if !value.trim().is_empty() => Ok(Some(value)),
            Ok(_) => Ok(None),
            Err(e) => Err(ConfigError::Unreadable {
                name,
                reason: e.to_string(),
            }),
        }
    }

    pub(crate) fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)?.ok_or(ConfigError::Missing { name })
    }

    pub(crate) fn number(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match self.get(name)? {
            Some(value) => parse_ranged(name, &value, min, max),
            None => Ok(default),
        }
    }
}

/// Parses a whole number within `min..=max`, naming the variable on failure.
pub fn parse_ranged(
    name: &'static str,
    value: &str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let number: u64 = value.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("expected a whole number from {min} to {max}"),
    })?;
    if !(min..=max).contains(&number) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("{number} is outside {min} to {max}"),
        });
    }
    Ok(number)
}

/// The URL with any user-info password replaced by `***` and any query string (which
/// may carry `password=`) replaced by `?***`. Text that is not a URL is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        // A user name alone may be a password in some Redis URL styles: hide it all.
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _query)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Removes the secrets of `url` from `text`: the URL itself becomes its redacted form,
/// and its password (raw and percent-decoded) becomes `***` wherever else it appears,
/// for instance inside a driver's error message.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for secret in url_secrets(url) {
        if !secret.is_empty() {
            out = out.replace(&secret, "***");
        }
    }
    out
}

/// The password (or lone user-info) of a URL, raw and percent-decoded.
fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let secret = userinfo
        .split_once(':')
        .map_or(userinfo, |(_, password)| password);
    let decoded = percent_decode(secret);
    if decoded == secret {
        vec![secret.to_owned()]
    } else {
        vec![secret.to_owned(), decoded]
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push((hex(hi).unwrap() * 16 + hex(lo).unwrap()) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_forms() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6390"),
            "redis://127.0.0.1:6390"
        );
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://token@h"), "redis://***@h");
        assert_eq!(redact_url("postgres://u:p@w@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgresql://h/db?user=u&password=p"),
            "postgresql://h/db?***"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        let url = "postgres://evolve:p%40ss@db.internal:5432/evolve";
        let text = format!("connect {url} failed: password authentication for p@ss and p%40ss");
        let scrubbed = scrub(&text, url);
        assert!(!scrubbed.contains("p@ss"), "{scrubbed}");
        assert!(!scrubbed.contains("p%40ss"), "{scrubbed}");
        assert!(
            scrubbed.contains("postgres://evolve:***@db.internal:5432/evolve"),
            "{scrubbed}"
        );
        // A URL without credentials leaves the text alone.
        assert_eq!(scrub("timeout", "redis://h:1"), "timeout");
    }
}
