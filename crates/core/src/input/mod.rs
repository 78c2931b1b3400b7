//! What clients send, checked before anything is read from or written to a store: chat
//! messages, profile updates, history queries and idempotency keys.
//!
//! Every check returns an [`InputError`] that becomes a 4xx problem document with a
//! detail precise enough to fix the request; nothing here panics on any input. The rules
//! are strict on purpose: unknown fields, duplicate fields and control characters are
//! refused rather than silently dropped, so a client bug shows up as a 400 at once
//! instead of as data that quietly differs from what was sent. The one normalisation is
//! line endings (`\r\n` and `\r` become `\n`) in multi-line text, and trimming of
//! surrounding whitespace.
//!
//! Control characters are refused for a second reason: PostgreSQL stores neither
//! `\u0000` in `text` nor in `jsonb`, so letting one through would turn bad input into a
//! server error.

use crate::ids::InvalidIdempotencyKey;
use crate::problem::Problem;

mod broadcast;
mod chat;
mod history;
mod json;
mod profile;
#[cfg(test)]
mod tests;
mod voice;

pub use broadcast::{BroadcastRequest, Segment, MAX_BROADCAST_CHARS};
pub use chat::ChatRequest;
pub use history::{Cursor, HistoryQuery, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use json::*;
pub use profile::{ProfileField, ProfilePatch};
pub use voice::{voice_path, MessageId, VOICE_ROUTE};

/// The largest request body accepted, in bytes. A message at the default limit of 4,000
/// characters fits even if every character takes four bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Why a request's input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// 413: the body is over [`MAX_BODY_BYTES`].
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 400: the body is not UTF-8, so it cannot be JSON.
    #[error("request body is not valid UTF-8")]
    BadUtf8,
    /// 400: the body is not JSON; the text says what and where (line and column).
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    /// 400: well-formed, but a field is missing, unknown, of the wrong type or out of
    /// range; the text names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    /// 415: a body declared as something other than JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
}

impl InputError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            InputError::PayloadTooLarge { .. } => 413,
            InputError::UnsupportedMediaType => 415,
            InputError::BadUtf8 | InputError::BadJson(_) | InputError::Invalid(_) => 400,
        }
    }
}

impl From<InputError> for Problem {
    fn from(error: InputError) -> Problem {
        match error {
            InputError::PayloadTooLarge { limit } => Problem::payload_too_large(limit),
            InputError::UnsupportedMediaType => Problem::unsupported_media_type("application/json"),
            other => Problem::bad_request(other.to_string()),
        }
    }
}

fn invalid(detail: impl Into<String>) -> InputError {
    InputError::Invalid(detail.into())
}

/// Checks a request's `Content-Type` before its body is parsed as JSON: absent (many
/// clients omit it), `application/json` or any `application/*+json`, parameters allowed.
pub fn require_json(content_type: Option<&str>) -> Result<(), InputError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let media_type = value.split(';').next().unwrap_or_default().trim();
    let media_type = media_type.to_ascii_lowercase();
    let is_json = media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(InputError::UnsupportedMediaType)
    }
}

impl From<InvalidIdempotencyKey> for InputError {
    fn from(error: InvalidIdempotencyKey) -> Self {
        invalid(error.to_string())
    }
}
