//! `GET /admin/db_metrics`: what PostgreSQL says about itself, read from its statistics
//! views. `/metrics` reads the same figures ([`Snapshot`]) for the dashboard.

use evolve_core::admin::{percent, statement_text, Figure};
use evolve_core::sql;
use evolve_platform::http::Response;
use evolve_platform::pg::{Decode, ParameterValue, Row, RowSet};
use evolve_platform::pg::{Pg, PgError};
use evolve_platform::replica;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

use crate::{reply, Context};

/// An active statement running longer than this counts as slow (`/metrics`' gauge).
pub const SLOW_QUERY_SECONDS: f64 = 1.0;

/// How many long-running and slowest statements are listed.
const LIST_LEN: i64 = 10;

/// Longest statement text shown.
const STATEMENT_CHARS: usize = 300;

#[derive(Debug, Serialize)]
pub struct Table {
    pub name: String,
    pub partitioned: bool,
    pub size_bytes: Figure<i64>,
    /// The planner's estimate; `null` when PostgreSQL has none yet.
    pub row_estimate: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Partition {
    pub name: String,
    /// `FOR VALUES FROM (..) TO (..)` or `DEFAULT`.
    pub bounds: Figure<String>,
    pub size_bytes: Figure<i64>,
    pub row_estimate: Option<i64>,
}

/// The figures both `/admin/db_metrics` and `/metrics` show. Each query is read on its
/// own: one that fails makes its figures unreadable, with the reason, and the rest stand.
#[derive(Debug)]
pub struct Snapshot {
    /// Client connections of the whole server by state.
    pub by_state: Figure<BTreeMap<String, i64>>,
    pub in_database: Figure<i64>,
    pub max_connections: Figure<i64>,
    pub reserved_connections: Figure<i64>,
    pub xact_commit: Figure<i64>,
    pub xact_rollback: Figure<i64>,
    pub blks_hit: Figure<i64>,
    pub blks_read: Figure<i64>,
    pub deadlocks: Figure<i64>,
    pub database_size_bytes: Figure<i64>,
    pub tables: Figure<Vec<Table>>,
    /// Active statements of other sessions running past [`SLOW_QUERY_SECONDS`].
    pub slow_queries: Figure<i64>,
    pub longest_query_seconds: Figure<f64>,
}

/// The figure in `column` of a query's first row.
fn first<T: Decode>(rows: &Result<RowSet, PgError>, column: &str) -> Figure<T> {
    Figure::read(
        rows.as_ref()
            .map(|rows| rows.rows().next().and_then(|row| row.get::<T>(column))),
        column,
    )
}

/// The figure in `column` of one row.
fn cell<T: Decode>(row: &Row<'_>, column: &str) -> Figure<T> {
    Figure::read(Ok::<_, PgError>(row.get::<T>(column)), column)
}

/// Every row of a query through `each`; unreadable when the query failed or a row's
/// identifying column did not read.
fn all<T>(
    rows: Result<RowSet, PgError>,
    each: impl Fn(&Row<'_>) -> Option<T>,
    what: &str,
) -> Figure<Vec<T>> {
    let read = rows.map(|rows| {
        rows.rows()
            .map(|row| each(&row))
            .collect::<Option<Vec<T>>>()
    });
    Figure::read(read, what)
}

impl Snapshot {
    /// Reads every figure; fails only when PostgreSQL answered none of the queries.
    pub async fn read(pg: &Pg) -> Result<Snapshot, PgError> {
        let connections = pg.query(sql::ADMIN_CONNECTIONS, &[]).await;
        let limits = pg.query(sql::ADMIN_MAX_CONNECTIONS, &[]).await;
        let stats = pg.query(sql::ADMIN_DATABASE_STATS, &[]).await;
        let tables = pg.query(sql::ADMIN_TABLES, &[]).await;
        let slow = pg
            .query(
                sql::ADMIN_SLOW_ACTIVITY,
                &[ParameterValue::Floating64(SLOW_QUERY_SECONDS)],
            )
            .await;
        if let (Err(error), Err(_), Err(_), Err(_), Err(_)) =
            (&connections, &limits, &stats, &tables, &slow)
        {
            return Err(error.clone());
        }
        let in_database = Figure::read(
            connections.as_ref().map(|rows| {
                rows.rows()
                    .map(|row| row.get::<i64>("in_database"))
                    .sum::<Option<i64>>()
            }),
            "in_database",
        );
        let by_state = all(
            connections,
            |row| Some((row.get::<String>("state")?, row.get::<i64>("connections")?)),
            "connections by state",
        );
        let by_state = match by_state {
            Figure::Value(pairs) => Figure::Value(pairs.into_iter().collect()),
            Figure::Unreadable { error } => Figure::Unreadable { error },
        };
        Ok(Snapshot {
            by_state,
            in_database,
            max_connections: first(&limits, "max_connections"),
            reserved_connections: first(&limits, "reserved"),
            xact_commit: first(&stats, "xact_commit"),
            xact_rollback: first(&stats, "xact_rollback"),
            blks_hit: first(&stats, "blks_hit"),
            blks_read: first(&stats, "blks_read"),
            deadlocks: first(&stats, "deadlocks"),
            database_size_bytes: first(&stats, "size_bytes"),
            slow_queries: first(&slow, "slow"),
            longest_query_seconds: first(&slow, "longest_seconds"),
            tables: all(
                tables,
                |row| {
                    Some(Table {
                        name: row.get::<String>("name")?,
                        partitioned: row.get::<bool>("partitioned")?,
                        size_bytes: cell(row, "size_bytes"),
                        row_estimate: row.get::<i64>("row_estimate"),
                    })
                },
                "table name",
            ),
        })
    }

    pub fn total_connections(&self) -> Figure<i64> {
        match &self.by_state {
            Figure::Value(by_state) => Figure::Value(by_state.values().sum()),
            Figure::Unreadable { error } => Figure::Unreadable {
                error: error.clone(),
            },
        }
    }

    /// Share of block reads served from PostgreSQL's buffer cache, percent.
    pub fn cache_hit_ratio(&self) -> Figure<f64> {
        self.blks_hit.zip(&self.blks_read, |hit, read| {
            let hit = (*hit).max(0) as u64;
            percent(hit, hit + (*read).max(0) as u64)
        })
    }
}

async fn partitions(pg: &Pg) -> Figure<Vec<Partition>> {
    all(
        pg.query(sql::ADMIN_HISTORY_PARTITIONS, &[]).await,
        |row| {
            Some(Partition {
                name: row.get::<String>("name")?,
                bounds: cell(row, "bounds"),
                size_bytes: cell(row, "size_bytes"),
                row_estimate: row.get::<i64>("row_estimate"),
            })
        },
        "partition name",
    )
}

async fn long_running(pg: &Pg) -> Figure<Vec<serde_json::Value>> {
    all(
        pg.query(
            sql::ADMIN_LONGEST_RUNNING,
            &[ParameterValue::Int64(LIST_LEN)],
        )
        .await,
        |row| {
            let query = row.get::<String>("query").unwrap_or_default();
            Some(json!({
                "pid": row.get::<i64>("pid")?,
                "database": cell::<String>(row, "database"),
                "seconds": cell::<f64>(row, "seconds"),
                "wait_event_type": cell::<String>(row, "wait_event_type"),
                // Utility statements can carry literal secrets: not shown.
                "query": statement_text(&query, STATEMENT_CHARS),
            }))
        },
        "pid",
    )
}

/// The slowest statements by mean time from `pg_stat_statements`, or why there are none:
/// the extension may be missing, or installed without its library preloaded, which only
/// a read reveals. Either way the rest of the answer stands.
async fn slowest_statements(pg: &Pg) -> serde_json::Value {
    let installed = pg
        .query(sql::ADMIN_HAS_STATEMENTS, &[])
        .await
        .map(|rows| {
            rows.rows()
                .next()
                .and_then(|row| row.get::<bool>("installed"))
                .unwrap_or(false)
        })
        .unwrap_or(false);
    if !installed {
        return json!({
            "available": false,
            "reason": "the pg_stat_statements extension is not installed in this database",
            "statements": [],
        });
    }
    // Utility statements are filtered out after the read, so read more than are shown.
    match pg
        .query(
            sql::ADMIN_SLOWEST_STATEMENTS,
            &[ParameterValue::Int64(LIST_LEN * 5)],
        )
        .await
    {
        Ok(rows) => {
            let statements: Vec<_> = rows
                .rows()
                .filter_map(|row| {
                    let text = statement_text(&row.get::<String>("query")?, STATEMENT_CHARS)?;
                    Some(json!({
                        "query": text,
                        "calls": cell::<i64>(&row, "calls"),
                        "total_ms": cell::<f64>(&row, "total_ms"),
                        "mean_ms": cell::<f64>(&row, "mean_ms"),
                        "rows": cell::<i64>(&row, "rows"),
                    }))
                })
                .take(LIST_LEN as usize)
                .collect();
            json!({ "available": true, "statements": statements })
        }
        Err(error) => json!({
            "available": false,
            "reason": error.message,
            "statements": [],
        }),
    }
}

pub async fn metrics(context: &Context) -> Response {
    let read = async {
        let pg = context.pg.get().await?;
        let pg = &*pg;
        let snapshot = Snapshot::read(pg).await?;
        Ok::<_, PgError>((
            snapshot,
            partitions(pg).await,
            long_running(pg).await,
            slowest_statements(pg).await,
        ))
    };
    let ((snapshot, partitions, long_running, slowest), replica) =
        match futures::join!(read, replica::report()) {
            (Ok(read), replica) => (read, replica),
            (Err(error), _) => return reply::unavailable("PostgreSQL", &error),
        };
    let total = snapshot.total_connections();
    let usage = total.zip(&snapshot.max_connections, |total, max| {
        percent((*total).max(0) as u64, (*max).max(0) as u64)
    });
    let body = json!({
        "status": "ok",
        "connections": {
            "total": total,
            "by_state": snapshot.by_state,
            "in_database": snapshot.in_database,
            "max_connections": snapshot.max_connections,
            "reserved_connections": snapshot.reserved_connections,
            "usage_percent": usage,
        },
        "transactions": {
            "committed": snapshot.xact_commit,
            "rolled_back": snapshot.xact_rollback,
        },
        "cache_hit_ratio": snapshot.cache_hit_ratio(),
        "deadlocks": snapshot.deadlocks,
        "database_size_bytes": snapshot.database_size_bytes,
        "tables": snapshot.tables,
        "chat_history_partitions": partitions,
        "slow_queries": {
            "threshold_seconds": SLOW_QUERY_SECONDS,
            "running": snapshot.slow_queries,
            "longest_running_seconds": snapshot.longest_query_seconds,
            "longest_running": long_running,
        },
        "slowest_statements": slowest,
        // The read replica and its lag; null when none is set.
        "replica": replica,
    });
    reply::json(200, &body)
}
