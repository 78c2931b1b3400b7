//! Dialog analysis, the companion's "cognitive cycle": the structured-output request
//! that asks the chat model what a stretch of dialog taught about the user, and how its
//! answer is merged into the profile's memory, with bounded sizes and no repeated facts.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::retry::CallError;
use super::wire::{Content, ContentRole, GenerateRequest, GenerationConfig, Part};

/// Facts kept in memory at most; the newest win.
pub const MAX_FACTS: usize = 50;
/// Topics kept at most; the newest win.
pub const MAX_TOPICS: usize = 20;
/// Longest fact, topic, mood or summary kept, in characters.
pub const MAX_ITEM_CHARS: usize = 300;
/// Messages one analysis reads at most; the rest wait for the next.
pub const MAX_MESSAGES: i64 = 200;

/// What the model is told to do.
const INSTRUCTION: &str = "Ты анализируешь диалог пользователя с AI-компаньоном. \
Выдели устойчивые факты о пользователе (имя, интересы, близкие, работа, планы), \
его настроение, темы разговора и краткое резюме. Отвечай строго по схеме.";

/// The answer's schema (Gemini's `responseSchema`, an OpenAPI subset).
pub fn schema() -> Value {
    json!({
        "type": "OBJECT",
        "properties": {
            "facts": {"type": "ARRAY", "items": {"type": "STRING"}},
            "mood": {"type": "STRING"},
            "topics": {"type": "ARRAY", "items": {"type": "STRING"}},
            "summary": {"type": "STRING"}
        },
        "required": ["facts", "mood", "topics", "summary"]
    })
}

/// One message of the dialog analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogLine {
    pub from_user: bool,
    pub text: String,
}

/// The request analysing `dialog`.
pub fn analysis_request(dialog: &[DialogLine]) -> GenerateRequest {
    let contents = dialog
        .iter()
        .map(|line| Content {
            role: Some(if line.from_user {
                ContentRole::User
            } else {
                ContentRole::Model
            }),
            parts: vec![Part::text(line.text.clone())],
        })
        .collect();
    GenerateRequest {
        contents,
        system_instruction: Some(Content {
            role: None,
            parts: vec![Part::text(INSTRUCTION)],
        }),
        generation_config: Some(GenerationConfig {
            temperature: Some(0.2),
            response_mime_type: Some("application/json".to_owned()),
            response_schema: Some(schema()),
            ..GenerationConfig::default()
        }),
    }
}

/// The model's structured answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    #[serde(default)]
    pub facts: Vec<String>,
    #[serde(default)]
    pub mood: String,
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub summary: String,
}

/// Reads the JSON text of a structured answer.
pub fn parse_analysis(text: &str) -> Result<Analysis, CallError> {
    serde_json::from_str(text.trim())
        .map_err(|e| CallError::BadResponse(format!("analysis is not the schema's JSON: {e}")))
}

/// `memory` with `analysis` merged in: new facts and topics appended unless already
/// there (compared case-insensitively), the oldest dropped past the bounds; mood and
/// summary replaced when the analysis has them. Other keys of `memory` are kept.
pub fn merge(memory: &Value, analysis: &Analysis) -> Value {
    let mut out = match memory {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let merged = |key: &str, new: &[String], max: usize| -> Value {
        let mut list: Vec<String> = out
            .get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(|v| v.as_str().map(clip)).collect())
            .unwrap_or_default();
        for item in new.iter().map(|s| clip(s.trim())).filter(|s| !s.is_empty()) {
            let lower = item.to_lowercase();
            list.retain(|kept| kept.to_lowercase() != lower);
            list.push(item);
        }
        let skip = list.len().saturating_sub(max);
        Value::from(list.split_off(skip))
    };
    let facts = merged("facts", &analysis.facts, MAX_FACTS);
    let topics = merged("topics", &analysis.topics, MAX_TOPICS);
    out.insert("facts".to_owned(), facts);
    out.insert("topics".to_owned(), topics);
    for (key, value) in [("mood", &analysis.mood), ("summary", &analysis.summary)] {
        let value = clip(value.trim());
        if !value.is_empty() {
            out.insert(key.to_owned(), Value::from(value));
        }
    }
    Value::Object(out)
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_ITEM_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(facts: &[&str], topics: &[&str]) -> Analysis {
        Analysis {
            facts: facts.iter().map(|s| s.to_string()).collect(),
            mood: "positive".into(),
            topics: topics.iter().map(|s| s.to_string()).collect(),
            summary: "s".into(),
        }
    }

    #[test]
    fn the_request_asks_for_the_schema() {
        let request = analysis_request(&[DialogLine {
            from_user: true,
            text: "my name is Ann".into(),
        }]);
        let body = serde_json::to_value(&request).unwrap();
        assert_eq!(
            body["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(body["generationConfig"]["responseSchema"], schema());
        assert_eq!(body["contents"][0]["role"], "user");
    }

    #[test]
    fn merging_twice_changes_nothing_more_and_keeps_other_keys() {
        let memory = json!({"facts": ["likes: tea"], "pets": "cat"});
        let a = analysis(&["Likes: Tea", "name: Ann"], &["tea"]);
        let once = merge(&memory, &a);
        assert_eq!(once["facts"], json!(["Likes: Tea", "name: Ann"]));
        assert_eq!(once["pets"], "cat");
        assert_eq!(once["mood"], "positive");
        assert_eq!(merge(&once, &a), once);
    }

    #[test]
    fn memory_stays_bounded() {
        let many: Vec<String> = (0..80).map(|i| format!("fact {i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let long = "x".repeat(1000);
        let merged = merge(&json!(null), &analysis(&refs, &[long.as_str()]));
        let facts = merged["facts"].as_array().unwrap();
        assert_eq!(facts.len(), MAX_FACTS);
        assert_eq!(facts.last().unwrap(), "fact 79");
        assert_eq!(
            merged["topics"][0].as_str().unwrap().chars().count(),
            MAX_ITEM_CHARS
        );
        assert!(parse_analysis("not json").is_err());
        assert_eq!(
            parse_analysis(r#"{"facts":["a"],"mood":"m","topics":[],"summary":"x"}"#)
                .unwrap()
                .facts,
            ["a"]
        );
    }
}
