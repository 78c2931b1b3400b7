//! The operator's side, apart from the I/O: who may call the admin routes and `/metrics`,
//! what `/admin/cache_stats` reports (the FastAPI service's fields from Redis `INFO`, plus our own
//! per-prefix counters), and which cache invalidations are allowed.

use crate::keys::{self, CachePrefix};
use crate::problem::{Problem, INVALID_TOKEN_CHALLENGE};
use crate::variables::{ConfigError, PgUrl, RedisUrl, Variables};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A bearer token that grants access (the admin token, the metrics token).
///
/// Compared in constant time: both sides are hashed with SHA-256 first, so the comparison
/// always covers 32 bytes whatever the lengths, and the time it takes tells nothing about
/// how much of a guess was right, not even its length. Never printed.
/// Deliberately not `PartialEq`: [`AccessToken::matches`] is the only comparison.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// A token; the empty string is refused (it would let an empty header in).
    pub fn new(name: &'static str, value: String) -> Result<Self, ConfigError> {
        if value.trim().is_empty() {
            return Err(ConfigError::Missing { name });
        }
        Ok(AccessToken(value))
    }

    /// Whether `presented` is this token.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        let mut difference = 0u8;
        for (a, b) in expected.iter().zip(given.iter()) {
            difference |= a ^ b;
        }
        // Keeps the compiler from turning the loop into an early-exit comparison.
        std::hint::black_box(difference) == 0
    }

    /// Checks an `Authorization` header: `Ok` for `Bearer <this token>`, else the 401 to
    /// answer with (bare `Bearer` challenge without credentials, `invalid_token` with
    /// wrong ones). User tokens (JWTs) are never admin tokens: they simply do not match.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), Problem> {
        let token = crate::auth::bearer(header)?;
        if self.matches(token) {
            Ok(())
        } else {
            let mut problem =
                Problem::from_status(401).with_detail("the bearer token is not valid here");
            problem.challenge = Some(INVALID_TOKEN_CHALLENGE);
            Err(problem)
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// Everything the `admin` component needs, already validated.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub redis_url: RedisUrl,
    pub pg_url: PgUrl,
    /// For the `/admin/...` routes.
    pub admin_token: AccessToken,
    /// For `/metrics` only: a scraper's credential cannot invalidate caches.
    pub metrics_token: AccessToken,
    pub breaker: crate::breaker::BreakerThresholds,
    pub deadlines: crate::config::Deadlines,
    /// The work queue's wake-up channel (probe tasks wake the workers like any other).
    pub queue_channel: String,
}

impl AdminConfig {
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(&lookup);
        Ok(AdminConfig {
            redis_url: RedisUrl::parse("redis_url", &v.required("redis_url")?)?,
            pg_url: PgUrl::parse("pg_url", &v.required("pg_url")?)?,
            admin_token: AccessToken::new("admin_token", v.required("admin_token")?)?,
            metrics_token: AccessToken::new("metrics_token", v.required("metrics_token")?)?,
            breaker: crate::breaker::BreakerThresholds::try_from_lookup(
                &lookup,
                crate::llm::probe_lease(&lookup)?,
            )?,
            deadlines: crate::config::Deadlines::try_from_lookup(&lookup)?,
            queue_channel: crate::queue::QueueConfig::try_from_lookup(&lookup)?.channel,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Redis INFO and /admin/cache_stats.

/// The `field:value` lines of a Redis `INFO` reply (section headers and blank lines
/// dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisInfo {
    fields: HashMap<String, String>,
}

impl RedisInfo {
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        RedisInfo { fields }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    pub fn number(&self, field: &str) -> Option<u64> {
        self.get(field)?.trim().parse().ok()
    }

    /// `keys=` of a keyspace line (`db0:keys=12,expires=3,avg_ttl=0`).
    pub fn keys_in(&self, db: u32) -> u64 {
        self.get(&format!("db{db}"))
            .and_then(|line| {
                line.split(',')
                    .find_map(|part| part.strip_prefix("keys="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Hits, stale answers, misses and hit rate of one cache prefix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixStats {
    /// Answers served fresh from the cache.
    pub hits: u64,
    /// Answers served stale from the cache while another caller refreshed the entry.
    pub stale: u64,
    pub misses: u64,
    /// Answers served from the cache (fresh or stale) as a percentage of all, two decimals.
    pub hit_rate: f64,
}

/// `/admin/cache_stats`: the FastAPI service's fields, then ours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    /// `active` when Redis answered.
    pub status: &'static str,
    pub used_memory_human: String,
    /// Keys in the application's Redis database (`DBSIZE`).
    pub total_keys: u64,
    /// Server-wide `keyspace_hits` of `INFO stats`.
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// `keyspace_hits` as a percentage of all lookups, two decimals.
    pub hit_rate: f64,
    pub connected_clients: u64,
    /// Our own counters per cache prefix (hits are sampled with weight, see
    /// `cache_hit_sample`).
    pub prefixes: BTreeMap<String, PrefixStats>,
}

impl CacheStats {
    pub fn new(info: &RedisInfo, total_keys: u64, counters: &HashMap<String, String>) -> Self {
        let keyspace_hits = info.number("keyspace_hits").unwrap_or(0);
        let keyspace_misses = info.number("keyspace_misses").unwrap_or(0);
        CacheStats {
            status: "active",
            used_memory_human: info.get("used_memory_human").unwrap_or("").to_owned(),
            total_keys,
            keyspace_hits,
            keyspace_misses,
            hit_rate: crate::cache::hit_rate(keyspace_hits, keyspace_misses),
            connected_clients: info.number("connected_clients").unwrap_or(0),
            prefixes: crate::cache::prefix_counters(counters)
                .into_iter()
                .map(|(prefix, counts)| {
                    let hit_rate =
                        crate::cache::hit_rate(counts.hits + counts.stale, counts.misses);
                    (
                        prefix,
                        PrefixStats {
                            hits: counts.hits,
                            stale: counts.stale,
                            misses: counts.misses,
                            hit_rate,
                        },
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// POST /admin/cache/invalidate

/// What an invalidation request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One entry: `DEL` of the entry and its loader lock (see `cache::load`).
    Key { entry: String, lock: String },
    /// Every key matching this `SCAN MATCH` pattern, which lies inside one cache prefix.
    Pattern(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidationBody {
    prefix: Option<String>,
    id: Option<String>,
    pattern: Option<String>,
}

/// Longest accepted id or pattern.
const MAX_LEN: usize = 512;

/// Reads `{"prefix": "profile", "id": "alice"}` (one entry), `{"prefix": "profile"}`
/// (every entry of the prefix) or `{"pattern": "evolve:cache:profile:tg*"}`.
///
/// A pattern must stay inside one known prefix's keys: `evolve:cache:<prefix>:` followed
/// by anything. Everything else is refused, including `evolve:cache:*`, which would also
/// match the cache counters and other bookkeeping under `evolve:cache:`.
pub fn parse_invalidation(body: &[u8]) -> Result<Invalidation, Problem> {
    let body: InvalidationBody = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!(
            "expected {{\"prefix\", \"id\"}}, {{\"prefix\"}} or {{\"pattern\"}}: {e}"
        ))
    })?;
    let known = || {
        keys::CACHE_PREFIXES
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |name: &str| {
        CachePrefix::find(name).ok_or_else(|| {
            Problem::bad_request(format!("unknown cache prefix; known: {}", known()))
        })
    };
    match body {
        InvalidationBody {
            prefix: Some(prefix),
            id,
            pattern: None,
        } => {
            let prefix = find(&prefix)?;
            match id {
                None => Ok(Invalidation::Pattern(keys::cache_pattern(prefix))),
                Some(id) => {
                    if id.is_empty() || id.len() > MAX_LEN || id.chars().any(char::is_control) {
                        return Err(Problem::bad_request(format!(
                            "id must be 1 to {MAX_LEN} characters without control characters"
                        )));
                    }
                    let id = keys::CacheIdText(&id);
                    Ok(Invalidation::Key {
                        entry: keys::cache_entry(prefix, &id),
                        lock: keys::cache_lock(prefix, &id),
                    })
                }
            }
        }
        InvalidationBody {
            prefix: None,
            id: None,
            pattern: Some(pattern),
        } => {
            if pattern.len() > MAX_LEN || pattern.chars().any(char::is_control) {
                return Err(Problem::bad_request(format!(
                    "pattern must be at most {MAX_LEN} characters without control characters"
                )));
            }
            let space = format!("{}cache:", keys::PREFIX);
            let inside = pattern.strip_prefix(&space).and_then(|rest| {
                let (name, _) = rest.split_once(':')?;
                CachePrefix::find(name)
            });
            match inside {
                Some(_) => Ok(Invalidation::Pattern(pattern)),
                None => Err(Problem::bad_request(format!(
                    "pattern must start with {space}<prefix>: where <prefix> is one of: {}",
                    known()
                ))),
            }
        }
        _ => Err(Problem::bad_request(
            "give either prefix (with an optional id) or pattern",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// /admin/db_metrics

/// One figure of a report: its value, or why it could not be read. Serialized as the bare
/// value, or as `{"error": "..."}`, so that an unreadable figure is never shown as 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Figure<T> {
    Value(T),
    Unreadable { error: String },
}

impl<T> Figure<T> {
    /// A figure from a query's outcome: the value, or the query's error, or a note that
    /// the column came back empty or of another type.
    pub fn read<E: std::fmt::Display>(outcome: Result<Option<T>, E>, column: &str) -> Self {
        match outcome {
            Ok(Some(value)) => Figure::Value(value),
            Ok(None) => Figure::Unreadable {
                error: format!("{column}: no value of the expected type"),
            },
            Err(error) => Figure::Unreadable {
                error: error.to_string(),
            },
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Figure::Value(value) => Some(value),
            Figure::Unreadable { .. } => None,
        }
    }

    /// Combines two figures; unreadable when either is.
    pub fn zip<U, R>(&self, other: &Figure<U>, combine: impl FnOnce(&T, &U) -> R) -> Figure<R> {
        match (self, other) {
            (Figure::Value(a), Figure::Value(b)) => Figure::Value(combine(a, b)),
            (Figure::Unreadable { error }, _) | (_, Figure::Unreadable { error }) => {
                Figure::Unreadable {
                    error: error.clone(),
                }
            }
        }
    }
}

/// `part` as a percentage of `whole`, two decimals (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

/// The leading text of a statement for operators, or `None` for statements that may
/// carry literal secrets (`ALTER ROLE .. PASSWORD '..'` and other utility statements are
/// stored verbatim by PostgreSQL): only queries and data changes are shown, cut to
/// `max_chars`.
pub fn statement_text(query: &str, max_chars: usize) -> Option<String> {
    let trimmed = query.trim_start();
    let first = trimmed
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if !matches!(
        first.as_str(),
        "select" | "insert" | "update" | "delete" | "with" | "merge" | "values" | "table"
    ) {
        return None;
    }
    let mut text: String = trimmed.chars().take(max_chars).collect();
    if trimmed.chars().count() > max_chars {
        text.push('…');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str) -> AccessToken {
        AccessToken::new("admin_token", value.to_owned()).unwrap()
    }

    #[test]
    fn tokens_match_only_themselves() {
        let t = token("s3cret-admin-token");
        assert!(t.matches("s3cret-admin-token"));
        assert!(!t.matches("s3cret-admin-tokem"), "last byte differs");
        assert!(!t.matches("s3cret-admin-toke"), "prefix");
        assert!(!t.matches("s3cret-admin-token-"), "longer");
        assert!(!t.matches(""));
        assert!(AccessToken::new("admin_token", " ".to_owned()).is_err());
        assert_eq!(format!("{t:?}"), "AccessToken(***)");
    }

    #[test]
    fn authorize_answers_401_with_a_challenge() {
        let t = token("abc");
        assert!(t.authorize(Some("Bearer abc")).is_ok());
        assert!(t.authorize(Some("bearer abc")).is_ok());
        let missing = t.authorize(None).unwrap_err();
        assert_eq!(missing.status, 401);
        assert_eq!(missing.challenge, Some("Bearer"));
        let wrong = t.authorize(Some("Bearer abd")).unwrap_err();
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.challenge, Some(INVALID_TOKEN_CHALLENGE));
        assert_eq!(t.authorize(Some("Basic abc")).unwrap_err().status, 401);
    }

    #[test]
    fn config_needs_both_tokens() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("redis_url", "redis://127.0.0.1:6390"),
            ("pg_url", "postgres://u:p@127.0.0.1:5440/db"),
            ("admin_token", "a"),
        ]);
        let lookup =
            |name: &str| Ok::<_, std::convert::Infallible>(vars.get(name).map(|v| v.to_string()));
        let err = AdminConfig::try_from_lookup(lookup).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "metrics_token"
            }
        );
        let mut vars = vars.clone();
        vars.insert("metrics_token", "m");
        let lookup =
            |name: &str| Ok::<_, std::convert::Infallible>(vars.get(name).map(|v| v.to_string()));
        let config = AdminConfig::try_from_lookup(lookup).unwrap();
        assert!(config.metrics_token.matches("m"));
        assert!(!config.metrics_token.matches("a"));
        assert!(!format!("{config:?}").contains("u:p@"));
    }

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\n\r\n# Clients\r\nconnected_clients:12\r\n\
# Memory\r\nused_memory:1572864\r\nused_memory_human:1.50M\r\n# Stats\r\nkeyspace_hits:8500\r\n\
keyspace_misses:1500\r\n# Keyspace\r\ndb0:keys=1250,expires=10,avg_ttl=0\r\ndb20:keys=3,expires=0,avg_ttl=0\r\n";

    #[test]
    fn cache_stats_have_the_fastapi_fields() {
        let info = RedisInfo::parse(INFO);
        assert_eq!(info.keys_in(0), 1250);
        assert_eq!(info.keys_in(20), 3);
        assert_eq!(info.keys_in(5), 0);
        let counters: HashMap<String, String> = [
            ("profile:hits", "176"),
            ("profile:stale", "16"),
            ("profile:misses", "64"),
            ("other:misses", "1"),
            ("junk", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let stats = CacheStats::new(&info, 1250, &counters);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "status": "active",
                "used_memory_human": "1.50M",
                "total_keys": 1250,
                "keyspace_hits": 8500,
                "keyspace_misses": 1500,
                "hit_rate": 85.0,
                "connected_clients": 12,
                "prefixes": {
                    "other": {"hits": 0, "stale": 0, "misses": 1, "hit_rate": 0.0},
                    "profile": {"hits": 176, "stale": 16, "misses": 64, "hit_rate": 75.0}
                }
            })
        );
    }

    #[test]
    fn unreadable_figures_say_why_and_are_never_zero() {
        let read = Figure::<i64>::read(Ok::<_, String>(Some(7)), "deadlocks");
        assert_eq!(serde_json::to_value(&read).unwrap(), serde_json::json!(7));
        let empty = Figure::<i64>::read(Ok::<_, String>(None), "deadlocks");
        assert_eq!(
            serde_json::to_value(&empty).unwrap(),
            serde_json::json!({"error": "deadlocks: no value of the expected type"})
        );
        let failed = Figure::<i64>::read(Err::<Option<i64>, _>("permission denied"), "deadlocks");
        assert_eq!(failed.value(), None);
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"error": "permission denied"})
        );
        assert_eq!(read.zip(&read, |a, b| a + b), Figure::Value(14));
        assert_eq!(read.zip(&failed, |a, b| a + b).value(), None);
    }

    #[test]
    fn invalidation_by_key_prefix_and_pattern() {
        let parse = |body: &str| parse_invalidation(body.as_bytes());
        assert_eq!(
            parse(r#"{"prefix":"profile","id":"tg:alice"}"#).unwrap(),
            Invalidation::Key {
                entry: "evolve:cache:profile:{tg%3Aalice}".to_owned(),
                lock: "evolve:cache:profile:{tg%3Aalice}:lock".to_owned(),
            }
        );
        // The same key the cache writes for that user.
        let user = crate::ids::UserRef::parse("tg:alice").unwrap();
        assert_eq!(
            parse(r#"{"prefix":"profile","id":"tg:alice"}"#).unwrap(),
            Invalidation::Key {
                entry: keys::profile(&user),
                lock: keys::cache_lock(CachePrefix::PROFILE, &user),
            }
        );
        assert_eq!(
            parse(r#"{"prefix":"profile"}"#).unwrap(),
            Invalidation::Pattern("evolve:cache:profile:*".to_owned())
        );
        assert_eq!(
            parse(r#"{"pattern":"evolve:cache:profile:{tg*"}"#).unwrap(),
            Invalidation::Pattern("evolve:cache:profile:{tg*".to_owned())
        );
        for refused in [
            r#"{"pattern":"evolve:cache:*"}"#,
            r#"{"pattern":"evolve:cache:stats"}"#,
            r#"{"pattern":"evolve:*"}"#,
            r#"{"pattern":"*"}"#,
            r#"{"pattern":"evolve:{breaker:llm}:state"}"#,
            r#"{"pattern":"evolve:cache:prof*:x"}"#,
            r#"{"prefix":"nope","id":"x"}"#,
            r#"{"prefix":"profile","id":""}"#,
            r#"{"prefix":"profile","pattern":"evolve:cache:profile:*"}"#,
            r#"{"id":"x"}"#,
            r#"{}"#,
            r#"{"prefix":"profile","extra":1}"#,
            "not json",
        ] {
            let problem = parse(refused).unwrap_err();
            assert_eq!(problem.status, 400, "{refused}");
        }
    }

    #[test]
    fn only_data_statements_are_shown() {
        assert_eq!(
            statement_text("  SELECT * FROM users WHERE id = $1", 100).as_deref(),
            Some("SELECT * FROM users WHERE id = $1")
        );
        assert_eq!(
            statement_text("with x as (select 1) select * from x", 6).as_deref(),
            Some("with x…")
        );
        assert_eq!(statement_text("ALTER ROLE evolve PASSWORD 'p'", 100), None);
        assert_eq!(statement_text("", 100), None);
        assert_eq!(percent(1, 3), 33.33);
        assert_eq!(percent(1, 0), 0.0);
    }
}
