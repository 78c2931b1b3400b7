//! Structured output: with `responseMimeType: "application/json"`, Gemini answers with one
//! text part holding a JSON document that fits `responseSchema`.
//!
//! The app asks for a "dialog analysis" (`facts`, `mood`, `topics`, `summary`), so the
//! mock works one out of the conversation, deterministically, so that a test can predict
//! it: see [`analyse`]. The document is then shaped by the schema it was sent, so that a
//! schema with other or fewer fields still gets a valid answer rather than the analysis
//! pasted in whole.

use serde_json::{json, Map, Value};

/// Said by the user, these make a fact: the phrase, then the fact's label.
const FACT_PHRASES: [(&str, &str); 3] = [
    ("my name is ", "name"),
    ("i like ", "likes"),
    ("i love ", "likes"),
];
/// Where a fact's value ends at the latest.
const CLAUSE_ENDS: [char; 7] = ['.', ',', '!', '?', ';', ':', '\n'];
/// Words at which a fact's value stops ("my name is Ann and I love tea").
const FACT_STOP_WORDS: [&str; 2] = ["and", "but"];
/// Any of these said by the user makes the mood "positive".
const POSITIVE_WORDS: [&str; 4] = ["love", "like", "happy", "great"];
const MAX_TOPICS: usize = 5;
/// Shorter words make poor topics ("a", "is", "my").
const MIN_TOPIC_CHARS: usize = 3;

/// True when `generationConfig.responseMimeType` is `application/json`.
pub(crate) fn wants_json(request: &Value) -> bool {
    request["generationConfig"]["responseMimeType"]
        .as_str()
        .is_some_and(|mime| mime.eq_ignore_ascii_case("application/json"))
}

/// The answer to a JSON request: the analysis, shaped by `responseSchema` (or by the
/// newer `responseJsonSchema`), as the text of one part.
pub(crate) fn reply_to(request: &Value) -> Value {
    let analysis = analyse(request);
    let config = &request["generationConfig"];
    let schema = [&config["responseSchema"], &config["responseJsonSchema"]]
        .into_iter()
        .find(|schema| schema.is_object());
    let document = match schema {
        Some(schema) => shape(schema, Some(&analysis)),
        None => analysis,
    };
    let text = document.to_string();
    let usage = crate::text_usage(crate::prompt_chars(request), text.chars().count());
    crate::answer_with(json!([{ "text": text }]), usage)
}

/// The dialog analysis of the request's `contents`. A content without a role counts as
/// the user's, as Gemini reads a single-turn request.
///
/// - `facts`: "name: X" for each "my name is X" and "likes: X" for each "I like X" or
///   "I love X" in the user's text (case ignored), X running to the next punctuation or
///   "and"/"but"; in order, without repeats;
/// - `mood`: "positive" if the user said love, like, happy or great, else "neutral";
/// - `topics`: the longest distinct words (three characters or more, lowercased) of the
///   whole conversation, at most five, longest first, ties in order of appearance;
/// - `summary`: "The user sent N message(s)." counting the user's contents.
fn analyse(request: &Value) -> Value {
    let contents = request["contents"].as_array().map(Vec::as_slice);
    let contents = contents.unwrap_or_default();
    let is_user = |content: &&Value| content["role"].as_str().unwrap_or("user") == "user";
    let user_texts: Vec<&str> = contents
        .iter()
        .filter(is_user)
        .flat_map(crate::texts_of)
        .collect();
    let all_texts: Vec<&str> = contents.iter().flat_map(crate::texts_of).collect();

    let mut facts: Vec<String> = Vec::new();
    for fact in user_texts.iter().flat_map(|text| facts_in(text)) {
        if !facts.contains(&fact) {
            facts.push(fact);
        }
    }
    let positive = user_texts
        .iter()
        .flat_map(|text| words(text))
        .any(|word| POSITIVE_WORDS.contains(&word.as_str()));
    let user_messages = contents.iter().filter(is_user).count();
    let plural = if user_messages == 1 { "" } else { "s" };
    json!({
        "facts": facts,
        "mood": if positive { "positive" } else { "neutral" },
        "topics": topics(&all_texts),
        "summary": format!("The user sent {user_messages} message{plural}."),
    })
}

/// The facts in one text, in the order they are said.
fn facts_in(text: &str) -> Vec<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for (phrase, label) in FACT_PHRASES {
        for start in phrase_starts(text, phrase) {
            let rest = &text[start + phrase.len()..];
            let clause = rest.split(CLAUSE_ENDS).next().unwrap_or_default();
            let value: Vec<&str> = clause
                .split_whitespace()
                .take_while(|word| {
                    !FACT_STOP_WORDS
                        .iter()
                        .any(|stop| word.eq_ignore_ascii_case(stop))
                })
                .collect();
            if !value.is_empty() {
                found.push((start, format!("{label}: {}", value.join(" "))));
            }
        }
    }
    found.sort_by_key(|(start, _)| *start);
    found.into_iter().map(|(_, fact)| fact).collect()
}

/// Where `phrase` (ASCII, lowercase) starts in `text`, ignoring ASCII case, at the
/// start of a word. Comparing bytes keeps every index a char boundary, since the
/// matched bytes are all ASCII.
fn phrase_starts(text: &str, phrase: &str) -> Vec<usize> {
    let (bytes, wanted) = (text.as_bytes(), phrase.as_bytes());
    (0..bytes.len().saturating_sub(wanted.len() - 1))
        .filter(|&i| bytes[i..i + wanted.len()].eq_ignore_ascii_case(wanted))
        .filter(|&i| {
            text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
        })
        .collect()
}

/// The lowercased words of a text: runs of letters and digits, in any script.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

fn topics(texts: &[&str]) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for word in texts.iter().flat_map(|text| words(text)) {
        if word.chars().count() >= MIN_TOPIC_CHARS && !distinct.contains(&word) {
            distinct.push(word);
        }
    }
    // Stable: equal lengths keep their order of appearance.
    distinct.sort_by_key(|word| std::cmp::Reverse(word.chars().count()));
    distinct.truncate(MAX_TOPICS);
    distinct
}

/// A value fitting `schema` (Gemini's OpenAPI subset, or JSON Schema: type names in
/// either case), taken from `known` where it fits and made up where it does not.
fn shape(schema: &Value, known: Option<&Value>) -> Value {
    if let Some(first) = schema["anyOf"]
        .as_array()
        .and_then(|options| options.first())
    {
        return shape(first, known);
    }
    let type_name = match &schema["type"] {
        Value::String(name) => name.to_ascii_lowercase(),
        // JSON Schema's ["string", "null"]: the first that is not null.
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| !name.eq_ignore_ascii_case("null"))
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if schema["properties"].is_object() => "object".to_owned(),
        _ => String::new(),
    };
    match type_name.as_str() {
        "object" => {
            let properties = schema["properties"].as_object();
            let fields: Map<String, Value> = properties
                .into_iter()
                .flatten()
                .map(|(name, property)| {
                    let known = known.and_then(|known| known.get(name));
                    (name.clone(), shape(property, known))
                })
                .collect();
            Value::Object(fields)
        }
        "array" => match known {
            Some(Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .map(|item| shape(&schema["items"], Some(item)))
                    .collect(),
            ),
            _ => json!([]),
        },
        "string" => {
            let choices = schema["enum"].as_array();
            match (known, choices) {
                (Some(Value::String(known)), None) => json!(known),
                (Some(known @ Value::String(_)), Some(choices)) if choices.contains(known) => {
                    known.clone()
                }
                (_, Some(choices)) if !choices.is_empty() => choices[0].clone(),
                _ => json!(""),
            }
        }
        "integer" => match known {
            Some(number @ Value::Number(n)) if n.is_i64() || n.is_u64() => number.clone(),
            _ => json!(0),
        },
        "number" => match known {
            Some(number @ Value::Number(_)) => number.clone(),
            _ => json!(0),
        },
        "boolean" => match known {
            Some(flag @ Value::Bool(_)) => flag.clone(),
            _ => json!(false),
        },
        "null" => Value::Null,
        // No type: anything goes, so the known value as it is.
        _ => known.cloned().unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(turns: &[(&str, &str)]) -> Value {
        let contents: Vec<Value> = turns
            .iter()
            .map(|(role, text)| json!({"role": role, "parts": [{"text": text}]}))
            .collect();
        json!({ "contents": contents })
    }

    #[test]
    fn facts_mood_topics_summary() {
        let request = conversation(&[
            (
                "user",
                "Hi! My name is Anna Maria and I love jazz. I like tea, too.",
            ),
            ("model", "Nice to meet you, Anna Maria."),
            (
                "user",
                "my name is anna maria. Ilike nothing; I liked films",
            ),
        ]);
        assert_eq!(
            analyse(&request),
            json!({
                "facts": ["name: Anna Maria", "likes: jazz", "likes: tea", "name: anna maria"],
                "mood": "positive",
                "topics": ["nothing", "maria", "ilike", "liked", "films"],
                "summary": "The user sent 2 messages."
            })
        );
    }

    #[test]
    fn neutral_without_positive_words_and_roleless_is_user() {
        let request = json!({"contents": [{"parts": [{"text": "Погода сегодня plain"}]}]});
        assert_eq!(
            analyse(&request),
            json!({
                "facts": [],
                "mood": "neutral",
                "topics": ["сегодня", "погода", "plain"],
                "summary": "The user sent 1 message."
            })
        );
        // The model's words do not set the user's mood.
        let request = conversation(&[("user", "ok"), ("model", "great")]);
        assert_eq!(analyse(&request)["mood"], "neutral");
    }

    #[test]
    fn phrases_start_words_and_survive_multibyte_text() {
        assert_eq!(facts_in("Я: i like чай"), ["likes: чай"]);
        assert!(facts_in("hi like tea").is_empty());
        assert!(facts_in("i like").is_empty());
        assert!(facts_in("").is_empty());
    }

    #[test]
    fn shaped_by_the_schema() {
        let analysis =
            json!({"facts": ["name: A"], "mood": "positive", "topics": [], "summary": "s"});
        let schema = json!({
            "type": "OBJECT",
            "properties": {
                "facts": {"type": "ARRAY", "items": {"type": "STRING"}},
                "mood": {"type": "STRING", "enum": ["happy", "sad"]},
                "count": {"type": "INTEGER"},
                "extra": {"type": ["string", "null"]},
                "nested": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
            }
        });
        assert_eq!(
            shape(&schema, Some(&analysis)),
            json!({
                "facts": ["name: A"],
                "mood": "happy",
                "count": 0,
                "extra": "",
                "nested": {"ok": false}
            })
        );
    }
}
