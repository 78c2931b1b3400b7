//! The `chat` component: the user-facing API.
//!
//! - `GET /api/profile`, `PUT /api/profile`: the caller's profile, read through the
//!   shared cache, written to PostgreSQL with the cache entry invalidated before answering;
//! - `POST /api/chat`: one chat turn through the shared LLM circuit breaker;
//! - `GET /api/chat/history`: the caller's messages, newest first, keyset-paginated.
//!
//! Every route takes a user bearer token. This file routes and authenticates; each
//! route's steps are in its own module, the rules in `evolve_core`, the I/O in
//! `evolve_platform`.

mod context;
mod history;
mod profile;
mod reply;
mod turn;

use evolve_core::problem::Problem;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use context::Context;
use reply::problem;

#[http_component]
fn handle(request: Request) -> Response {
    let path = request.path().to_owned();
    let allowed: &[&str] = match path.as_str() {
        "/api/profile" => &["GET", "PUT"],
        "/api/chat" => &["POST"],
        "/api/chat/history" => &["GET"],
        _ => return problem(&Problem::not_found(&path)),
    };
    let method = request.method().to_string();
    if !allowed.contains(&method.as_str()) {
        return reply::method_not_allowed(&method, &path, allowed);
    }
    let context = match Context::for_request(&request) {
        Ok(context) => context,
        Err(refusal) => return problem(&refusal),
    };
    match (request.method(), path.as_str()) {
        (Method::Get, "/api/profile") => profile::get(&context),
        (Method::Put, "/api/profile") => profile::put(&context, &request),
        (Method::Post, "/api/chat") => turn::post(&context, &request),
        (Method::Get, "/api/chat/history") => history::get(&context, &request),
        _ => unreachable!("methods were checked against the route"),
    }
}
