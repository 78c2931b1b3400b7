//! What the model is told: the persona, and a chat turn's request assembled from the
//! profile, the memory and the history; and the reply users get when there is none.

use super::wire::{Content, ContentRole, GenerateRequest, GenerationConfig, Part};
use serde::{Deserialize, Serialize};

/// What the companion is, told to the model before anything else. Short on purpose: every
/// token of it is paid for on every turn.
pub const DEFAULT_PERSONA: &str = "Ты — Evolve, тёплый и дружелюбный собеседник. \
Говори по-русски (или на языке пользователя, если он пишет на другом), на «ты», просто и \
живо, без канцелярита. Отвечай коротко — обычно 1–4 предложения, — проявляй интерес к \
собеседнику и помни, что он рассказывал о себе. Не выдумывай факты о пользователе и не \
называй себя языковой моделью без повода.";

/// The answer a user gets when the LLM cannot be reached (breaker open, call failed): the
/// FastAPI service's own words.
pub const FALLBACK_REPLY: &str = "Извини, сейчас у меня технические проблемы 😔 Попробуй написать через минутку, я быстро все исправлю!";

/// Sampling temperature: lively but not erratic, for small talk.
pub const TEMPERATURE: f64 = 0.9;

/// Upper bound on a reply's tokens. Generous for 1–4 sentences, because thinking models
/// spend part of it before the visible answer.
pub const MAX_OUTPUT_TOKENS: u32 = 2048;

/// Profile and memory are rendered into the system instruction up to this many characters,
/// so a large profile cannot make every turn expensive.
pub const MAX_CONTEXT_CHARS: usize = 2_000;

/// Who said a turn of the stored chat history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One stored message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

impl Turn {
    pub fn user(text: impl Into<String>) -> Self {
        Turn {
            role: Role::User,
            text: text.into(),
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Turn {
            role: Role::Assistant,
            text: text.into(),
        }
    }
}

/// The request for one chat turn.
///
/// The system instruction is the persona, then what the profile says about the user, then
/// what earlier dialogs taught about them (`memory`), each rendered compactly as
/// `key: value` lines and cut at [`MAX_CONTEXT_CHARS`]. The contents are the history
/// (oldest first) and then `message`. Consecutive turns of one role are merged into one
/// content (a stored user message whose reply was never produced would otherwise make two
/// user contents in a row), empty turns are dropped, and so are assistant turns before the
/// first user turn, since a conversation sent to Gemini starts with the user.
pub fn build_request(
    persona: &str,
    memory: &serde_json::Value,
    profile: &serde_json::Value,
    history: &[Turn],
    message: &str,
) -> GenerateRequest {
    let mut system = persona.trim().to_owned();
    let mut budget = MAX_CONTEXT_CHARS;
    for (title, value) in [
        ("О пользователе (из профиля):", profile),
        ("Что ты помнишь о пользователе:", memory),
    ] {
        let lines = render_compact(value, &mut budget);
        if !lines.is_empty() {
            system.push_str("\n\n");
            system.push_str(title);
            system.push('\n');
            system.push_str(&lines);
        }
    }

    let mut contents: Vec<Content> = Vec::with_capacity(history.len() + 1);
    let turns = history
        .iter()
        .map(|turn| (turn.role, turn.text.as_str()))
        .chain(std::iter::once((Role::User, message)));
    for (role, text) in turns {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let role = match role {
            Role::User => ContentRole::User,
            Role::Assistant => ContentRole::Model,
        };
        match contents.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.push(Part::text(text)),
            None if role == ContentRole::Model => {}
            _ => contents.push(Content {
                role: Some(role),
                parts: vec![Part::text(text)],
            }),
        }
    }

    GenerateRequest {
        contents,
        system_instruction: Some(Content {
            role: None,
            parts: vec![Part::text(system)],
        }),
        generation_config: Some(GenerationConfig {
            temperature: Some(TEMPERATURE),
            max_output_tokens: Some(MAX_OUTPUT_TOKENS),
            ..GenerationConfig::default()
        }),
    }
}

/// Renders a JSON value as `- path: value` lines (nested keys joined with `.`, arrays of
/// scalars joined with `, `), skipping nulls and empty values, while `budget` characters
/// last. A bare scalar or array renders as one `- value` line.
fn render_compact(value: &serde_json::Value, budget: &mut usize) -> String {
    let mut lines = Vec::new();
    collect_lines(String::new(), value, &mut lines);
    let mut out = String::new();
    for line in lines {
        let cost = line.chars().count() + 1;
        if cost > *budget {
            break;
        }
        *budget -= cost;
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

fn collect_lines(path: String, value: &serde_json::Value, lines: &mut Vec<String>) {
    use serde_json::Value;
    let line = |text: String| {
        if path.is_empty() {
            format!("- {text}")
        } else {
            format!("- {path}: {text}")
        }
    };
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                let key = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect_lines(key, value, lines);
            }
        }
        Value::Array(items) if items.iter().all(|item| !item.is_object()) => {
            let items: Vec<String> = items.iter().filter_map(scalar_text).collect();
            if !items.is_empty() {
                lines.push(line(items.join(", ")));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let key = if path.is_empty() {
                    index.to_string()
                } else {
                    format!("{path}.{index}")
                };
                collect_lines(key, item, lines);
            }
        }
        scalar => {
            if let Some(text) = scalar_text(scalar) {
                lines.push(line(text));
            }
        }
    }
}

fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            (!text.is_empty()).then_some(text)
        }
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_serializes_in_the_rest_shape() {
        let request = build_request(
            "Be kind.",
            &json!({}),
            &json!({}),
            &[Turn::user("hi"), Turn::assistant("hello!")],
            "how are you?",
        );
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"text": "hello!"}]},
                    {"role": "user", "parts": [{"text": "how are you?"}]}
                ],
                "systemInstruction": {"parts": [{"text": "Be kind."}]},
                "generationConfig": {"temperature": 0.9, "maxOutputTokens": 2048}
            })
        );
    }

    #[test]
    fn system_instruction_renders_profile_and_memory_compactly() {
        let profile = json!({
            "name": "Аня",
            "age": 27,
            "interests": ["книги", "бег"],
            "city": null,
            "bio": "  likes\n long   walks ",
            "pets": [{"kind": "cat", "name": "Барсик"}],
        });
        let memory = json!({"facts": ["has a sister"], "mood": {"last": "tired"}});
        let request = build_request(DEFAULT_PERSONA, &memory, &profile, &[], "привет");
        let system = &request.system_instruction.unwrap().parts[0].text;
        assert!(system.starts_with(DEFAULT_PERSONA), "{system}");
        let expected = "\n\nО пользователе (из профиля):\n\
            - age: 27\n- bio: likes long walks\n- interests: книги, бег\n- name: Аня\n\
            - pets.0.kind: cat\n- pets.0.name: Барсик\n\n\
            Что ты помнишь о пользователе:\n- facts: has a sister\n- mood.last: tired";
        assert!(system.ends_with(expected), "{system}");
    }

    #[test]
    fn empty_context_adds_nothing_to_the_persona() {
        for empty in [
            json!(null),
            json!({}),
            json!([]),
            json!({"a": null, "b": []}),
        ] {
            let request = build_request(" P ", &empty, &empty, &[], "m");
            assert_eq!(request.system_instruction.unwrap().parts[0].text, "P");
        }
        let request = build_request("P", &json!("likes tea"), &json!(null), &[], "m");
        assert_eq!(
            request.system_instruction.unwrap().parts[0].text,
            "P\n\nЧто ты помнишь о пользователе:\n- likes tea"
        );
    }

    #[test]
    fn context_is_cut_at_the_budget() {
        let big: serde_json::Map<String, serde_json::Value> = (0..1_000)
            .map(|i| (format!("k{i:04}"), json!("x".repeat(20))))
            .collect();
        let request = build_request("P", &json!(big), &json!(big), &[], "m");
        let system = &request.system_instruction.unwrap().parts[0].text;
        assert!(
            system.chars().count() <= MAX_CONTEXT_CHARS + 200,
            "{system}"
        );
        // Whole lines only.
        assert!(system.ends_with(&"x".repeat(20)));
        // The profile used the budget up: memory gets no heading.
        assert!(!system.contains("помнишь"));
    }

    #[test]
    fn history_is_merged_and_starts_with_the_user() {
        let history = [
            Turn::assistant("orphan reply"),
            Turn::user("one"),
            Turn::user("two"),
            Turn::assistant("  "),
            Turn::assistant("answer"),
            Turn::user("unanswered"),
        ];
        let request = build_request("P", &json!({}), &json!({}), &history, " new ");
        let contents = serde_json::to_value(&request.contents).unwrap();
        assert_eq!(
            contents,
            json!([
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "answer"}]},
                {"role": "user", "parts": [{"text": "unanswered"}, {"text": "new"}]}
            ])
        );
    }

    #[test]
    fn fallback_reply_is_the_fastapi_services() {
        assert!(FALLBACK_REPLY.starts_with("Извини, сейчас у меня технические проблемы 😔"));
        assert!(FALLBACK_REPLY.ends_with("я быстро все исправлю!"));
    }
}
