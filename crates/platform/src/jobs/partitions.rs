//! The `partitions` job: month partitions of `chat_history` created ahead, and rows that
//! landed in the default partition moved into their month (`evolve_core::jobs::plan_partitions`).

use crate::pg::ParameterValue;
use evolve_core::jobs::{self, Month};
use evolve_core::retention;
use evolve_core::sql;

use super::{is_lock_timeout, JobError, Run, Work};
use crate::pg::{Pg, PgError};
use crate::time;

fn bad_row(what: &str) -> PgError {
    PgError {
        operation: "query",
        message: format!("unexpected row shape: {what}"),
        sqlstate: None,
    }
}

/// The names of `chat_history`'s partitions.
pub(super) async fn list(pg: &Pg) -> Result<Vec<String>, PgError> {
    let rows = pg.query(sql::CHAT_PARTITIONS, &[]).await?;
    rows.rows()
        .map(|row| row.get::<String>("name").ok_or_else(|| bad_row("name")))
        .collect()
}

/// The months of the rows in the default partition, with their row counts.
async fn stray_months(pg: &Pg) -> Result<Vec<(Month, i64)>, PgError> {
    let rows = pg.query(sql::DEFAULT_PARTITION_MONTHS, &[]).await?;
    let mut months = Vec::new();
    for row in rows.rows() {
        let year = row.get::<i32>("year").ok_or_else(|| bad_row("year"))?;
        let month = row.get::<i32>("month").ok_or_else(|| bad_row("month"))?;
        let count = row
            .get::<i64>("row_count")
            .ok_or_else(|| bad_row("row_count"))?;
        // Years without four digits cannot be partitions; such rows stay where they are.
        if let Some(month) = Month::new(year, month as u32) {
            months.push((month, count));
        }
    }
    Ok(months)
}

/// Creates the month's partition, moving its rows out of the default partition, unless
/// it exists; returns the rows moved.
async fn attach_month(pg: &Pg, month: Month, lock_timeout_ms: i32) -> Result<u64, PgError> {
    let rows = pg
        .query(
            sql::ATTACH_MONTH,
            &[
                ParameterValue::Str(month.partition_name()),
                ParameterValue::Int64(month.start_ms()),
                ParameterValue::Int64(month.end_ms()),
                ParameterValue::Int32(lock_timeout_ms),
            ],
        )
        .await?;
    let moved = rows
        .rows()
        .next()
        .and_then(|row| row.get::<i64>("moved"))
        .ok_or_else(|| bad_row("moved"))?;
    Ok(moved.max(0) as u64)
}

pub(super) async fn run(run: &Run<'_>, work: &mut Work) -> Result<(), JobError> {
    let config = &run.ctx.config;
    let pg = run.pg().await?;
    let pg = &*pg;
    let now = time::now_ms() as i64;
    let cutoff = retention::cutoff_ms(now, config.history_retention_days);
    let existing = list(pg).await?;
    let strays = stray_months(pg).await?;
    let stray_list: Vec<Month> = strays.iter().map(|(m, _)| *m).collect();
    let plan = jobs::plan_partitions(
        &existing,
        &stray_list,
        now,
        cutoff,
        config.partitions_ahead_months,
    );
    let mut created = Vec::new();
    for month in &plan {
        if !run.may_continue().await? {
            work.note("time budget spent; the next run creates the rest");
            break;
        }
        let name = month.partition_name();
        match attach_month(pg, *month, run.lock_timeout_ms()).await {
            Ok(moved) => {
                work.rows += moved;
                if moved > 0 {
                    work.note(format!(
                        "moved {moved} rows from the default partition into {name}"
                    ));
                }
                created.push(name);
            }
            Err(error) if is_lock_timeout(&error) => work.note(format!(
                "{name}: lock not granted within {} ms; the next run retries",
                run.lock_timeout_ms()
            )),
            Err(error) => return Err(error.into()),
        }
    }
    if created.is_empty() {
        work.note(format!(
            "partitions through {} exist",
            Month::containing(now)
                .and_then(|m| m.plus(config.partitions_ahead_months))
                .map(|m| m.to_string())
                .unwrap_or_default()
        ));
    } else {
        work.note(format!("created {}", created.join(", ")));
    }
    let left: i64 = strays
        .iter()
        .filter(|(m, _)| !plan.contains(m))
        .map(|(_, n)| n)
        .sum();
    if left > 0 {
        work.note(format!(
            "{left} rows stay in the default partition (expired: the cleanup deletes them; \
             or beyond the horizon: they move when their month is created)"
        ));
    }
    Ok(())
}
