//! The platform's integration tests: the local host itself (manifests, triggers, WASIp3
//! instance reuse, Spin compatibility of the built components) and the Redis and
//! PostgreSQL algorithms run natively against the real servers. One test binary, so that
//! the suite links once.

#[path = "../common/mod.rs"]
mod common;

mod breaker_scripts;
mod compat;
mod host;
mod lease_scripts;
mod limits_scripts;
mod p3;
mod pg_rows;
mod queue_scripts;
