//! The model behind `/ready`: what each dependency's check found, how that rolls up into
//! one verdict, and the JSON an operator or orchestrator reads.
//!
//! The rules live here rather than in the component so that every combination (a slow
//! database, a schema behind the code, an open LLM breaker) is unit-tested, and so the
//! component only gathers observations and renders this report.

use crate::breaker::{BreakerState, BreakerStats};
use crate::replica::ReplicaReport;
use crate::variables::DependencyTimeout;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How usable a dependency (or the whole service) is. Ordered from best to worst, so
/// the overall verdict is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyStatus {
    /// Works as intended.
    Healthy,
    /// Works, but with reduced quality or speed; the service still answers.
    Degraded,
    /// Does not work; requests that need it fail.
    Unhealthy,
}

/// Any unhealthy dependency makes the service unhealthy; otherwise any degraded one
/// makes it degraded; otherwise (or with no dependencies) it is healthy.
pub fn overall(statuses: impl IntoIterator<Item = DependencyStatus>) -> DependencyStatus {
    statuses
        .into_iter()
        .max()
        .unwrap_or(DependencyStatus::Healthy)
}

/// A duration as milliseconds with two decimals, the unit the report uses.
pub fn latency_ms(latency: Duration) -> f64 {
    (latency.as_secs_f64() * 100_000.0).round() / 100.0
}

/// A dependency that answered, but slower than the timeout, is degraded.
fn speed_status(
    latency: Duration,
    timeout: DependencyTimeout,
) -> (DependencyStatus, Option<String>) {
    if latency > timeout.as_duration() {
        let message = format!(
            "answered in {} ms, slower than the {} ms dependency timeout",
            latency_ms(latency),
            timeout.as_millis_f64()
        );
        (DependencyStatus::Degraded, Some(message))
    } else {
        (DependencyStatus::Healthy, None)
    }
}

/// What the Redis check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisReport {
    pub status: DependencyStatus,
    /// Round trip of a `PING`, when it answered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    /// Why Redis could not be used; never contains credentials.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl RedisReport {
    /// Redis answered `PING` after `latency`.
    pub fn answered(latency: Duration, timeout: DependencyTimeout) -> Self {
        let (status, message) = speed_status(latency, timeout);
        RedisReport {
            status,
            latency_ms: Some(latency_ms(latency)),
            message,
            error: None,
        }
    }

    /// Redis could not be opened or did not answer.
    pub fn failed(error: impl Into<String>) -> Self {
        RedisReport {
            status: DependencyStatus::Unhealthy,
            latency_ms: None,
            message: None,
            error: Some(error.into()),
        }
    }
}

/// What the PostgreSQL check found, including whether the schema matches this build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresReport {
    pub status: DependencyStatus,
    /// Round trip of the schema-version query, when it answered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_ms: Option<f64>,
    /// The highest applied migration (0 when none is recorded); absent when unreachable.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub schema_version: Option<i32>,
    /// The version this build was compiled against.
    pub expected_schema_version: i32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    /// Why PostgreSQL could not be used; never contains credentials.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl PostgresReport {
    /// PostgreSQL answered the schema-version query after `latency`.
    ///
    /// A schema behind the code is unhealthy: queries for tables or columns that do not
    /// exist yet would fail. A schema ahead of the code is only degraded: migrations are
    /// written to keep the previous build working, which is what a rolling deploy needs.
    pub fn answered(
        latency: Duration,
        schema_version: i32,
        expected: i32,
        timeout: DependencyTimeout,
    ) -> Self {
        let (schema_status, schema_message) = if schema_version == 0 {
            (
                DependencyStatus::Unhealthy,
                Some(format!(
                    "schema not migrated: no migration applied, expected version {expected}"
                )),
            )
        } else if schema_version < expected {
            (
                DependencyStatus::Unhealthy,
                Some(format!(
                    "schema version {schema_version} is behind the expected version {expected}: run the migrations"
                )),
            )
        } else if schema_version > expected {
            (
                DependencyStatus::Degraded,
                Some(format!(
                    "schema version {schema_version} is ahead of the expected version {expected}: this build is older than the database"
                )),
            )
        } else {
            (DependencyStatus::Healthy, None)
        };
        let (speed, speed_message) = speed_status(latency, timeout);
        let messages: Vec<String> = [schema_message, speed_message]
            .into_iter()
            .flatten()
            .collect();
        PostgresReport {
            status: schema_status.max(speed),
            latency_ms: Some(latency_ms(latency)),
            schema_version: Some(schema_version),
            expected_schema_version: expected,
            message: (!messages.is_empty()).then(|| messages.join("; ")),
            error: None,
        }
    }

    /// PostgreSQL could not be opened or the query failed.
    pub fn failed(error: impl Into<String>, expected: i32) -> Self {
        PostgresReport {
            status: DependencyStatus::Unhealthy,
            latency_ms: None,
            schema_version: None,
            expected_schema_version: expected,
            message: None,
            error: Some(error.into()),
        }
    }
}

/// The LLM (Gemini) as seen through its shared circuit breaker. `/ready` does not call
/// the LLM: that would spend quota on every probe and cannot tell more than the breaker,
/// which already records how real calls went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeminiReport {
    pub status: DependencyStatus,
    pub message: String,
    /// The breaker's stats; `null` when its state could not be read.
    pub circuit_breaker: Option<BreakerStats>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl GeminiReport {
    /// A closed breaker is healthy. An open or half-open one is degraded, not unhealthy
    /// (the FastAPI service called it unhealthy): while it is open, chat still
    /// answers at once with the fallback reply and stores the user's message, so the
    /// instance must stay in rotation; taking every instance out because the LLM is down
    /// would turn a degraded service into no service.
    pub fn from_breaker(stats: BreakerStats) -> Self {
        let (status, message) = match stats.state {
            BreakerState::Closed => (
                DependencyStatus::Healthy,
                "Circuit Breaker CLOSED".to_owned(),
            ),
            BreakerState::Open => (
                DependencyStatus::Degraded,
                format!(
                    "Circuit Breaker OPEN (retry in {}s)",
                    stats.retry_in.unwrap_or(0)
                ),
            ),
            BreakerState::HalfOpen => (
                DependencyStatus::Degraded,
                "Circuit Breaker HALF_OPEN (probing recovery)".to_owned(),
            ),
        };
        GeminiReport {
            status,
            message,
            circuit_breaker: Some(stats),
            error: None,
        }
    }

    /// The breaker's state could not be read (Redis down, or a malformed hash). Degraded:
    /// whether LLM calls succeed is unknown, and the Redis report carries the outage.
    pub fn unknown(error: impl Into<String>) -> Self {
        GeminiReport {
            status: DependencyStatus::Degraded,
            message: "Circuit Breaker state unknown".to_owned(),
            circuit_breaker: None,
            error: Some(error.into()),
        }
    }
}

/// The whole `/ready` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyReport {
    pub redis: RedisReport,
    pub postgres: PostgresReport,
    pub gemini: GeminiReport,
    /// The read replica, when one is set (`pg_read_url`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replica: Option<ReplicaReport>,
    /// The worst dependency status, for people and dashboards.
    pub overall: DependencyStatus,
    /// Whether this instance should receive traffic (see [`ReadyReport::in_rotation`]).
    pub ready: bool,
    /// The version of the component that answered.
    pub version: String,
}

impl ReadyReport {
    /// Combines the dependency reports; `overall` follows [`overall`].
    pub fn new(
        redis: RedisReport,
        postgres: PostgresReport,
        gemini: GeminiReport,
        version: impl Into<String>,
    ) -> Self {
        let overall = overall([redis.status, postgres.status, gemini.status]);
        let ready = Self::in_rotation(&postgres);
        ReadyReport {
            redis,
            postgres,
            gemini,
            replica: None,
            overall,
            ready,
            version: version.into(),
        }
    }

    /// Adds the read replica's report; its faults can degrade `overall`, never `ready`.
    pub fn with_replica(mut self, replica: ReplicaReport) -> Self {
        self.overall = self.overall.max(replica.status);
        self.replica = Some(replica);
        self
    }

    /// Readiness takes an instance out of rotation only for what is wrong with that
    /// instance: a database schema behind this build (a rolling deploy whose migrations
    /// have not run; the previous build's instances keep serving). Redis, PostgreSQL and
    /// the LLM are shared by every instance: when one of them fails, every instance fails
    /// the same way, and taking them all out would turn a degraded service (chat answers
    /// without Redis; clean 503s with `Retry-After` without PostgreSQL) into no service.
    /// The body still names the fault.
    fn in_rotation(postgres: &PostgresReport) -> bool {
        postgres
            .schema_version
            .is_none_or(|version| version >= postgres.expected_schema_version)
    }

    /// 200 while the instance should receive traffic, 503 otherwise.
    pub fn http_status(&self) -> u16 {
        if self.ready {
            200
        } else {
            503
        }
    }

    /// The report as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a readiness report always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use DependencyStatus::*;

    const TIMEOUT: DependencyTimeout = DependencyTimeout::DEFAULT;

    fn micros(value: u64) -> Duration {
        Duration::from_micros(value)
    }

    #[test]
    fn overall_is_the_worst_status() {
        assert_eq!(overall([]), Healthy);
        assert_eq!(overall([Healthy, Healthy, Healthy]), Healthy);
        assert_eq!(overall([Healthy, Degraded, Healthy]), Degraded);
        assert_eq!(overall([Degraded, Unhealthy, Healthy]), Unhealthy);
    }

    #[test]
    fn healthy_report_has_the_fastapi_shape() {
        let report = ReadyReport::new(
            RedisReport::answered(micros(400), TIMEOUT),
            PostgresReport::answered(micros(1_250), 1, 1, TIMEOUT),
            GeminiReport::from_breaker(BreakerStats::closed()),
            "0.1.0",
        );
        assert_eq!(report.http_status(), 200);
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            value,
            json!({
                "redis": {"status": "healthy", "latency_ms": 0.4},
                "postgres": {
                    "status": "healthy",
                    "latency_ms": 1.25,
                    "schema_version": 1,
                    "expected_schema_version": 1
                },
                "gemini": {
                    "status": "healthy",
                    "message": "Circuit Breaker CLOSED",
                    "circuit_breaker": {
                        "state": "CLOSED",
                        "failure_count": 0,
                        "total_calls": 0,
                        "total_blocked": 0,
                        "success_rate": 100.0,
                        "retry_in": null
                    }
                },
                "overall": "healthy",
                "ready": true,
                "version": "0.1.0"
            })
        );
        let parsed: ReadyReport = serde_json::from_value(value).unwrap();
        assert_eq!(parsed, report);
    }

    #[test]
    fn a_failed_shared_dependency_is_named_but_keeps_the_instance_in_rotation() {
        let report = ReadyReport::new(
            RedisReport::failed("redis open failed: connection refused"),
            PostgresReport::answered(micros(900), 1, 1, TIMEOUT),
            GeminiReport::unknown("redis unavailable"),
            "0.1.0",
        );
        assert_eq!(report.overall, Unhealthy);
        assert!(report.ready);
        assert_eq!(report.http_status(), 200);
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            value["redis"],
            json!({"status": "unhealthy", "error": "redis open failed: connection refused"})
        );
        assert_eq!(value["gemini"]["circuit_breaker"], json!(null));
        assert_eq!(value["gemini"]["status"], json!("degraded"));

        let report = ReadyReport::new(
            RedisReport::answered(micros(300), TIMEOUT),
            PostgresReport::failed("connection refused", 1),
            GeminiReport::from_breaker(BreakerStats::closed()),
            "0.1.0",
        );
        assert_eq!(report.overall, Unhealthy);
        assert_eq!(report.http_status(), 200);
    }

    #[test]
    fn a_schema_behind_this_build_takes_the_instance_out_of_rotation() {
        let with_schema = |found| {
            ReadyReport::new(
                RedisReport::answered(micros(300), TIMEOUT),
                PostgresReport::answered(micros(300), found, 2, TIMEOUT),
                GeminiReport::from_breaker(BreakerStats::closed()),
                "0.1.0",
            )
        };
        assert_eq!(with_schema(0).http_status(), 503);
        assert_eq!(with_schema(1).http_status(), 503);
        assert!(!with_schema(1).ready);
        assert_eq!(with_schema(2).http_status(), 200);
        // Ahead: the previous build during a rolling deploy keeps serving.
        assert_eq!(with_schema(3).http_status(), 200);
    }

    #[test]
    fn unreachable_postgres_is_unhealthy_and_keeps_the_expected_version() {
        let report = PostgresReport::failed("connection refused", 3);
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            value,
            json!({"status": "unhealthy", "expected_schema_version": 3, "error": "connection refused"})
        );
    }

    #[test]
    fn schema_version_is_compared_with_the_build() {
        let unmigrated = PostgresReport::answered(micros(500), 0, 2, TIMEOUT);
        assert_eq!(unmigrated.status, Unhealthy);
        assert_eq!(
            unmigrated.message.as_deref(),
            Some("schema not migrated: no migration applied, expected version 2")
        );

        let behind = PostgresReport::answered(micros(500), 1, 2, TIMEOUT);
        assert_eq!(behind.status, Unhealthy);
        let message = behind.message.unwrap();
        assert!(
            message.contains("version 1 is behind the expected version 2"),
            "{message}"
        );

        let ahead = PostgresReport::answered(micros(500), 3, 2, TIMEOUT);
        assert_eq!(ahead.status, Degraded);
        assert!(ahead.message.unwrap().contains("version 3 is ahead"));

        let current = PostgresReport::answered(micros(500), 2, 2, TIMEOUT);
        assert_eq!(current.status, Healthy);
        assert_eq!(current.message, None);
    }

    #[test]
    fn slow_answers_are_degraded() {
        let timeout = DependencyTimeout::parse("dependency_timeout_ms", "100").unwrap();
        let redis = RedisReport::answered(Duration::from_millis(150), timeout);
        assert_eq!(redis.status, Degraded);
        assert_eq!(
            redis.message.as_deref(),
            Some("answered in 150 ms, slower than the 100 ms dependency timeout")
        );
        assert_eq!(
            RedisReport::answered(Duration::from_millis(100), timeout).status,
            Healthy
        );

        // Slow and behind: the worse verdict wins and both reasons are given.
        let pg = PostgresReport::answered(Duration::from_millis(150), 1, 2, timeout);
        assert_eq!(pg.status, Unhealthy);
        let message = pg.message.unwrap();
        assert!(
            message.contains("behind") && message.contains("slower"),
            "{message}"
        );
    }

    #[test]
    fn an_open_breaker_degrades_but_keeps_the_service_in_rotation() {
        let open = BreakerStats {
            state: BreakerState::Open,
            failure_count: 5,
            total_calls: 127,
            total_blocked: 12,
            success_rate: 90.55,
            retry_in: Some(45),
        };
        let gemini = GeminiReport::from_breaker(open);
        assert_eq!(gemini.status, Degraded);
        assert_eq!(gemini.message, "Circuit Breaker OPEN (retry in 45s)");

        let report = ReadyReport::new(
            RedisReport::answered(micros(300), TIMEOUT),
            PostgresReport::answered(micros(300), 1, 1, TIMEOUT),
            gemini,
            "0.1.0",
        );
        assert_eq!(report.overall, Degraded);
        assert_eq!(report.http_status(), 200);

        let half_open = BreakerStats {
            state: BreakerState::HalfOpen,
            ..BreakerStats::closed()
        };
        assert_eq!(GeminiReport::from_breaker(half_open).status, Degraded);
    }

    #[test]
    fn latency_is_rounded_to_hundredths_of_a_millisecond() {
        assert_eq!(latency_ms(Duration::from_nanos(412_345)), 0.41);
        assert_eq!(latency_ms(Duration::from_millis(1_500)), 1500.0);
    }
}
