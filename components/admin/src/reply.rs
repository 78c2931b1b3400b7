//! Rendering answers: JSON bodies, Prometheus text and problem documents with their headers.

use evolve_core::problem::{self, Problem};
use spin_sdk::http::Response;

pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(serde_json::to_vec(body).expect("answers serialize"))
        .build()
}

pub fn text(status: u16, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(body)
        .build()
}

pub fn problem(problem: &Problem) -> Response {
    let mut builder = Response::builder();
    builder
        .status(problem.status)
        .header("content-type", problem::CONTENT_TYPE)
        .header("cache-control", "no-store");
    for (name, value) in problem.headers() {
        builder.header(name, value);
    }
    builder.body(problem.to_json()).build()
}

pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Response {
    let mut response = self::problem(&Problem::method_not_allowed(method, path, allowed));
    response.set_header("allow", problem::allow_header(allowed));
    response
}

/// 503 naming the dependency that failed; the error text is already scrubbed of secrets.
pub fn unavailable(what: &str, error: &impl std::fmt::Display) -> Response {
    problem(&Problem::service_unavailable(
        format!("{what} is unavailable: {error}"),
        Some(5),
    ))
}
