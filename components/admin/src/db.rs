//! `GET /admin/db_metrics`: what PostgreSQL says about itself, read from its statistics
//! views. `/metrics` reads the same figures ([`Snapshot`]) for the dashboard.

use evolve_core::admin::{percent, statement_text};
use evolve_core::sql;
use evolve_platform::pg::{Pg, PgError};
use serde::Serialize;
use serde_json::json;
use spin_sdk::http::Response;
use spin_sdk::pg4::ParameterValue;
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
    pub size_bytes: i64,
    /// The planner's estimate; `null` when PostgreSQL has none yet.
    pub row_estimate: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Partition {
    pub name: String,
    /// `FOR VALUES FROM (..) TO (..)` or `DEFAULT`.
    pub bounds: String,
    pub size_bytes: i64,
    pub row_estimate: Option<i64>,
}

/// The figures both `/admin/db_metrics` and `/metrics` show.
#[derive(Debug)]
pub struct Snapshot {
    /// Client connections of the whole server by state.
    pub by_state: BTreeMap<String, i64>,
    pub in_database: i64,
    pub max_connections: i64,
    pub reserved_connections: i64,
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub blks_hit: i64,
    pub blks_read: i64,
    pub deadlocks: i64,
    pub database_size_bytes: i64,
    pub tables: Vec<Table>,
    /// Active statements of other sessions running past [`SLOW_QUERY_SECONDS`].
    pub slow_queries: i64,
    pub longest_query_seconds: f64,
}

fn int(row: &spin_sdk::pg4::Row<'_>, column: &str) -> i64 {
    row.get::<i64>(column).unwrap_or(0)
}

impl Snapshot {
    pub fn read(pg: &Pg) -> Result<Snapshot, PgError> {
        let mut by_state = BTreeMap::new();
        let mut in_database = 0;
        for row in pg.query(sql::ADMIN_CONNECTIONS, &[])?.rows() {
            let state = row.get::<String>("state").unwrap_or_default();
            by_state.insert(state, int(&row, "connections"));
            in_database += int(&row, "in_database");
        }
        let limits = pg.query(sql::ADMIN_MAX_CONNECTIONS, &[])?;
        let limits = limits.rows().next();
        let stats = pg.query(sql::ADMIN_DATABASE_STATS, &[])?;
        let stats = stats.rows().next();
        let stat = |column: &str| stats.as_ref().map_or(0, |row| int(row, column));
        let tables = pg
            .query(sql::ADMIN_TABLES, &[])?
            .rows()
            .map(|row| Table {
                name: row.get::<String>("name").unwrap_or_default(),
                partitioned: row.get::<bool>("partitioned").unwrap_or(false),
                size_bytes: int(&row, "size_bytes"),
                row_estimate: row.get::<i64>("row_estimate"),
            })
            .collect();
        let slow = pg.query(
            sql::ADMIN_SLOW_ACTIVITY,
            &[ParameterValue::Floating64(SLOW_QUERY_SECONDS)],
        )?;
        let slow = slow.rows().next();
        Ok(Snapshot {
            by_state,
            in_database,
            max_connections: limits.as_ref().map_or(0, |row| int(row, "max_connections")),
            reserved_connections: limits.as_ref().map_or(0, |row| int(row, "reserved")),
            xact_commit: stat("xact_commit"),
            xact_rollback: stat("xact_rollback"),
            blks_hit: stat("blks_hit"),
            blks_read: stat("blks_read"),
            deadlocks: stat("deadlocks"),
            database_size_bytes: stat("size_bytes"),
            tables,
            slow_queries: slow.as_ref().map_or(0, |row| int(row, "slow")),
            longest_query_seconds: slow
                .as_ref()
                .and_then(|row| row.get::<f64>("longest_seconds"))
                .unwrap_or(0.0),
        })
    }

    pub fn total_connections(&self) -> i64 {
        self.by_state.values().sum()
    }

    /// Share of block reads served from PostgreSQL's buffer cache, percent.
    pub fn cache_hit_ratio(&self) -> f64 {
        let hit = self.blks_hit.max(0) as u64;
        percent(hit, hit + self.blks_read.max(0) as u64)
    }
}

fn partitions(pg: &Pg) -> Result<Vec<Partition>, PgError> {
    Ok(pg
        .query(sql::ADMIN_HISTORY_PARTITIONS, &[])?
        .rows()
        .map(|row| Partition {
            name: row.get::<String>("name").unwrap_or_default(),
            bounds: row.get::<String>("bounds").unwrap_or_default(),
            size_bytes: int(&row, "size_bytes"),
            row_estimate: row.get::<i64>("row_estimate"),
        })
        .collect())
}

fn long_running(pg: &Pg) -> Result<Vec<serde_json::Value>, PgError> {
    Ok(pg
        .query(
            sql::ADMIN_LONGEST_RUNNING,
            &[ParameterValue::Int64(LIST_LEN)],
        )?
        .rows()
        .map(|row| {
            let query = row.get::<String>("query").unwrap_or_default();
            json!({
                "pid": int(&row, "pid"),
                "database": row.get::<String>("database").unwrap_or_default(),
                "seconds": row.get::<f64>("seconds").unwrap_or(0.0),
                "wait_event_type": row.get::<String>("wait_event_type").unwrap_or_default(),
                // Utility statements can carry literal secrets: not shown.
                "query": statement_text(&query, STATEMENT_CHARS),
            })
        })
        .collect())
}

/// The slowest statements by mean time from `pg_stat_statements`, or why there are none:
/// the extension may be missing, or installed without its library preloaded, which only
/// a read reveals. Either way the rest of the answer stands.
fn slowest_statements(pg: &Pg) -> serde_json::Value {
    let installed = pg
        .query(sql::ADMIN_HAS_STATEMENTS, &[])
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
    match pg.query(
        sql::ADMIN_SLOWEST_STATEMENTS,
        &[ParameterValue::Int64(LIST_LEN * 5)],
    ) {
        Ok(rows) => {
            let statements: Vec<_> = rows
                .rows()
                .filter_map(|row| {
                    let text = statement_text(&row.get::<String>("query")?, STATEMENT_CHARS)?;
                    Some(json!({
                        "query": text,
                        "calls": int(&row, "calls"),
                        "total_ms": row.get::<f64>("total_ms").unwrap_or(0.0),
                        "mean_ms": row.get::<f64>("mean_ms").unwrap_or(0.0),
                        "rows": int(&row, "rows"),
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

pub fn metrics(context: &Context) -> Response {
    let read = context.pg.get().and_then(|pg| {
        let snapshot = Snapshot::read(pg)?;
        Ok((
            snapshot,
            partitions(pg)?,
            long_running(pg)?,
            slowest_statements(pg),
        ))
    });
    let (snapshot, partitions, long_running, slowest) = match read {
        Ok(read) => read,
        Err(error) => return reply::unavailable("PostgreSQL", &error),
    };
    let total = snapshot.total_connections();
    let body = json!({
        "status": "ok",
        "connections": {
            "total": total,
            "by_state": snapshot.by_state,
            "in_database": snapshot.in_database,
            "max_connections": snapshot.max_connections,
            "reserved_connections": snapshot.reserved_connections,
            "usage_percent": percent(total.max(0) as u64, snapshot.max_connections.max(0) as u64),
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
    });
    reply::json(200, &body)
}
