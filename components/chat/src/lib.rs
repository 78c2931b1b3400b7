//! The `chat` component: the user-facing API.
//!
//! - `GET /api/profile`, `PUT /api/profile`: the caller's profile, read through the
//!   shared cache, written to PostgreSQL with the cache entry invalidated before answering;
//! - `POST /api/chat`: one chat turn through the shared LLM circuit breaker;
//! - `GET /api/chat/history`: the caller's messages, newest first, keyset-paginated;
//! - `POST`, `GET /api/chat/messages/{id}/voice`: the voice of an assistant message,
//!   made by the work queue.
//!
//! Every route takes a user bearer token. This file routes and authenticates; each
//! route's steps are in its own module, the rules in `evolve_core`, the I/O in
//! `evolve_platform`.

mod context;
mod history;
mod profile;
mod turn;
mod voice;

use evolve_core::input::{voice_path, MAX_BODY_BYTES, VOICE_ROUTE};
use evolve_core::metrics::UNMATCHED_ROUTE;
use evolve_core::problem::Problem;
use evolve_platform::http::{Method, Request, Response};
use evolve_platform::metrics::Recorder;
use evolve_platform::request;
use evolve_platform::sdk::http::{Incoming, Responder};

use context::Context;
use evolve_platform::reply::{self, problem};

/// The routes, by the names metrics use.
const ROUTES: [&str; 4] = [
    "/api/profile",
    "/api/chat",
    "/api/chat/history",
    VOICE_ROUTE,
];

evolve_platform::http_component!(handle);

async fn handle(incoming: Incoming, out: Responder) {
    let metrics = Recorder::start("chat", &incoming.head().method);
    let path = incoming.head().path.clone();
    let route = match voice_path(&path) {
        Some(_) => VOICE_ROUTE,
        None => ROUTES
            .into_iter()
            .find(|known| *known == path)
            .unwrap_or(UNMATCHED_ROUTE),
    };
    let mut context = None;
    let response = match request::read(incoming, MAX_BODY_BYTES).await {
        Ok(request) => serve(&request, &path, &metrics, &mut context).await,
        Err(refusal) => problem(&refusal),
    };
    // Recorded after the response has gone, on the request's Redis connection if it has one.
    let session = context.as_ref().map(|c: &Context| &c.redis);
    metrics.respond(out, response, route, session).await;
}

async fn serve(
    request: &Request,
    path: &str,
    metrics: &Recorder,
    slot: &mut Option<Context>,
) -> Response {
    let voice = voice_path(path);
    let allowed: &[&str] = match (path, &voice) {
        (_, Some(_)) => &["GET", "POST"],
        ("/api/profile", _) => &["GET", "PUT"],
        ("/api/chat", _) => &["POST"],
        ("/api/chat/history", _) => &["GET"],
        _ => return problem(&Problem::not_found(path)),
    };
    let method = request.method().as_str();
    if !allowed.contains(&method) {
        return reply::method_not_allowed(method, path, allowed);
    }
    let context = match Context::for_request(request).await {
        Ok(context) => slot.insert(context),
        Err(refusal) => return problem(&refusal),
    };
    if let Some(id) = voice {
        return match (id, request.method()) {
            (Err(error), _) => problem(&error.into()),
            (Ok(id), Method::Post) => voice::post(context, id).await,
            (Ok(id), _) => voice::get(context, request, id).await,
        };
    }
    match (request.method(), path) {
        (Method::Get, "/api/profile") => profile::get(context).await,
        (Method::Put, "/api/profile") => profile::put(context, request).await,
        (Method::Post, "/api/chat") => turn::post(context, request, metrics).await,
        (Method::Get, "/api/chat/history") => history::get(context, request).await,
        _ => unreachable!("methods were checked against the route"),
    }
}
