//! `GET /api/chat/history`: page size and the keyset cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::*;

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
pub(super) const MAX_CURSOR_MICROS: i64 = 253_402_300_799_999_999;

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
