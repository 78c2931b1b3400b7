//! The outbound Gemini call: `POST {base}/v1beta/models/{model}:generateContent`, each
//! attempt under a deadline (enforced by the build's `sdk::outbound`), retried as
//! `evolve_core::llm::RetryPolicy` says, all within the total budget.
//! The API key travels in the `x-goog-api-key` header and is scrubbed from every error.

use crate::outbound::Post;
use crate::{sdk, time};
use evolve_core::breaker::Outcome;
use evolve_core::llm::speech::{self, Pcm};
use evolve_core::llm::{self, CallError, GenerateRequest, LlmConfig, Reply};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest answer body read; a chat reply is a few KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Largest speech answer read: base64 of [`evolve_core::llm::speech::MAX_PCM_BYTES`].
const MAX_SPEECH_RESPONSE_BYTES: usize =
    evolve_core::llm::speech::MAX_PCM_BYTES / 3 * 4 + 64 * 1024;

/// A finished call, with what the circuit breaker needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCall<T = Reply> {
    pub result: Result<T, CallError>,
    /// Attempts made (0 only if the budget allowed none).
    pub attempts: u32,
    /// From the first attempt's start to the end, waits between attempts included.
    pub elapsed: Duration,
    /// Slower than `breaker_slow_call_ms`: counts as a breaker failure even if it
    /// produced a reply.
    pub slow: bool,
}

impl<T> LlmCall<T> {
    /// How this call counts for the circuit breaker.
    pub fn breaker_outcome(&self) -> Outcome {
        llm::breaker_outcome(&self.result, self.slow)
    }
}

/// How an answer's status and body are read.
struct Answer<T> {
    parse: fn(u16, &[u8]) -> Result<T, CallError>,
    max_bytes: usize,
}

/// Calls Gemini for a text reply, retrying retryable failures with jittered backoff (at
/// least the server's `Retry-After`) while attempts and budget last.
pub async fn call_gemini(config: &LlmConfig, request: &GenerateRequest) -> LlmCall {
    let answer = Answer {
        parse: llm::parse_reply,
        max_bytes: MAX_RESPONSE_BYTES,
    };
    call(config, request, &answer).await
}

/// Calls a Gemini speech model (`config.endpoint`) for audio, as [`call_gemini`] does.
pub async fn call_speech(config: &LlmConfig, request: &GenerateRequest) -> LlmCall<Pcm> {
    let answer = Answer {
        parse: speech::parse_speech,
        max_bytes: MAX_SPEECH_RESPONSE_BYTES,
    };
    call(config, request, &answer).await
}

async fn call<T>(config: &LlmConfig, request: &GenerateRequest, answer: &Answer<T>) -> LlmCall<T> {
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
            let error = match attempt(config, &body, timeout, answer).await {
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
                Some(delay) => time::sleep(delay).await,
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
async fn attempt<T>(
    config: &LlmConfig,
    body: &[u8],
    timeout: Duration,
    answer: &Answer<T>,
) -> Result<T, CallError> {
    let endpoint = &config.endpoint;
    let length = body.len().to_string();
    let headers: [(&str, &[u8]); 4] = [
        ("content-type", b"application/json"),
        ("accept", b"application/json"),
        // A known length spares the body chunked encoding, which some proxies mishandle.
        ("content-length", length.as_bytes()),
        ("x-goog-api-key", config.api_key.expose().as_bytes()),
    ];
    let post = Post {
        scheme: endpoint.scheme,
        authority: &endpoint.authority,
        path: &endpoint.path,
        headers: &headers,
        body,
        max_answer_bytes: answer.max_bytes,
    };
    let parse = answer;
    let reply = sdk::outbound::post(&post, timeout).await?;
    let retry_after = reply
        .retry_after
        .as_deref()
        .and_then(|value| llm::parse_retry_after(value, unix_seconds()));
    (parse.parse)(reply.status, &reply.body).map_err(|error| error.with_retry_after(retry_after))
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

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
