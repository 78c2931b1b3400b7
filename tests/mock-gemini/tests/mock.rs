//! The mock over real HTTP, as the app and the benchmark use it.

use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "test-key";

fn request(message: &str) -> Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": message}]}],
        "systemInstruction": {"parts": [{"text": "be nice"}]},
        "generationConfig": {"temperature": 0.9, "maxOutputTokens": 64}
    })
}

async fn generate(mock: &MockGemini, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/gemini-test:generateContent",
            mock.base_url()
        ))
        .header("x-goog-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn answers_generate_content_and_counts_calls() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    let response = generate(&mock, KEY, &request("привет")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "echo: привет"
    );
    assert!(body["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
    let stats = mock.stats();
    assert_eq!((stats.calls, stats.failures), (1, 0));
    assert_eq!(stats.last_request, Some(request("привет")));
    assert_eq!(stats.last_model.as_deref(), Some("gemini-test"));
}

#[tokio::test]
async fn wrong_or_missing_key_is_403_in_gemini_shape() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    let response = generate(&mock, "nope", &request("hi")).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/m:generateContent?key={KEY}",
            mock.base_url()
        ))
        .json(&request("query key"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(mock.stats().failures, 1);
}

#[tokio::test]
async fn script_then_forced_status_with_retry_after() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    mock.set_behaviour(Behaviour {
        script: [429, 200].into(),
        status: Some(500),
        retry_after_secs: Some(7),
        ..Behaviour::default()
    });
    let first = generate(&mock, KEY, &request("a")).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "7");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["details"][0]["retryDelay"], "7s");
    assert_eq!(generate(&mock, KEY, &request("b")).await.status(), 200);
    let third = generate(&mock, KEY, &request("c")).await;
    assert_eq!(third.status(), 500);
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INTERNAL");
    let stats = mock.stats();
    assert_eq!((stats.calls, stats.failures), (3, 2));
    assert!(mock.behaviour().script.is_empty());
}

#[tokio::test]
async fn scripted_zero_drops_the_connection() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    mock.set_behaviour(Behaviour {
        script: [0].into(),
        ..Behaviour::default()
    });
    let error = reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/m:generateContent",
            mock.base_url()
        ))
        .header("x-goog-api-key", KEY)
        .json(&request("x"))
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_status(), "{error}");
    assert_eq!(generate(&mock, KEY, &request("y")).await.status(), 200);
    assert_eq!(mock.stats().failures, 1);
}

#[tokio::test]
async fn latency_and_fail_rate() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    mock.set_behaviour(Behaviour {
        latency_ms: 150,
        ..Behaviour::default()
    });
    let started = Instant::now();
    assert_eq!(generate(&mock, KEY, &request("slow")).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    mock.set_behaviour(Behaviour {
        fail_rate: 1.0,
        fail_status: 502,
        ..Behaviour::default()
    });
    assert_eq!(generate(&mock, KEY, &request("x")).await.status(), 502);
    mock.set_behaviour(Behaviour {
        fail_rate: 0.5,
        ..Behaviour::default()
    });
    let mut failed = 0;
    for _ in 0..200 {
        if generate(&mock, KEY, &request("x")).await.status() == 503 {
            failed += 1;
        }
    }
    assert!(
        (50..150).contains(&failed),
        "{failed} of 200 failed at rate 0.5"
    );
}

#[tokio::test]
async fn control_routes() {
    let mock = MockGemini::start(MockConfig::new(KEY)).await.unwrap();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", mock.base_url());
    let response = client
        .post(url("/_mock/config"))
        .json(&json!({"status": 504, "latency_ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(mock.behaviour().status, Some(504));
    assert_eq!(generate(&mock, KEY, &request("x")).await.status(), 504);

    let stats: Value = client
        .get(url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["calls"], 1);
    assert_eq!(stats["failures"], 1);
    assert_eq!(stats["last_request"], request("x"));

    for bad in [json!({"fail_rate": 2.0}), json!({"unknown": 1}), json!([])] {
        let response = client
            .post(url("/_mock/config"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(mock.behaviour().status, Some(504));

    let response = client.post(url("/_mock/reset")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(mock.behaviour(), Behaviour::default());
    assert_eq!(mock.stats().calls, 0);
    assert_eq!(generate(&mock, KEY, &request("x")).await.status(), 200);

    let response = client.get(url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let error = MockGemini::bind("0.0.0.0:0".parse().unwrap(), MockConfig::new(KEY))
        .await
        .err()
        .expect("must refuse");
    assert!(error.to_string().contains("loopback"), "{error}");
}
