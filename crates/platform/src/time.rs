//! Wall time, pauses, deadlines and randomness for guest code.

use crate::sdk;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits for `duration` (on WASIp2 this blocks the instance, which serves one request).
pub async fn sleep(duration: Duration) {
    sdk::sleep(duration).await
}

/// `call`'s output, or `None` when `deadline` passes first. On WASIp2 a host call cannot
/// be abandoned, so there this always waits for the call.
pub async fn within<T>(deadline: Duration, call: impl Future<Output = T>) -> Option<T> {
    sdk::within(deadline, call).await
}

/// A uniform random number in [0, 1).
pub fn random_fraction() -> f64 {
    (sdk::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random 64-bit number (tokens that must differ between requests).
pub fn random_u64() -> u64 {
    sdk::random_u64()
}
