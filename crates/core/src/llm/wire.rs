//! The wire format of `POST /v1beta/models/{model}:generateContent`: request and answer
//! bodies as Gemini spells them, and how an answer is read into a reply or a [`CallError`].

use super::retry::{CallError, Reply};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Who said a [`Content`]: Gemini knows only the user and the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentRole {
    User,
    Model,
}

/// One piece of a message: text, or inline data (speech answers carry their audio so).
/// Other kinds of part (function calls) read as empty text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Set on a thinking model's reasoning parts, which are not part of the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thought: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<InlineData>,
}

/// Bytes inside a part, base64 as Gemini sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InlineData {
    pub mime_type: String,
    pub data: String,
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: text.into(),
            thought: false,
            inline_data: None,
        }
    }
}

/// A message: a role (absent in a system instruction) and its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ContentRole>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// `["AUDIO"]` asks a speech model for audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_modalities: Option<Vec<String>>,
    /// The voice of a speech answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_config: Option<serde_json::Value>,
    /// `application/json` with a schema asks for structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
}

/// The body of a `generateContent` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    pub contents: Vec<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
}

/// The body of a successful `generateContent` answer. Fields this code does not use
/// (safety ratings, model version, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, `RECITATION`, `BLOCKLIST`, `OTHER`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// Present when the prompt itself was refused; then there are no candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u32,
    #[serde(default)]
    pub candidates_token_count: u32,
    #[serde(default)]
    pub total_token_count: u32,
}

/// The body of a failed answer: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    /// The canonical gRPC status name, e.g. `RESOURCE_EXHAUSTED`.
    #[serde(default)]
    pub status: String,
    /// Typed details; a `google.rpc.RetryInfo` one carries the server's `retryDelay`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<serde_json::Value>,
}

impl ErrorBody {
    /// The `retryDelay` of a `google.rpc.RetryInfo` detail (`"37s"`, `"1.5s"`), which
    /// Gemini sends with 429 answers in place of a `Retry-After` header.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details.iter().find_map(|detail| {
            let kind = detail.get("@type")?.as_str()?;
            if !kind.ends_with("google.rpc.RetryInfo") {
                return None;
            }
            parse_proto_duration(detail.get("retryDelay")?.as_str()?)
        })
    }
}

/// A protobuf JSON duration: decimal seconds followed by `s`.
fn parse_proto_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Longest error message kept from a response body: enough to diagnose, bounded for logs.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// Reads a `generateContent` answer: the reply text of the first candidate (thought parts
/// left out) and its token counts, or why there is none.
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Reply, CallError> {
    let (response, candidate) = parse_candidate(status, body)?;
    let text: String = candidate
        .content
        .iter()
        .flat_map(|content| &content.parts)
        .filter(|part| !part.thought)
        .map(|part| part.text.as_str())
        .collect();
    let text = text.trim();
    if text.is_empty() {
        let reason = candidate.finish_reason.as_deref().unwrap_or("EMPTY");
        return Err(CallError::Blocked {
            reason: format!("empty reply ({reason})"),
        });
    }
    let usage = response.usage_metadata.unwrap_or_default();
    Ok(Reply {
        text: text.to_owned(),
        prompt_tokens: usage.prompt_token_count,
        output_tokens: usage.candidates_token_count,
    })
}

/// Reads an answer up to its first candidate: an error status, a body that is not an
/// answer, a blocked prompt or no candidate at all are the call's errors.
pub fn parse_candidate(
    status: u16,
    body: &[u8],
) -> Result<(GenerateResponse, Candidate), CallError> {
    if !(200..300).contains(&status) {
        let (message, retry_after) = match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(ErrorResponse { error }) => {
                let message = match (error.status.is_empty(), error.message.is_empty()) {
                    (false, false) => format!("{}: {}", error.status, error.message),
                    (false, true) => error.status.clone(),
                    _ => error.message.clone(),
                };
                (message, error.retry_delay())
            }
            Err(_) => (String::from_utf8_lossy(body).trim().to_owned(), None),
        };
        return Err(CallError::Status {
            code: status,
            retry_after,
            message: truncate(&message, MAX_ERROR_MESSAGE_CHARS),
        });
    }

    let response: GenerateResponse = serde_json::from_slice(body).map_err(|error| {
        CallError::BadResponse(truncate(&error.to_string(), MAX_ERROR_MESSAGE_CHARS))
    })?;
    if let Some(reason) = response
        .prompt_feedback
        .as_ref()
        .and_then(|feedback| feedback.block_reason.clone())
    {
        return Err(CallError::Blocked {
            reason: format!("prompt blocked: {reason}"),
        });
    }
    let Some(candidate) = response.candidates.first().cloned() else {
        return Err(CallError::Blocked {
            reason: "no candidates".to_owned(),
        });
    };
    Ok((response, candidate))
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::test_support::ms;
    use serde_json::json;

    #[test]
    fn parses_a_reply_with_usage_and_ignores_thoughts() {
        let body = json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "thinking...", "thought": true},
                    {"text": "Привет! "},
                    {"text": "Как дела?"}
                ]},
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": []
            }],
            "usageMetadata": {"promptTokenCount": 42, "candidatesTokenCount": 7, "totalTokenCount": 49},
            "modelVersion": "gemini-2.5-flash"
        });
        let reply = parse_reply(200, body.to_string().as_bytes()).unwrap();
        assert_eq!(
            reply,
            Reply {
                text: "Привет! Как дела?".to_owned(),
                prompt_tokens: 42,
                output_tokens: 7
            }
        );
        // Usage is optional.
        let body = json!({"candidates": [{"content": {"parts": [{"text": "ok"}]}}]});
        let reply = parse_reply(200, body.to_string().as_bytes()).unwrap();
        assert_eq!((reply.text.as_str(), reply.prompt_tokens), ("ok", 0));
    }

    #[test]
    fn blocked_and_empty_answers() {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert_eq!(
            parse_reply(200, blocked.to_string().as_bytes()),
            Err(CallError::Blocked {
                reason: "prompt blocked: SAFETY".to_owned()
            })
        );
        assert_eq!(
            parse_reply(200, b"{}"),
            Err(CallError::Blocked {
                reason: "no candidates".to_owned()
            })
        );
        let safety = json!({"candidates": [{"finishReason": "SAFETY"}]});
        assert_eq!(
            parse_reply(200, safety.to_string().as_bytes()),
            Err(CallError::Blocked {
                reason: "empty reply (SAFETY)".to_owned()
            })
        );
        let empty = json!({"candidates": [{"content": {"parts": [{"text": " "}]}}]});
        let error = parse_reply(200, empty.to_string().as_bytes()).unwrap_err();
        assert!(!error.is_retryable() && !error.counts_as_breaker_failure());
    }

    #[test]
    fn unreadable_success_is_a_bad_response() {
        for body in [&b"<html>proxy</html>"[..], b"", b"{\"candidates\": 3}"] {
            let error = parse_reply(200, body).unwrap_err();
            assert!(matches!(error, CallError::BadResponse(_)), "{error:?}");
            assert!(error.counts_as_breaker_failure());
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn error_statuses_keep_gemini_message_and_retry_delay() {
        let body = json!({"error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
            ]
        }});
        let error = parse_reply(429, body.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            error,
            CallError::Status {
                code: 429,
                retry_after: Some(Duration::from_secs(37)),
                message: "RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota)."
                    .to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "gemini answered 429: RESOURCE_EXHAUSTED: Resource has been exhausted (e.g. check quota)."
        );
        // A header wins over the body's delay; no header keeps it.
        let header = error.clone().with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(header.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            error.clone().with_retry_after(None).retry_after(),
            Some(Duration::from_secs(37))
        );
        // Bodies that are not Gemini's error shape are kept as text, bounded.
        let error = parse_reply(502, "x".repeat(1_000).as_bytes()).unwrap_err();
        let CallError::Status { message, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert_eq!(error.retry_after(), None);
        // Fractional delays.
        let body = json!({"error": {"code": 503, "message": "", "status": "UNAVAILABLE",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}});
        let error = parse_reply(503, body.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.retry_after(), Some(ms(1_500)));
        assert!(error.to_string().ends_with("503: UNAVAILABLE"));
    }
}
