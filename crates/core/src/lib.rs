//! Logic shared by every Evolve component that needs neither Spin nor I/O, so that it can
//! be unit-tested natively and read without knowing the WebAssembly boundary.
//!
//! Components parse a request, call into this crate (and `evolve-platform` for I/O), and
//! render the answer; every rule worth testing lives here.

pub mod breaker;
pub mod config;
pub mod problem;
pub mod readiness;
pub mod schema;
