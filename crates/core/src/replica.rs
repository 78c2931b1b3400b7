//! Reads from a PostgreSQL streaming replica, without a user ever reading older data than
//! they wrote.
//!
//! After a user's write, the primary's WAL position ([`Lsn`]) is kept in Redis for
//! [`WRITE_MEMORY`]. A read for that user goes to the replica carrying that position, and
//! the replica's rows count only when it has replayed past it and lags no more than the
//! bound, both checked in the read's own query (`sql::REPLICA_*`). Otherwise the read goes
//! to the primary. A replica that fails or lags is bypassed by everyone for
//! [`BYPASS_FOR`], so a dead replica costs one attempt per period, not one per read.
//!
//! When Redis cannot be read, the user's last write is unknown: reads go to the primary.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::readiness::{latency_ms, DependencyStatus};
use crate::variables::{ConfigError, PgUrl, Variables};

/// How long a user's last write position is kept. Longer than any lag the replica is
/// allowed ([`ReplicaSettings::MAX_LAG_LIMIT_MS`]): once it has passed, a replica within
/// its bound has replayed the write.
pub const WRITE_MEMORY: Duration = Duration::from_secs(60);

/// How long a failing or lagging replica is left alone before it is tried again.
pub const BYPASS_FOR: Duration = Duration::from_secs(5);

/// Where reads may go, read from the variables `pg_read_url`, `pg_replica_max_lag_ms` and
/// `pg_read_timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// The replica; `None` (an empty `pg_read_url`) sends every read to the primary.
    pub url: Option<PgUrl>,
    /// A replica further behind than this is bypassed.
    pub max_lag_ms: u64,
    /// The deadline of one call to the replica: short, since the primary can answer.
    pub timeout: Duration,
}

impl ReplicaSettings {
    pub const DEFAULT_MAX_LAG_MS: u64 = 5_000;
    pub const MAX_LAG_LIMIT_MS: u64 = 30_000;
    pub const DEFAULT_TIMEOUT_MS: u64 = 500;

    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        let url = match v.get("pg_read_url")? {
            Some(url) => Some(PgUrl::parse("pg_read_url", &url)?),
            None => None,
        };
        Ok(ReplicaSettings {
            url,
            max_lag_ms: v.number(
                "pg_replica_max_lag_ms",
                Self::DEFAULT_MAX_LAG_MS,
                0,
                Self::MAX_LAG_LIMIT_MS,
            )?,
            timeout: Duration::from_millis(v.number(
                "pg_read_timeout_ms",
                Self::DEFAULT_TIMEOUT_MS,
                10,
                60_000,
            )?),
        })
    }
}

/// A WAL position as PostgreSQL prints a `pg_lsn`: two hexadecimal numbers, `16/B374D848`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lsn(String);

impl Lsn {
    /// `None` unless `text` is a well-formed position (it comes back from Redis, and is
    /// sent to PostgreSQL as a parameter).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.split_once('/')?;
        let hex = |part: &str| {
            (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit())
        };
        (hex(high) && hex(low)).then(|| Lsn(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where one read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To the replica, which must have replayed `after` (the user's last write) if set.
    Replica { after: Option<Lsn> },
    /// To the primary.
    Primary,
}

/// What Redis said about the replica and the user, when it could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The replica was recently found failing or lagging.
    pub bypassed: bool,
    /// The user's last write position, if recent; stored text that is not a position is
    /// taken as unknown.
    pub written: Option<String>,
}

/// Chooses the route of a read: `memory` is `None` when Redis could not be read.
pub fn route(memory: Option<&Memory>) -> Route {
    match memory {
        None => Route::Primary,
        Some(memory) if memory.bypassed => Route::Primary,
        Some(Memory { written: None, .. }) => Route::Replica { after: None },
        Some(Memory {
            written: Some(text),
            ..
        }) => match Lsn::parse(text) {
            Some(lsn) => Route::Replica { after: Some(lsn) },
            None => Route::Primary,
        },
    }
}

/// The replica's verdict on a read, from the columns every replica read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its rows are current enough for this user: use them.
    Current,
    /// It has not replayed this user's last write yet: read the primary, for this user.
    Behind,
    /// It lags past the bound (or cannot tell its lag): read the primary, and let
    /// everyone bypass it for a while.
    Lagging { lag_ms: Option<i64> },
}

impl Verdict {
    /// From `replica_lag_ms` (NULL when unknown) and `replica_caught_up`.
    pub fn of(lag_ms: Option<i64>, caught_up: bool, max_lag_ms: u64) -> Verdict {
        match lag_ms {
            Some(lag) if lag <= max_lag_ms as i64 => {
                if caught_up {
                    Verdict::Current
                } else {
                    Verdict::Behind
                }
            }
            lag_ms => Verdict::Lagging { lag_ms },
        }
    }
}

/// What `/ready` and `/admin/db_metrics` show of the replica. Its faults degrade the
/// service (the primary takes every read) but never take an instance out of rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub status: DependencyStatus,
    /// Round trip of the status query, when it answered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_ms: Option<f64>,
    /// How far behind the primary it is; absent when it cannot tell.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lag_ms: Option<i64>,
    /// Reads are refused by a replica further behind than this.
    pub max_lag_ms: u64,
    /// Whether WAL replay is paused (`pg_wal_replay_pause()`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replay_paused: Option<bool>,
    /// The last replayed WAL position.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replayed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    /// Why the replica could not be used; never contains credentials.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The replica's answer to `sql::REPLICA_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub in_recovery: bool,
    pub lag_ms: Option<i64>,
    pub replay_paused: bool,
    pub replayed: Option<String>,
}

impl ReplicaReport {
    /// The replica answered its status query after `latency`.
    pub fn answered(latency: Duration, found: ReplicaStatus, max_lag_ms: u64) -> Self {
        let (status, message) = match (found.in_recovery, found.lag_ms) {
            (false, _) => (
                DependencyStatus::Healthy,
                Some("pg_read_url is a primary, not a replica: it is always current".to_owned()),
            ),
            (true, Some(lag)) if lag <= max_lag_ms as i64 => (DependencyStatus::Healthy, None),
            (true, Some(lag)) => (
                DependencyStatus::Degraded,
                Some(format!(
                    "lagging {lag} ms, past pg_replica_max_lag_ms ({max_lag_ms}): reads go to the primary"
                )),
            ),
            (true, None) => (
                DependencyStatus::Degraded,
                Some("lag unknown: reads go to the primary".to_owned()),
            ),
        };
        ReplicaReport {
            status,
            latency_ms: Some(latency_ms(latency)),
            lag_ms: found.lag_ms,
            max_lag_ms,
            replay_paused: Some(found.replay_paused),
            replayed: found.replayed,
            message,
            error: None,
        }
    }

    /// The replica could not be reached, did not answer, or is misconfigured.
    pub fn failed(error: impl Into<String>, max_lag_ms: u64) -> Self {
        ReplicaReport {
            status: DependencyStatus::Degraded,
            latency_ms: None,
            lag_ms: None,
            max_lag_ms,
            replay_paused: None,
            replayed: None,
            message: Some("reads go to the primary".to_owned()),
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, String> {
        move |name| {
            Ok(pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string()))
        }
    }

    #[test]
    fn without_a_replica_url_every_read_goes_to_the_primary() {
        let settings = ReplicaSettings::try_from_lookup(lookup(&[("pg_read_url", " ")])).unwrap();
        assert_eq!(settings.url, None);
        assert_eq!(settings.max_lag_ms, ReplicaSettings::DEFAULT_MAX_LAG_MS);
        assert_eq!(settings.timeout, Duration::from_millis(500));
    }

    #[test]
    fn settings_are_validated() {
        let settings = ReplicaSettings::try_from_lookup(lookup(&[
            ("pg_read_url", "postgres://evolve:pw@127.0.0.1:5442/evolve"),
            ("pg_replica_max_lag_ms", "250"),
            ("pg_read_timeout_ms", "100"),
        ]))
        .unwrap();
        assert_eq!(
            settings.url.unwrap().redacted(),
            "postgres://evolve:***@127.0.0.1:5442/evolve"
        );
        assert_eq!(settings.max_lag_ms, 250);
        assert!(
            ReplicaSettings::try_from_lookup(lookup(&[("pg_read_url", "mysql://h/db")])).is_err()
        );
        // A bound longer than the write memory would let a write be forgotten before a
        // replica within the bound had replayed it.
        assert!(
            ReplicaSettings::try_from_lookup(lookup(&[("pg_replica_max_lag_ms", "30001")]))
                .is_err()
        );
        assert!(Duration::from_millis(ReplicaSettings::MAX_LAG_LIMIT_MS) < WRITE_MEMORY);
    }

    #[test]
    fn positions_parse_as_postgres_prints_them() {
        assert_eq!(Lsn::parse("16/B374D848").unwrap().as_str(), "16/B374D848");
        assert!(Lsn::parse("0/0").is_some());
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "g/1",
            "1/2/3",
            "123456789/1",
            "1/2'; --",
        ] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_follow_the_users_last_write() {
        assert_eq!(route(None), Route::Primary);
        let nothing_written = Memory::default();
        assert_eq!(
            route(Some(&nothing_written)),
            Route::Replica { after: None }
        );
        let written = Memory {
            bypassed: false,
            written: Some("0/3000060".to_owned()),
        };
        assert_eq!(
            route(Some(&written)),
            Route::Replica {
                after: Lsn::parse("0/3000060")
            }
        );
        let bypassed = Memory {
            bypassed: true,
            ..written.clone()
        };
        assert_eq!(route(Some(&bypassed)), Route::Primary);
        // A position that does not parse is not trusted to be old.
        let garbled = Memory {
            bypassed: false,
            written: Some("nonsense".to_owned()),
        };
        assert_eq!(route(Some(&garbled)), Route::Primary);
    }

    #[test]
    fn the_verdict_separates_a_users_write_from_a_lagging_replica() {
        assert_eq!(Verdict::of(Some(0), true, 5_000), Verdict::Current);
        assert_eq!(Verdict::of(Some(5_000), true, 5_000), Verdict::Current);
        assert_eq!(Verdict::of(Some(10), false, 5_000), Verdict::Behind);
        assert_eq!(
            Verdict::of(Some(5_001), true, 5_000),
            Verdict::Lagging {
                lag_ms: Some(5_001)
            }
        );
        assert_eq!(
            Verdict::of(None, true, 5_000),
            Verdict::Lagging { lag_ms: None }
        );
    }

    #[test]
    fn the_report_says_where_reads_go() {
        let found = |in_recovery, lag_ms| ReplicaStatus {
            in_recovery,
            lag_ms,
            replay_paused: false,
            replayed: Some("0/3000060".to_owned()),
        };
        let ms = Duration::from_millis(2);
        let current = ReplicaReport::answered(ms, found(true, Some(40)), 5_000);
        assert_eq!(current.status, DependencyStatus::Healthy);
        assert_eq!(current.lag_ms, Some(40));
        let behind = ReplicaReport::answered(ms, found(true, Some(9_000)), 5_000);
        assert_eq!(behind.status, DependencyStatus::Degraded);
        assert!(behind.message.unwrap().contains("9000 ms"));
        let unknown = ReplicaReport::answered(ms, found(true, None), 5_000);
        assert_eq!(unknown.status, DependencyStatus::Degraded);
        let primary = ReplicaReport::answered(ms, found(false, Some(0)), 5_000);
        assert_eq!(primary.status, DependencyStatus::Healthy);
        let down = ReplicaReport::failed("connection refused", 5_000);
        assert_eq!(down.status, DependencyStatus::Degraded);
        let json = serde_json::to_value(&down).unwrap();
        assert_eq!(json["error"], "connection refused");
        assert!(json.get("lag_ms").is_none());
    }
}
