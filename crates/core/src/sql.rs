//! Every SQL statement the components run, in one place, all parameterised.
//!
//! Timestamps cross the boundary as integers (Unix milliseconds or microseconds) computed
//! in SQL, so no component depends on a driver's date-time mapping. Reads of
//! `chat_history` always bound `created_at` from below by the retention cut-off, which
//! both hides rows retention has not removed yet and lets PostgreSQL skip every partition
//! older than that.

/// A user with their profile, by external id. Parameters: external id.
macro_rules! profile_by_external_id {
    () => {
        "SELECT u.id AS user_id, u.plan AS plan,
       (extract(epoch FROM u.premium_until) * 1000)::int8 AS premium_until_ms,
       coalesce(p.data, '{}'::jsonb) AS data,
       coalesce(p.memory, '{}'::jsonb) AS memory,
       (extract(epoch FROM coalesce(p.updated_at, u.created_at)) * 1000)::int8 AS updated_at_ms
FROM users u
LEFT JOIN profiles p ON p.user_id = u.id
WHERE u.external_id = $1"
    };
}
pub const PROFILE_BY_EXTERNAL_ID: &str = profile_by_external_id!();

/// Creates a user (plan free) and an empty profile on first contact; a no-op when the
/// user exists, also when two first requests race. Parameters: external id.
pub const ENSURE_USER: &str = "\
WITH new_user AS (
    INSERT INTO users (external_id) VALUES ($1)
    ON CONFLICT (external_id) DO NOTHING
    RETURNING id
)
INSERT INTO profiles (user_id) SELECT id FROM new_user
ON CONFLICT (user_id) DO NOTHING";

/// Applies a partial update to a profile's data in one statement, so concurrent
/// updates of different fields both survive. Parameters: user id, jsonb of fields to
/// set, text[] of fields to remove.
pub const PATCH_PROFILE_DATA: &str = "\
INSERT INTO profiles AS p (user_id, data) VALUES ($1, $2::jsonb - $3::text[])
ON CONFLICT (user_id) DO UPDATE
SET data = (p.data || $2::jsonb) - $3::text[], updated_at = now()
RETURNING p.data AS data";

/// The newest turns for the prompt, newest first; fallback replies are left out so the
/// model never sees its own outage message, and broadcasts so that it does not carry on
/// an announcement as if it had said it. Parameters: user id, retention cut-off (Unix
/// milliseconds), limit.
pub const RECENT_TURNS: &str = "\
SELECT role, content
FROM chat_history
WHERE user_id = $1
  AND created_at >= to_timestamp($2::int8 / 1000.0)
  AND NOT degraded
  AND broadcast_id IS NULL
ORDER BY created_at DESC, id DESC
LIMIT $3";

/// Stores one turn, the user's message and the reply, atomically; `created_at` of the
/// reply is after the message's. Parameters: user id, message, reply, degraded (the reply
/// is the fallback: both rows are flagged, so the unanswered exchange stays out of prompts).
pub const INSERT_TURN: &str = "\
INSERT INTO chat_history (user_id, role, content, degraded, created_at)
VALUES ($1, 'user', $2, $4, clock_timestamp()),
       ($1, 'assistant', $3, $4, clock_timestamp())
RETURNING id, role";

/// The start of a history page query: id, role, content, degraded, broadcast,
/// created_at_us.
macro_rules! history_select {
    () => {
        "SELECT id, role, content, degraded, broadcast_id IS NOT NULL AS broadcast,
       (extract(epoch FROM created_at) * 1000000)::int8 AS created_at_us
FROM chat_history
WHERE user_id = $1
  AND created_at >= to_timestamp($2::int8 / 1000.0)"
    };
}

/// The first page of a user's history, newest first. Parameters: user id, retention
/// cut-off (Unix milliseconds), limit.
macro_rules! history_first_page {
    () => {
        concat!(
            history_select!(),
            "
ORDER BY created_at DESC, id DESC
LIMIT $3"
        )
    };
}
pub const HISTORY_FIRST_PAGE: &str = history_first_page!();

/// The page after a cursor (keyset pagination, no OFFSET). Parameters: user id,
/// retention cut-off (Unix milliseconds), limit, cursor created_at in Unix microseconds, cursor id.
macro_rules! history_page_before {
    () => {
        concat!(
            history_select!(),
            "
  AND (created_at, id) < (timestamptz 'epoch' + $4::int8 * interval '1 microsecond', $5)
ORDER BY created_at DESC, id DESC
LIMIT $3"
        )
    };
}
pub const HISTORY_PAGE_BEFORE: &str = history_page_before!();

mod replica;
pub use replica::*;

// Admin: database metrics. Read-only catalogue and statistics views. Without the `pg_monitor` role, sessions of
// other roles show no state (counted as `unknown`).

/// Client connections of the whole server by state (`max_connections` is server-wide),
/// and how many of them are to this database. No parameters.
pub const ADMIN_CONNECTIONS: &str = "\
SELECT coalesce(state, 'unknown') AS state,
       count(*)::int8 AS connections,
       (count(*) FILTER (WHERE datname = current_database()))::int8 AS in_database
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1
ORDER BY 1";

/// The connection limit and the slots reserved for superusers. No parameters.
pub const ADMIN_MAX_CONNECTIONS: &str = "\
SELECT current_setting('max_connections')::int8 AS max_connections,
       current_setting('superuser_reserved_connections')::int8 AS reserved";

/// This database's cumulative statistics. No parameters.
pub const ADMIN_DATABASE_STATS: &str = "\
SELECT xact_commit::int8 AS xact_commit, xact_rollback::int8 AS xact_rollback,
       blks_hit::int8 AS blks_hit, blks_read::int8 AS blks_read,
       deadlocks::int8 AS deadlocks,
       pg_database_size(current_database())::int8 AS size_bytes
FROM pg_stat_database
WHERE datname = current_database()";

/// Tables of the current schema that are not partitions, with their total size (indexes
/// and TOAST included; for a partitioned table, of all its partitions) and row estimate
/// (the planner's, or the live-row count of a table never analysed; null if neither is
/// known). No parameters.
pub const ADMIN_TABLES: &str = "\
WITH rel AS (
    SELECT c.oid, c.relname, c.relkind,
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 ELSE s.n_live_tup END AS rows
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
)
SELECT r.relname::text AS name, r.relkind = 'p' AS partitioned,
       CASE WHEN r.relkind = 'p'
            THEN coalesce((SELECT sum(pg_total_relation_size(t.relid))
                           FROM pg_partition_tree(r.oid) t), 0)::int8
            ELSE pg_total_relation_size(r.oid)::int8 END AS size_bytes,
       CASE WHEN r.relkind = 'p'
            THEN (SELECT sum(p.rows) FROM pg_partition_tree(r.oid) t
                  JOIN rel p ON p.oid = t.relid WHERE t.isleaf)::int8
            ELSE r.rows END AS row_estimate
FROM rel r
JOIN pg_class c ON c.oid = r.oid
WHERE NOT c.relispartition
ORDER BY size_bytes DESC, name";

/// Each partition of `chat_history` with its bounds, size and row estimate (as in
/// [`ADMIN_TABLES`]), oldest first with the default partition last. No parameters.
pub const ADMIN_HISTORY_PARTITIONS: &str = "\
SELECT c.relname::text AS name,
       pg_get_expr(c.relpartbound, c.oid) AS bounds,
       pg_total_relation_size(c.oid)::int8 AS size_bytes,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 ELSE s.n_live_tup END AS row_estimate
FROM pg_partition_tree('chat_history') t
JOIN pg_class c ON c.oid = t.relid
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE t.isleaf
ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname";

/// Active statements of other sessions running longer than $1 seconds (float8), and the
/// longest running time in seconds. Always available, unlike `pg_stat_statements`.
pub const ADMIN_SLOW_ACTIVITY: &str = "\
SELECT (count(*) FILTER (WHERE now() - query_start > make_interval(secs => $1)))::int8 AS slow,
       coalesce(extract(epoch FROM max(now() - query_start)), 0)::float8 AS longest_seconds
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()";

/// The longest-running active statements of other sessions, at most $1 (int8).
pub const ADMIN_LONGEST_RUNNING: &str = "\
SELECT pid::int8 AS pid, coalesce(datname, '') AS database,
       extract(epoch FROM now() - query_start)::float8 AS seconds,
       coalesce(wait_event_type, '') AS wait_event_type,
       coalesce(query, '') AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
ORDER BY query_start
LIMIT $1";

/// Whether the `pg_stat_statements` extension is installed in this database. Installed
/// is not enough: reading it also needs the library preloaded, which only the read tells.
pub const ADMIN_HAS_STATEMENTS: &str = "\
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed";

/// The statements of this database with the highest mean time, at most $1 (int8).
pub const ADMIN_SLOWEST_STATEMENTS: &str = "\
SELECT query, calls::int8 AS calls, total_exec_time::float8 AS total_ms,
       mean_exec_time::float8 AS mean_ms, rows::int8 AS rows
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY mean_exec_time DESC
LIMIT $1";

// Scheduled jobs. Partition DDL runs through the functions of migrations/0002_jobs.sql: one statement
// each, so one transaction each, whatever pooled connection the job is given.

/// The partitions of `chat_history` by name (month partitions and the default).
pub const CHAT_PARTITIONS: &str = "\
SELECT c.relname::text AS name
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'chat_history'::regclass
ORDER BY 1";

/// The months (UTC) of the rows in the default partition, with their row counts.
pub const DEFAULT_PARTITION_MONTHS: &str = "\
SELECT extract(year FROM t)::int4 AS year, extract(month FROM t)::int4 AS month,
       count(*)::int8 AS row_count
FROM (SELECT created_at AT TIME ZONE 'UTC' AS t FROM chat_history_default) d
GROUP BY 1, 2
ORDER BY 1, 2";

/// Creates a month partition, moving its rows out of the default partition; returns the
/// rows moved. Parameters: name, start and end in Unix ms, lock timeout in ms (int4).
pub const ATTACH_MONTH: &str = "\
SELECT chat_history_attach_month($1,
    timestamptz 'epoch' + $2::int8 * interval '1 millisecond',
    timestamptz 'epoch' + $3::int8 * interval '1 millisecond',
    $4::int4) AS moved";

/// Detaches and drops a month partition; returns its estimated rows, null when it does
/// not exist. Parameters: name, lock timeout in ms (int4).
pub const DROP_MONTH: &str = "SELECT chat_history_drop_month($1, $2::int4) AS estimated_rows";

/// Deletes one batch of rows created before the cut-off from one partition; returns how
/// many. Parameters: partition name, cut-off in Unix ms, batch size (int4).
pub const DELETE_BEFORE: &str = "\
SELECT chat_history_delete_before($1,
    timestamptz 'epoch' + $2::int8 * interval '1 millisecond',
    $3::int4) AS deleted";

/// Moves every premium user whose subscription has ended to the free plan, in one
/// statement (the partial index on premium_until finds them); returns their external
/// ids for the cache invalidation. `premium_until` stays as the record of when it ended.
pub const EXPIRE_SUBSCRIPTIONS: &str = "\
UPDATE users SET plan = 'free'
WHERE plan = 'premium' AND premium_until < now()
RETURNING external_id";

/// The most recently active users (by their newest message within the window), newest
/// first. The BRIN index on created_at keeps the scan to the window's rows. Parameters:
/// window in hours (int4), limit (int8).
pub const RECENTLY_ACTIVE_USERS: &str = "\
SELECT u.external_id
FROM (
    SELECT user_id, max(created_at) AS last_at
    FROM chat_history
    WHERE created_at >= now() - make_interval(hours => $1::int4)
    GROUP BY user_id
    ORDER BY last_at DESC
    LIMIT $2::int8
) a
JOIN users u ON u.id = a.user_id
WHERE u.external_id IS NOT NULL
ORDER BY a.last_at DESC";

/// `statement` rewritten to return its rows plus a last column `evolve_present` (always
/// `true`), or a single row of nulls when it has none: for hosts whose synchronous query
/// call cannot return an empty result (Spin 4.0's `spin:postgres@4.0.0`). The statement
/// becomes a CTE, so data-modifying statements keep working. The left join from a single
/// row has no join clause, so PostgreSQL can only run it as a nested loop over that row,
/// which keeps the statement's own order.
pub fn at_least_one_row(statement: &str) -> String {
    format!(
        "WITH evolve_result AS ({statement})\n\
         SELECT evolve_rows.* FROM (SELECT 1) AS evolve_one\n\
         LEFT JOIN (SELECT evolve_result.*, true AS evolve_present FROM evolve_result) \
         AS evolve_rows ON true"
    )
}

/// One of a user's assistant messages, for voicing, within retention. Parameters: user
/// id, message id, retention cut-off (Unix ms).
pub const ASSISTANT_MESSAGE: &str = "\
SELECT content, (extract(epoch FROM created_at) * 1000)::int8 AS created_at_ms
FROM chat_history
WHERE user_id = $1 AND id = $2 AND role = 'assistant'
  AND created_at >= to_timestamp($3::int8 / 1000.0)";

/// Stores a message's voice once: a task run twice stores it once. Parameters: message
/// id, user id, message time (Unix ms), content type, audio, entity tag, voice.
pub const INSERT_VOICE: &str = "\
INSERT INTO voice_messages (message_id, user_id, message_at, content_type, audio, etag, voice)
VALUES ($1, $2, to_timestamp($3::int8 / 1000.0), $4, $5, $6, $7)
ON CONFLICT (message_id) DO NOTHING";

/// Whether a message has its voice, without the audio. Parameters: message id, user id.
pub const VOICE_TAG: &str = "\
SELECT etag FROM voice_messages WHERE message_id = $1 AND user_id = $2";

/// A message's voice. Parameters: message id, user id.
pub const VOICE_AUDIO: &str = "\
SELECT content_type, audio, etag FROM voice_messages WHERE message_id = $1 AND user_id = $2";

/// Removes voices of messages past retention, a batch at a time. Parameters: cut-off
/// (Unix ms), batch size.
pub const DELETE_VOICE_BEFORE: &str = "\
DELETE FROM voice_messages
WHERE message_id IN (
    SELECT message_id FROM voice_messages
    WHERE message_at < to_timestamp($1::int8 / 1000.0)
    LIMIT $2)";

/// A user's memory and the id of the last message analysed. Parameters: user id.
pub const MEMORY: &str = "\
SELECT memory, memory_watermark FROM profiles WHERE user_id = $1";

/// A user's messages after the watermark, oldest first, for dialog analysis (fallback
/// replies and broadcasts are not the dialog). Parameters: user id, watermark, retention
/// cut-off (Unix ms), limit.
pub const MESSAGES_AFTER: &str = "\
SELECT id, role, content
FROM chat_history
WHERE user_id = $1 AND id > $2
  AND created_at >= to_timestamp($3::int8 / 1000.0)
  AND NOT degraded
  AND broadcast_id IS NULL
ORDER BY id
LIMIT $4";

/// Writes merged memory and the new watermark, only over the watermark it was read
/// with: a second run of the same analysis changes nothing. Parameters: user id, memory
/// (jsonb), new watermark, old watermark.
pub const STORE_MEMORY: &str = "\
UPDATE profiles SET memory = $2::jsonb, memory_watermark = $3, updated_at = now()
WHERE user_id = $1 AND memory_watermark = $4";

/// Creates a broadcast with its segment's size. Parameters: message, segment.
pub const CREATE_BROADCAST: &str = "\
INSERT INTO broadcasts (message, segment, total)
SELECT $1, $2, count(*) FROM users WHERE $2 = 'all' OR plan = $2
RETURNING id, (extract(epoch FROM created_at) * 1000)::int8 AS created_ms";

/// A broadcast as operators see it. Parameters: id.
pub const BROADCAST: &str = "\
SELECT id, message, segment, status, total, delivered,
       (extract(epoch FROM created_at) * 1000)::int8 AS created_ms,
       (extract(epoch FROM started_at) * 1000)::int8 AS started_ms,
       (extract(epoch FROM finished_at) * 1000)::int8 AS finished_ms
FROM broadcasts WHERE id = $1";

/// Marks a broadcast running when its first page starts. Parameters: id.
pub const START_BROADCAST: &str = "\
UPDATE broadcasts SET status = 'running', started_at = coalesce(started_at, now())
WHERE id = $1 AND status = 'pending'";

/// Delivers one keyset page of a broadcast (`broadcast_deliver_page` in
/// `migrations/0004_memory_broadcasts.sql`). Parameters: broadcast id, last user id of
/// the previous page, page size, message, segment.
pub const DELIVER_BROADCAST_PAGE: &str = "\
SELECT last_user_id, page_users, delivered
FROM broadcast_deliver_page($1, $2, $3, $4, $5)";

/// Marks a running broadcast done. Parameters: id.
pub const FINISH_BROADCAST: &str = "\
UPDATE broadcasts SET status = 'done', finished_at = now()
WHERE id = $1 AND status = 'running'";

/// Cancels a broadcast that has not finished; its next page does nothing. Parameters: id.
pub const CANCEL_BROADCAST: &str = "\
UPDATE broadcasts SET status = 'cancelled', finished_at = now()
WHERE id = $1 AND status IN ('pending', 'running')";

/// A user's internal id by external id. Parameters: external id.
pub const USER_ID: &str = "SELECT id FROM users WHERE external_id = $1";
