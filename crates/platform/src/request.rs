//! Reading a request within a size limit.
//!
//! The SDK's own conversion reads the whole body before a handler sees it: a 20 MB body is
//! held in full (or exhausts the instance's memory), and a truncated one becomes a 500
//! whose body is the host's error text. Components take the raw request instead and read
//! it here: a declared `Content-Length` over the limit is refused before reading, a body
//! is read chunk by chunk and refused at the first byte past the limit, and a body that
//! breaks off is a 400. Never more than `limit` bytes are held, and no host text reaches
//! the client.

use evolve_core::problem::Problem;
use futures::StreamExt;
use spin_sdk::http::{IncomingRequest, Request};

/// The path of a request, without its query.
pub fn path(incoming: &IncomingRequest) -> String {
    let full = incoming.path_with_query().unwrap_or_default();
    match full.split_once('?') {
        Some((path, _)) => path.to_owned(),
        None => full,
    }
}

/// The request with its body, or the problem to answer with.
pub async fn read(incoming: IncomingRequest, limit: usize) -> Result<Request, Problem> {
    let declared = incoming
        .headers()
        .get("content-length")
        .into_iter()
        .next()
        .map(|value| {
            std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| Problem::bad_request("Content-Length is not a number"))
        })
        .transpose()?;
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Problem::payload_too_large(limit));
    }
    let mut request = Request::builder();
    request
        .method(incoming.method())
        .uri(incoming.uri())
        .headers(incoming.headers());
    let mut body = Vec::new();
    let mut chunks = incoming.into_body_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|_| Problem::bad_request("the request body could not be read to its end"))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(request.body(body).build())
}
