//! `POST /api/chat`: the message.

use serde_json::Value;

use super::*;

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
