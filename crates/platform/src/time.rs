//! Wall time, pauses and randomness for guest code, from WASI: a component has no
//! threads and no async runtime, so waiting means blocking on a WASI pollable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Blocks the instance for `duration`.
pub fn sleep(duration: Duration) {
    let nanos = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
    wasi::clocks::monotonic_clock::subscribe_duration(nanos).block();
}

/// A uniform random number in [0, 1).
pub fn random_fraction() -> f64 {
    (wasi::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random 64-bit number (tokens that must differ between requests).
pub fn random_u64() -> u64 {
    wasi::random::random::get_random_u64()
}
