//! The identifiers that name a user's state everywhere (Redis keys, SQL, logs), each
//! validated when parsed: a user's external id and a client's `Idempotency-Key`. A leaf
//! module, so that `keys` can name them without depending on authentication or input.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A user's external id, the JWT `sub`: 1 to 128 characters of `A-Z a-z 0-9 _ . : @ -`.
///
/// The character set keeps the id safe to place inside Redis keys and hash tags (no
/// braces, no glob characters, no spaces) and in logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserRef(String);

/// The longest accepted user id, in characters (all of them ASCII).
pub const MAX_USER_REF_LEN: usize = 128;

/// A string that is not a valid [`UserRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a user id must be 1 to {MAX_USER_REF_LEN} characters of A-Z a-z 0-9 _ . : @ -")]
pub struct InvalidUserRef;

impl UserRef {
    /// Validates an external user id.
    pub fn parse(id: &str) -> Result<Self, InvalidUserRef> {
        let valid = (1..=MAX_USER_REF_LEN).contains(&id.len())
            && id.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-')
            });
        if valid {
            Ok(UserRef(id.to_owned()))
        } else {
            Err(InvalidUserRef)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserRef {
    type Err = InvalidUserRef;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        UserRef::parse(id)
    }
}

impl TryFrom<String> for UserRef {
    type Error = InvalidUserRef;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        UserRef::parse(&id)
    }
}

impl From<UserRef> for String {
    fn from(user: UserRef) -> String {
        user.0
    }
}

impl AsRef<str> for UserRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest accepted `Idempotency-Key`, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// A client's `Idempotency-Key`: 1 to 128 visible ASCII characters. The value may also
/// come as a structured-field string (`"..."`), as the IETF draft writes it; the quotes
/// are not part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// A header value that is not a valid [`IdempotencyKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(header: &str) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        let value = header.trim_matches([' ', '\t']);
        let value = value
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(value);
        let valid = (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(IdempotencyKey(value.to_owned()))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_refs_accept_the_documented_alphabet() {
        for id in ["a", "tg:12345", "user@example.com", "A-b_c.d", "0"] {
            assert_eq!(UserRef::parse(id).unwrap().as_str(), id);
        }
        for id in ["", " a", "a/b", "a{b}", "a*", "a?", "a\n", "ä"] {
            assert_eq!(UserRef::parse(id), Err(InvalidUserRef), "{id:?}");
        }
        let user: UserRef = serde_json::from_str("\"bob\"").unwrap();
        assert_eq!(serde_json::to_string(&user).unwrap(), "\"bob\"");
        assert!(serde_json::from_str::<UserRef>("\"b b\"").is_err());
    }

    #[test]
    fn idempotency_keys() {
        let key = IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap();
        assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
        assert_eq!(IdempotencyKey::parse("\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(IdempotencyKey::parse(" abc ").unwrap().as_str(), "abc");
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN)).is_ok());
        for bad in [
            String::new(),
            "\"\"".into(),
            "a b".into(),
            "ключ".into(),
            "a\u{7f}".into(),
            "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1),
        ] {
            assert_eq!(
                IdempotencyKey::parse(&bad),
                Err(InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
    }
}
