//! Outbound PostgreSQL through Spin.
//!
//! Spin pools PostgreSQL connections per address, so opening per request is cheap. Every
//! call runs under the request's PostgreSQL deadline; a call that misses it is abandoned,
//! and nothing else of the request runs on its connection. Errors name the operation, keep the SQLSTATE so
//! callers can react to specific conditions, and never contain the URL's password.

use crate::sdk::pg::{Connection, DbValue, PgError as SpinError, QueryError};
use crate::time;
use evolve_core::variables::PgUrl;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use crate::sdk::pg::{Decode, ParameterValue};

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

/// The rows of a query, with their column names.
#[derive(Debug, Clone, Default)]
pub struct RowSet {
    columns: Vec<String>,
    rows: Vec<Vec<DbValue>>,
}

impl RowSet {
    pub fn new(columns: Vec<String>, rows: Vec<Vec<DbValue>>) -> RowSet {
        RowSet { columns, rows }
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }
}

/// One row of a [`RowSet`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [DbValue],
}

impl Row<'_> {
    /// The value of `column` as `T`; `None` when there is no such column or the value
    /// does not convert.
    pub fn get<T: Decode>(&self, column: &str) -> Option<T> {
        let index = self.columns.iter().position(|name| name == column)?;
        T::decode(self.values.get(index)?).ok()
    }

    /// Whether `column` is NULL (or missing).
    pub fn is_null(&self, column: &str) -> bool {
        match self.columns.iter().position(|name| name == column) {
            Some(index) => matches!(self.values.get(index), None | Some(DbValue::DbNull)),
            None => true,
        }
    }
}

/// One PostgreSQL connection (from Spin's pool).
pub struct Pg {
    connection: Connection,
    url: PgUrl,
    deadline: Duration,
    /// Set when a call missed its deadline: the connection's answer is still owed.
    abandoned: Cell<bool>,
}

impl Pg {
    /// Opens a connection within `deadline`, which then bounds each call on it. The host
    /// must be listed in the component's `allowed_outbound_hosts`.
    pub async fn open(url: &PgUrl, deadline: Duration) -> Result<Self, PgError> {
        let connection = match time::within(deadline, Connection::open(url.expose())).await {
            Some(opened) => opened.map_err(|error| describe(url, "open", error))?,
            None => return Err(timed_out("open", deadline)),
        };
        Ok(Pg {
            connection,
            url: url.clone(),
            deadline,
            abandoned: Cell::new(false),
        })
    }

    /// Runs a parameterised query and returns its rows.
    pub async fn query(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, PgError> {
        self.usable("query")?;
        match time::within(self.deadline, self.connection.query(sql, params)).await {
            Some(result) => result
                .map(|(columns, rows)| RowSet::new(columns, rows))
                .map_err(|error| describe(&self.url, "query", error)),
            None => Err(self.abandon("query")),
        }
    }

    /// Runs a parameterised statement and returns the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, PgError> {
        self.usable("execute")?;
        match time::within(self.deadline, self.connection.execute(sql, params)).await {
            Some(result) => result.map_err(|error| describe(&self.url, "execute", error)),
            None => Err(self.abandon("execute")),
        }
    }

    fn usable(&self, operation: &'static str) -> Result<(), PgError> {
        if self.abandoned.get() {
            return Err(PgError {
                operation,
                message: "connection abandoned after a call missed its deadline".to_owned(),
                sqlstate: None,
            });
        }
        Ok(())
    }

    fn abandon(&self, operation: &'static str) -> PgError {
        self.abandoned.set(true);
        timed_out(operation, self.deadline)
    }

    /// Runs `SELECT 1` and returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, PgError> {
        let started = Instant::now();
        self.query("SELECT 1", &[]).await?;
        Ok(started.elapsed())
    }

    /// Reads the applied schema version. This is also a round trip to the database, so
    /// `/ready` uses it in place of a separate `SELECT 1`.
    pub async fn schema_version(&self) -> Result<SchemaVersion, PgError> {
        let started = Instant::now();
        let result = self
            .query(
                "SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations",
                &[],
            )
            .await;
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

fn timed_out(operation: &'static str, deadline: Duration) -> PgError {
    PgError {
        operation,
        message: format!("no answer within {} ms", deadline.as_millis()),
        sqlstate: None,
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
/// never touches the database. [`PgSession::release`] gives it back before a long wait
/// (the LLM call), so a pool of 64 is not held by 64 turns waiting on the model.
pub struct PgSession {
    url: PgUrl,
    deadline: Duration,
    connection: RefCell<Option<Result<Rc<Pg>, PgError>>>,
}

impl PgSession {
    pub fn new(url: PgUrl, deadline: Duration) -> Self {
        PgSession {
            url,
            deadline,
            connection: RefCell::new(None),
        }
    }

    /// The connection, opened if this is the first use since the last release; a failed
    /// open is remembered until then.
    pub async fn get(&self) -> Result<Rc<Pg>, PgError> {
        if let Some(opened) = self.connection.borrow().as_ref() {
            return opened.clone();
        }
        let opened = Pg::open(&self.url, self.deadline).await.map(Rc::new);
        // Another task of the request may have opened one meanwhile: keep that.
        self.connection.borrow_mut().get_or_insert(opened).clone()
    }

    /// Drops the session's hold on its connection. Spin returns it to the pool once the
    /// last handle from [`PgSession::get`] is dropped too; the next `get` takes another.
    pub fn release(&self) {
        self.connection.borrow_mut().take();
    }
}
