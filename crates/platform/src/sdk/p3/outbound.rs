//! The LLM's HTTP call on WASIp3: the SDK's `send`, with sending and reading the answer
//! raced against the deadline. Losing the race drops the call, which cancels it in the
//! host, so a peer that stops answering costs the attempt its deadline and no more.

use crate::outbound::{error_from_code_name, Answer, Post};
use bytes::Bytes;
use evolve_core::llm::{CallError, Scheme};
use futures::StreamExt;
use http_body_util::Full;
use spin_sdk6::http::body::IncomingBodyExt;
use std::time::Duration;

/// Sends `post` and reads the answer, all before `timeout` runs out.
pub async fn post(post: &Post<'_>, timeout: Duration) -> Result<Answer, CallError> {
    let scheme = match post.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("{scheme}://{}{}", post.authority, post.path));
    for (name, value) in post.headers {
        request = request.header(*name, *value);
    }
    // The error would name the offending header value: say only that one is wrong.
    let request = request
        .body(Full::new(Bytes::copy_from_slice(post.body)))
        .map_err(|_| CallError::Refused("a header or the URL is not valid".to_owned()))?;
    let limit = post.max_answer_bytes;
    let exchange = async move {
        let response = spin_sdk6::http::send(request)
            .await
            .map_err(|code| error_from_code_name(&format!("{code:?}")))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut chunks = response.into_body().stream();
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|code| error_from_code_name(&format!("{code:?}")))?;
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(CallError::BadResponse(format!(
                    "body larger than {limit} bytes"
                )));
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    };
    super::within(timeout, exchange)
        .await
        .unwrap_or(Err(CallError::Timeout))
}
