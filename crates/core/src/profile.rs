//! A user as the chat needs them: internal id, plan, profile data and memory. This is
//! what the profile cache holds and what `GET /api/profile` shows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// `users.id`, the key of the user's chat history.
    pub user_id: i64,
    pub plan: String,
    /// Unix milliseconds; set for premium users.
    pub premium_until_ms: Option<i64>,
    /// What the user told us (name, interests, ...), edited with `PUT /api/profile`.
    pub data: serde_json::Value,
    /// What dialog analysis extracted from conversations.
    pub memory: serde_json::Value,
    pub updated_at_ms: i64,
}

/// The cache prefix and counter name for profiles.
pub const CACHE_PREFIX: &str = "profile";

/// The FastAPI service caches profiles for five minutes.
pub const DEFAULT_TTL_SECONDS: u64 = 300;

/// Whom a stored message is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// One stored message, as the history endpoint shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub role: Role,
    pub content: String,
    pub degraded: bool,
    /// An operators' broadcast, not the companion's own words (absent when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    pub created_at_us: i64,
}
