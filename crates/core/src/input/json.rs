//! JSON bodies: one object, no duplicate keys, and the text rules every field shares.

use std::fmt;

use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::*;

/// A request body that must be one JSON object: size, UTF-8, syntax and duplicate keys
/// are checked here; the fields are the caller's to check.
pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, InputError> {
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
pub(super) fn shown(name: &str) -> String {
    const MAX_SHOWN_CHARS: usize = 40;
    if name.chars().count() <= MAX_SHOWN_CHARS {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{head:?}…")
    }
}

/// The name of a JSON value's type, for "must be a string, not a number" details.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn unknown_field(name: &str, allowed: &str) -> InputError {
    invalid(format!("unknown field {}; allowed: {allowed}", shown(name)))
}

/// Whether line breaks and tabs belong in a text field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Lines {
    /// Names, tags: no control characters at all.
    Single,
    /// Messages, bio: `\n` and `\t` allowed; `\r\n` and `\r` become `\n`.
    Multi,
}

/// Normalises line endings, trims, and refuses control characters.
pub(super) fn clean_text(field: &str, raw: &str, lines: Lines) -> Result<String, InputError> {
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
