//! Speech (TTS) and structured output over real HTTP, and the failure and delay controls
//! applying to them exactly as to text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "test-key";

/// Gemini's TTS request shape, as the app sends it.
fn speech(text: &str, voice: &str) -> Value {
    json!({
        "contents": [{"parts": [{"text": text}]}],
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}
        }
    })
}

/// The app's dialog-analysis schema, in Gemini's OpenAPI subset.
fn analysis_schema() -> Value {
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

fn analysis(turns: &[(&str, &str)], schema: Option<Value>) -> Value {
    let contents: Vec<Value> = turns
        .iter()
        .map(|(role, text)| json!({"role": role, "parts": [{"text": text}]}))
        .collect();
    let mut config = json!({"responseMimeType": "application/json"});
    if let Some(schema) = schema {
        config["responseSchema"] = schema;
    }
    json!({
        "systemInstruction": {"parts": [{"text": "Analyse the dialog."}]},
        "contents": contents,
        "generationConfig": config
    })
}

fn text(message: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": message}]}]})
}

async fn generate(mock: &MockGemini, body: &Value) -> reqwest::Response {
    try_generate(mock, body).await.unwrap()
}

async fn try_generate(mock: &MockGemini, body: &Value) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/gemini-tts:generateContent",
            mock.base_url()
        ))
        .header("x-goog-api-key", KEY)
        .json(body)
        .send()
        .await
}

/// The samples of a TTS answer, after checking its envelope.
fn pcm_of(body: &Value) -> Vec<i16> {
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP", "{body}");
    assert_eq!(candidate["content"]["role"], "model", "{body}");
    let parts = candidate["content"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{body}");
    let inline = &parts[0]["inlineData"];
    assert_eq!(inline["mimeType"], "audio/L16;codec=pcm;rate=24000");
    let bytes = STANDARD.decode(inline["data"].as_str().unwrap()).unwrap();
    assert_eq!(bytes.len() % 2, 0);
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The JSON document in a structured answer's single text part.
fn document_of(body: &Value) -> Value {
    let parts = body["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 1, "{body}");
    serde_json::from_str(parts[0]["text"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn speech_is_a_pcm_tone_as_long_as_the_text_wants() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    // 100 characters at 20 ms each: 2 s, 48 000 samples.
    let response = generate(&mock, &speech(&"a".repeat(100), "Kore")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let pcm = pcm_of(&body);
    assert_eq!(pcm.len(), 48_000);
    let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 4_000, "peak {peak}");
    // A 440 Hz tone crosses zero about 880 times a second.
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    assert!((1_700..1_820).contains(&crossings), "{crossings} crossings");
    let usage = &body["usageMetadata"];
    assert_eq!(usage["candidatesTokensDetails"][0]["modality"], "AUDIO");
    assert_eq!(usage["candidatesTokenCount"], 64);
    assert_eq!(usage["promptTokenCount"], 25);
    assert_eq!(usage["totalTokenCount"], 89);

    // Clamped to 0.2 s and 3 s.
    let short: Value = generate(&mock, &speech("hi", "Puck"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pcm_of(&short).len(), 4_800);
    let long: Value = generate(&mock, &speech(&"ж".repeat(1_000), "Kore"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pcm_of(&long).len(), 72_000);

    let stats = mock.stats();
    assert_eq!(
        (
            stats.calls,
            stats.tts_calls,
            stats.text_calls,
            stats.structured_calls
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(stats.last_voice.as_deref(), Some("Kore"));
    assert_eq!(stats.last_model.as_deref(), Some("gemini-tts"));

    // A text call after it keeps the voice and counts apart.
    assert_eq!(generate(&mock, &text("hello")).await.status(), 200);
    let stats = mock.stats();
    assert_eq!((stats.calls, stats.tts_calls, stats.text_calls), (4, 3, 1));
    assert_eq!(stats.last_voice.as_deref(), Some("Kore"));
}

#[tokio::test]
async fn speech_honours_failures_and_delay() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    mock.set_behaviour(Behaviour {
        script: [429, 0].into(),
        status: Some(500),
        retry_after_secs: Some(3),
        ..Behaviour::default()
    });
    let first = generate(&mock, &speech("one", "Charon")).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "3");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    let error = try_generate(&mock, &speech("two", "Charon"))
        .await
        .unwrap_err();
    assert!(!error.is_status(), "{error}");
    assert_eq!(
        generate(&mock, &speech("three", "Charon")).await.status(),
        500
    );

    mock.set_behaviour(Behaviour {
        fail_rate: 1.0,
        fail_status: 502,
        ..Behaviour::default()
    });
    assert_eq!(
        generate(&mock, &speech("four", "Charon")).await.status(),
        502
    );

    mock.set_behaviour(Behaviour {
        latency_ms: 150,
        ..Behaviour::default()
    });
    let started = Instant::now();
    let response = generate(&mock, &speech("slow", "Zephyr")).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(response.status(), 200);

    let stats = mock.stats();
    assert_eq!((stats.calls, stats.tts_calls, stats.failures), (5, 5, 4));
    assert_eq!(stats.last_voice.as_deref(), Some("Zephyr"));
}

#[tokio::test]
async fn structured_output_is_a_dialog_analysis_fitting_the_schema() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    let request = analysis(
        &[
            (
                "user",
                "Hello! My name is Oleg. I love mountains and I like coffee.",
            ),
            ("model", "Nice to meet you, Oleg."),
            ("user", "Tomorrow I go hiking"),
        ],
        Some(analysis_schema()),
    );
    let response = generate(&mock, &request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    assert!(
        body["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        document_of(&body),
        json!({
            "facts": ["name: Oleg", "likes: mountains", "likes: coffee"],
            "mood": "positive",
            "topics": ["mountains", "tomorrow", "coffee", "hiking", "hello"],
            "summary": "The user sent 2 messages."
        })
    );
    let stats = mock.stats();
    assert_eq!(
        (
            stats.calls,
            stats.structured_calls,
            stats.text_calls,
            stats.tts_calls
        ),
        (1, 1, 0, 0)
    );
    assert_eq!(stats.last_request, Some(request));

    // Without positive words or facts; without a schema, the analysis as it is.
    let body: Value = generate(&mock, &analysis(&[("user", "so so")], None))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        document_of(&body),
        json!({
            "facts": [],
            "mood": "neutral",
            "topics": [],
            "summary": "The user sent 1 message."
        })
    );

    // Another schema gets its own fields.
    let schema = json!({
        "type": "OBJECT",
        "properties": {
            "mood": {"type": "STRING", "enum": ["positive", "negative"]},
            "score": {"type": "NUMBER"}
        }
    });
    let body: Value = generate(&mock, &analysis(&[("user", "meh")], Some(schema)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(document_of(&body), json!({"mood": "positive", "score": 0}));
}

#[tokio::test]
async fn structured_output_honours_failures_and_delay_set_over_http() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", mock.base_url());
    let request = analysis(&[("user", "I like tests")], Some(analysis_schema()));

    let set = |config: Value| {
        let client = client.clone();
        let url = url("/_mock/config");
        async move {
            let response = client.post(url).json(&config).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    set(json!({"script": [503], "retry_after_secs": 2})).await;
    let failed = generate(&mock, &request).await;
    assert_eq!(failed.status(), 503);
    assert_eq!(failed.headers()["retry-after"], "2");
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAVAILABLE");

    set(json!({"latency_ms": 120})).await;
    let started = Instant::now();
    let body: Value = generate(&mock, &request).await.json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(document_of(&body)["facts"], json!(["likes: tests"]));

    let stats: Value = client
        .get(url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["calls"], 2);
    assert_eq!(stats["structured_calls"], 2);
    assert_eq!(stats["failures"], 1);
    assert_eq!(stats["tts_calls"], 0);
    assert_eq!(stats["last_voice"], Value::Null);

    client.post(url("/_mock/reset")).send().await.unwrap();
    let stats = mock.stats();
    assert_eq!((stats.calls, stats.structured_calls), (0, 0));
}

#[tokio::test]
async fn speech_needs_the_key_too() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/gemini-tts:generateContent",
            mock.base_url()
        ))
        .header("x-goog-api-key", "wrong")
        .json(&speech("hi", "Kore"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let stats = mock.stats();
    assert_eq!((stats.tts_calls, stats.failures), (1, 1));
}
