//! Where Gemini is and how a call to it behaves, read from Spin variables: endpoint, API
//! key, time limits and retries, and the breaker's probe lease that follows from them.

use super::retry::RetryPolicy;
use crate::variables::{ConfigError, Variables};
use std::fmt;
use std::time::Duration;

/// The Gemini API key. Never printed; only [`ApiKey::expose`] hands it out, for the header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces the key wherever it appears in `text` (a transport error may quote a URL).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// `http` is allowed for local mocks; production uses `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where `generateContent` is: scheme, `host[:port]` and the full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub authority: String,
    /// `{base path}/v1beta/models/{model}:generateContent`.
    pub path: String,
}

impl Endpoint {
    /// Builds the endpoint from `gemini_base_url` (scheme, host, optional port and path
    /// prefix; no query) and `gemini_model` (letters, digits, `.`, `-`, `_`).
    pub fn new(base_url: &str, model: &str) -> Result<Self, ConfigError> {
        let invalid = |name: &'static str, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        let base_url = base_url.trim();
        let (scheme, rest) = if let Some(rest) = base_url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = base_url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(invalid(
                "gemini_base_url",
                "expected a URL starting with https:// or http://",
            ));
        };
        if rest.contains(['?', '#', '@']) {
            return Err(invalid(
                "gemini_base_url",
                "must not contain credentials, a query or a fragment",
            ));
        }
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.starts_with(':') {
            return Err(invalid("gemini_base_url", "names no host"));
        }
        let model = model.trim();
        if model.is_empty()
            || !model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid(
                "gemini_model",
                "expected a model name of letters, digits, '.', '-' and '_'",
            ));
        }
        Ok(Endpoint {
            scheme,
            authority: authority.to_owned(),
            path: format!(
                "{}/v1beta/models/{model}:generateContent",
                prefix.trim_end_matches('/')
            ),
        })
    }

    /// The whole URL, for messages (it holds no secret: the key travels in a header).
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// Everything the outbound Gemini call needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmConfig {
    pub endpoint: Endpoint,
    pub api_key: ApiKey,
    /// The time limit of one attempt (`llm_timeout_ms`).
    pub attempt_timeout: Duration,
    pub retry: RetryPolicy,
    /// A call slower than this counts as a breaker failure (`breaker_slow_call_ms`).
    pub slow_call: Duration,
}

impl LlmConfig {
    pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
    pub const DEFAULT_MODEL: &str = "gemini-2.5-flash";
    pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;
    pub const DEFAULT_TOTAL_BUDGET_MS: u64 = 30_000;
    pub const DEFAULT_MAX_ATTEMPTS: u64 = 3;
    pub const DEFAULT_SLOW_CALL_MS: u64 = 10_000;
    /// The first retry waits up to this long; later ones up to twice as long each time.
    pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

    /// Reads `gemini_base_url`, `gemini_model`, `gemini_api_key` (required),
    /// `llm_timeout_ms`, `llm_total_budget_ms`, `llm_max_attempts` and
    /// `breaker_slow_call_ms` from a lookup that returns `None` (or an empty value) for
    /// unset variables.
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        let base_url = v.get("gemini_base_url")?;
        let model = v.get("gemini_model")?;
        let endpoint = Endpoint::new(
            base_url.as_deref().unwrap_or(Self::DEFAULT_BASE_URL),
            model.as_deref().unwrap_or(Self::DEFAULT_MODEL),
        )?;
        let api_key = v.required("gemini_api_key")?;
        let number = |name, default, min, max| v.number(name, default, min, max);
        let timeout_ms = number("llm_timeout_ms", Self::DEFAULT_TIMEOUT_MS, 1, 300_000)?;
        let budget_ms = total_budget_ms(&v)?;
        let max_attempts = number("llm_max_attempts", Self::DEFAULT_MAX_ATTEMPTS, 1, 10)?;
        let slow_ms = number(
            "breaker_slow_call_ms",
            Self::DEFAULT_SLOW_CALL_MS,
            1,
            600_000,
        )?;
        Ok(LlmConfig {
            endpoint,
            api_key: ApiKey::new(api_key.trim()),
            attempt_timeout: Duration::from_millis(timeout_ms),
            retry: RetryPolicy {
                max_attempts: max_attempts as u32,
                base: Self::BACKOFF_BASE,
                max_backoff: Self::MAX_BACKOFF,
                total_budget: Duration::from_millis(budget_ms),
            },
            slow_call: Duration::from_millis(slow_ms),
        })
    }
}

/// `llm_total_budget_ms`, with its default when unset.
fn total_budget_ms<L, E>(v: &Variables<L>) -> Result<u64, ConfigError>
where
    L: Fn(&str) -> Result<Option<String>, E>,
    E: fmt::Display,
{
    v.number(
        "llm_total_budget_ms",
        LlmConfig::DEFAULT_TOTAL_BUDGET_MS,
        1,
        600_000,
    )
}

/// Added to the LLM's total budget to make the breaker's probe lease, for the work a chat
/// turn does around the call (storing the turn) before it records the outcome.
pub const PROBE_LEASE_MARGIN: Duration = Duration::from_millis(2_000);

/// How long the breaker reserves the half-open probe for one caller: the LLM's total
/// budget (`llm_total_budget_ms`) plus [`PROBE_LEASE_MARGIN`].
pub fn probe_lease<E: fmt::Display>(
    lookup: impl Fn(&str) -> Result<Option<String>, E>,
) -> Result<Duration, ConfigError> {
    let budget_ms = total_budget_ms(&Variables::new(lookup))?;
    Ok(Duration::from_millis(budget_ms) + PROBE_LEASE_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::test_support::ms;
    use std::collections::HashMap;

    #[test]
    fn the_probe_lease_covers_the_llm_budget() {
        let none = |_: &str| Ok::<_, String>(None);
        assert_eq!(probe_lease(none).unwrap(), ms(32_000));
        let set = |name: &str| {
            Ok::<_, String>((name == "llm_total_budget_ms").then(|| "1000".to_owned()))
        };
        assert_eq!(probe_lease(set).unwrap(), ms(3_000));
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| Ok(map.get(name).cloned())
    }

    #[test]
    fn config_defaults() {
        let config = LlmConfig::try_from_lookup(lookup(&[("gemini_api_key", "k3y")])).unwrap();
        assert_eq!(
            config.endpoint.url(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(config.api_key.expose(), "k3y");
        assert_eq!(config.attempt_timeout, ms(20_000));
        assert_eq!(config.retry.max_attempts, 3);
        assert_eq!(config.retry.total_budget, ms(30_000));
        assert_eq!(config.slow_call, ms(10_000));
        assert!(!format!("{config:?}").contains("k3y"));
    }

    #[test]
    fn config_reads_variables() {
        let config = LlmConfig::try_from_lookup(lookup(&[
            ("gemini_api_key", "k"),
            ("gemini_base_url", "http://127.0.0.1:8089/proxy/"),
            ("gemini_model", "mock-1"),
            ("llm_timeout_ms", "1500"),
            ("llm_total_budget_ms", "4000"),
            ("llm_max_attempts", "2"),
            ("breaker_slow_call_ms", "900"),
        ]))
        .unwrap();
        assert_eq!(
            config.endpoint,
            Endpoint {
                scheme: Scheme::Http,
                authority: "127.0.0.1:8089".into(),
                path: "/proxy/v1beta/models/mock-1:generateContent".into()
            }
        );
        assert_eq!(config.attempt_timeout, ms(1_500));
        assert_eq!(config.retry.total_budget, ms(4_000));
        assert_eq!(config.retry.max_attempts, 2);
        assert_eq!(config.slow_call, ms(900));
    }

    #[test]
    fn config_errors_name_the_variable() {
        let err = LlmConfig::try_from_lookup(lookup(&[("gemini_api_key", " ")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "gemini_api_key"
            }
        );
        for (name, value) in [
            ("gemini_base_url", "ftp://x"),
            ("gemini_base_url", "https://"),
            ("gemini_base_url", "https://u:p@host"),
            ("gemini_base_url", "https://host/?key=1"),
            ("gemini_model", "../admin"),
            ("llm_max_attempts", "0"),
            ("llm_timeout_ms", "fast"),
        ] {
            let err = LlmConfig::try_from_lookup(lookup(&[("gemini_api_key", "k"), (name, value)]))
                .unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
                "{name}={value}: {err}"
            );
        }
        let err =
            LlmConfig::try_from_lookup(|_: &str| Err::<Option<String>, _>("down")).unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn api_key_is_scrubbed() {
        let key = ApiKey::new("AIzaSECRET");
        assert_eq!(
            key.scrub("GET ?key=AIzaSECRET failed"),
            "GET ?key=*** failed"
        );
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(ApiKey::new("").scrub("text"), "text");
    }
}
