//! Talking to Gemini, minus the talking: the `generateContent` wire format, the prompt a
//! chat turn sends, how an answer (or its absence) is classified, and when to try again.
//!
//! The HTTP call itself lives in `evolve-platform`; everything here is pure so that the
//! decisions a chat turn depends on (what counts as a breaker failure, how long to wait
//! before a retry, what the model is told) are unit-tested without WebAssembly or network.

use crate::breaker::Outcome;
use crate::variables::{ConfigError, Variables};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What the companion is, told to the model before anything else. Short on purpose: every
/// token of it is paid for on every turn.
pub const DEFAULT_PERSONA: &str = "Ты — Evolve, тёплый и дружелюбный собеседник. \
Говори по-русски (или на языке пользователя, если он пишет на другом), на «ты», просто и \
живо, без канцелярита. Отвечай коротко — обычно 1–4 предложения, — проявляй интерес к \
собеседнику и помни, что он рассказывал о себе. Не выдумывай факты о пользователе и не \
называй себя языковой моделью без повода.";

/// The answer a user gets when the LLM cannot be reached (breaker open, call failed): the
/// seed's own words.
pub const FALLBACK_REPLY: &str = "Извини, сейчас у меня технические проблемы 😔 Попробуй написать через минутку, я быстро все исправлю!";

/// Sampling temperature: lively but not erratic, for small talk.
pub const TEMPERATURE: f64 = 0.9;

/// Upper bound on a reply's tokens. Generous for 1–4 sentences, because thinking models
/// spend part of it before the visible answer.
pub const MAX_OUTPUT_TOKENS: u32 = 2048;

/// Profile and memory are rendered into the system instruction up to this many characters,
/// so a large profile cannot make every turn expensive.
pub const MAX_CONTEXT_CHARS: usize = 2_000;

// ---------------------------------------------------------------------------------------
// Wire format of `POST /v1beta/models/{model}:generateContent`.

/// Who said a [`Content`]: Gemini knows only the user and the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentRole {
    User,
    Model,
}

/// One piece of a message. Only text is used here; other kinds of part (inline data,
/// function calls) read as empty text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    #[serde(default)]
    pub text: String,
    /// Set on a thinking model's reasoning parts, which are not part of the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thought: bool,
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: text.into(),
            thought: false,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
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

// ---------------------------------------------------------------------------------------
// Prompt building.

/// Who said a turn of the stored chat history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One stored message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

impl Turn {
    pub fn user(text: impl Into<String>) -> Self {
        Turn {
            role: Role::User,
            text: text.into(),
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Turn {
            role: Role::Assistant,
            text: text.into(),
        }
    }
}

/// The request for one chat turn.
///
/// The system instruction is the persona, then what the profile says about the user, then
/// what earlier dialogs taught about them (`memory`), each rendered compactly as
/// `key: value` lines and cut at [`MAX_CONTEXT_CHARS`]. The contents are the history
/// (oldest first) and then `message`. Consecutive turns of one role are merged into one
/// content (a stored user message whose reply was never produced would otherwise make two
/// user contents in a row), empty turns are dropped, and so are assistant turns before the
/// first user turn, since a conversation sent to Gemini starts with the user.
pub fn build_request(
    persona: &str,
    memory: &serde_json::Value,
    profile: &serde_json::Value,
    history: &[Turn],
    message: &str,
) -> GenerateRequest {
    let mut system = persona.trim().to_owned();
    let mut budget = MAX_CONTEXT_CHARS;
    for (title, value) in [
        ("О пользователе (из профиля):", profile),
        ("Что ты помнишь о пользователе:", memory),
    ] {
        let lines = render_compact(value, &mut budget);
        if !lines.is_empty() {
            system.push_str("\n\n");
            system.push_str(title);
            system.push('\n');
            system.push_str(&lines);
        }
    }

    let mut contents: Vec<Content> = Vec::with_capacity(history.len() + 1);
    let turns = history
        .iter()
        .map(|turn| (turn.role, turn.text.as_str()))
        .chain(std::iter::once((Role::User, message)));
    for (role, text) in turns {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let role = match role {
            Role::User => ContentRole::User,
            Role::Assistant => ContentRole::Model,
        };
        match contents.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.push(Part::text(text)),
            None if role == ContentRole::Model => {}
            _ => contents.push(Content {
                role: Some(role),
                parts: vec![Part::text(text)],
            }),
        }
    }

    GenerateRequest {
        contents,
        system_instruction: Some(Content {
            role: None,
            parts: vec![Part::text(system)],
        }),
        generation_config: Some(GenerationConfig {
            temperature: Some(TEMPERATURE),
            max_output_tokens: Some(MAX_OUTPUT_TOKENS),
        }),
    }
}

/// Renders a JSON value as `- path: value` lines (nested keys joined with `.`, arrays of
/// scalars joined with `, `), skipping nulls and empty values, while `budget` characters
/// last. A bare scalar or array renders as one `- value` line.
fn render_compact(value: &serde_json::Value, budget: &mut usize) -> String {
    let mut lines = Vec::new();
    collect_lines(String::new(), value, &mut lines);
    let mut out = String::new();
    for line in lines {
        let cost = line.chars().count() + 1;
        if cost > *budget {
            break;
        }
        *budget -= cost;
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

fn collect_lines(path: String, value: &serde_json::Value, lines: &mut Vec<String>) {
    use serde_json::Value;
    let line = |text: String| {
        if path.is_empty() {
            format!("- {text}")
        } else {
            format!("- {path}: {text}")
        }
    };
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                let key = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect_lines(key, value, lines);
            }
        }
        Value::Array(items) if items.iter().all(|item| !item.is_object()) => {
            let items: Vec<String> = items.iter().filter_map(scalar_text).collect();
            if !items.is_empty() {
                lines.push(line(items.join(", ")));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let key = if path.is_empty() {
                    index.to_string()
                } else {
                    format!("{path}.{index}")
                };
                collect_lines(key, item, lines);
            }
        }
        scalar => {
            if let Some(text) = scalar_text(scalar) {
                lines.push(line(text));
            }
        }
    }
}

fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            (!text.is_empty()).then_some(text)
        }
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// Classifying an answer.

/// The model's reply to a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
}

/// Why a call produced no reply. Messages never contain the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No (complete) answer within the attempt's time limit.
    #[error("gemini did not answer in time")]
    Timeout,
    /// Gemini answered with a non-success status.
    #[error("gemini answered {code}: {message}")]
    Status {
        code: u16,
        /// How long the server asked us to wait (`Retry-After`, or a `RetryInfo` detail).
        retry_after: Option<Duration>,
        /// Gemini's status name and message, when the body had them.
        message: String,
    },
    /// The connection failed (refused, reset, DNS, TLS).
    #[error("gemini unreachable: {0}")]
    Transport(String),
    /// The platform refused to send the request at all (host not in
    /// `allowed_outbound_hosts`, invalid URL): a configuration error, not an outage.
    #[error("gemini request refused by the platform: {0}")]
    Refused(String),
    /// A success status with a body that is not a `generateContent` answer.
    #[error("gemini answered with an unreadable body: {0}")]
    BadResponse(String),
    /// The model answered without usable text: prompt or reply blocked by safety filters,
    /// or no candidate.
    #[error("gemini gave no reply: {reason}")]
    Blocked { reason: String },
}

impl CallError {
    /// Whether another attempt may succeed: timeouts, connection failures, 429 and the
    /// transient 5xx statuses. A 4xx caused by our request would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Timeout | CallError::Transport(_) => true,
            CallError::Status { code, .. } => matches!(code, 429 | 500 | 502 | 503 | 504),
            CallError::Refused(_) | CallError::BadResponse(_) | CallError::Blocked { .. } => false,
        }
    }

    /// Whether this says the LLM is unhealthy, so the circuit breaker counts it: timeouts,
    /// connection failures, 429, every 5xx, and garbage behind a success status. A 4xx
    /// caused by our request, a refused request or a safety block says nothing about the
    /// service's health.
    pub fn counts_as_breaker_failure(&self) -> bool {
        match self {
            CallError::Timeout | CallError::Transport(_) | CallError::BadResponse(_) => true,
            CallError::Status { code, .. } => *code == 429 || *code >= 500,
            CallError::Refused(_) | CallError::Blocked { .. } => false,
        }
    }

    /// The server's requested wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Replaces the requested wait when the response carried a `Retry-After` header,
    /// which takes precedence over a delay found in the body.
    pub fn with_retry_after(self, header: Option<Duration>) -> Self {
        match self {
            CallError::Status {
                code,
                retry_after,
                message,
            } => CallError::Status {
                code,
                retry_after: header.or(retry_after),
                message,
            },
            other => other,
        }
    }
}

/// How a finished call counts for the circuit breaker: a failure that says the LLM is
/// unhealthy counts, and so does any call slower than the slow-call limit (`slow`), even
/// one that produced a reply.
pub fn breaker_outcome(result: &Result<Reply, CallError>, slow: bool) -> Outcome {
    let failed = result
        .as_ref()
        .err()
        .is_some_and(CallError::counts_as_breaker_failure);
    if slow || failed {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// Longest error message kept from a response body: enough to diagnose, bounded for logs.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// Reads a `generateContent` answer: the reply text of the first candidate (thought parts
/// left out) and its token counts, or why there is none.
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Reply, CallError> {
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
    let Some(candidate) = response.candidates.first() else {
        return Err(CallError::Blocked {
            reason: "no candidates".to_owned(),
        });
    };
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

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A `Retry-After` header value: delay-seconds, or an HTTP date (IMF-fixdate, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`) compared with `now_unix_secs`. A date in the past
/// means no wait; anything unreadable means no advice.
pub fn parse_retry_after(value: &str, now_unix_secs: u64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_secs(at.saturating_sub(now_unix_secs)))
}

/// IMF-fixdate to Unix seconds.
fn parse_http_date(value: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_weekday, rest) = value.split_once(", ")?;
    let mut fields = rest.split(' ');
    let day: u64 = fields.next()?.parse().ok()?;
    let month = match fields.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = fields.next()?.parse().ok()?;
    let mut clock = fields.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if fields.next()? != "GMT" || fields.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1970..=9999).contains(&year)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (civil-from-days, inverted).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

// ---------------------------------------------------------------------------------------
// Retries.

/// How a call is retried: exponential backoff with full jitter, at most `max_attempts`
/// attempts, all within `total_budget` measured from the first attempt's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// The first backoff's upper bound; each later one doubles it.
    pub base: Duration,
    /// No jittered backoff exceeds this (a server's `Retry-After` may).
    pub max_backoff: Duration,
    pub total_budget: Duration,
}

impl RetryPolicy {
    /// An attempt given less time than this would only add load and latency: if a retry
    /// would leave less, the call gives up instead.
    pub const MIN_ATTEMPT: Duration = Duration::from_millis(200);

    /// How long to wait before the next attempt, or `None` to give up.
    ///
    /// `attempt` is the number of attempts made so far (1 after the first failed),
    /// `retry_after` what the server asked for, `elapsed` the time since the first attempt
    /// started and `random_fraction` a uniform random number in `[0, 1)`. The wait is a
    /// uniformly random part of `min(max_backoff, base * 2^(attempt-1))`, but never less
    /// than `retry_after`. There is no retry once `max_attempts` are spent, nor when the
    /// wait plus [`Self::MIN_ATTEMPT`] does not fit in what is left of the budget: better
    /// to fail now than to retry before the server's `Retry-After` or past the budget.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        random_fraction: f64,
    ) -> Option<Duration> {
        if attempt == 0 || attempt >= self.max_attempts {
            return None;
        }
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff);
        let fraction = if random_fraction.is_finite() {
            random_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = ceiling.mul_f64(fraction);
        let delay = retry_after.map_or(jittered, |wait| wait.max(jittered));
        let remaining = self.total_budget.checked_sub(elapsed)?;
        (delay.saturating_add(Self::MIN_ATTEMPT) <= remaining).then_some(delay)
    }

    /// The time limit of an attempt that starts at `elapsed`: `per_attempt`, cut to what
    /// is left of the budget; `None` when nothing useful is left.
    pub fn attempt_timeout(&self, per_attempt: Duration, elapsed: Duration) -> Option<Duration> {
        let remaining = self.total_budget.checked_sub(elapsed)?;
        (remaining >= Self::MIN_ATTEMPT.min(per_attempt)).then(|| per_attempt.min(remaining))
    }
}

// ---------------------------------------------------------------------------------------
// Configuration.

/// The Gemini API key. Never printed; only [`ApiKey::expose`] hands it out, for the header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces the key wherever it appears in `text` (a transport error may quote a URL).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// `http` is allowed for local mocks; production uses `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where `generateContent` is: scheme, `host[:port]` and the full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub authority: String,
    /// `{base path}/v1beta/models/{model}:generateContent`.
    pub path: String,
}

impl Endpoint {
    /// Builds the endpoint from `gemini_base_url` (scheme, host, optional port and path
    /// prefix; no query) and `gemini_model` (letters, digits, `.`, `-`, `_`).
    pub fn new(base_url: &str, model: &str) -> Result<Self, ConfigError> {
        let invalid = |name: &'static str, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        let base_url = base_url.trim();
        let (scheme, rest) = if let Some(rest) = base_url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = base_url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(invalid(
                "gemini_base_url",
                "expected a URL starting with https:// or http://",
            ));
        };
        if rest.contains(['?', '#', '@']) {
            return Err(invalid(
                "gemini_base_url",
                "must not contain credentials, a query or a fragment",
            ));
        }
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.starts_with(':') {
            return Err(invalid("gemini_base_url", "names no host"));
        }
        let model = model.trim();
        if model.is_empty()
            || !model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid(
                "gemini_model",
                "expected a model name of letters, digits, '.', '-' and '_'",
            ));
        }
        Ok(Endpoint {
            scheme,
            authority: authority.to_owned(),
            path: format!(
                "{}/v1beta/models/{model}:generateContent",
                prefix.trim_end_matches('/')
            ),
        })
    }

    /// The whole URL, for messages (it holds no secret: the key travels in a header).
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// Everything the outbound Gemini call needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmConfig {
    pub endpoint: Endpoint,
    pub api_key: ApiKey,
    /// The time limit of one attempt (`llm_timeout_ms`).
    pub attempt_timeout: Duration,
    pub retry: RetryPolicy,
    /// A call slower than this counts as a breaker failure (`breaker_slow_call_ms`).
    pub slow_call: Duration,
}

impl LlmConfig {
    pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
    pub const DEFAULT_MODEL: &str = "gemini-2.5-flash";
    pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;
    pub const DEFAULT_TOTAL_BUDGET_MS: u64 = 30_000;
    pub const DEFAULT_MAX_ATTEMPTS: u64 = 3;
    pub const DEFAULT_SLOW_CALL_MS: u64 = 10_000;
    /// The first retry waits up to this long; later ones up to twice as long each time.
    pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

    /// Reads `gemini_base_url`, `gemini_model`, `gemini_api_key` (required),
    /// `llm_timeout_ms`, `llm_total_budget_ms`, `llm_max_attempts` and
    /// `breaker_slow_call_ms` from a lookup that returns `None` (or an empty value) for
    /// unset variables.
    pub fn try_from_lookup<E: fmt::Display>(
        lookup: impl Fn(&str) -> Result<Option<String>, E>,
    ) -> Result<Self, ConfigError> {
        let v = Variables::new(lookup);
        let base_url = v.get("gemini_base_url")?;
        let model = v.get("gemini_model")?;
        let endpoint = Endpoint::new(
            base_url.as_deref().unwrap_or(Self::DEFAULT_BASE_URL),
            model.as_deref().unwrap_or(Self::DEFAULT_MODEL),
        )?;
        let api_key = v.required("gemini_api_key")?;
        let number = |name, default, min, max| v.number(name, default, min, max);
        let timeout_ms = number("llm_timeout_ms", Self::DEFAULT_TIMEOUT_MS, 1, 300_000)?;
        let budget_ms = total_budget_ms(&v)?;
        let max_attempts = number("llm_max_attempts", Self::DEFAULT_MAX_ATTEMPTS, 1, 10)?;
        let slow_ms = number(
            "breaker_slow_call_ms",
            Self::DEFAULT_SLOW_CALL_MS,
            1,
            600_000,
        )?;
        Ok(LlmConfig {
            endpoint,
            api_key: ApiKey::new(api_key.trim()),
            attempt_timeout: Duration::from_millis(timeout_ms),
            retry: RetryPolicy {
                max_attempts: max_attempts as u32,
                base: Self::BACKOFF_BASE,
                max_backoff: Self::MAX_BACKOFF,
                total_budget: Duration::from_millis(budget_ms),
            },
            slow_call: Duration::from_millis(slow_ms),
        })
    }
}

/// `llm_total_budget_ms`, with its default when unset.
fn total_budget_ms<L, E>(v: &Variables<L>) -> Result<u64, ConfigError>
where
    L: Fn(&str) -> Result<Option<String>, E>,
    E: fmt::Display,
{
    v.number(
        "llm_total_budget_ms",
        LlmConfig::DEFAULT_TOTAL_BUDGET_MS,
        1,
        600_000,
    )
}

/// Added to the LLM's total budget to make the breaker's probe lease, for the work a chat
/// turn does around the call (storing the turn) before it records the outcome.
pub const PROBE_LEASE_MARGIN: Duration = Duration::from_millis(2_000);

/// How long the breaker reserves the half-open probe for one caller: the LLM's total
/// budget (`llm_total_budget_ms`) plus [`PROBE_LEASE_MARGIN`].
pub fn probe_lease<E: fmt::Display>(
    lookup: impl Fn(&str) -> Result<Option<String>, E>,
) -> Result<Duration, ConfigError> {
    let budget_ms = total_budget_ms(&Variables::new(lookup))?;
    Ok(Duration::from_millis(budget_ms) + PROBE_LEASE_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_probe_lease_covers_the_llm_budget() {
        let none = |_: &str| Ok::<_, String>(None);
        assert_eq!(probe_lease(none).unwrap(), ms(32_000));
        let set = |name: &str| {
            Ok::<_, String>((name == "llm_total_budget_ms").then(|| "1000".to_owned()))
        };
        assert_eq!(probe_lease(set).unwrap(), ms(3_000));
    }

    #[test]
    fn request_serializes_in_the_rest_shape() {
        let request = build_request(
            "Be kind.",
            &json!({}),
            &json!({}),
            &[Turn::user("hi"), Turn::assistant("hello!")],
            "how are you?",
        );
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"text": "hello!"}]},
                    {"role": "user", "parts": [{"text": "how are you?"}]}
                ],
                "systemInstruction": {"parts": [{"text": "Be kind."}]},
                "generationConfig": {"temperature": 0.9, "maxOutputTokens": 2048}
            })
        );
    }

    #[test]
    fn system_instruction_renders_profile_and_memory_compactly() {
        let profile = json!({
            "name": "Аня",
            "age": 27,
            "interests": ["книги", "бег"],
            "city": null,
            "bio": "  likes\n long   walks ",
            "pets": [{"kind": "cat", "name": "Барсик"}],
        });
        let memory = json!({"facts": ["has a sister"], "mood": {"last": "tired"}});
        let request = build_request(DEFAULT_PERSONA, &memory, &profile, &[], "привет");
        let system = &request.system_instruction.unwrap().parts[0].text;
        assert!(system.starts_with(DEFAULT_PERSONA), "{system}");
        let expected = "\n\nО пользователе (из профиля):\n\
            - age: 27\n- bio: likes long walks\n- interests: книги, бег\n- name: Аня\n\
            - pets.0.kind: cat\n- pets.0.name: Барсик\n\n\
            Что ты помнишь о пользователе:\n- facts: has a sister\n- mood.last: tired";
        assert!(system.ends_with(expected), "{system}");
    }

    #[test]
    fn empty_context_adds_nothing_to_the_persona() {
        for empty in [
            json!(null),
            json!({}),
            json!([]),
            json!({"a": null, "b": []}),
        ] {
            let request = build_request(" P ", &empty, &empty, &[], "m");
            assert_eq!(request.system_instruction.unwrap().parts[0].text, "P");
        }
        let request = build_request("P", &json!("likes tea"), &json!(null), &[], "m");
        assert_eq!(
            request.system_instruction.unwrap().parts[0].text,
            "P\n\nЧто ты помнишь о пользователе:\n- likes tea"
        );
    }

    #[test]
    fn context_is_cut_at_the_budget() {
        let big: serde_json::Map<String, serde_json::Value> = (0..1_000)
            .map(|i| (format!("k{i:04}"), json!("x".repeat(20))))
            .collect();
        let request = build_request("P", &json!(big), &json!(big), &[], "m");
        let system = &request.system_instruction.unwrap().parts[0].text;
        assert!(
            system.chars().count() <= MAX_CONTEXT_CHARS + 200,
            "{system}"
        );
        // Whole lines only.
        assert!(system.ends_with(&"x".repeat(20)));
        // The profile used the budget up: memory gets no heading.
        assert!(!system.contains("помнишь"));
    }

    #[test]
    fn history_is_merged_and_starts_with_the_user() {
        let history = [
            Turn::assistant("orphan reply"),
            Turn::user("one"),
            Turn::user("two"),
            Turn::assistant("  "),
            Turn::assistant("answer"),
            Turn::user("unanswered"),
        ];
        let request = build_request("P", &json!({}), &json!({}), &history, " new ");
        let contents = serde_json::to_value(&request.contents).unwrap();
        assert_eq!(
            contents,
            json!([
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "answer"}]},
                {"role": "user", "parts": [{"text": "unanswered"}, {"text": "new"}]}
            ])
        );
    }

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

    #[test]
    fn classification() {
        let status = |code| CallError::Status {
            code,
            retry_after: None,
            message: String::new(),
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).is_retryable(), "{code}");
            assert!(status(code).counts_as_breaker_failure(), "{code}");
        }
        assert!(!status(501).is_retryable());
        assert!(status(501).counts_as_breaker_failure());
        for code in [400, 401, 403, 404, 413] {
            assert!(!status(code).is_retryable(), "{code}");
            assert!(!status(code).counts_as_breaker_failure(), "{code}");
        }
        for error in [CallError::Timeout, CallError::Transport("reset".into())] {
            assert!(error.is_retryable() && error.counts_as_breaker_failure());
        }
        let refused = CallError::Refused("HTTP-request-denied".into());
        assert!(!refused.is_retryable() && !refused.counts_as_breaker_failure());
    }

    #[test]
    fn slow_calls_count_as_breaker_failures() {
        let ok = Ok(Reply {
            text: "hi".into(),
            prompt_tokens: 1,
            output_tokens: 1,
        });
        assert_eq!(breaker_outcome(&ok, false), Outcome::Success);
        assert_eq!(breaker_outcome(&ok, true), Outcome::Failure);
        assert_eq!(
            breaker_outcome(&Err(CallError::Timeout), false),
            Outcome::Failure
        );
        let ours = Err(CallError::Status {
            code: 400,
            retry_after: None,
            message: String::new(),
        });
        assert_eq!(breaker_outcome(&ours, false), Outcome::Success);
        assert_eq!(breaker_outcome(&ours, true), Outcome::Failure);
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(500),
        max_backoff: Duration::from_millis(1_500),
        total_budget: Duration::from_secs(30),
    };

    #[test]
    fn backoff_is_full_jitter_exponential_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            ..POLICY
        };
        assert!(p.next_delay(1, None, ms(0), 0.999_999).unwrap() < ms(500));
        assert_eq!(p.next_delay(1, None, ms(0), 0.5), Some(ms(250)));
        assert_eq!(p.next_delay(2, None, ms(0), 0.5), Some(ms(500)));
        assert_eq!(p.next_delay(3, None, ms(0), 0.5), Some(ms(750)));
        assert_eq!(p.next_delay(9, None, ms(0), 1.0), Some(ms(1_500)));
        assert_eq!(p.next_delay(2, None, ms(0), 0.0), Some(ms(0)));
        // Out-of-range randomness is clamped, not trusted.
        assert_eq!(p.next_delay(1, None, ms(0), 7.0), Some(ms(500)));
        assert_eq!(p.next_delay(1, None, ms(0), -1.0), Some(ms(0)));
        assert_eq!(p.next_delay(1, None, ms(0), f64::NAN), Some(ms(0)));
        // Huge attempt numbers do not overflow.
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..POLICY
        };
        assert_eq!(p.next_delay(200, None, ms(0), 1.0), Some(ms(1_500)));
    }

    #[test]
    fn attempts_are_limited() {
        assert!(POLICY.next_delay(1, None, ms(0), 0.5).is_some());
        assert!(POLICY.next_delay(2, None, ms(0), 0.5).is_some());
        assert_eq!(POLICY.next_delay(3, None, ms(0), 0.5), None);
        assert_eq!(POLICY.next_delay(0, None, ms(0), 0.5), None);
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(once.next_delay(1, None, ms(0), 0.5), None);
    }

    #[test]
    fn retry_after_is_a_floor_even_beyond_the_backoff_cap() {
        let wait = Duration::from_secs(5);
        assert_eq!(POLICY.next_delay(1, Some(wait), ms(0), 0.5), Some(wait));
        // A jittered wait longer than Retry-After is kept.
        assert_eq!(
            POLICY.next_delay(2, Some(ms(10)), ms(0), 1.0),
            Some(ms(1_000))
        );
    }

    #[test]
    fn the_budget_is_never_exceeded() {
        // 29.5 s spent of 30: a 250 ms wait fits with 200 ms for the attempt, 400 ms not.
        assert_eq!(POLICY.next_delay(1, None, ms(29_500), 0.5), Some(ms(250)));
        assert_eq!(POLICY.next_delay(1, None, ms(29_500), 0.8), None);
        // The server asks for longer than is left: give up at once.
        assert_eq!(
            POLICY.next_delay(1, Some(Duration::from_secs(37)), ms(0), 0.0),
            None
        );
        assert_eq!(POLICY.next_delay(1, None, ms(31_000), 0.0), None);
    }

    #[test]
    fn attempt_timeout_is_cut_to_the_budget() {
        let per = ms(20_000);
        assert_eq!(POLICY.attempt_timeout(per, ms(0)), Some(per));
        assert_eq!(POLICY.attempt_timeout(per, ms(25_000)), Some(ms(5_000)));
        assert_eq!(POLICY.attempt_timeout(per, ms(29_900)), None);
        assert_eq!(POLICY.attempt_timeout(per, ms(40_000)), None);
        // A per-attempt limit below MIN_ATTEMPT is the operator's choice.
        assert_eq!(POLICY.attempt_timeout(ms(50), ms(0)), Some(ms(50)));
    }

    #[test]
    fn retry_after_header_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, 784_111_777 - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(date, 784_111_777 + 5),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| Ok(map.get(name).cloned())
    }

    #[test]
    fn config_defaults() {
        let config = LlmConfig::try_from_lookup(lookup(&[("gemini_api_key", "k3y")])).unwrap();
        assert_eq!(
            config.endpoint.url(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(config.api_key.expose(), "k3y");
        assert_eq!(config.attempt_timeout, ms(20_000));
        assert_eq!(config.retry.max_attempts, 3);
        assert_eq!(config.retry.total_budget, ms(30_000));
        assert_eq!(config.slow_call, ms(10_000));
        assert!(!format!("{config:?}").contains("k3y"));
    }

    #[test]
    fn config_reads_variables() {
        let config = LlmConfig::try_from_lookup(lookup(&[
            ("gemini_api_key", "k"),
            ("gemini_base_url", "http://127.0.0.1:8089/proxy/"),
            ("gemini_model", "mock-1"),
            ("llm_timeout_ms", "1500"),
            ("llm_total_budget_ms", "4000"),
            ("llm_max_attempts", "2"),
            ("breaker_slow_call_ms", "900"),
        ]))
        .unwrap();
        assert_eq!(
            config.endpoint,
            Endpoint {
                scheme: Scheme::Http,
                authority: "127.0.0.1:8089".into(),
                path: "/proxy/v1beta/models/mock-1:generateContent".into()
            }
        );
        assert_eq!(config.attempt_timeout, ms(1_500));
        assert_eq!(config.retry.total_budget, ms(4_000));
        assert_eq!(config.retry.max_attempts, 2);
        assert_eq!(config.slow_call, ms(900));
    }

    #[test]
    fn config_errors_name_the_variable() {
        let err = LlmConfig::try_from_lookup(lookup(&[("gemini_api_key", " ")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "gemini_api_key"
            }
        );
        for (name, value) in [
            ("gemini_base_url", "ftp://x"),
            ("gemini_base_url", "https://"),
            ("gemini_base_url", "https://u:p@host"),
            ("gemini_base_url", "https://host/?key=1"),
            ("gemini_model", "../admin"),
            ("llm_max_attempts", "0"),
            ("llm_timeout_ms", "fast"),
        ] {
            let err = LlmConfig::try_from_lookup(lookup(&[("gemini_api_key", "k"), (name, value)]))
                .unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
                "{name}={value}: {err}"
            );
        }
        let err =
            LlmConfig::try_from_lookup(|_: &str| Err::<Option<String>, _>("down")).unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn api_key_is_scrubbed() {
        let key = ApiKey::new("AIzaSECRET");
        assert_eq!(
            key.scrub("GET ?key=AIzaSECRET failed"),
            "GET ?key=*** failed"
        );
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(ApiKey::new("").scrub("text"), "text");
    }

    #[test]
    fn fallback_reply_is_the_seeds() {
        assert!(FALLBACK_REPLY.starts_with("Извини, сейчас у меня технические проблемы 😔"));
        assert!(FALLBACK_REPLY.ends_with("я быстро все исправлю!"));
    }
}
