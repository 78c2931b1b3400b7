//! `PUT /api/profile`: which fields of the profile clients may set, and how.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::*;

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
