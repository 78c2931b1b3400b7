//! How long and how widely a WASIp3 HTTP instance is reused, with Spin 4.0.2's
//! defaults and flag syntax (`--max-instance-reuse-count`,
//! `--max-instance-concurrent-reuse-count`, `--request-timeout`,
//! `--idle-instance-timeout`): each value is a number (or duration) or a range `A..B`,
//! from which every new instance draws its own value. WASIp2 components are never
//! reused, whatever these say.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_MAX_INSTANCE_REUSE_COUNT: usize = 128;
pub const DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT: usize = 16;
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);

/// One value, or bounds `[a, b)` to draw one from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range<T> {
    Value(T),
    Bounds(T, T),
}

impl Range<usize> {
    pub fn sample(&self) -> usize {
        match *self {
            Range::Value(v) => v,
            Range::Bounds(a, b) if a < b => fastrand::usize(a..b),
            Range::Bounds(a, _) => a,
        }
    }
}

impl Range<Duration> {
    pub fn sample(&self) -> Duration {
        match *self {
            Range::Value(v) => v,
            Range::Bounds(a, b) if a < b => {
                let nanos = fastrand::u128(a.as_nanos()..b.as_nanos());
                Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
            }
            Range::Bounds(a, _) => a,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceReuse {
    pub max_instance_reuse_count: Range<usize>,
    pub max_instance_concurrent_reuse_count: Range<usize>,
    pub request_timeout: Option<Range<Duration>>,
    pub idle_instance_timeout: Range<Duration>,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self {
            max_instance_reuse_count: Range::Value(DEFAULT_MAX_INSTANCE_REUSE_COUNT),
            max_instance_concurrent_reuse_count: Range::Value(
                DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT,
            ),
            request_timeout: None,
            idle_instance_timeout: Range::Value(DEFAULT_IDLE_INSTANCE_TIMEOUT),
        }
    }
}

fn parse_range<T: FromStr>(s: &str) -> Result<Range<T>, String>
where
    T::Err: Display,
{
    let error = |e| format!("expected integer or range; got {s:?}; {e}");
    match s.split_once("..") {
        Some((start, end)) => Ok(Range::Bounds(
            start.parse().map_err(error)?,
            end.parse().map_err(error)?,
        )),
        None => Ok(Range::Value(s.parse().map_err(error)?)),
    }
}

/// `N` or `A..B`.
pub fn parse_usize_range(s: &str) -> Result<Range<usize>, String> {
    parse_range(s)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let error =
        |e| format!("expected integer suffixed by `s`, `ms`, `us`, `μs`, or `ns`; got {s:?}; {e}");
    if let Ok(secs) = s.parse() {
        return Ok(Duration::from_secs(secs));
    }
    // `ms`, `us` and `ns` before `s`, which ends them all.
    if let Some(n) = s.strip_suffix("ms") {
        Ok(Duration::from_millis(n.parse().map_err(error)?))
    } else if let Some(n) = s.strip_suffix("us").or(s.strip_suffix("μs")) {
        Ok(Duration::from_micros(n.parse().map_err(error)?))
    } else if let Some(n) = s.strip_suffix("ns") {
        Ok(Duration::from_nanos(n.parse().map_err(error)?))
    } else if let Some(n) = s.strip_suffix('s') {
        Ok(Duration::from_secs(n.parse().map_err(error)?))
    } else {
        Err(format!(
            "expected a duration such as 1s or 500ms; got {s:?}"
        ))
    }
}

/// A duration (`1`, `1s`, `500ms`, `10us`, `5ns`) or a range of them (`1..8s`); as in
/// Spin, each bound is read on its own, so a bare number is seconds.
pub fn parse_duration_range(s: &str) -> Result<Range<Duration>, String> {
    match s.split_once("..") {
        Some((start, end)) => Ok(Range::Bounds(parse_duration(start)?, parse_duration(end)?)),
        None => Ok(Range::Value(parse_duration(s)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ranges_parse_as_spins_flags_do() {
        assert_eq!(parse_usize_range("128"), Ok(Range::Value(128)));
        assert_eq!(parse_usize_range("1..8"), Ok(Range::Bounds(1, 8)));
        assert!(parse_usize_range("x").is_err());
        let r = Range::Bounds(3, 5);
        for _ in 0..50 {
            assert!((3..5).contains(&r.sample()));
        }
    }

    #[test]
    fn durations_parse_with_spins_suffixes() {
        assert_eq!(
            parse_duration_range("1"),
            Ok(Range::Value(Duration::from_secs(1)))
        );
        assert_eq!(
            parse_duration_range("250ms"),
            Ok(Range::Value(Duration::from_millis(250)))
        );
        assert_eq!(
            parse_duration_range("2s"),
            Ok(Range::Value(Duration::from_secs(2)))
        );
        assert_eq!(
            parse_duration_range("1..8s"),
            Ok(Range::Bounds(
                Duration::from_secs(1),
                Duration::from_secs(8)
            ))
        );
        assert!(parse_duration_range("soon").is_err());
    }

    #[test]
    fn defaults_are_spins() {
        let d = InstanceReuse::default();
        assert_eq!(d.max_instance_reuse_count.sample(), 128);
        assert_eq!(d.max_instance_concurrent_reuse_count.sample(), 16);
        assert_eq!(d.idle_instance_timeout.sample(), Duration::from_secs(1));
        assert_eq!(d.request_timeout, None);
    }
}
