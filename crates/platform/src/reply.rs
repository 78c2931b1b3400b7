//! Rendering answers, the same for every HTTP component: JSON bodies, other text, and
//! problem documents with the headers they carry (`Retry-After`, `WWW-Authenticate`).
//! Nothing a component answers is cacheable by intermediaries.

use crate::http::Response;
use evolve_core::problem::{self, Problem};

pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
    text(
        status,
        "application/json",
        serde_json::to_vec(body).expect("answers serialize"),
    )
}

pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    Response::new(status, body)
        .with_header("content-type", content_type)
        .with_header("cache-control", "no-store")
}

pub fn problem(problem: &Problem) -> Response {
    let mut response = Response::new(problem.status, problem.to_json())
        .with_header("content-type", problem::CONTENT_TYPE)
        .with_header("cache-control", "no-store");
    for (name, value) in problem.headers() {
        response.set_header(name, value);
    }
    response
}

pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Response {
    problem(&Problem::method_not_allowed(method, path, allowed))
        .with_header("allow", problem::allow_header(allowed))
}
