//! Reading a request within a size limit.
//!
//! The SDKs' own conversions read the whole body before a handler sees it: a 20 MB body
//! is held in full (or exhausts the instance's memory), and a truncated one becomes a
//! 500 whose body is the host's error text. Components take the raw request instead and
//! read it here: a declared `Content-Length` over the limit is refused before reading, a
//! body is read chunk by chunk and refused at the first byte past the limit, and a body
//! that breaks off is a 400. Never more than `limit` bytes are held, and no host text
//! reaches the client.

use crate::http::{Method, Request};
use crate::sdk::http::Incoming;
use evolve_core::problem::Problem;
use futures::StreamExt;

/// The request with its body, or the problem to answer with. A GET or HEAD request's body
/// is not read: no route gives it a meaning, and not touching it spares a host call.
pub async fn read(incoming: Incoming, limit: usize) -> Result<Request, Problem> {
    if matches!(incoming.head().method, Method::Get | Method::Head) {
        let (head, _) = incoming.into_parts();
        return Ok(Request::new(head, Vec::new()));
    }
    let declared = incoming
        .head()
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| {
            std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| Problem::bad_request("Content-Length is not a number"))
        })
        .transpose()?;
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Problem::payload_too_large(limit));
    }
    let (head, chunks) = incoming.into_parts();
    let mut chunks = std::pin::pin!(chunks);
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|()| Problem::bad_request("the request body could not be read to its end"))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Request::new(head, body))
}
