//! The retention rule, in one place and on one clock.
//!
//! Chat history older than `history_retention_days` is expired: reads never return it and
//! the cleanup job removes it. Both compute the cut-off with [`cutoff_ms`] from the
//! application's wall clock (`platform::time::now_ms`), and the reads bind it as a value,
//! so PostgreSQL can skip older partitions when it plans the query. The two therefore
//! agree up to the clock skew between instances, which is nothing next to a retention
//! period counted in days.

const MS_PER_DAY: i64 = 86_400_000;

/// Rows created before this moment (Unix ms) are expired.
pub fn cutoff_ms(now_ms: i64, retention_days: u32) -> i64 {
    now_ms - i64::from(retention_days) * MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_retention_days_before_now() {
        // 2025-03-10T12:00:00Z and 30 days earlier.
        assert_eq!(cutoff_ms(1_741_608_000_000, 30), 1_739_016_000_000);
        assert_eq!(cutoff_ms(1_741_608_000_000, 0), 1_741_608_000_000);
    }
}
