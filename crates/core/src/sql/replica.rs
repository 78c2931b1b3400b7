//! Statements for the read replica (see `crate::replica`).
//!
//! A replica read is the primary's statement under a gate evaluated in the same query:
//! the replica's lag, and whether it has replayed the user's last write. The answer always
//! has the gate's row, with the read's columns NULL unless the gate let it through, so an
//! empty result on a current replica is told apart from a refusal.

/// The replica's lag in milliseconds; 0 on a primary, and 0 when it has replayed all it
/// has received and is streaming (an idle primary sends nothing, and the time of the last
/// replayed transaction says nothing then; after a restart the received position starts
/// at its segment's beginning, behind the replayed one); NULL when it cannot tell.
macro_rules! replica_lag_ms {
    () => {
        "CASE
             WHEN NOT pg_is_in_recovery() THEN 0::int8
             WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()
                  AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0::int8
             ELSE (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())
                   * 1000)::int8
         END"
    };
}

/// `$inner` under the gate. `$written` is the parameter holding the user's last write
/// position (text, or NULL for none), `$max_lag` the lag bound in milliseconds; `$order`
/// orders the outer rows as `$inner` ordered its own.
macro_rules! replica_gate {
    ($written:literal, $max_lag:literal, $inner:expr, $order:literal) => {
        concat!(
            "WITH gate AS (
    SELECT ",
            replica_lag_ms!(),
            " AS replica_lag_ms,
           (NOT pg_is_in_recovery() OR ",
            $written,
            "::text IS NULL
            OR pg_last_wal_replay_lsn() >= ",
            $written,
            "::text::pg_lsn) AS replica_caught_up
)
SELECT gate.replica_lag_ms, gate.replica_caught_up, page.*
FROM gate
LEFT JOIN LATERAL (
",
            $inner,
            "
) page ON gate.replica_caught_up AND gate.replica_lag_ms <= ",
            $max_lag,
            "::int8
",
            $order
        )
    };
}

/// [`super::PROFILE_BY_EXTERNAL_ID`] on the replica. Parameters: external id, last write
/// position, lag bound.
pub const REPLICA_PROFILE_BY_EXTERNAL_ID: &str =
    replica_gate!("$2", "$3", profile_by_external_id!(), "");

/// [`super::HISTORY_FIRST_PAGE`] on the replica. Parameters: user id, retention cut-off,
/// limit, last write position, lag bound.
pub const REPLICA_HISTORY_FIRST_PAGE: &str = replica_gate!(
    "$4",
    "$5",
    history_first_page!(),
    "ORDER BY page.created_at_us DESC, page.id DESC"
);

/// [`super::HISTORY_PAGE_BEFORE`] on the replica. Parameters: user id, retention cut-off,
/// limit, cursor created_at (Unix microseconds), cursor id, last write position, lag bound.
pub const REPLICA_HISTORY_PAGE_BEFORE: &str = replica_gate!(
    "$6",
    "$7",
    history_page_before!(),
    "ORDER BY page.created_at_us DESC, page.id DESC"
);

/// The primary's WAL position after a write: at or past the write's commit record, since
/// the commit is flushed before it returns. No parameters.
pub const CURRENT_WAL_POSITION: &str = "SELECT pg_current_wal_lsn()::text AS lsn";

/// What `/ready` and `/admin/db_metrics` show of the replica. No parameters.
pub const REPLICA_STATUS: &str = concat!(
    "SELECT pg_is_in_recovery() AS in_recovery,
       ",
    replica_lag_ms!(),
    " AS lag_ms,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END
           AS replay_paused,
       pg_last_wal_replay_lsn()::text AS replayed"
);
