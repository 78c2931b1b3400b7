//! Logic shared by every Evolve component that needs neither Spin nor I/O, so that it can
//! be unit-tested natively and read without knowing the WebAssembly boundary.
//!
//! Components parse a request, call into this crate (and `evolve-platform` for I/O), and
//! render the answer; every rule worth testing lives here.

pub mod admin;
pub mod auth;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod ids;
pub mod input;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod problem;
pub mod profile;
pub mod queue;
pub mod readiness;
pub mod replica;
pub mod retention;
pub mod schema;
pub mod sql;
pub mod variables;
