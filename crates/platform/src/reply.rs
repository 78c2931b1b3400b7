//! Rendering answers, the same for every HTTP component: JSON bodies, other text, and
//! problem documents with the headers they carry (`Retry-After`, `WWW-Authenticate`).
//! Nothing a component answers is cacheable by intermediaries.

use evolve_core::problem::{self, Problem};
use spin_sdk::http::Response;

pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
    text(
        status,
        "application/json",
        serde_json::to_vec(body).expect("answers serialize"),
    )
}

pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(body.into())
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
