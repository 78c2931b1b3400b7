//! Spin's outbound PostgreSQL, `spin:postgres/postgres@4.2.0`, on a real PostgreSQL
//! server through a pool per address as Spin keeps one. Spin 4.0.2 links only 4.2.0:
//! its blocking `open` / `query` / `execute` also serve components built against 4.0.0
//! (spin-sdk 5.2), and its `open-async` / `query-async` / `execute-async` and the
//! connection builder serve spin-sdk 6. Clients come from a `PgClientFactory` (the
//! host's `Services`).
//!
//! As in Spin, a query's columns are read from its first row, so a query that returns
//! no rows has no columns; `query-async` returns them with a stream of rows and a future
//! that carries any error met while streaming.
//!
//! Column values are mapped the way Spin maps them (see `values`): integers, floats,
//! bool, text, bytea, date, time, timestamp and timestamptz (as a UTC date-time), uuid,
//! json/jsonb, numeric (as a decimal string), integer and text arrays, NULL as `db-null`;
//! anything else is `unsupported` with its raw bytes.

// The interface's `error` (as bindgen generates it) is large; it is returned as is, as
// Spin returns it.
#![allow(clippy::result_large_err)]

mod values;

use futures::future::BoxFuture;
use std::sync::Arc;
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

use crate::bindings::postgres::spin::postgres::postgres::{
    Column, DbError, Error, Host, HostConnection, HostConnectionBuilder,
    HostConnectionBuilderWithStore, HostConnectionWithStore, ParameterValue, QueryError, Row,
    RowSet,
};
use crate::outbound::AllowedHosts;
use values::{columns, convert_row, params, refs};

/// A pooled client for an address (and, from the connection builder, an extra CA root).
pub trait PgClientFactory: Send + Sync {
    fn get_client<'a>(
        &'a self,
        address: &'a str,
        ca_root: Option<&'a str>,
    ) -> BoxFuture<'a, anyhow::Result<deadpool_postgres::Object>>;
}

/// The guest's handle on one pooled PostgreSQL connection.
pub struct PgConnection {
    client: Arc<deadpool_postgres::Object>,
}

/// The guest's connection builder: an address and an optional CA root.
pub struct PgConnectionBuilder {
    address: String,
    ca_root: Option<String>,
}

pub struct PgState {
    component: String,
    allowed: Arc<AllowedHosts>,
    factory: Arc<dyn PgClientFactory>,
    table: ResourceTable,
}

/// Links the PostgreSQL interface to `PgState` (its async functions through an
/// `Accessor`).
pub struct PgData;

impl HasData for PgData {
    type Data<'a> = &'a mut PgState;
}

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

impl PgState {
    pub fn new(
        component: &str,
        allowed: Arc<AllowedHosts>,
        factory: Arc<dyn PgClientFactory>,
    ) -> Self {
        Self {
            component: component.to_string(),
            allowed,
            factory,
            table: ResourceTable::new(),
        }
    }

    fn opener(&self) -> Opener {
        Opener {
            component: self.component.clone(),
            allowed: self.allowed.clone(),
            factory: self.factory.clone(),
        }
    }

    fn client(
        &self,
        rep: &Resource<PgConnection>,
    ) -> wasmtime::Result<Arc<deadpool_postgres::Object>> {
        Ok(self.table.get(rep)?.client.clone())
    }
}

struct Opener {
    component: String,
    allowed: Arc<AllowedHosts>,
    factory: Arc<dyn PgClientFactory>,
}

impl Opener {
    async fn open(
        &self,
        address: &str,
        ca_root: Option<&str>,
    ) -> Result<deadpool_postgres::Object, Error> {
        if !self.allowed.allows(address) {
            tracing::warn!(component = %self.component, "postgres address not in allowed_outbound_hosts");
            return Err(Error::ConnectionFailed(format!(
                "address {} is not permitted",
                redact_password(address)
            )));
        }
        self.factory
            .get_client(address, ca_root)
            .await
            .map_err(|e| Error::ConnectionFailed(format!("{e:#}")))
    }
}

/// A whole query's rows, for the blocking `query`.
async fn query(
    client: &deadpool_postgres::Object,
    statement: &str,
    parameters: Vec<ParameterValue>,
) -> Result<RowSet, Error> {
    let parameters = params(parameters);
    let stmt = client
        .prepare_cached(statement)
        .await
        .map_err(query_failed)?;
    let rows = client
        .query(&stmt, &refs(&parameters))
        .await
        .map_err(query_failed)?;
    let columns = rows.first().map(columns).unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(convert_row(row)?);
    }
    Ok(RowSet { columns, rows: out })
}

async fn execute(
    client: &deadpool_postgres::Object,
    statement: &str,
    parameters: Vec<ParameterValue>,
) -> Result<u64, Error> {
    let parameters = params(parameters);
    client
        .execute(statement, &refs(&parameters))
        .await
        .map_err(query_failed)
}

/// What `query-async` hands the guest before it is wrapped in a stream and a future.
pub struct QueryStream {
    pub columns: Vec<Column>,
    pub rows: tokio::sync::mpsc::Receiver<Row>,
    pub done: tokio::sync::oneshot::Receiver<Result<(), Error>>,
}

/// Starts a query whose rows a task forwards as they arrive. Its columns are known once
/// the first row is (none if there are no rows), so this returns after the first row.
async fn query_stream(
    client: Arc<deadpool_postgres::Object>,
    statement: &str,
    parameters: Vec<ParameterValue>,
) -> Result<QueryStream, Error> {
    use futures::StreamExt;
    let parameters = params(parameters);
    let stream = client
        .query_raw(statement, refs(&parameters))
        .await
        .map_err(query_failed)?;
    let (columns_tx, columns_rx) = tokio::sync::oneshot::channel();
    let (rows_tx, rows_rx) = tokio::sync::mpsc::channel(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // The pooled connection stays checked out until the last row is read.
        let _client = client;
        let mut stream = std::pin::pin!(stream);
        let mut columns_tx = Some(columns_tx);
        let outcome = loop {
            let row = match stream.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(query_failed(e)),
                Some(Ok(row)) => row,
            };
            if let Some(tx) = columns_tx.take() {
                let _ = tx.send(columns(&row));
            }
            let values = match convert_row(&row) {
                Ok(values) => values,
                Err(e) => break Err(e),
            };
            if rows_tx.send(values).await.is_err() {
                break Ok(());
            }
        };
        drop(columns_tx);
        drop(rows_tx);
        let _ = done_tx.send(outcome);
    });
    Ok(QueryStream {
        columns: columns_rx.await.unwrap_or_default(),
        rows: rows_rx,
        done: done_rx,
    })
}

// ---- the blocking functions (4.0.0 and 4.2.0) ----

impl Host for PgState {}

impl HostConnection for PgState {
    async fn open(&mut self, address: String) -> Outcome<Resource<PgConnection>> {
        match self.opener().open(&address, None).await {
            Ok(client) => Ok(Ok(self.table.push(PgConnection {
                client: Arc::new(client),
            })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn query(
        &mut self,
        rep: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Outcome<RowSet> {
        let client = self.client(&rep)?;
        Ok(query(&client, &statement, params).await)
    }

    async fn execute(
        &mut self,
        rep: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Outcome<u64> {
        let client = self.client(&rep)?;
        Ok(execute(&client, &statement, params).await)
    }

    async fn drop(&mut self, rep: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl HostConnectionBuilder for PgState {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PgConnectionBuilder>> {
        Ok(self.table.push(PgConnectionBuilder {
            address,
            ca_root: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        rep: Resource<PgConnectionBuilder>,
        certificate: String,
    ) -> Outcome<()> {
        if let Err(e) = native_tls::Certificate::from_pem(certificate.as_bytes()) {
            return Ok(Err(Error::Other(format!(
                "invalid CA root certificate: {e}"
            ))));
        }
        self.table.get_mut(&rep)?.ca_root = Some(certificate);
        Ok(Ok(()))
    }

    async fn build(
        &mut self,
        rep: Resource<PgConnectionBuilder>,
    ) -> Outcome<Resource<PgConnection>> {
        let builder = self.table.get(&rep)?;
        let (address, ca_root) = (builder.address.clone(), builder.ca_root.clone());
        match self.opener().open(&address, ca_root.as_deref()).await {
            Ok(client) => Ok(Ok(self.table.push(PgConnection {
                client: Arc::new(client),
            })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn drop(&mut self, rep: Resource<PgConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

// ---- the async functions (4.2.0) ----

impl PgData {
    async fn open_async<T>(
        accessor: &Accessor<T, Self>,
        address: String,
        ca_root: Option<String>,
    ) -> Outcome<Resource<PgConnection>> {
        let opener = accessor.with(|mut access| access.get().opener());
        let client = match opener.open(&address, ca_root.as_deref()).await {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut access| {
            Ok(Ok(access.get().table.push(PgConnection {
                client: Arc::new(client),
            })?))
        })
    }
}

impl HostConnectionWithStore for PgData {
    async fn open_async<T>(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> Outcome<Resource<PgConnection>> {
        PgData::open_async(accessor, address, None).await
    }

    async fn execute_async<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Outcome<u64> {
        let client = accessor.with(|mut access| access.get().client(&rep))?;
        Ok(execute(&client, &statement, params).await)
    }

    #[allow(clippy::type_complexity)]
    async fn query_async<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Outcome<(
        Vec<Column>,
        StreamReader<Row>,
        FutureReader<Result<(), Error>>,
    )> {
        let client = accessor.with(|mut access| access.get().client(&rep))?;
        let QueryStream {
            columns,
            rows,
            done,
        } = match query_stream(client, &statement, params).await {
            Ok(stream) => stream,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut access| {
            let rows =
                StreamReader::new(&mut access, crate::wasi_async::ChannelProducer::new(rows))?;
            let done = FutureReader::new(&mut access, done)?;
            Ok(Ok((columns, rows, done)))
        })
    }
}

impl HostConnectionBuilderWithStore for PgData {
    async fn build_async<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<PgConnectionBuilder>,
    ) -> Outcome<Resource<PgConnection>> {
        let (address, ca_root) = accessor.with(|mut access| {
            let builder = access.get().table.get(&rep)?;
            wasmtime::Result::<_>::Ok((builder.address.clone(), builder.ca_root.clone()))
        })?;
        PgData::open_async(accessor, address, ca_root).await
    }
}

fn query_failed(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::QueryFailed(QueryError::DbError(DbError {
            as_text: e.to_string(),
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            extras: Vec::new(),
        })),
        None => Error::QueryFailed(QueryError::Text(e.to_string())),
    }
}

/// Keeps passwords out of error text the guest might log.
pub fn redact_password(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::postgres::spin::postgres::postgres::DbValue;
    use crate::runtime_config::RuntimeConfig;
    use crate::services::Services;

    /// The test PostgreSQL that `scripts/test` starts.
    fn pg_url() -> Option<String> {
        std::env::var("EVOLVE_TEST_PG_URL").ok()
    }

    fn opener(allowed: &[&str]) -> Opener {
        PgState::new(
            "test",
            Arc::new(AllowedHosts::parse(allowed).unwrap()),
            Arc::new(Services::new(&RuntimeConfig::default(), false)),
        )
        .opener()
    }

    fn allowed_for(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!("postgres://{}:{}", u.host_str().unwrap(), u.port().unwrap())
    }

    #[tokio::test]
    async fn addresses_outside_allowed_hosts_are_refused_without_their_password() {
        let refused = opener(&["postgres://127.0.0.1:1"])
            .open("postgres://app:s3cret@127.0.0.1:2/db", None)
            .await
            .err()
            .unwrap_or_else(|| panic!("not refused"));
        let Error::ConnectionFailed(message) = refused else {
            panic!("{refused:?}");
        };
        assert!(message.contains("not permitted"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[tokio::test]
    async fn a_query_without_rows_has_no_columns_as_in_spin() {
        let Some(url) = pg_url() else {
            eprintln!("EVOLVE_TEST_PG_URL not set: skipped");
            return;
        };
        let client = opener(&[&allowed_for(&url)])
            .open(&url, None)
            .await
            .unwrap();

        let none = query(&client, "SELECT 1::int4 AS n WHERE false", vec![])
            .await
            .unwrap();
        assert!(none.columns.is_empty() && none.rows.is_empty());
        let one = query(
            &client,
            "SELECT $1::int4 + 1 AS n",
            vec![ParameterValue::Int32(41)],
        )
        .await
        .unwrap();
        assert_eq!(one.columns.len(), 1);
        assert_eq!(one.columns[0].name, "n");
        assert!(
            matches!(one.rows.as_slice(), [row] if matches!(row.as_slice(), [DbValue::Int32(42)]))
        );

        let client = Arc::new(client);
        let mut none = query_stream(client.clone(), "SELECT 1::int4 AS n WHERE false", vec![])
            .await
            .unwrap();
        assert!(none.columns.is_empty());
        assert!(none.rows.recv().await.is_none());
        assert!(none.done.await.unwrap().is_ok());

        let mut three = query_stream(client, "SELECT generate_series(1, 3) AS n", vec![])
            .await
            .unwrap();
        assert_eq!(three.columns.len(), 1);
        let mut seen = Vec::new();
        while let Some(row) = three.rows.recv().await {
            seen.push(row);
        }
        assert_eq!(seen.len(), 3);
        assert!(matches!(seen[2].as_slice(), [DbValue::Int32(3)]));
        assert!(three.done.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_failing_query_is_a_query_error() {
        let Some(url) = pg_url() else {
            eprintln!("EVOLVE_TEST_PG_URL not set: skipped");
            return;
        };
        let client = opener(&[&allowed_for(&url)])
            .open(&url, None)
            .await
            .unwrap();
        let failed = query(&client, "SELECT * FROM no_such_table", vec![])
            .await
            .err()
            .unwrap_or_else(|| panic!("no error"));
        assert!(
            matches!(&failed, Error::QueryFailed(QueryError::DbError(e)) if e.code == "42P01"),
            "{failed:?}"
        );
        let failed = query_stream(Arc::new(client), "SELECT * FROM no_such_table", vec![])
            .await
            .err()
            .unwrap_or_else(|| panic!("no error"));
        assert!(matches!(failed, Error::QueryFailed(_)), "{failed:?}");
    }
}
