//! Outbound PostgreSQL through Spin (`spin:postgres/postgres@4.0.0`).
//!
//! Spin pools PostgreSQL connections per address, so opening per request is cheap.
//! Errors name the operation, keep the SQLSTATE so callers can react to specific
//! conditions, and never contain the URL's password.

use evolve_core::variables::PgUrl;
use spin_sdk::pg4::{Connection, ParameterValue, PgError as SpinError, QueryError, RowSet};
use std::time::{Duration, Instant};

/// SQLSTATE `undefined_table`.
const UNDEFINED_TABLE: &str = "42P01";

/// A PostgreSQL operation failed. The message has been scrubbed of credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("postgres {operation} failed: {message}")]
pub struct PgError {
    pub operation: &'static str,
    pub message: String,
    /// The SQLSTATE code when the server reported one.
    pub sqlstate: Option<String>,
}

/// The applied schema version and how long the query took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The highest version in `schema_migrations`; 0 when none is recorded or the table
    /// does not exist yet.
    pub version: i32,
    pub latency: Duration,
}

/// One PostgreSQL connection (from Spin's pool).
pub struct Pg {
    connection: Connection,
    url: PgUrl,
}

impl Pg {
    /// Opens a connection. The host must be listed in the component's
    /// `allowed_outbound_hosts`.
    pub fn open(url: &PgUrl) -> Result<Self, PgError> {
        let connection =
            Connection::open(url.expose()).map_err(|error| describe(url, "open", error))?;
        Ok(Pg {
            connection,
            url: url.clone(),
        })
    }

    /// Runs a parameterised query and returns its rows.
    pub fn query(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, PgError> {
        self.connection
            .query(sql, params)
            .map_err(|error| describe(&self.url, "query", error))
    }

    /// Runs a parameterised statement and returns the number of rows it affected.
    pub fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, PgError> {
        self.connection
            .execute(sql, params)
            .map_err(|error| describe(&self.url, "execute", error))
    }

    /// Runs `SELECT 1` and returns the round-trip time.
    pub fn ping(&self) -> Result<Duration, PgError> {
        let started = Instant::now();
        self.query("SELECT 1", &[])?;
        Ok(started.elapsed())
    }

    /// Reads the applied schema version. This is also a round trip to the database, so
    /// `/ready` uses it in place of a separate `SELECT 1`.
    pub fn schema_version(&self) -> Result<SchemaVersion, PgError> {
        let started = Instant::now();
        let result = self.query(
            "SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations",
            &[],
        );
        let latency = started.elapsed();
        let rows = match result {
            Ok(rows) => rows,
            Err(error) if error.sqlstate.as_deref() == Some(UNDEFINED_TABLE) => {
                return Ok(SchemaVersion {
                    version: 0,
                    latency,
                });
            }
            Err(error) => return Err(error),
        };
        let version = rows
            .rows()
            .next()
            .and_then(|row| row.get::<i32>("version"))
            .ok_or_else(|| PgError {
                operation: "query",
                message: "schema version query returned no integer".to_owned(),
                sqlstate: None,
            })?;
        Ok(SchemaVersion { version, latency })
    }
}

fn describe(url: &PgUrl, operation: &'static str, error: SpinError) -> PgError {
    let (message, sqlstate) = match error {
        SpinError::ConnectionFailed(message) => (format!("connection failed: {message}"), None),
        SpinError::BadParameter(message) => (format!("bad parameter: {message}"), None),
        SpinError::QueryFailed(QueryError::Text(message)) => (message, None),
        // The detail field is left out: it can quote row values.
        SpinError::QueryFailed(QueryError::DbError(db)) => (
            format!("{} {}: {}", db.severity, db.code, db.message),
            Some(db.code),
        ),
        SpinError::ValueConversionFailed(message) => {
            (format!("value conversion failed: {message}"), None)
        }
        SpinError::Other(message) => (message, None),
    };
    PgError {
        operation,
        message: url.scrub(&message),
        sqlstate,
    }
}

/// A request's PostgreSQL connection, taken from Spin's pool on first use: a cached read
/// never touches the database.
pub struct PgSession {
    url: PgUrl,
    connection: std::cell::OnceCell<Result<Pg, PgError>>,
}

impl PgSession {
    pub fn new(url: PgUrl) -> Self {
        PgSession {
            url,
            connection: std::cell::OnceCell::new(),
        }
    }

    /// The connection, opened if this is the first use; a failed open is remembered.
    pub fn get(&self) -> Result<&Pg, PgError> {
        self.connection
            .get_or_init(|| Pg::open(&self.url))
            .as_ref()
            .map_err(Clone::clone)
    }
}
