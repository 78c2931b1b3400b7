//! Rendering answers: the shared renderers, and the admin's 503 for a failed dependency.

use evolve_core::problem::Problem;
use evolve_platform::http::Response;

pub use evolve_platform::reply::{json, method_not_allowed, problem, text};

/// 503 naming the dependency that failed; the error text is already scrubbed of secrets.
pub fn unavailable(what: &str, error: &impl std::fmt::Display) -> Response {
    problem(&Problem::service_unavailable(
        format!("{what} is unavailable: {error}"),
        Some(5),
    ))
}
