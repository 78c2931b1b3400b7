//! The LLM's HTTP call on WASIp2, through `wasi:http/outgoing-handler` directly rather
//! than the SDK's `send`: only the direct call takes request options (connect, first-byte
//! and between-bytes timeouts), which let the host give up on a dead connection instead
//! of holding it. The deadline is also enforced here, by polling the response and body
//! against a timer, so a host that ignores the options cannot stall a turn.

use crate::outbound::{error_from_code_name, Answer, Post};
use evolve_core::llm::{CallError, Scheme};
use std::time::Duration;
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme as WasiScheme,
};
use wasi::io::poll::{self, Pollable};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

const READ_CHUNK: u64 = 64 * 1024;

/// Sends `post` and reads the answer, all before `timeout` runs out.
pub async fn post(post: &Post<'_>, timeout: Duration) -> Result<Answer, CallError> {
    let deadline = monotonic_clock::now().saturating_add(nanos(timeout));
    let entries: Vec<(String, Vec<u8>)> = post
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_vec()))
        .collect();
    // The error would name the offending header value: say only that one is wrong.
    let headers = Fields::from_list(&entries)
        .map_err(|_| CallError::Refused("a header is not a valid header value".to_owned()))?;
    let request = OutgoingRequest::new(headers);
    let scheme = match post.scheme {
        Scheme::Http => WasiScheme::Http,
        Scheme::Https => WasiScheme::Https,
    };
    let refused = |what: &str| CallError::Refused(format!("invalid {what}"));
    request
        .set_method(&Method::Post)
        .map_err(|()| refused("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(post.authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(post.path))
        .map_err(|()| refused("path"))?;
    let outgoing_body = request.body().map_err(|()| refused("body"))?;

    let options = RequestOptions::new();
    // A host that does not support an option refuses to set it; the deadline below
    // still holds.
    let _ = options.set_connect_timeout(Some(nanos(timeout)));
    let _ = options.set_first_byte_timeout(Some(nanos(timeout)));
    let _ = options.set_between_bytes_timeout(Some(nanos(timeout)));

    let future = outgoing_handler::handle(request, Some(options)).map_err(classify)?;
    // The body is written after `handle`, as the host only drains it once the request is
    // on its way. If writing fails the request failed, and the response says why.
    if let Ok(stream) = outgoing_body.write() {
        let written = write_all(&stream, post.body, deadline);
        drop(stream);
        match written {
            Ok(()) => {
                let _ = OutgoingBody::finish(outgoing_body, None);
            }
            Err(Waited::TimedOut) => return Err(CallError::Timeout),
            Err(Waited::Failed) => drop(outgoing_body),
        }
    }

    if !wait_until(&future.subscribe(), deadline) {
        return Err(CallError::Timeout);
    }
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(classify(code)),
        Some(Err(())) | None => {
            return Err(CallError::Transport("response unavailable".to_owned()));
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(&"retry-after".to_owned())
        .first()
        .and_then(|value| String::from_utf8(value.clone()).ok());

    let incoming = response
        .consume()
        .map_err(|()| CallError::Transport("response body unavailable".to_owned()))?;
    let stream = incoming
        .stream()
        .map_err(|()| CallError::Transport("response body unavailable".to_owned()))?;
    let body = read_all(&stream, deadline, post.max_answer_bytes);
    drop(stream);
    drop(incoming);
    drop(response);
    Ok(Answer {
        status,
        retry_after,
        body: body?,
    })
}

enum Waited {
    TimedOut,
    Failed,
}

fn write_all(stream: &OutputStream, mut bytes: &[u8], deadline: u64) -> Result<(), Waited> {
    let failed = |_: StreamError| Waited::Failed;
    while !bytes.is_empty() {
        let room = stream.check_write().map_err(failed)?;
        if room == 0 {
            if !wait_until(&stream.subscribe(), deadline) {
                return Err(Waited::TimedOut);
            }
            continue;
        }
        let n = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&bytes[..n]).map_err(failed)?;
        bytes = &bytes[n..];
    }
    stream.flush().map_err(failed)?;
    // The flush is done when the stream accepts writes again.
    if !wait_until(&stream.subscribe(), deadline) {
        return Err(Waited::TimedOut);
    }
    stream.check_write().map(drop).map_err(failed)
}

fn read_all(stream: &InputStream, deadline: u64, limit: usize) -> Result<Vec<u8>, CallError> {
    let mut bytes = Vec::new();
    loop {
        match stream.read(READ_CHUNK) {
            Ok(chunk) if chunk.is_empty() => {
                if !wait_until(&stream.subscribe(), deadline) {
                    return Err(CallError::Timeout);
                }
            }
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    return Err(CallError::BadResponse(format!(
                        "body larger than {limit} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(match wasi::http::types::http_error_code(&error) {
                    Some(code) => classify(code),
                    None => CallError::Transport(error.to_debug_string()),
                });
            }
        }
    }
}

/// Blocks until `pollable` is ready (true) or the monotonic clock reaches `deadline`
/// (false, unless both happened).
fn wait_until(pollable: &Pollable, deadline: u64) -> bool {
    let timer = monotonic_clock::subscribe_instant(deadline);
    poll::poll(&[pollable, &timer]).contains(&0)
}

fn classify(code: ErrorCode) -> CallError {
    error_from_code_name(&format!("{code:?}"))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
