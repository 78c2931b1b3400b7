//! `POST /admin/broadcasts`: the message and its segment.

use serde_json::Value;

use super::*;

/// The longest broadcast message, in characters (a chat message's default limit).
pub const MAX_BROADCAST_CHARS: usize = 4_000;

/// Who a broadcast goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    All,
    Free,
    Premium,
}

impl Segment {
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::All => "all",
            Segment::Free => "free",
            Segment::Premium => "premium",
        }
    }
}

/// The body of `POST /admin/broadcasts`: `{"message": "...", "segment": "all"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastRequest {
    /// Trimmed, with `\n` line endings; 1 to [`MAX_BROADCAST_CHARS`] characters.
    pub message: String,
    pub segment: Segment,
}

impl BroadcastRequest {
    pub fn parse(body: &[u8]) -> Result<BroadcastRequest, InputError> {
        let object = parse_object(body)?;
        if let Some(name) = object
            .keys()
            .find(|name| !["message", "segment"].contains(&name.as_str()))
        {
            return Err(unknown_field(name, "`message`, `segment`"));
        }
        let text = |field: &str| match object.get(field) {
            None => Err(invalid(format!("`{field}` is required"))),
            Some(Value::String(raw)) => Ok(raw),
            Some(other) => Err(invalid(format!(
                "`{field}` must be a string, not {}",
                type_name(other)
            ))),
        };
        let message = clean_text("message", text("message")?, Lines::Multi)?;
        if message.is_empty() {
            return Err(invalid("`message` must not be empty"));
        }
        let chars = message.chars().count();
        if chars > MAX_BROADCAST_CHARS {
            return Err(invalid(format!(
                "`message` is {chars} characters long; the limit is {MAX_BROADCAST_CHARS}"
            )));
        }
        let segment = match text("segment")?.as_str() {
            "all" => Segment::All,
            "free" => Segment::Free,
            "premium" => Segment::Premium,
            other => {
                return Err(invalid(format!(
                    "`segment` must be all, free or premium, not {}",
                    shown(other)
                )))
            }
        };
        Ok(BroadcastRequest { message, segment })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_need_a_message_and_a_known_segment() {
        let ok =
            BroadcastRequest::parse(br#"{"message":" Hi\r\nall ","segment":"premium"}"#).unwrap();
        assert_eq!(ok.message, "Hi\nall");
        assert_eq!(ok.segment, Segment::Premium);
        for bad in [
            &br#"{"message":"hi"}"#[..],
            br#"{"message":"","segment":"all"}"#,
            br#"{"message":"hi","segment":"vip"}"#,
            br#"{"message":"hi","segment":"all","x":1}"#,
            br#"{"message":1,"segment":"all"}"#,
            br#"{"message":"a\u0000b","segment":"all"}"#,
            b"\xff",
            b"[]",
        ] {
            assert!(
                BroadcastRequest::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"message":"{}","segment":"all"}}"#, "й".repeat(4_001));
        assert!(BroadcastRequest::parse(long.as_bytes()).is_err());
    }
}
