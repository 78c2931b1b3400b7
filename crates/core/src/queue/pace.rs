//! The pace of a broadcast: its page tasks run one after another, and each waits out what
//! is left of its share of time before chaining the next, so a broadcast delivers at a
//! set rate and leaves the stores' capacity to chat turns however many users it reaches.

use std::time::Duration;

/// How long a page that delivered to `delivered` recipients in `elapsed` waits before
/// chaining the next page, at `rate` recipients per second (0: no wait). The wait leaves
/// at least half of the task's `deadline` unspent.
pub fn page_pause(delivered: u64, rate: u32, elapsed: Duration, deadline: Duration) -> Duration {
    if rate == 0 || delivered == 0 {
        return Duration::ZERO;
    }
    let share = Duration::from_micros(delivered.saturating_mul(1_000_000) / u64::from(rate));
    share
        .saturating_sub(elapsed)
        .min((deadline / 2).saturating_sub(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[test]
    fn a_page_waits_out_the_rest_of_its_share() {
        // 1,000 recipients at 5,000/s: 200 ms a page, 40 of them spent delivering.
        let pause = page_pause(1_000, 5_000, Duration::from_millis(40), DEADLINE);
        assert_eq!(pause, Duration::from_millis(160));
    }

    #[test]
    fn a_slow_page_an_empty_page_or_no_rate_does_not_wait() {
        let slow = Duration::from_millis(300);
        assert_eq!(page_pause(1_000, 5_000, slow, DEADLINE), Duration::ZERO);
        assert_eq!(
            page_pause(0, 5_000, Duration::ZERO, DEADLINE),
            Duration::ZERO
        );
        assert_eq!(
            page_pause(1_000, 0, Duration::ZERO, DEADLINE),
            Duration::ZERO
        );
    }

    #[test]
    fn the_wait_leaves_half_the_deadline() {
        // 1,000 recipients at 1/s would be 1,000 s: capped at half the task's deadline.
        let pause = page_pause(1_000, 1, Duration::from_secs(1), DEADLINE);
        assert_eq!(pause, Duration::from_secs(9));
        assert_eq!(
            page_pause(1_000, 1, Duration::from_secs(15), DEADLINE),
            Duration::ZERO
        );
    }
}
