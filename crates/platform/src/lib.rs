//! The one crate that talks to Spin: variables, outbound Redis and outbound PostgreSQL.
//!
//! Components use these wrappers instead of `spin_sdk` directly so that every error says
//! which operation failed, carries no secret (connection URLs are scrubbed), and so that
//! a change of Spin API touches one crate.

pub mod breaker;
pub mod cache;
pub mod jobs;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod pg;
pub mod redis;
pub mod reply;
pub mod request;
pub mod script;
pub mod store;
pub mod time;
pub mod variables;
