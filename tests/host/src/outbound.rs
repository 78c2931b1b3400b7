//! `allowed_outbound_hosts`: which addresses a component may reach.
//!
//! Spin refuses any outbound HTTP request, Redis or PostgreSQL connection whose
//! scheme, host and port do not match one of the component's entries, and tells the
//! guest in the interface's own error type. Entries look like `https://example.com`,
//! `redis://127.0.0.1:6379`, `postgres://*:5432`, `*://localhost:*`, `https://*.example.com`
//! or `http://127.0.0.1:3000-3010`; a missing port means the scheme's default port.

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Any,
    Exact(String),
    Subdomain(String),
}

#[derive(Debug, Clone)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

/// The port a scheme implies when a URL or an entry leaves it out.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        "rediss" => Some(6380),
        "postgres" | "postgresql" => Some(5432),
        "mysql" => Some(3306),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses already-expanded entries (templates resolved by the caller).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let entries = entries
            .iter()
            .map(|e| {
                parse_entry(e.as_ref())
                    .with_context(|| format!("allowed_outbound_hosts entry {:?}", e.as_ref()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }

    /// Whether `url` (scheme, host and optional port) may be reached.
    pub fn allows(&self, url: &str) -> bool {
        let Ok(parsed) = url::Url::parse(url) else {
            return false;
        };
        let scheme = parsed.scheme();
        let Some(host) = parsed.host_str() else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let Some(port) = parsed.port().or_else(|| default_port(scheme)) else {
            return false;
        };
        self.entries.iter().any(|e| e.matches(scheme, &host, port))
    }
}

impl Entry {
    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match &self.scheme {
            None => true,
            Some(s) => s == scheme || (s == "postgres" && scheme == "postgresql"),
        };
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomain(suffix) => host.ends_with(&format!(".{suffix}")),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(lo, hi) => (lo..=hi).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn parse_entry(entry: &str) -> Result<Entry> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        bail!("expected scheme://host[:port]");
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        bail!("paths are not allowed, only scheme://host[:port]");
    }
    let scheme = match scheme {
        "*" => None,
        s if !s.is_empty() => Some(s.to_ascii_lowercase()),
        _ => bail!("empty scheme"),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        HostPattern::Subdomain(suffix.to_string())
    } else if host.is_empty() {
        bail!("empty host")
    } else {
        HostPattern::Exact(host)
    };
    let port = match port {
        Some("*") => PortPattern::Any,
        Some(p) => match p.split_once('-') {
            Some((lo, hi)) => PortPattern::Range(lo.parse()?, hi.parse()?),
            None => {
                let p: u16 = p.parse().context("bad port")?;
                PortPattern::Range(p, p)
            }
        },
        None => match scheme.as_deref().and_then(default_port) {
            Some(p) => PortPattern::Range(p, p),
            None => bail!("no port given and the scheme has no default port"),
        },
    };
    Ok(Entry { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_entries_and_default_ports() {
        let a = AllowedHosts::parse(&["redis://127.0.0.1:6390", "https://example.com"]).unwrap();
        assert!(a.allows("redis://127.0.0.1:6390"));
        assert!(a.allows("redis://127.0.0.1:6390/0"));
        assert!(!a.allows("redis://127.0.0.1:6391"));
        assert!(!a.allows("redis://127.0.0.1"));
        assert!(a.allows("https://example.com/v1/models?x=1"));
        assert!(a.allows("https://example.com:443/"));
        assert!(!a.allows("http://example.com/"));
        assert!(!a.allows("https://evil.example.com/"));
    }

    #[test]
    fn wildcards_and_ranges() {
        let a = AllowedHosts::parse(&[
            "*://localhost:*",
            "https://*.example.com",
            "postgres://db:5000-5010",
        ])
        .unwrap();
        assert!(a.allows("http://localhost:1234/"));
        assert!(a.allows("redis://localhost:6379"));
        assert!(a.allows("https://api.example.com/"));
        assert!(!a.allows("https://example.com/"));
        assert!(a.allows("postgres://u:p@db:5005/app"));
        assert!(a.allows("postgresql://u:p@db:5005/app"));
        assert!(!a.allows("postgres://u:p@db:5011/app"));
    }

    #[test]
    fn nothing_allowed_by_default() {
        let a = AllowedHosts::parse::<&str>(&[]).unwrap();
        assert!(!a.allows("https://example.com/"));
        assert!(AllowedHosts::parse(&["example.com"]).is_err());
        assert!(AllowedHosts::parse(&["https://example.com/path"]).is_err());
    }
}
