//! The voice routes' path: `/api/chat/messages/{id}/voice`, where `id` is a message id
//! as history pages give it.

use super::{invalid, InputError};

/// The route's name in metrics (ids are not labels).
pub const VOICE_ROUTE: &str = "/api/chat/messages/{id}/voice";

/// A message id from a path: decimal digits, a positive 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageId(pub i64);

impl MessageId {
    pub fn parse(text: &str) -> Result<MessageId, InputError> {
        let valid =
            !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
        match text.parse::<i64>() {
            Ok(id) if valid && id > 0 => Ok(MessageId(id)),
            _ => Err(invalid(format!(
                "message id must be a positive integer, got {:?}",
                text.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// The message id of a voice route's path; `None` when the path is not a voice route.
pub fn voice_path(path: &str) -> Option<Result<MessageId, InputError>> {
    let id = path
        .strip_prefix("/api/chat/messages/")?
        .strip_suffix("/voice")?;
    Some(MessageId::parse(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_paths_carry_a_positive_id() {
        assert_eq!(
            voice_path("/api/chat/messages/42/voice"),
            Some(Ok(MessageId(42)))
        );
        assert_eq!(voice_path("/api/chat/history"), None);
        assert_eq!(voice_path("/api/chat/messages/42"), None);
        for bad in [
            "0",
            "-1",
            "+1",
            "1e3",
            "",
            "9223372036854775808",
            "4/2",
            "٣",
        ] {
            let path = format!("/api/chat/messages/{bad}/voice");
            assert!(matches!(voice_path(&path), Some(Err(_))), "{bad}");
        }
    }
}
