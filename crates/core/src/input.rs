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

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::ids::InvalidIdempotencyKey;
use crate::problem::Problem;

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

// ---------------------------------------------------------------------------------------
// JSON bodies

/// A request body that must be one JSON object: size, UTF-8, syntax and duplicate keys
/// are checked here; the fields are the caller's to check.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, InputError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(InputError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| InputError::BadUtf8)?;
    // RFC 8259 lets a parser ignore a byte order mark; some clients still send one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .chars()
        .next()
    {
        None => return Err(invalid("request body is empty; expected a JSON object")),
        Some('{') => {}
        Some(_) => return Err(invalid("request body must be a JSON object")),
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let object = (&mut deserializer)
        .deserialize_map(ObjectVisitor)
        .and_then(|object| deserializer.end().map(|()| object))
        .map_err(|error| {
            // Data errors can only be ours (a duplicate key): the body is valid JSON.
            if error.is_data() {
                invalid(error.to_string())
            } else {
                InputError::BadJson(error.to_string())
            }
        })?;
    Ok(object)
}

/// Reads a JSON object, refusing a key that appears twice: which of the two values
/// would win differs between parsers, so neither is guessed.
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "field {} appears twice",
                    shown(&key)
                )));
            }
            let value: Value = access.next_value()?;
            object.insert(key, value);
        }
        Ok(object)
    }
}

/// A client-supplied name as it appears in an error: quoted, escaped and cut short.
fn shown(name: &str) -> String {
    const MAX_SHOWN_CHARS: usize = 40;
    if name.chars().count() <= MAX_SHOWN_CHARS {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{head:?}…")
    }
}

/// The name of a JSON value's type, for "must be a string, not a number" details.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unknown_field(name: &str, allowed: &str) -> InputError {
    invalid(format!("unknown field {}; allowed: {allowed}", shown(name)))
}

/// Whether line breaks and tabs belong in a text field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// Names, tags: no control characters at all.
    Single,
    /// Messages, bio: `\n` and `\t` allowed; `\r\n` and `\r` become `\n`.
    Multi,
}

/// Normalises line endings, trims, and refuses control characters.
fn clean_text(field: &str, raw: &str, lines: Lines) -> Result<String, InputError> {
    let text = match lines {
        Lines::Multi if raw.contains('\r') => raw.replace("\r\n", "\n").replace('\r', "\n"),
        _ => raw.to_owned(),
    };
    let trimmed = text.trim();
    let allowed = |c: char| lines == Lines::Multi && (c == '\n' || c == '\t');
    if let Some(c) = trimmed.chars().find(|&c| c.is_control() && !allowed(c)) {
        let what = match lines {
            Lines::Single => "a line break, tab or other control character",
            Lines::Multi => "a control character other than line break and tab",
        };
        return Err(invalid(format!(
            "`{field}` contains {what} (U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(if trimmed.len() == text.len() {
        text
    } else {
        trimmed.to_owned()
    })
}

// ---------------------------------------------------------------------------------------
// POST /api/chat

/// The body of `POST /api/chat`: `{"message": "..."}` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// Trimmed, with `\n` line endings; 1 to `max_chars` characters.
    pub message: String,
}

impl ChatRequest {
    /// Validates a chat request. `max_chars` (`chat_max_message_chars`) counts Unicode
    /// characters, not bytes, so the limit means the same in every script.
    pub fn parse(body: &[u8], max_chars: usize) -> Result<ChatRequest, InputError> {
        let object = parse_object(body)?;
        if let Some(name) = object.keys().find(|name| name.as_str() != "message") {
            return Err(unknown_field(name, "`message`"));
        }
        let raw = match object.get("message") {
            None => return Err(invalid("`message` is required")),
            Some(Value::String(raw)) => raw,
            Some(other) => {
                return Err(invalid(format!(
                    "`message` must be a string, not {}",
                    type_name(other)
                )))
            }
        };
        let message = clean_text("message", raw, Lines::Multi)?;
        if message.is_empty() {
            return Err(invalid("`message` must not be empty"));
        }
        let chars = message.chars().count();
        if chars > max_chars {
            return Err(invalid(format!(
                "`message` is {chars} characters long; the limit is {max_chars}"
            )));
        }
        Ok(ChatRequest { message })
    }
}

// ---------------------------------------------------------------------------------------
// PUT /api/profile

/// A field of the profile's `data` document that clients may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProfileField {
    /// String, 1 to 100 characters, one line.
    Name,
    /// Integer, 13 to 120.
    Age,
    /// `female`, `male` or `other`.
    Gender,
    /// A BCP 47 language tag such as `ru` or `en-US`, 2 to 16 characters.
    Language,
    /// An IANA time zone name such as `Europe/Moscow`, at most 64 characters.
    Timezone,
    /// Up to 20 distinct strings of 1 to 50 characters.
    Interests,
    /// String, at most 1,000 characters, line breaks allowed; may be empty.
    Bio,
    /// What the user calls the companion: 1 to 50 characters, one line.
    CompanionName,
}

impl ProfileField {
    /// Every field, in the order error messages list them.
    pub const ALL: [ProfileField; 8] = [
        ProfileField::Name,
        ProfileField::Age,
        ProfileField::Gender,
        ProfileField::Language,
        ProfileField::Timezone,
        ProfileField::Interests,
        ProfileField::Bio,
        ProfileField::CompanionName,
    ];

    /// The key in the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileField::Name => "name",
            ProfileField::Age => "age",
            ProfileField::Gender => "gender",
            ProfileField::Language => "language",
            ProfileField::Timezone => "timezone",
            ProfileField::Interests => "interests",
            ProfileField::Bio => "bio",
            ProfileField::CompanionName => "companion_name",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        ProfileField::ALL
            .into_iter()
            .find(|field| field.as_str() == name)
    }

    /// Checks a value for this field and returns it as stored (text trimmed).
    fn validate(self, value: &Value) -> Result<Value, InputError> {
        let field = self.as_str();
        match self {
            ProfileField::Name => text_field(field, value, 1, 100, Lines::Single),
            ProfileField::CompanionName => text_field(field, value, 1, 50, Lines::Single),
            ProfileField::Bio => text_field(field, value, 0, 1000, Lines::Multi),
            ProfileField::Age => {
                let age = value.as_i64().filter(|age| (13..=120).contains(age));
                age.map(Value::from)
                    .ok_or_else(|| invalid("`age` must be an integer from 13 to 120"))
            }
            ProfileField::Gender => match value.as_str() {
                Some(gender @ ("female" | "male" | "other")) => Ok(Value::from(gender)),
                _ => Err(invalid(
                    "`gender` must be one of \"female\", \"male\", \"other\"",
                )),
            },
            ProfileField::Language => match value.as_str() {
                Some(tag) if is_language_tag(tag) => Ok(Value::from(tag)),
                _ => Err(invalid(
                    "`language` must be a language tag such as \"ru\" or \"en-US\" \
                     (2 to 16 characters)",
                )),
            },
            ProfileField::Timezone => match value.as_str() {
                Some(zone) if is_time_zone_name(zone) => Ok(Value::from(zone)),
                _ => Err(invalid(
                    "`timezone` must be a time zone name such as \"Europe/Moscow\" \
                     (at most 64 characters)",
                )),
            },
            ProfileField::Interests => interests(value),
        }
    }
}

fn text_field(
    field: &str,
    value: &Value,
    min_chars: usize,
    max_chars: usize,
    lines: Lines,
) -> Result<Value, InputError> {
    bounded_text(field, value, min_chars, max_chars, lines).map(Value::String)
}

fn bounded_text(
    field: &str,
    value: &Value,
    min_chars: usize,
    max_chars: usize,
    lines: Lines,
) -> Result<String, InputError> {
    let Value::String(raw) = value else {
        return Err(invalid(format!(
            "`{field}` must be a string, not {}",
            type_name(value)
        )));
    };
    let text = clean_text(field, raw, lines)?;
    let chars = text.chars().count();
    if chars < min_chars || chars > max_chars {
        let range = if min_chars == 0 {
            format!("at most {max_chars} characters")
        } else {
            format!("{min_chars} to {max_chars} characters")
        };
        return Err(invalid(format!(
            "`{field}` must be {range} long (after trimming); send null to remove it"
        )));
    }
    Ok(text)
}

fn interests(value: &Value) -> Result<Value, InputError> {
    const MAX_INTERESTS: usize = 20;
    let Value::Array(items) = value else {
        return Err(invalid(format!(
            "`interests` must be an array of strings, not {}",
            type_name(value)
        )));
    };
    if items.len() > MAX_INTERESTS {
        return Err(invalid(format!(
            "`interests` has {} entries; at most {MAX_INTERESTS} are allowed",
            items.len()
        )));
    }
    let mut kept: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen: Vec<String> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let label = format!("interests[{index}]");
        let text = bounded_text(&label, item, 1, 50, Lines::Single)?;
        let folded = text.to_lowercase();
        if seen.contains(&folded) {
            return Err(invalid(format!(
                "`interests` lists {} more than once",
                shown(&text)
            )));
        }
        seen.push(folded);
        kept.push(Value::String(text));
    }
    Ok(Value::Array(kept))
}

/// BCP 47 in the shape clients send: a 2 to 8 letter primary subtag, then subtags of 1
/// to 8 letters or digits, joined by `-`; 2 to 16 characters in all.
fn is_language_tag(tag: &str) -> bool {
    if !(2..=16).contains(&tag.len()) {
        return false;
    }
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    (2..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// An IANA time zone name in shape (`UTC`, `Europe/Moscow`, `Etc/GMT+3`,
/// `America/Argentina/Buenos_Aires`): whether the zone exists is not known here.
fn is_time_zone_name(zone: &str) -> bool {
    (1..=64).contains(&zone.len())
        && zone.split('/').all(|part| {
            part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        })
}

/// The body of `PUT /api/profile`: a partial update of the profile's `data` document.
/// A field set to `null` is removed; fields not mentioned are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilePatch {
    /// `Some` sets the field to the (validated, normalised) value; `None` removes it.
    changes: BTreeMap<ProfileField, Option<Value>>,
}

impl ProfilePatch {
    /// Validates an update. Unknown fields and an empty object are refused.
    pub fn parse(body: &[u8]) -> Result<ProfilePatch, InputError> {
        let object = parse_object(body)?;
        if object.is_empty() {
            return Err(invalid(format!(
                "nothing to update; send at least one of: {}",
                allowed_profile_fields()
            )));
        }
        let mut changes = BTreeMap::new();
        for (name, value) in &object {
            let field = ProfileField::from_name(name)
                .ok_or_else(|| unknown_field(name, &allowed_profile_fields()))?;
            let change = match value {
                Value::Null => None,
                value => Some(field.validate(value)?),
            };
            changes.insert(field, change);
        }
        Ok(ProfilePatch { changes })
    }

    /// The changes, in field order: `Some(value)` sets, `None` removes.
    pub fn changes(&self) -> impl Iterator<Item = (ProfileField, Option<&Value>)> + '_ {
        self.changes
            .iter()
            .map(|(field, change)| (*field, change.as_ref()))
    }

    /// The profile data with this update merged in. Keys this patch does not mention,
    /// including ones this version does not know, are kept; data that is not an object
    /// (never written by this service) is replaced by one.
    pub fn apply(&self, data: &Value) -> Value {
        let mut merged = match data {
            Value::Object(object) => object.clone(),
            _ => Map::new(),
        };
        for (field, change) in &self.changes {
            match change {
                Some(value) => merged.insert(field.as_str().to_owned(), value.clone()),
                None => merged.remove(field.as_str()),
            };
        }
        Value::Object(merged)
    }
}

fn allowed_profile_fields() -> String {
    ProfileField::ALL
        .iter()
        .map(|field| format!("`{}`", field.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// GET /api/chat/history

/// Page size when the query gives none.
pub const DEFAULT_HISTORY_LIMIT: u32 = 20;
/// The largest page.
pub const MAX_HISTORY_LIMIT: u32 = 100;

/// A position in a user's history, newest first: the `(created_at, id)` of the oldest
/// message of the previous page. Keyset pagination continues strictly below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// `created_at` in microseconds since the Unix epoch (PostgreSQL's precision).
    pub created_at_micros: i64,
    /// `chat_history.id`, which breaks ties between equal timestamps.
    pub id: i64,
}

/// The last microsecond of year 9999 UTC, in Unix microseconds: no stored message is later,
/// and anything up to it stays inside PostgreSQL's interval arithmetic.
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_999_999;

impl Cursor {
    /// The opaque form handed to clients: base64url of `<created_at_micros>:<id>`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at_micros, self.id))
    }

    /// Reads a cursor made by [`Cursor::encode`]. Only that exact text is accepted, so
    /// one position has one spelling.
    pub fn decode(text: &str) -> Result<Cursor, InputError> {
        let bad = || invalid("`before` is not a valid cursor; pass back `next_before` as given");
        if text.len() > 64 {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let plain = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let (micros, id) = plain.split_once(':').ok_or_else(bad)?;
        let cursor = Cursor {
            created_at_micros: micros.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        };
        // Only positions a page can have handed out: a time from 1970 to year 9999 and a
        // positive id. Others would reach PostgreSQL as an out-of-range interval.
        let in_range = (0..=MAX_CURSOR_MICROS).contains(&cursor.created_at_micros) && cursor.id > 0;
        if in_range && cursor.encode() == text {
            Ok(cursor)
        } else {
            Err(bad())
        }
    }
}

/// The query of `GET /api/chat/history`: `limit` and `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// 1 to [`MAX_HISTORY_LIMIT`]; [`DEFAULT_HISTORY_LIMIT`] when absent.
    pub limit: u32,
    /// Continue below this position; the newest messages when absent.
    pub before: Option<Cursor>,
}

impl HistoryQuery {
    /// Parses a query string (with or without the leading `?`). Unknown parameters are
    /// ignored, as caches and trackers add their own; an empty value counts as absent; a
    /// parameter given twice is refused.
    pub fn parse(query: &str) -> Result<HistoryQuery, InputError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut limit: Option<String> = None;
        let mut before: Option<String> = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(name) = percent_decode(name) else {
                continue;
            };
            let slot = match name.as_str() {
                "limit" => &mut limit,
                "before" => &mut before,
                _ => continue,
            };
            if slot.is_some() {
                return Err(invalid(format!("`{name}` is given more than once")));
            }
            let value = percent_decode(value)
                .ok_or_else(|| invalid(format!("`{name}` is not valid percent-encoding")))?;
            *slot = Some(value);
        }

        let limit = match limit.as_deref() {
            None | Some("") => DEFAULT_HISTORY_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| {
                    text.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_HISTORY_LIMIT).contains(n)
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "`limit` must be an integer from 1 to {MAX_HISTORY_LIMIT}"
                    ))
                })?,
        };
        let before = match before.as_deref() {
            None | Some("") => None,
            Some(text) => Some(Cursor::decode(text)?),
        };
        Ok(HistoryQuery { limit, before })
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value; `None` when a `%`
/// escape is broken or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl From<InvalidIdempotencyKey> for InputError {
    fn from(error: InvalidIdempotencyKey) -> Self {
        invalid(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: usize = 4000;

    fn chat(body: &str) -> Result<ChatRequest, InputError> {
        ChatRequest::parse(body.as_bytes(), MAX)
    }

    fn detail(result: Result<impl fmt::Debug, InputError>) -> String {
        match result {
            Err(InputError::Invalid(detail)) => detail,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_chat_message_is_trimmed_and_normalised() {
        assert_eq!(
            chat(r#"{"message": "  Привет!\r\nКак дела?\t "}"#).unwrap(),
            ChatRequest {
                message: "Привет!\nКак дела?".into()
            }
        );
        assert_eq!(chat("\u{feff}{\"message\":\"hi\"}").unwrap().message, "hi");
        assert_eq!(chat(r#"{"message":"a\rb"}"#).unwrap().message, "a\nb");
    }

    #[test]
    fn oversized_bodies_are_413() {
        let body = format!(r#"{{"message":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
        let error = ChatRequest::parse(body.as_bytes(), usize::MAX).unwrap_err();
        assert_eq!(
            error,
            InputError::PayloadTooLarge {
                limit: MAX_BODY_BYTES
            }
        );
        assert_eq!(error.status(), 413);
        let problem = Problem::from(error);
        assert_eq!(problem.status, 413);

        // Exactly at the limit is still read.
        let filler = MAX_BODY_BYTES - r#"{"message":""}"#.len();
        let body = format!(r#"{{"message":"{}"}}"#, "a".repeat(filler));
        assert_eq!(body.len(), MAX_BODY_BYTES);
        assert!(ChatRequest::parse(body.as_bytes(), usize::MAX).is_ok());
    }

    #[test]
    fn bad_utf8_is_400() {
        let error = ChatRequest::parse(b"{\"message\":\"\xff\xfe\"}", MAX).unwrap_err();
        assert_eq!(error, InputError::BadUtf8);
        assert_eq!(Problem::from(error).status, 400);
    }

    #[test]
    fn malformed_json_says_where() {
        for body in [
            r#"{"message": "hi""#,
            r#"{"message": "hi",}"#,
            r#"{"message": "hi"} trailing"#,
            r#"{message: "hi"}"#,
            r#"{"message": "\ud800"}"#,
            "{",
        ] {
            match chat(body) {
                Err(InputError::BadJson(detail)) => {
                    assert!(detail.contains("line 1 column"), "{body}: {detail}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let deep = format!("{{\"message\":{}{}}}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(matches!(chat(&deep), Err(InputError::BadJson(_))));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_400() {
        assert_eq!(
            detail(chat("")),
            "request body is empty; expected a JSON object"
        );
        assert_eq!(
            detail(chat("  \n")),
            "request body is empty; expected a JSON object"
        );
        for body in ["[]", "\"hi\"", "42", "null", "true"] {
            assert_eq!(
                detail(chat(body)),
                "request body must be a JSON object",
                "{body}"
            );
        }
    }

    #[test]
    fn message_must_be_present_and_a_string() {
        assert_eq!(detail(chat("{}")), "`message` is required");
        assert_eq!(
            detail(chat(r#"{"message": 5}"#)),
            "`message` must be a string, not a number"
        );
        assert_eq!(
            detail(chat(r#"{"message": null}"#)),
            "`message` must be a string, not null"
        );
        assert_eq!(
            detail(chat(r#"{"message": ["hi"]}"#)),
            "`message` must be a string, not an array"
        );
    }

    #[test]
    fn unknown_and_duplicate_fields_are_refused() {
        assert_eq!(
            detail(chat(r#"{"message": "hi", "user_id": 7}"#)),
            "unknown field \"user_id\"; allowed: `message`"
        );
        let long_name = "x".repeat(500);
        let text = detail(chat(&format!(r#"{{"message":"hi","{long_name}":1}}"#)));
        assert!(text.len() < 120, "{text}");
        let text = detail(chat(r#"{"message": "a", "message": "b"}"#));
        assert!(
            text.starts_with("field \"message\" appears twice"),
            "{text}"
        );
    }

    #[test]
    fn empty_and_blank_messages_are_refused() {
        for body in [r#"{"message": ""}"#, r#"{"message": "   \n\t "}"#] {
            assert_eq!(detail(chat(body)), "`message` must not be empty");
        }
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let at_limit = "я".repeat(10);
        let body = format!(r#"{{"message":"{at_limit}"}}"#);
        assert_eq!(
            ChatRequest::parse(body.as_bytes(), 10).unwrap().message,
            at_limit
        );
        let body = format!(r#"{{"message":"{}"}}"#, "я".repeat(11));
        assert_eq!(
            detail(ChatRequest::parse(body.as_bytes(), 10)),
            "`message` is 11 characters long; the limit is 10"
        );
        // Surrounding whitespace does not count.
        let body = format!(r#"{{"message":"   {at_limit}   "}}"#);
        assert!(ChatRequest::parse(body.as_bytes(), 10).is_ok());
    }

    #[test]
    fn control_characters_are_refused() {
        for escape in ["\\u0000", "\\u0007", "\\u001b", "\\u007f", "\\u0085"] {
            let body = format!(r#"{{"message":"a{escape}b"}}"#);
            let text = detail(chat(&body));
            assert!(
                text.starts_with("`message` contains a control character"),
                "{text}"
            );
        }
        assert!(detail(chat(r#"{"message":"a\u0000"}"#)).ends_with("(U+0000)"));
        // Emoji with joiners and non-Latin scripts are text, not control characters.
        assert!(chat(r#"{"message":"👩‍👩‍👧 مرحبا"}"#).is_ok());
    }

    #[test]
    fn input_errors_become_problems() {
        let problem = Problem::from(chat("{}").unwrap_err());
        assert_eq!(problem.status, 400);
        assert_eq!(problem.detail.as_deref(), Some("`message` is required"));
        let problem = Problem::from(chat("{").unwrap_err());
        assert!(problem
            .detail
            .unwrap()
            .starts_with("request body is not valid JSON: "));
        assert_eq!(Problem::from(InputError::UnsupportedMediaType).status, 415);
    }

    #[test]
    fn content_type_must_be_json_when_given() {
        for value in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("application/merge-patch+json"),
        ] {
            assert_eq!(require_json(value), Ok(()), "{value:?}");
        }
        for value in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert_eq!(
                require_json(Some(value)),
                Err(InputError::UnsupportedMediaType),
                "{value:?}"
            );
        }
    }

    fn patch(body: Value) -> Result<ProfilePatch, InputError> {
        ProfilePatch::parse(body.to_string().as_bytes())
    }

    #[test]
    fn a_profile_patch_sets_and_removes_fields() {
        let update = patch(json!({
            "name": "  Аня ",
            "age": 27,
            "gender": "female",
            "language": "ru-RU",
            "timezone": "Europe/Moscow",
            "interests": ["music", " travel "],
            "bio": "line one\r\nline two",
            "companion_name": "Evo",
        }))
        .unwrap();
        let stored = json!({"name": "Old", "bio": "old", "memory_hint": 1});
        assert_eq!(
            update.apply(&stored),
            json!({
                "name": "Аня",
                "age": 27,
                "gender": "female",
                "language": "ru-RU",
                "timezone": "Europe/Moscow",
                "interests": ["music", "travel"],
                "bio": "line one\nline two",
                "companion_name": "Evo",
                "memory_hint": 1,
            })
        );

        let update = patch(json!({"bio": null, "age": 30})).unwrap();
        assert_eq!(
            update.changes().collect::<Vec<_>>(),
            vec![
                (ProfileField::Age, Some(&json!(30))),
                (ProfileField::Bio, None),
            ]
        );
        assert_eq!(
            update.apply(&json!({"name": "A", "bio": "x"})),
            json!({"name": "A", "age": 30})
        );
        // Removing what is not there, onto data that is not an object.
        assert_eq!(
            patch(json!({"bio": null})).unwrap().apply(&Value::Null),
            json!({})
        );
        // An empty bio is allowed; an empty name is not.
        assert_eq!(
            patch(json!({"bio": ""})).unwrap().apply(&json!({})),
            json!({"bio": ""})
        );
    }

    #[test]
    fn a_profile_patch_refuses_empty_and_unknown() {
        assert!(detail(patch(json!({})))
            .starts_with("nothing to update; send at least one of: `name`, `age`"));
        let text = detail(patch(json!({"name": "A", "plan": "premium"})));
        assert!(
            text.starts_with("unknown field \"plan\"; allowed: `name`"),
            "{text}"
        );
        assert_eq!(
            detail(ProfilePatch::parse(b"[1]")),
            "request body must be a JSON object"
        );
    }

    #[test]
    fn profile_values_are_checked_by_type_and_range() {
        let refused = [
            (
                json!({"name": ""}),
                "`name` must be 1 to 100 characters long",
            ),
            (
                json!({"name": "   "}),
                "`name` must be 1 to 100 characters long",
            ),
            (json!({"name": "x".repeat(101)}), "`name` must be 1 to 100"),
            (json!({"name": 5}), "`name` must be a string, not a number"),
            (json!({"name": "a\nb"}), "`name` contains a line break"),
            (
                json!({"age": 12}),
                "`age` must be an integer from 13 to 120",
            ),
            (json!({"age": 121}), "`age` must be an integer"),
            (json!({"age": 30.5}), "`age` must be an integer"),
            (json!({"age": "30"}), "`age` must be an integer"),
            (json!({"age": -1}), "`age` must be an integer"),
            (json!({"gender": "Female"}), "`gender` must be one of"),
            (json!({"gender": 1}), "`gender` must be one of"),
            (
                json!({"language": "r"}),
                "`language` must be a language tag",
            ),
            (
                json!({"language": "en_US"}),
                "`language` must be a language tag",
            ),
            (
                json!({"language": "en-"}),
                "`language` must be a language tag",
            ),
            (json!({"language": "x".repeat(17)}), "`language` must be"),
            (json!({"timezone": "Europe//Moscow"}), "`timezone` must be"),
            (json!({"timezone": "/etc/passwd"}), "`timezone` must be"),
            (json!({"timezone": "../x"}), "`timezone` must be"),
            (json!({"timezone": "A".repeat(65)}), "`timezone` must be"),
            (
                json!({"interests": "music"}),
                "`interests` must be an array of strings, not a string",
            ),
            (
                json!({"interests": vec!["a"; 21]}),
                "`interests` has 21 entries",
            ),
            (json!({"interests": [""]}), "`interests[0]` must be 1 to 50"),
            (
                json!({"interests": ["ok", 3]}),
                "`interests[1]` must be a string",
            ),
            (
                json!({"interests": ["x".repeat(51)]}),
                "`interests[0]` must be 1 to 50",
            ),
            (
                json!({"interests": ["Music", "music "]}),
                "`interests` lists \"music\" more than once",
            ),
            (
                json!({"bio": "x".repeat(1001)}),
                "`bio` must be at most 1000 characters",
            ),
            (
                json!({"bio": "a\u{0}b"}),
                "`bio` contains a control character",
            ),
            (
                json!({"companion_name": ""}),
                "`companion_name` must be 1 to 50",
            ),
        ];
        for (body, expected) in refused {
            let text = detail(patch(body.clone()));
            assert!(text.starts_with(expected), "{body}: {text}");
        }
        let accepted = [
            json!({"age": 13}),
            json!({"age": 120}),
            json!({"language": "zh-Hant-TW"}),
            json!({"language": "en"}),
            json!({"timezone": "UTC"}),
            json!({"timezone": "America/Argentina/Buenos_Aires"}),
            json!({"timezone": "Etc/GMT+3"}),
            json!({"interests": []}),
            json!({"interests": vec!["x"; 1]}),
            json!({"bio": "x".repeat(1000)}),
            json!({"name": "ñ".repeat(100)}),
        ];
        for body in accepted {
            assert!(patch(body.clone()).is_ok(), "{body}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            created_at_micros: 1_750_000_000_123_456,
            id: 42,
        };
        let text = cursor.encode();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::decode(&text), Ok(cursor));
        let last = Cursor {
            created_at_micros: MAX_CURSOR_MICROS,
            id: i64::MAX,
        };
        assert_eq!(Cursor::decode(&last.encode()), Ok(last));
        // Positions no page hands out, which PostgreSQL could not turn into a time.
        for (created_at_micros, id) in [
            (i64::MAX, i64::MAX),
            (i64::MIN, i64::MIN),
            (-1, 1),
            (MAX_CURSOR_MICROS + 1, 1),
            (0, 0),
            (0, -1),
        ] {
            let cursor = Cursor {
                created_at_micros,
                id,
            };
            assert!(Cursor::decode(&cursor.encode()).is_err(), "{cursor:?}");
        }

        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "!!".into(),
            b64("12345"),
            b64("a:1"),
            b64("1:b"),
            b64("1:2:3"),
            b64("+1:2"),
            b64("01:2"),
            b64("99999999999999999999:1"),
            format!("{text}="),
            "A".repeat(100),
        ] {
            assert!(Cursor::decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn history_query_defaults_and_bounds() {
        let default = HistoryQuery {
            limit: DEFAULT_HISTORY_LIMIT,
            before: None,
        };
        assert_eq!(HistoryQuery::parse(""), Ok(default));
        assert_eq!(HistoryQuery::parse("?"), Ok(default));
        assert_eq!(HistoryQuery::parse("limit=&before="), Ok(default));
        assert_eq!(HistoryQuery::parse("utm_source=x&foo"), Ok(default));
        assert_eq!(HistoryQuery::parse("?limit=1").unwrap().limit, 1);
        assert_eq!(HistoryQuery::parse("limit=100").unwrap().limit, 100);
        assert_eq!(HistoryQuery::parse("limit=%35%30").unwrap().limit, 50);

        let cursor = Cursor {
            created_at_micros: 1_700_000_000_000_000,
            id: 7,
        };
        let query = format!("before={}&limit=5", cursor.encode());
        assert_eq!(
            HistoryQuery::parse(&query),
            Ok(HistoryQuery {
                limit: 5,
                before: Some(cursor)
            })
        );

        for bad in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=+5",
            "limit=ten",
            "limit=1.5",
            "limit=99999999999",
        ] {
            assert_eq!(
                detail(HistoryQuery::parse(bad)),
                "`limit` must be an integer from 1 to 100",
                "{bad}"
            );
        }
        assert!(detail(HistoryQuery::parse("before=nope"))
            .starts_with("`before` is not a valid cursor"));
        assert_eq!(
            detail(HistoryQuery::parse("limit=5&limit=6")),
            "`limit` is given more than once"
        );
        assert_eq!(
            detail(HistoryQuery::parse("limit=%zz")),
            "`limit` is not valid percent-encoding"
        );
        assert_eq!(
            detail(HistoryQuery::parse("limit=%")),
            "`limit` is not valid percent-encoding"
        );
    }

    #[test]
    fn a_bad_idempotency_key_is_a_400() {
        let error: InputError = crate::ids::IdempotencyKey::parse("a b").unwrap_err().into();
        assert_eq!(error.status(), 400);
    }
}
