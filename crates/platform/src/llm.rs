//! The outbound Gemini call: `POST {base}/v1beta/models/{model}:generateContent` over
//! WASI HTTP, each attempt under a deadline, retried as `evolve_core::llm::RetryPolicy`
//! says, all within the total budget.
//!
//! The request goes through `wasi:http/outgoing-handler` directly rather than the Spin
//! SDK's `send`, because only the direct call takes request options (connect, first-byte
//! and between-bytes timeouts), which let the host give up on a dead connection instead of
//! holding it. The attempt's deadline is also enforced here, by polling the response
//! and body against a timer, so a host that ignores the options cannot stall a turn.
//! The API key travels in the `x-goog-api-key` header and is scrubbed from every error.

use crate::time;
use evolve_core::breaker::Outcome;
use evolve_core::llm::{self, CallError, GenerateRequest, LlmConfig, Reply, Scheme};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasi::clocks::monotonic_clock;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme as WasiScheme,
};
use wasi::io::poll::{self, Pollable};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Largest answer body read; a chat reply is a few KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const READ_CHUNK: u64 = 64 * 1024;

/// A finished call, with what the circuit breaker needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCall {
    pub result: Result<Reply, CallError>,
    /// Attempts made (0 only if the budget allowed none).
    pub attempts: u32,
    /// From the first attempt's start to the end, waits between attempts included.
    pub elapsed: Duration,
    /// Slower than `breaker_slow_call_ms`: counts as a breaker failure even if it
    /// produced a reply.
    pub slow: bool,
}

impl LlmCall {
    /// How this call counts for the circuit breaker.
    pub fn breaker_outcome(&self) -> Outcome {
        llm::breaker_outcome(&self.result, self.slow)
    }
}

/// Calls Gemini, retrying retryable failures with jittered backoff (at least the server's
/// `Retry-After`) while attempts and budget last.
pub fn call_gemini(config: &LlmConfig, request: &GenerateRequest) -> LlmCall {
    let started = Instant::now();
    let mut attempts = 0;
    let result = match serde_json::to_vec(request) {
        Err(error) => Err(CallError::Refused(format!(
            "request could not be encoded: {error}"
        ))),
        Ok(body) => loop {
            // The first attempt always runs; later ones only if the budget has room.
            let timeout = if attempts == 0 {
                Some(config.attempt_timeout.min(config.retry.total_budget))
            } else {
                config
                    .retry
                    .attempt_timeout(config.attempt_timeout, started.elapsed())
            };
            let Some(timeout) = timeout else {
                break Err(CallError::Timeout);
            };
            attempts += 1;
            let error = match attempt(config, &body, timeout) {
                Ok(reply) => break Ok(reply),
                Err(error) if !error.is_retryable() => break Err(error),
                Err(error) => error,
            };
            let delay = config.retry.next_delay(
                attempts,
                error.retry_after(),
                started.elapsed(),
                time::random_fraction(),
            );
            match delay {
                Some(delay) => time::sleep(delay),
                None => break Err(error),
            }
        },
    };
    let elapsed = started.elapsed();
    LlmCall {
        result: result.map_err(|error| scrub(error, config)),
        attempts,
        elapsed,
        slow: elapsed > config.slow_call,
    }
}

/// One request and its answer, all before `timeout` runs out.
fn attempt(config: &LlmConfig, body: &[u8], timeout: Duration) -> Result<Reply, CallError> {
    let deadline = monotonic_clock::now().saturating_add(nanos(timeout));
    let endpoint = &config.endpoint;

    let headers = Fields::from_list(&[
        ("content-type".to_owned(), b"application/json".to_vec()),
        ("accept".to_owned(), b"application/json".to_vec()),
        // A known length spares the body chunked encoding, which some proxies mishandle.
        (
            "content-length".to_owned(),
            body.len().to_string().into_bytes(),
        ),
        (
            "x-goog-api-key".to_owned(),
            config.api_key.expose().as_bytes().to_vec(),
        ),
    ])
    // The error would name the offending header value: say only which part is wrong.
    .map_err(|_| CallError::Refused("the API key is not a valid header value".to_owned()))?;
    let request = OutgoingRequest::new(headers);
    let scheme = match endpoint.scheme {
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
        .set_authority(Some(&endpoint.authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(&endpoint.path))
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
        let written = write_all(&stream, body, deadline);
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
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| llm::parse_retry_after(value, unix_seconds()));

    let incoming = response
        .consume()
        .map_err(|()| CallError::Transport("response body unavailable".to_owned()))?;
    let stream = incoming
        .stream()
        .map_err(|()| CallError::Transport("response body unavailable".to_owned()))?;
    let bytes = read_all(&stream, deadline);
    drop(stream);
    drop(incoming);
    drop(response);
    llm::parse_reply(status, &bytes?).map_err(|error| error.with_retry_after(retry_after))
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

fn read_all(stream: &InputStream, deadline: u64) -> Result<Vec<u8>, CallError> {
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
                if bytes.len() > MAX_RESPONSE_BYTES {
                    return Err(CallError::BadResponse(format!(
                        "body larger than {MAX_RESPONSE_BYTES} bytes"
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

/// What a WASI HTTP error code means for retrying and for the breaker.
fn classify(code: ErrorCode) -> CallError {
    match code {
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => CallError::Timeout,
        ErrorCode::HttpRequestDenied => CallError::Refused(
            "HTTP request denied (host not in allowed_outbound_hosts?)".to_owned(),
        ),
        code @ (ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::ConfigurationError) => CallError::Refused(describe(&code)),
        other => CallError::Transport(describe(&other)),
    }
}

/// `ErrorCode::ConnectionRefused` → `ConnectionRefused`.
fn describe(code: &ErrorCode) -> String {
    let text = format!("{code:?}");
    text.strip_prefix("ErrorCode::")
        .map_or(text.clone(), str::to_owned)
}

/// The key must not leak through any message, whatever produced it.
fn scrub(error: CallError, config: &LlmConfig) -> CallError {
    let key = &config.api_key;
    match error {
        CallError::Status {
            code,
            retry_after,
            message,
        } => CallError::Status {
            code,
            retry_after,
            message: key.scrub(&message),
        },
        CallError::Transport(message) => CallError::Transport(key.scrub(&message)),
        CallError::Refused(message) => CallError::Refused(key.scrub(&message)),
        CallError::BadResponse(message) => CallError::BadResponse(key.scrub(&message)),
        CallError::Blocked { reason } => CallError::Blocked {
            reason: key.scrub(&reason),
        },
        CallError::Timeout => CallError::Timeout,
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
