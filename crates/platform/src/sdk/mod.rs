//! The one seam between this crate and the Spin SDK of the build.
//!
//! The application builds twice from one code base: with spin-sdk 6 for Spin 4 (WASIp3:
//! async host calls that can be abandoned, instances reused across requests; feature
//! `p3`) and with spin-sdk 5.2 for Spin 3.4+ and WASIp2-only platforms (feature `p2`).
//! Both backends offer the same small surface, async in both: Redis, PostgreSQL,
//! key-value, variables, timers, the HTTP export and the outbound LLM call. On `p2` the
//! host calls block and complete before their future is first polled, so a deadline
//! cannot cut them short; that is a limit of WASIp2, stated where deadlines are applied.

#[cfg(all(feature = "p2", feature = "p3"))]
compile_error!("choose one Spin SDK: feature `p2` (spin-sdk 5.2) or `p3` (spin-sdk 6)");
#[cfg(not(any(feature = "p2", feature = "p3")))]
compile_error!("choose a Spin SDK: feature `p2` (spin-sdk 5.2) or `p3` (spin-sdk 6)");

#[cfg(feature = "p2")]
mod p2;
#[cfg(feature = "p2")]
pub use p2::*;

#[cfg(all(feature = "p3", not(feature = "p2")))]
mod p3;
#[cfg(all(feature = "p3", not(feature = "p2")))]
pub use p3::*;
