//! The `cleanup` job: chat history older than the retention period goes. Month
//! partitions wholly older than the cut-off are detached and dropped; the rows before
//! the cut-off in the partition that contains it, and in the default partition, are
//! deleted in batches until none are left or the time budget is spent (the next run
//! resumes). Reads never return expired rows meanwhile: the chat SQL bounds every read
//! by the same cut-off. Voice messages of expired messages go the same way, last.

use crate::pg::{ParameterValue, RowSet};
use evolve_core::jobs::{self, Month};
use evolve_core::retention;
use evolve_core::sql;

use super::{is_lock_timeout, partitions, JobError, Run, Work};
use crate::pg::{Pg, PgError};
use crate::time;

fn single_i64(rows: &RowSet, column: &str) -> Result<Option<i64>, PgError> {
    let row = rows.rows().next().ok_or_else(|| PgError {
        operation: "query",
        message: format!("no row for {column}"),
        sqlstate: None,
    })?;
    Ok(row.get::<Option<i64>>(column).flatten())
}

/// Detaches and drops the month's partition; its estimated rows, `None` if it was gone.
async fn drop_month(pg: &Pg, month: Month, lock_timeout_ms: i32) -> Result<Option<i64>, PgError> {
    let rows = pg
        .query(
            sql::DROP_MONTH,
            &[
                ParameterValue::Str(month.partition_name()),
                ParameterValue::Int32(lock_timeout_ms),
            ],
        )
        .await?;
    single_i64(&rows, "estimated_rows")
}

/// Deletes one batch of rows created before `cutoff_ms` from `table`; how many.
async fn delete_batch(pg: &Pg, table: &str, cutoff_ms: i64, batch: u32) -> Result<u64, PgError> {
    let rows = pg
        .query(
            sql::DELETE_BEFORE,
            &[
                ParameterValue::Str(table.to_owned()),
                ParameterValue::Int64(cutoff_ms),
                ParameterValue::Int32(batch.min(i32::MAX as u32) as i32),
            ],
        )
        .await?;
    Ok(single_i64(&rows, "deleted")?.unwrap_or(0).max(0) as u64)
}

pub(super) async fn run(run: &Run<'_>, work: &mut Work) -> Result<(), JobError> {
    let config = &run.ctx.config;
    let pg = run.pg().await?;
    let pg = &*pg;
    let cutoff = retention::cutoff_ms(time::now_ms() as i64, config.history_retention_days);
    work.note(format!(
        "cut-off {} ({} days)",
        jobs::rfc3339(cutoff.max(0) as u64),
        config.history_retention_days
    ));
    let plan = jobs::plan_retention(&partitions::list(pg).await?, cutoff);

    let mut dropped = Vec::new();
    let dropping_since = time::now_ms();
    for month in &plan.drop {
        if !run.may_continue().await? {
            work.note("time budget spent; the next run drops the rest");
            return Ok(());
        }
        let name = month.partition_name();
        match drop_month(pg, *month, run.lock_timeout_ms()).await {
            Ok(Some(estimate)) if estimate >= 0 => {
                dropped.push(format!("{name} (about {estimate} rows)"))
            }
            Ok(Some(_)) => dropped.push(format!("{name} (not analysed: rows unknown)")),
            Ok(None) => {}
            Err(error) if is_lock_timeout(&error) => work.note(format!(
                "{name}: lock not granted within {} ms; the next run retries",
                run.lock_timeout_ms()
            )),
            Err(error) => return Err(error.into()),
        }
    }
    if !dropped.is_empty() {
        work.note(format!(
            "dropped {} in {} ms",
            dropped.join(", "),
            time::now_ms() - dropping_since
        ));
    }

    let batch = config.cleanup_batch_size;
    for table in &plan.trim {
        let since = time::now_ms();
        let (mut deleted, mut batches) = (0u64, 0u64);
        let finished = loop {
            if !run.may_continue().await? {
                break false;
            }
            let n = delete_batch(pg, table, cutoff, batch).await?;
            batches += 1;
            deleted += n;
            work.rows += n;
            if n < u64::from(batch) {
                break true;
            }
        };
        if deleted > 0 || !finished {
            work.note(format!(
                "deleted {deleted} rows from {table} in {} ms ({batches} statements)",
                time::now_ms() - since
            ));
        }
        if !finished {
            work.note("time budget spent; the next run deletes the rest");
            return Ok(());
        }
    }
    delete_voices(run, pg, cutoff, batch, work).await
}

/// Deletes the voices of messages older than the cut-off, a batch per statement.
async fn delete_voices(
    run: &Run<'_>,
    pg: &Pg,
    cutoff: i64,
    batch: u32,
    work: &mut Work,
) -> Result<(), JobError> {
    let mut deleted = 0u64;
    loop {
        if !run.may_continue().await? {
            work.note("time budget spent; the next run deletes the remaining voices");
            break;
        }
        let n = pg
            .execute(
                sql::DELETE_VOICE_BEFORE,
                &[
                    ParameterValue::Int64(cutoff),
                    ParameterValue::Int64(i64::from(batch)),
                ],
            )
            .await?;
        deleted += n;
        work.rows += n;
        if n < u64::from(batch) {
            break;
        }
    }
    if deleted > 0 {
        work.note(format!("deleted {deleted} voice messages"));
    }
    Ok(())
}
