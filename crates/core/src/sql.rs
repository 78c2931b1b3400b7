//! Every SQL statement the components run, in one place, all parameterised.
//!
//! Timestamps cross the boundary as integers (Unix milliseconds or microseconds) computed
//! in SQL, so no component depends on a driver's date-time mapping. Reads of
//! `chat_history` always bound `created_at` from below by the retention cut-off, which
//! both hides rows retention has not removed yet and lets PostgreSQL skip every partition
//! older than that.

/// A user with their profile, by external id. Parameters: external id.
pub const PROFILE_BY_EXTERNAL_ID: &str = "\
SELECT u.id AS user_id, u.plan AS plan,
       (extract(epoch FROM u.premium_until) * 1000)::int8 AS premium_until_ms,
       coalesce(p.data, '{}'::jsonb) AS data,
       coalesce(p.memory, '{}'::jsonb) AS memory,
       (extract(epoch FROM coalesce(p.updated_at, u.created_at)) * 1000)::int8 AS updated_at_ms
FROM users u
LEFT JOIN profiles p ON p.user_id = u.id
WHERE u.external_id = $1";

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
/// model never sees its own outage message. Parameters: user id, retention days, limit.
pub const RECENT_TURNS: &str = "\
SELECT role, content
FROM chat_history
WHERE user_id = $1
  AND created_at >= now() - make_interval(days => $2)
  AND NOT degraded
ORDER BY created_at DESC, id DESC
LIMIT $3";

/// Stores one turn, the user's message and the reply, atomically; `created_at` of the
/// reply is after the message's. Parameters: user id, message, reply, reply degraded.
pub const INSERT_TURN: &str = "\
INSERT INTO chat_history (user_id, role, content, degraded, created_at)
VALUES ($1, 'user', $2, false, clock_timestamp()),
       ($1, 'assistant', $3, $4, clock_timestamp())
RETURNING id, role";

/// The start of a history page query: id, role, content, degraded, created_at_us.
macro_rules! history_select {
    () => {
        "SELECT id, role, content, degraded,
       (extract(epoch FROM created_at) * 1000000)::int8 AS created_at_us
FROM chat_history
WHERE user_id = $1
  AND created_at >= now() - make_interval(days => $2)"
    };
}

/// The first page of a user's history, newest first. Parameters: user id, retention
/// days, limit.
pub const HISTORY_FIRST_PAGE: &str = concat!(
    history_select!(),
    "
ORDER BY created_at DESC, id DESC
LIMIT $3"
);

/// The page after a cursor (keyset pagination, no OFFSET). Parameters: user id,
/// retention days, limit, cursor created_at in Unix microseconds, cursor id.
pub const HISTORY_PAGE_BEFORE: &str = concat!(
    history_select!(),
    "
  AND (created_at, id) < (timestamptz 'epoch' + $4::int8 * interval '1 microsecond', $5)
ORDER BY created_at DESC, id DESC
LIMIT $3"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_reads_are_bounded_by_retention_and_keyset_paginated() {
        for sql in [HISTORY_FIRST_PAGE, HISTORY_PAGE_BEFORE] {
            assert!(sql.contains("created_at >= now() - make_interval(days => $2)"));
            assert!(!sql.to_ascii_uppercase().contains("OFFSET"));
            assert!(sql.contains("ORDER BY created_at DESC, id DESC"));
        }
        assert!(HISTORY_PAGE_BEFORE.contains("(created_at, id) <"));
    }
}
