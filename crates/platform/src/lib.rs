//! The one crate that talks to Spin: HTTP, variables, Redis, PostgreSQL, key-value.
//!
//! Components use these wrappers instead of a Spin SDK directly so that every error says
//! which operation failed, carries no secret (connection URLs are scrubbed), every store
//! call is bounded by a deadline where the platform allows it, and so that the two
//! builds (spin-sdk 5.2 and 6, see [`sdk`]) share every line above this crate.

pub mod breaker;
pub mod cache;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod outbound;
pub mod pg;
pub mod queue;
pub mod redis;
pub mod replica;
pub mod reply;
pub mod request;
pub mod script;
pub mod sdk;
pub mod store;
pub mod time;
pub mod variables;
