//! Talking to Gemini, minus the talking: the `generateContent` wire format, the prompt a
//! chat turn sends, how an answer (or its absence) is classified, and when to try again.
//!
//! The HTTP call itself lives in `evolve-platform`; everything here is pure so that the
//! decisions a chat turn depends on (what counts as a breaker failure, how long to wait
//! before a retry, what the model is told) are unit-tested without WebAssembly or network.

pub mod analysis;
mod config;
mod prompt;
mod retry;
pub mod speech;
mod wire;

pub use config::{probe_lease, ApiKey, Endpoint, LlmConfig, Scheme, PROBE_LEASE_MARGIN};
pub use prompt::{
    build_request, Role, Turn, DEFAULT_PERSONA, FALLBACK_REPLY, MAX_CONTEXT_CHARS,
    MAX_OUTPUT_TOKENS, TEMPERATURE,
};
pub use retry::{breaker_outcome, parse_retry_after, CallError, Reply, RetryPolicy};
pub use wire::{
    parse_candidate, parse_reply, Candidate, Content, ContentRole, ErrorBody, ErrorResponse,
    GenerateRequest, GenerateResponse, GenerationConfig, InlineData, Part, PromptFeedback,
    UsageMetadata,
};

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
