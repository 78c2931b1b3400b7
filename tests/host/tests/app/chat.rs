//! The `chat` component of the real `spin.toml` on the local host, against real Redis
//! and PostgreSQL and the mock Gemini: the shared cache, the shared circuit breaker,
//! retries, auth, input, idempotency, rate limits, history and the degraded paths.
//!
//! Each test that touches application-wide Redis keys (breaker state, cache counters)
//! takes its own Redis database, so tests run in parallel without seeing each other.

use crate::common::*;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Chat {
    app: evolve_host::Running,
}

impl Chat {
    fn url(&self, path: &str) -> String {
        url(self.app.addr, path)
    }

    async fn get(&self, path: &str, user: &str) -> reqwest::Response {
        client()
            .get(self.url(path))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/chat` with an `Idempotency-Key`.
    fn send_keyed(
        &self,
        user: &str,
        key: &str,
        message: &str,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
        client()
            .post(self.url("/api/chat"))
            .bearer_auth(token(user))
            .header("idempotency-key", key)
            .json(&json!({ "message": message }))
            .send()
    }

    async fn send(&self, user: &str, message: &str) -> reqwest::Response {
        client()
            .post(self.url("/api/chat"))
            .bearer_auth(token(user))
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap()
    }
}

/// The app on Redis database `db` and the test PostgreSQL, talking to `mock`.
async fn chat(db: u8, mock: &MockGemini, tune: impl FnOnce(&mut evolve_host::HostOptions)) -> Chat {
    migrated().await;
    let mut options = app_options(&redis_db(db), &pg_url());
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "cache_hit_sample", 1);
    set_var(&mut options, "llm_max_attempts", 1);
    tune(&mut options);
    Chat {
        app: start(&options, HTTP_ONLY).await,
    }
}

/// The app with a PostgreSQL address where nothing listens (a stopped server, as the
/// client sees it), on Redis database `db`.
async fn chat_without_postgres(db: u8, mock: &MockGemini) -> Chat {
    let dead = format!(
        "postgres://evolve:evolve@127.0.0.1:{}/evolve_test",
        free_port()
    );
    let mut options = app_options(&redis_db(db), &dead);
    set_var(&mut options, "gemini_base_url", mock.base_url());
    Chat {
        app: start(&options, HTTP_ONLY).await,
    }
}

async fn mock() -> MockGemini {
    MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap()
}

async fn cache_stats(db: u8) -> std::collections::HashMap<String, i64> {
    let mut conn = redis_in(db).await;
    redis::cmd("HGETALL")
        .arg(evolve_core::keys::CACHE_STATS)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chat_turn_answers_and_stores_both_messages() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("turn");
    let response = app.send(&who, "  привет!  ").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["degraded"], false, "{body}");
    assert!(
        body["reply"].as_str().unwrap().contains("привет!"),
        "{body}"
    );
    assert!(body["message_id"].as_i64().unwrap() > body["user_message_id"].as_i64().unwrap());
    assert_eq!(stored_rows(&who).await, 2);
    assert_eq!(mock.stats().calls, 1);
    // The API key travels in the header, and the request carries the persona.
    let request = mock.stats().last_request.unwrap();
    assert!(
        request["systemInstruction"].to_string().contains("Evolve"),
        "{request}"
    );

    // The second turn sends the first as history.
    app.send(&who, "как дела?").await;
    let request = mock.stats().last_request.unwrap();
    let contents = request["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{request}");
    assert_eq!(contents[0]["parts"][0]["text"], "привет!");
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_are_cached_across_instances_and_writes_invalidate() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let a = chat(rdb.number, &mock, |_| {}).await;
    let b = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("cache");

    let first = a.get("/api/profile", &who).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "miss");
    let second = b.get("/api/profile", &who).await;
    assert_eq!(
        second.headers()["x-cache"],
        "hit",
        "the other instance reads the shared entry"
    );

    let put = client()
        .put(a.url("/api/profile"))
        .bearer_auth(token(&who))
        .json(&json!({"name": "Аня", "interests": ["кино", "books"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["data"]["name"], "Аня");

    let after = b.get("/api/profile", &who).await;
    assert_eq!(
        after.headers()["x-cache"],
        "miss",
        "the write dropped the entry"
    );
    let after: Value = after.json().await.unwrap();
    assert_eq!(
        after["data"],
        json!({"name": "Аня", "interests": ["кино", "books"]})
    );

    // null removes a field
    client()
        .put(a.url("/api/profile"))
        .bearer_auth(token(&who))
        .json(&json!({"name": null}))
        .send()
        .await
        .unwrap();
    let again: Value = b.get("/api/profile", &who).await.json().await.unwrap();
    assert_eq!(again["data"], json!({"interests": ["кино", "books"]}));

    // Misses: the first read and the two reads after writes. Hits: the second instance's
    // first read and the two writes, which find the user's id through the cache.
    let stats = cache_stats(rdb.number).await;
    assert_eq!(stats.get("profile:misses"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("profile:hits"), Some(&3), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_loader_serves_a_hundred_concurrent_misses() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("stampede");
    // The user exists before the stampede, so every request is a plain cache miss.
    pg().await
        .execute("INSERT INTO users (external_id) VALUES ($1)", &[&who])
        .await
        .unwrap();
    let requests = (0..100).map(|_| {
        let url = app.url("/api/profile");
        let token = token(&who);
        async move {
            let r = client().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-cache"].to_str().unwrap().to_string()
        }
    });
    let sources = futures::future::join_all(requests).await;
    let loads = sources
        .iter()
        .filter(|s| *s == "miss" || *s == "bypass")
        .count();
    assert_eq!(loads, 1, "origin loads: {sources:?}");
    let stats = cache_stats(rdb.number).await;
    assert_eq!(stats.get("profile:misses"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("profile:hits"), Some(&99), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_fails_fast_probes_once_and_closes() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let tune = |o: &mut evolve_host::HostOptions| {
        set_var(o, "breaker_open_seconds", 1);
        set_var(o, "chat_rate_limit_per_minute", 0);
    };
    let a = chat(rdb.number, &mock, tune).await;
    let b = chat(rdb.number, &mock, tune).await;
    let who = test_user("breaker");
    mock.set_behaviour(Behaviour {
        status: Some(503),
        ..Behaviour::default()
    });

    for i in 0..5 {
        let body: Value = a
            .send(&who, &format!("fail {i}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["degraded"], true);
        assert_eq!(body["reply"], evolve_core::llm::FALLBACK_REPLY);
    }
    assert_eq!(mock.stats().calls, 5);

    // Open: both instances answer at once without calling the LLM, and store the message.
    let started = Instant::now();
    let body: Value = b.send(&who, "while open").await.json().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(body["degraded"], true);
    assert_eq!(body["reply"], evolve_core::llm::FALLBACK_REPLY);
    assert_eq!(
        mock.stats().calls,
        5,
        "an open breaker must not call the LLM"
    );
    assert_eq!(stored_rows(&who).await, 12);

    // Half-open: of many concurrent turns on two instances, exactly one probes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    mock.set_behaviour(Behaviour {
        latency_ms: 400,
        ..Behaviour::default()
    });
    let turns = (0..10).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let who = who.clone();
        async move {
            app.send(&who, &format!("probe {i}"))
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    let answers = futures::future::join_all(turns).await;
    assert_eq!(mock.stats().calls, 6, "one probe across both instances");
    assert_eq!(answers.iter().filter(|a| a["degraded"] == false).count(), 1);
    let state = |app: &Chat| {
        let url = app.url("/ready");
        async move {
            let ready: Value = client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ready["gemini"]["circuit_breaker"]["state"].clone()
        }
    };
    // One success is not enough to close.
    assert_eq!(state(&b).await, "HALF_OPEN");

    // The second closes it.
    mock.set_behaviour(Behaviour::default());
    let body: Value = a.send(&who, "second probe").await.json().await.unwrap();
    assert_eq!(body["degraded"], false);
    assert_eq!(state(&b).await, "CLOSED");
    let body: Value = b.send(&who, "closed now").await.json().await.unwrap();
    assert_eq!(body["degraded"], false);
    assert_eq!(mock.stats().calls, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_wait_as_long_as_retry_after_says() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |o| set_var(o, "llm_max_attempts", 3)).await;
    mock.set_behaviour(Behaviour {
        script: [429].into(),
        retry_after_secs: Some(1),
        ..Behaviour::default()
    });
    let started = Instant::now();
    let body: Value = app
        .send(&test_user("retry"), "hello")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["degraded"], false, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(mock.stats().calls, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_get_401() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let good = token("auth-user");
    let mut last_byte_changed = good.clone();
    let last = last_byte_changed.pop().unwrap();
    last_byte_changed.push(if last == 'A' { 'B' } else { 'A' });
    let expired = evolve_core::auth::sign(
        &evolve_core::auth::Claims {
            sub: evolve_core::ids::UserRef::parse("auth-user").unwrap(),
            exp: 1,
        },
        JWT_SECRET.as_bytes(),
    );
    let other_secret = evolve_core::auth::sign(
        &evolve_core::auth::Claims {
            sub: evolve_core::ids::UserRef::parse("auth-user").unwrap(),
            exp: u64::MAX / 2,
        },
        b"another-secret",
    );
    for header in [
        None,
        Some("Basic dXNlcjpwYXNz".to_string()),
        Some("Bearer not.a.jwt".to_string()),
        Some(format!("Bearer {last_byte_changed}")),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {other_secret}")),
        Some("Bearer test-admin-token".to_string()),
    ] {
        let mut request = client().get(app.url("/api/profile"));
        if let Some(h) = &header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(app.get("/api/profile", "auth-user").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |o| {
        set_var(o, "chat_max_message_chars", 50)
    })
    .await;
    let who = test_user("input");
    let post = |body: Vec<u8>| {
        client()
            .post(app.url("/api/chat"))
            .bearer_auth(token(&who))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![b'x'; 17 * 1024], 413),
        (
            b"{\"message\": \""
                .iter()
                .chain(&[0xff, 0xfe])
                .chain(b"\"}")
                .copied()
                .collect(),
            400,
        ),
        (b"{not json".to_vec(), 400),
        (b"[]".to_vec(), 400),
        (br#"{"message": 42}"#.to_vec(), 400),
        (br#"{"message": ""}"#.to_vec(), 400),
        (br#"{"message": "   "}"#.to_vec(), 400),
        (br#"{}"#.to_vec(), 400),
        (br#"{"message": "hi", "extra": 1}"#.to_vec(), 400),
        (
            serde_json::to_vec(&json!({"message": "я".repeat(51)})).unwrap(),
            400,
        ),
    ];
    for (body, status) in cases {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(
            response.status(),
            status,
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status);
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
    }
    let wrong_type = client()
        .post(app.url("/api/chat"))
        .bearer_auth(token(&who))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert_eq!(app.get("/api/nothing", &who).await.status(), 404);
    let wrong_method = app.get("/api/chat", &who).await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let bad_profile = client()
        .put(app.url("/api/profile"))
        .bearer_auth(token(&who))
        .json(&json!({"age": "old"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_profile.status(), 400);
    let bad_query = app.get("/api/chat/history?limit=0", &who).await;
    assert_eq!(bad_query.status(), 400);
    assert_eq!(stored_rows(&who).await, 0);
    assert_eq!(mock.stats().calls, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_request_with_the_same_idempotency_key_is_answered_once() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("idem");
    let send = || app.send_keyed(&who, "retry-42", "once");
    let first: Value = send().await.unwrap().json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(mock.stats().calls, 1);
    assert_eq!(stored_rows(&who).await, 2);
    // The same key with another message is refused.
    let other = app.send_keyed(&who, "retry-42", "different").await.unwrap();
    assert_eq!(other.status(), 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn turns_over_the_rate_limit_get_429_with_retry_after() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |o| {
        set_var(o, "chat_rate_limit_per_minute", 3)
    })
    .await;
    let who = test_user("limit");
    for _ in 0..3 {
        assert_eq!(app.send(&who, "hi").await.status(), 200);
    }
    let limited = app.send(&who, "one too many").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(stored_rows(&who).await, 6);
    // Another user is not affected.
    assert_eq!(
        app.send(&test_user("limit-other"), "hi").await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_newest_first_with_a_cursor_and_only_own_messages() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("history");
    let other = test_user("history-other");
    app.get("/api/profile", &who).await;
    app.get("/api/profile", &other).await;
    let db = pg().await;
    // 25 messages, one a minute, the oldest 40 days... no: within retention, spread
    // over the last 25 minutes; plus one of another user and one past retention.
    db.execute(
        "INSERT INTO chat_history (user_id, role, content, created_at)
         SELECT u.id, 'user', 'm' || g, now() - make_interval(mins => 25 - g)
         FROM users u, generate_series(1, 25) g WHERE u.external_id = $1",
        &[&who],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO chat_history (user_id, role, content, created_at)
         SELECT id, 'user', 'expired', now() - interval '40 days' FROM users WHERE external_id = $1",
        &[&who],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO chat_history (user_id, role, content) SELECT id, 'user', 'not yours' FROM users WHERE external_id = $1",
        &[&other],
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    let mut path = "/api/chat/history?limit=10".to_string();
    loop {
        let page: Value = app.get(&path, &who).await.json().await.unwrap();
        let messages = page["messages"].as_array().unwrap();
        seen.extend(
            messages
                .iter()
                .map(|m| m["content"].as_str().unwrap().to_string()),
        );
        match page["next_before"].as_str() {
            Some(cursor) => path = format!("/api/chat/history?limit=10&before={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=25).rev().map(|g| format!("m{g}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_redis_stops_chat_still_answers_degraded() {
    let mock = mock().await;
    let mut redis_server = OwnRedis::start().await;
    let own_redis = redis_server.url.clone();
    migrated().await;
    let mut options = app_options(&own_redis, &pg_url());
    set_var(&mut options, "gemini_base_url", mock.base_url());
    let app = Chat {
        app: start(&options, HTTP_ONLY).await,
    };
    let who = test_user("redis-down");
    assert_eq!(
        app.get("/api/profile", &who).await.headers()["x-cache"],
        "miss"
    );
    assert_eq!(
        app.get("/api/profile", &who).await.headers()["x-cache"],
        "hit"
    );

    redis_server.stop();
    let started = Instant::now();
    let profile = app.get("/api/profile", &who).await;
    assert_eq!(profile.status(), 200);
    assert_eq!(profile.headers()["x-cache"], "bypass");
    let body: Value = app.send(&who, "hello?").await.json().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(body["degraded"], true, "{body}");
    assert!(
        body["reply"].as_str().unwrap().contains("hello?"),
        "the LLM still answers: {body}"
    );
    assert_eq!(stored_rows(&who).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_postgres_down_a_turn_is_refused_with_503_and_no_llm_call() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat_without_postgres(rdb.number, &mock).await;
    let response = app.send(&test_user("pg-down"), "hello?").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("not stored"),
        "{problem}"
    );
    assert!(
        !problem.to_string().contains("evolve:evolve"),
        "no secret in errors: {problem}"
    );
    assert_eq!(mock.stats().calls, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_answer_is_not_replayed_once_the_llm_is_back() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |o| {
        set_var(o, "chat_rate_limit_per_minute", 0)
    })
    .await;
    let who = test_user("fallback-retry");
    let send = || app.send_keyed(&who, "after-outage", "are you there?");
    mock.set_behaviour(Behaviour {
        status: Some(503),
        ..Behaviour::default()
    });
    let first: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first["reply"], evolve_core::llm::FALLBACK_REPLY, "{first}");

    mock.set_behaviour(Behaviour::default());
    let retry = send().await.unwrap();
    assert_eq!(retry.status(), 200);
    assert!(
        !retry.headers().contains_key("idempotent-replayed"),
        "a fallback is not replayed"
    );
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["degraded"], false, "{retry}");
    assert_ne!(retry["reply"], evolve_core::llm::FALLBACK_REPLY);

    // The real answer is the one kept: a third try replays it.
    let third = send().await.unwrap();
    assert_eq!(third.headers()["idempotent-replayed"], "true");
    assert_eq!(third.json::<Value>().await.unwrap(), retry);
    assert_eq!(mock.stats().calls, 2);

    // The unanswered exchange is in history, flagged on both sides.
    let page: Value = app
        .get("/api/chat/history", &who)
        .await
        .json()
        .await
        .unwrap();
    let flags: Vec<bool> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["degraded"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, [false, false, true, true], "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_while_the_first_request_runs_gets_409() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |o| {
        set_var(o, "chat_rate_limit_per_minute", 0)
    })
    .await;
    let who = test_user("idem-inflight");
    mock.set_behaviour(Behaviour {
        latency_ms: 1_000,
        ..Behaviour::default()
    });
    let send = || app.send_keyed(&who, "slow-one", "take your time");
    let first = tokio::spawn(send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = send().await.unwrap();
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(mock.stats().calls, 1);
    assert_eq!(stored_rows(&who).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_outage_releases_the_idempotency_claim() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat_without_postgres(rdb.number, &mock).await;
    let who = test_user("pg-down-idem");
    let send = || app.send_keyed(&who, "during-outage", "hello?");
    assert_eq!(send().await.unwrap().status(), 503);
    let key = evolve_core::keys::idempotency(
        &evolve_core::ids::UserRef::parse(&who).unwrap(),
        &evolve_core::ids::IdempotencyKey::parse("during-outage").unwrap(),
    );
    let mut redis = redis_in(rdb.number).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "the claim was released");
    // So the retry runs at once (another 503 while the database is down, not a 409).
    assert_eq!(send().await.unwrap().status(), 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_write_racing_many_loaders_is_seen_by_the_next_read() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let a = chat(rdb.number, &mock, |_| {}).await;
    let b = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("write-race");
    for round in 0..5 {
        let mut redis = redis_in(rdb.number).await;
        let user = evolve_core::ids::UserRef::parse(&who).unwrap();
        let _: () = redis::cmd("DEL")
            .arg(evolve_core::keys::profile(&user))
            .query_async(&mut redis)
            .await
            .unwrap();
        let name = format!("round {round}");
        let readers = (0..16).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            app.get("/api/profile", &who)
        });
        let write = client()
            .put(a.url("/api/profile"))
            .bearer_auth(token(&who))
            .json(&json!({ "name": name }))
            .send();
        let (reads, written) = tokio::join!(futures::future::join_all(readers), write);
        assert_eq!(written.unwrap().status(), 200);
        assert!(reads.iter().all(|r| r.status() == 200));
        let after: Value = b.get("/api/profile", &who).await.json().await.unwrap();
        assert_eq!(after["data"]["name"], name, "round {round}: {after}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_cursors_past_any_real_position_get_400() {
    let rdb = RedisDb::claim().await;
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("cursor-range");
    use base64::Engine as _;
    for plain in [
        "9223372036854775807:9223372036854775807",
        "-9223372036854775808:-9223372036854775808",
    ] {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain);
        let response = app
            .get(&format!("/api/chat/history?before={cursor}"), &who)
            .await;
        assert_eq!(response.status(), 400, "{plain}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

/// Sends `head` and `body` as they are over one connection (`Connection: close`), then
/// half-closes if asked; the raw answer, or `None` when the server closed without one.
async fn raw_exchange(app: &Chat, head: &str, body: &[u8], close_write: bool) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await;
    if close_write {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the server neither answered nor closed");
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

fn post_head(who: &str, framing: &str) -> String {
    format!(
        "POST /api/chat HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\n{framing}\r\n",
        token(who)
    )
}

fn assert_problem(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{answer}"
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
    for leak in ["hyper", "error reading", "backtrace", "panicked", "stack"] {
        assert!(
            !answer.to_ascii_lowercase().contains(leak),
            "{leak}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_broken_bodies_get_4xx_problems_and_store_nothing() {
    let rdb = RedisDb::claim().await;
    // Host error texts must not reach a client even when the host would print backtraces.
    std::env::set_var("RUST_BACKTRACE", "1");
    let mock = mock().await;
    let app = chat(rdb.number, &mock, |_| {}).await;
    let who = test_user("hostile-bodies");

    // A declared 20 MB body is refused before any of it is read.
    let answer = raw_exchange(
        &app,
        &post_head(&who, "content-length: 20000000\r\n"),
        b"{",
        false,
    )
    .await
    .expect("an answer");
    assert_problem(&answer, 413);

    // A chunked body is read up to the limit and refused at the first byte past it.
    let mut chunks = Vec::new();
    for _ in 0..20 {
        chunks.extend_from_slice(format!("400\r\n{}\r\n", "a".repeat(1024)).as_bytes());
    }
    let answer = raw_exchange(
        &app,
        &post_head(&who, "transfer-encoding: chunked\r\n"),
        &chunks,
        false,
    )
    .await
    .expect("an answer");
    assert_problem(&answer, 413);

    // A chunked body that breaks off with a malformed chunk is a 400.
    let answer = raw_exchange(
        &app,
        &post_head(&who, "transfer-encoding: chunked\r\n"),
        b"5\r\n{\"mes\r\nzz-not-a-size\r\n",
        false,
    )
    .await
    .expect("an answer");
    assert_problem(&answer, 400);

    // A body shorter than its Content-Length: the connection ends early. Whether the
    // server still answers depends on when it notices; if it does, it is a 400 problem.
    if let Some(answer) = raw_exchange(
        &app,
        &post_head(&who, "content-length: 100\r\n"),
        br#"{"message":"#,
        true,
    )
    .await
    {
        assert_problem(&answer, 400);
    }

    assert_eq!(stored_rows(&who).await, 0);
    assert_eq!(mock.stats().calls, 0);
}
