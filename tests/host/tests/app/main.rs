//! The application's integration tests: the compiled components of `spin.toml` (or of
//! `spin.p2.toml`, by `EVOLVE_TEST_MANIFEST`) on the local host, against the real Redis and
//! PostgreSQL that `scripts/test` starts. One test binary, so that the suite links once;
//! each module is one area, and tests isolate themselves (own users, own Redis database).

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod chat;
mod cluster;
mod faults;
mod hang_pg;
mod hang_redis;
mod jobs;
mod metrics;
mod outages;
mod pg_tls;
mod pool;
mod queue;
mod ready;
mod replica;
mod work_kinds;
