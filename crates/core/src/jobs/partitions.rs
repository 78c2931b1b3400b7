//! The month partitions of `chat_history` and the plans of the jobs that keep them: which
//! partitions the cleanup drops or trims, and which the partition job creates.

use std::fmt;

use chrono::{Datelike, TimeZone, Utc};

use super::schedule::utc;

/// The default partition of `chat_history`, where rows outside every month land.
pub const DEFAULT_PARTITION: &str = "chat_history_default";

/// A calendar month in UTC: one partition of `chat_history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Month {
    /// A month whose partition name has a four-digit year.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1_000..=9_999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The month containing `ms` (Unix ms, UTC).
    pub fn containing(ms: i64) -> Option<Month> {
        let at = utc(ms)?;
        Month::new(at.year(), at.month())
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The month `n` months later.
    pub fn plus(self, n: u32) -> Option<Month> {
        let index = self.year as i64 * 12 + (self.month as i64 - 1) + n as i64;
        Month::new((index / 12) as i32, (index % 12) as u32 + 1)
    }

    /// The month `n` months earlier.
    pub fn minus(self, n: u32) -> Option<Month> {
        let index = self.year as i64 * 12 + (self.month as i64 - 1) - n as i64;
        Month::new(index.div_euclid(12) as i32, index.rem_euclid(12) as u32 + 1)
    }

    /// The first instant of the month (Unix ms): the partition's lower bound.
    pub fn start_ms(self) -> i64 {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("the first of a valid month exists")
            .timestamp_millis()
    }

    /// The first instant of the next month: the partition's (exclusive) upper bound.
    pub fn end_ms(self) -> i64 {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
            .single()
            .expect("the first of a valid month exists")
            .timestamp_millis()
    }

    /// `chat_history_yYYYYmMM`, as the first migration names them.
    pub fn partition_name(self) -> String {
        format!("chat_history_y{:04}m{:02}", self.year, self.month)
    }

    /// The month of a partition named by [`Month::partition_name`]; `None` for other names.
    pub fn from_partition_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("chat_history_y")?;
        let (year, month) = rest.split_once('m')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        Month::new(year.parse().ok()?, month.parse().ok()?)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// What the cleanup does, given the partitions that exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Month partitions wholly older than the cut-off: detached and dropped, oldest first.
    pub drop: Vec<Month>,
    /// Tables whose rows before the cut-off are deleted in batches: the month partition
    /// that contains the cut-off, and the default partition.
    pub trim: Vec<String>,
}

/// Plans the cleanup for the partitions named `partitions` (other tables are ignored).
pub fn plan_retention(partitions: &[String], cutoff_ms: i64) -> RetentionPlan {
    let mut months: Vec<Month> = partitions
        .iter()
        .filter_map(|name| Month::from_partition_name(name))
        .collect();
    months.sort();
    let mut plan = RetentionPlan::default();
    for month in months {
        if month.end_ms() <= cutoff_ms {
            plan.drop.push(month);
        } else if month.start_ms() < cutoff_ms {
            plan.trim.push(month.partition_name());
        }
    }
    if partitions.iter().any(|name| name == DEFAULT_PARTITION) {
        plan.trim.push(DEFAULT_PARTITION.to_owned());
    }
    plan
}

/// Plans the partition job: the months to create, oldest first.
///
/// Wanted are the current month and `ahead` months after it, so that no insert lands in
/// the default partition, and every month that holds rows in the default partition
/// (`stray_months`) from the cut-off's month up to that horizon, so those rows can move
/// into their month. Strays wholly older than the cut-off are left to the cleanup, which
/// deletes them; strays beyond the horizon move once their month comes within it.
pub fn plan_partitions(
    partitions: &[String],
    stray_months: &[Month],
    now_ms: i64,
    cutoff_ms: i64,
    ahead: u32,
) -> Vec<Month> {
    let existing: Vec<Month> = partitions
        .iter()
        .filter_map(|name| Month::from_partition_name(name))
        .collect();
    let Some(current) = Month::containing(now_ms) else {
        return Vec::new();
    };
    let horizon = current.plus(ahead).unwrap_or(current);
    let mut wanted: Vec<Month> = (0..=ahead).filter_map(|n| current.plus(n)).collect();
    wanted.extend(
        stray_months
            .iter()
            .copied()
            .filter(|m| m.end_ms() > cutoff_ms && *m <= horizon),
    );
    wanted.sort();
    wanted.dedup();
    wanted.retain(|m| !existing.contains(m));
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::test_support::ms;

    fn month(year: i32, month: u32) -> Month {
        Month::new(year, month).unwrap()
    }

    #[test]
    fn months_have_utc_bounds_and_partition_names() {
        let m = month(2024, 12);
        assert_eq!(m.partition_name(), "chat_history_y2024m12");
        assert_eq!(m.start_ms(), ms("2024-12-01T00:00:00Z") as i64);
        assert_eq!(m.end_ms(), ms("2025-01-01T00:00:00Z") as i64);
        assert_eq!(m.plus(1), Some(month(2025, 1)));
        assert_eq!(m.plus(14), Some(month(2026, 2)));
        assert_eq!(m.minus(12), Some(month(2023, 12)));
        assert_eq!(month(2025, 1).minus(1), Some(m));
        assert_eq!(month(2025, 3).minus(14), Some(month(2024, 1)));
        assert_eq!(month(2024, 2).end_ms(), ms("2024-03-01T00:00:00Z") as i64);
        assert_eq!(
            Month::containing(ms("2025-01-31T23:59:59.999Z") as i64),
            Some(month(2025, 1))
        );
        assert_eq!(
            Month::containing(ms("2025-02-01T00:00:00Z") as i64),
            Some(month(2025, 2))
        );
        assert_eq!(Month::from_partition_name("chat_history_y2024m12"), Some(m));
        for bad in [
            "chat_history_default",
            "chat_history_y2024m13",
            "chat_history_y2024m00",
            "chat_history_y24m01",
            "chat_history_y2024m1",
            "chat_history_y2024m012",
            "chat_history_y+024m01",
            "users",
        ] {
            assert_eq!(Month::from_partition_name(bad), None, "{bad}");
        }
        assert_eq!(Month::new(2024, 0), None);
        assert_eq!(Month::new(999, 1), None);
        assert_eq!(month(2024, 3).to_string(), "2024-03");
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn retention_drops_wholly_expired_months_and_trims_the_boundary() {
        let partitions = names(&[
            "chat_history_y2025m03",
            "chat_history_y2024m12",
            "chat_history_default",
            "chat_history_y2025m01",
            "chat_history_y2025m02",
            "chat_history_y2025m04",
            "chat_history_extra",
        ]);
        let cutoff = ms("2025-02-08T12:00:00Z") as i64;
        let plan = plan_retention(&partitions, cutoff);
        assert_eq!(plan.drop, vec![month(2024, 12), month(2025, 1)]);
        assert_eq!(
            plan.trim,
            names(&["chat_history_y2025m02", "chat_history_default"])
        );

        // A cut-off exactly on a month boundary drops the month before and trims nothing
        // but the default partition.
        let plan = plan_retention(&partitions, ms("2025-02-01T00:00:00Z") as i64);
        assert_eq!(plan.drop, vec![month(2024, 12), month(2025, 1)]);
        assert_eq!(plan.trim, names(&["chat_history_default"]));

        assert_eq!(plan_retention(&[], cutoff), RetentionPlan::default());
    }

    #[test]
    fn partitions_are_planned_ahead_and_for_strays_within_retention() {
        let now = ms("2025-03-10T12:00:00Z") as i64;
        let cutoff = crate::retention::cutoff_ms(now, 30);
        let existing = names(&[
            "chat_history_y2025m03",
            "chat_history_y2025m04",
            "chat_history_default",
        ]);
        assert_eq!(
            plan_partitions(&existing, &[], now, cutoff, 3),
            vec![month(2025, 5), month(2025, 6)]
        );
        // Strays: one month wholly expired (left to the cleanup), the cut-off's month,
        // and one beyond the horizon (left until it comes within it).
        let strays = [month(2025, 1), month(2025, 2), month(2025, 9)];
        assert_eq!(
            plan_partitions(&existing, &strays, now, cutoff, 3),
            vec![month(2025, 2), month(2025, 5), month(2025, 6)]
        );
        // Nothing to do when everything exists.
        let all = names(&[
            "chat_history_y2025m03",
            "chat_history_y2025m04",
            "chat_history_y2025m05",
            "chat_history_y2025m06",
        ]);
        assert!(plan_partitions(&all, &[], now, cutoff, 3).is_empty());
        // Across a year end.
        let december = ms("2025-12-31T23:00:00Z") as i64;
        assert_eq!(
            plan_partitions(&[], &[], december, december, 1),
            vec![month(2025, 12), month(2026, 1)]
        );
    }
}
