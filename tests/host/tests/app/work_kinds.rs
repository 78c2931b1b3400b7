//! Dialog analysis and broadcasts, the work queue's other kinds, through the real app:
//! the chat component counts turns and enqueues analyses, the admin component starts
//! broadcasts, and the worker (on the Redis trigger, or drained through
//! `POST /admin/queues/drain`) runs them against real Redis and PostgreSQL and the mock
//! Gemini's structured output.
//!
//! Every test claims a Redis database of its own (the queue's keys are application-wide);
//! the broadcast tests work in a scratch PostgreSQL database of their own, so "every
//! user" is the users they made.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::process::HostProcess;
use crate::common::*;
use evolve_host::{HostOptions, Triggers};
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::{json, Value};

/// Task deadline and visibility timeout of the tests that kill a host: a task held by a
/// dead drain is taken over 6 s after its delivery.
const KILL_VARS: [(&str, &str); 2] = [
    ("queue_task_timeout_ms", "5000"),
    ("queue_visibility_ms", "6000"),
];

/// The application on the test's Redis database, PostgreSQL and mock, in this process
/// (`running`) or in a process of its own that the test may kill.
struct App {
    addr: SocketAddr,
    _running: Option<evolve_host::Running>,
}

fn options(db: &RedisDb, pg: &str, mock: &MockGemini, vars: &[(&str, &str)]) -> HostOptions {
    let mut options = app_options(&db.url(), pg);
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "llm_max_attempts", 1);
    set_var(&mut options, "cache_hit_sample", 1);
    for (name, value) in vars {
        set_var(&mut options, name, value);
    }
    options
}

impl App {
    async fn start(
        db: &RedisDb,
        pg: &str,
        mock: &MockGemini,
        triggers: Triggers,
        vars: &[(&str, &str)],
    ) -> App {
        let running = start(&options(db, pg, mock, vars), triggers).await;
        App {
            addr: running.addr,
            _running: Some(running),
        }
    }

    /// The application served by `host`.
    fn of(host: &HostProcess) -> App {
        App {
            addr: host.addr,
            _running: None,
        }
    }

    async fn chat(&self, user: &str, message: &str) -> Value {
        let response = client()
            .post(url(self.addr, "/api/chat"))
            .bearer_auth(token(user))
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn profile(&self, user: &str) -> Value {
        client()
            .get(url(self.addr, "/api/profile"))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = client()
            .request(method, url(self.addr, path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Drains until nothing is left to claim.
    async fn drain(&self) {
        for _ in 0..50 {
            let (status, report) = self
                .admin(reqwest::Method::POST, "/admin/queues/drain", None)
                .await;
            assert_eq!(status, 200, "{report}");
            if report["claimed"] == 0 {
                return;
            }
        }
        panic!("the queue did not empty");
    }
}

async fn mock() -> MockGemini {
    MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap()
}

fn facts(profile: &Value) -> Vec<String> {
    profile["memory"]["facts"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_third_turn_is_analysed_into_memory_that_the_next_prompt_carries() {
    migrated().await;
    let db = RedisDb::claim().await;
    let mock = mock().await;
    let app = App::start(
        &db,
        &pg_url(),
        &mock,
        WAKE_UPS,
        &[("analysis_every_turns", "3")],
    )
    .await;
    let user = test_user("analysis");

    app.chat(&user, "Hi! My name is Ann.").await;
    app.chat(&user, "I like chess.").await;
    assert_eq!(
        mock.stats().structured_calls,
        0,
        "no analysis before the third turn"
    );
    app.chat(&user, "How are you?").await;
    let profile = eventually(Duration::from_secs(10), || async {
        let profile = app.profile(&user).await;
        (!facts(&profile).is_empty()).then_some(profile)
    })
    .await
    .expect("the analysis reached the memory (and the cached profile was invalidated)");
    assert_eq!(facts(&profile), ["name: Ann", "likes: chess"]);
    assert_eq!(profile["memory"]["mood"], "positive");
    assert_eq!(mock.stats().structured_calls, 1);

    // The next turn's prompt carries the memory.
    app.chat(&user, "What do you remember?").await;
    let request = mock.stats().last_request.unwrap().to_string();
    assert!(request.contains("name: Ann"), "{request}");

    // The next window reads only what came after the watermark.
    app.chat(&user, "I love jazz.").await;
    app.chat(&user, "Bye").await;
    let profile = eventually(Duration::from_secs(10), || async {
        let profile = app.profile(&user).await;
        (facts(&profile).len() == 3).then_some(profile)
    })
    .await
    .expect("the second analysis merged");
    assert_eq!(
        facts(&profile),
        ["name: Ann", "likes: chess", "likes: jazz"]
    );
    assert_eq!(mock.stats().structured_calls, 2);
    let analysed = mock.stats().last_request.unwrap().to_string();
    assert!(analysed.contains("I love jazz."), "{analysed}");
    assert!(
        !analysed.contains("My name is Ann"),
        "read again: {analysed}"
    );
}

#[tokio::test]
async fn an_analysis_run_twice_changes_memory_once() {
    migrated().await;
    let db = RedisDb::claim().await;
    let mock = mock().await;
    let app = App::start(
        &db,
        &pg_url(),
        &mock,
        HTTP_ONLY,
        &[("analysis_every_turns", "0")],
    )
    .await;
    let user = test_user("analysis-twice");
    app.chat(&user, "My name is Bob.").await;
    // Two on-demand analyses of the same messages, queued before either runs.
    for _ in 0..2 {
        let path = format!("/admin/users/{user}/analysis");
        let (status, body) = app.admin(reqwest::Method::POST, &path, None).await;
        assert_eq!(status, 202, "{body}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _) = app
        .admin(
            reqwest::Method::POST,
            "/admin/users/tg:nobody-at-all/analysis",
            None,
        )
        .await;
    assert_eq!(status, 404);
    app.drain().await;
    assert_eq!(facts(&app.profile(&user).await), ["name: Bob"]);
    let (_, queues) = app.admin(reqwest::Method::GET, "/admin/queues", None).await;
    assert_eq!(queues["kinds"]["analysis"]["done"], 2, "{queues}");
    // Both ran (one drain runs them side by side, so both may have asked the model), and
    // exactly one wrote the memory: the other found the watermark moved or nothing new.
    let records = queue_results(db.number).await;
    let merged = records
        .iter()
        .filter(|r| r["result"].as_str().unwrap().starts_with("analysed"))
        .count();
    assert_eq!(merged, 1, "{records:?}");
    assert!((1..=2).contains(&mock.stats().structured_calls));
}

/// A scratch database with `users` users, the first `premium` of them premium.
async fn scratch_with_users(test: &str, users: i64, premium: i64) -> ScratchDb {
    let scratch = ScratchDb::migrated(test).await;
    let (client, connection) = tokio_postgres::connect(&scratch.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO users (external_id, plan)
             SELECT 'bc-' || i, CASE WHEN i <= $2 THEN 'premium' ELSE 'free' END
             FROM generate_series(1, $1::int8) AS i",
            &[&users, &premium],
        )
        .await
        .unwrap();
    client
        .execute("INSERT INTO profiles (user_id) SELECT id FROM users", &[])
        .await
        .unwrap();
    scratch
}

async fn count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_broadcast_to_5000_users_delivers_exactly_5000_messages_even_with_pages_run_twice() {
    let scratch = scratch_with_users("broadcast", 5_000, 100).await;
    let db = RedisDb::claim().await;
    let mock = mock().await;
    let app = App::start(&db, &scratch.url, &mock, WAKE_UPS, &[]).await;

    let (status, created) = app
        .admin(
            reqwest::Method::POST,
            "/admin/broadcasts",
            Some(json!({"message": "New voices are here!", "segment": "all"})),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["total"], 5_000);
    let id = created["id"].as_i64().unwrap();
    let path = format!("/admin/broadcasts/{id}");
    let done = eventually(Duration::from_secs(30), || async {
        let (_, body) = app.admin(reqwest::Method::GET, &path, None).await;
        (body["status"] == "done").then_some(body)
    })
    .await
    .expect("the broadcast finished");
    assert_eq!(done["delivered"], 5_000);
    assert!(done["started_ms"].as_i64() <= done["finished_ms"].as_i64());

    // Every page runs again, as a redelivered task would: nobody gets it twice.
    let mut redis = redis_in(db.number).await;
    for after in [0i64, 1_000, 2_000, 3_000, 4_000] {
        let payload = json!({"broadcast_id": id, "after_user_id": after}).to_string();
        let _: String = redis::cmd("XADD")
            .arg(evolve_core::keys::queue_stream("low"))
            .arg("*")
            .arg(&[
                "task",
                &format!("again-{after}"),
                "kind",
                "broadcast",
                "payload",
                &payload,
            ])
            .arg(&["attempt", "1", "ref", "", "enqueued", "1"])
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    app.drain().await;
    let messages = "SELECT count(*) FROM chat_history WHERE broadcast_id IS NOT NULL";
    assert_eq!(count(&scratch.url, messages).await, 5_000);
    let per_user = "SELECT count(*) FROM (SELECT user_id FROM chat_history
                    WHERE broadcast_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) x";
    assert_eq!(count(&scratch.url, per_user).await, 0);
    let (_, body) = app.admin(reqwest::Method::GET, &path, None).await;
    assert_eq!(body["delivered"], 5_000);

    // The message is in a user's history, marked, and stays out of the next prompt.
    let history: Value = client()
        .get(url(app.addr, "/api/chat/history?limit=5"))
        .bearer_auth(token("bc-42"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["messages"][0]["content"], "New voices are here!");
    assert_eq!(history["messages"][0]["broadcast"], true);
    app.chat("bc-42", "hello").await;
    let prompt = mock.stats().last_request.unwrap().to_string();
    assert!(!prompt.contains("New voices are here!"), "{prompt}");
}

#[tokio::test]
async fn broadcasts_reach_their_segment_and_a_cancelled_one_delivers_nothing() {
    let scratch = scratch_with_users("broadcast_segment", 1_500, 30).await;
    let db = RedisDb::claim().await;
    let mock = mock().await;
    let app = App::start(&db, &scratch.url, &mock, HTTP_ONLY, &[]).await;
    let create = |segment: &str| json!({"message": format!("to {segment}"), "segment": segment});

    let (_, premium) = app
        .admin(
            reqwest::Method::POST,
            "/admin/broadcasts",
            Some(create("premium")),
        )
        .await;
    let (_, cancelled) = app
        .admin(
            reqwest::Method::POST,
            "/admin/broadcasts",
            Some(create("free")),
        )
        .await;
    let cancel = format!("/admin/broadcasts/{}/cancel", cancelled["id"]);
    let (status, body) = app.admin(reqwest::Method::POST, &cancel, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    let (status, _) = app.admin(reqwest::Method::POST, &cancel, None).await;
    assert_eq!(status, 409, "cancelling twice");
    app.drain().await;

    let (_, premium) = app
        .admin(
            reqwest::Method::GET,
            &format!("/admin/broadcasts/{}", premium["id"]),
            None,
        )
        .await;
    assert_eq!(
        (premium["status"].as_str(), premium["delivered"].as_i64()),
        (Some("done"), Some(30))
    );
    let (_, cancelled) = app
        .admin(
            reqwest::Method::GET,
            &format!("/admin/broadcasts/{}", cancelled["id"]),
            None,
        )
        .await;
    assert_eq!(cancelled["delivered"], 0);
    assert_eq!(
        count(
            &scratch.url,
            "SELECT count(*) FROM chat_history WHERE broadcast_id IS NOT NULL"
        )
        .await,
        30
    );

    // Bad input is refused whole, and stores nothing.
    for bad in [
        json!({"message": "hi", "segment": "vip"}),
        json!({"message": "", "segment": "all"}),
        json!({"segment": "all"}),
        json!({"message": "hi", "segment": "all", "extra": 1}),
    ] {
        let (status, body) = app
            .admin(
                reqwest::Method::POST,
                "/admin/broadcasts",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, 400, "{bad} -> {body}");
    }
    assert_eq!(
        count(&scratch.url, "SELECT count(*) FROM broadcasts").await,
        2
    );
    let (status, _) = app
        .admin(reqwest::Method::GET, "/admin/broadcasts/999999", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .admin(reqwest::Method::GET, "/admin/broadcasts/01", None)
        .await;
    assert_eq!(status, 404);
}

// --- a host killed mid-task --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_analysis_whose_host_was_killed_is_taken_over_and_merged_once() {
    migrated().await;
    let db = RedisDb::claim().await;
    let mock = mock().await;
    let mut vars = vec![("analysis_every_turns", "0")];
    vars.extend(KILL_VARS);
    let options = options(&db, &pg_url(), &mock, &vars);
    let mut first = HostProcess::start(&options).await;
    let user = test_user("analysis-kill");
    App::of(&first).chat(&user, "My name is Kim.").await;

    mock.set_behaviour(Behaviour {
        latency_ms: 3_000,
        ..Behaviour::default()
    });
    let path = format!("/admin/users/{user}/analysis");
    let (status, body) = App::of(&first)
        .admin(reqwest::Method::POST, &path, None)
        .await;
    assert_eq!(status, 202, "{body}");
    let called = eventually(Duration::from_secs(10), || async {
        (mock.stats().structured_calls == 1).then(Instant::now)
    })
    .await
    .expect("the worker asked the model");
    signal("-KILL", &[first.pid()]);
    let _ = first.child.wait();
    mock.set_behaviour(Behaviour::default());

    let second = App::start(&db, &pg_url(), &mock, ALL_TRIGGERS, &vars).await;
    let profile = eventually(Duration::from_secs(30), || async {
        let profile = second.profile(&user).await;
        (!facts(&profile).is_empty()).then_some(profile)
    })
    .await
    .expect("another drain took the analysis over");
    let waited = called.elapsed();
    assert!(
        waited >= Duration::from_millis(5_500),
        "taken over after {waited:?}, before the visibility timeout"
    );
    assert_eq!(facts(&profile), ["name: Kim"]);
    assert_eq!(mock.stats().structured_calls, 2);
    let (_, queues) = second
        .admin(reqwest::Method::GET, "/admin/queues", None)
        .await;
    assert_eq!(queues["kinds"]["analysis"]["done"], 1, "{queues}");
    assert_eq!(queues["dead"], 0, "{queues}");
    let merged: Vec<Value> = queue_results(db.number)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "analysis")
        .collect();
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(
        merged[0]["attempts"], 1,
        "a killed drain is not a failed attempt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broadcast_whose_host_was_killed_mid_page_reaches_everyone_once() {
    let scratch = scratch_with_users("broadcast_kill", 3_000, 0).await;
    let db = RedisDb::claim().await;
    let mock = mock().await;
    // 500 recipients/s: a page of 1,000 delivers at once, then waits about 2 s before
    // chaining the next page, still holding its delivery.
    let mut vars = vec![("broadcast_recipients_per_second", "500")];
    vars.extend(KILL_VARS);
    let options = options(&db, &scratch.url, &mock, &vars);
    let mut first = HostProcess::start(&options).await;
    let (status, created) = App::of(&first)
        .admin(
            reqwest::Method::POST,
            "/admin/broadcasts",
            Some(json!({"message": "We are back!", "segment": "all"})),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let path = format!("/admin/broadcasts/{}", created["id"]);
    let delivered = eventually(Duration::from_secs(10), || async {
        let (_, body) = App::of(&first)
            .admin(reqwest::Method::GET, &path, None)
            .await;
        let delivered = body["delivered"].as_i64().unwrap_or(0);
        (delivered > 0).then_some(delivered)
    })
    .await
    .expect("the first page delivered");
    signal("-KILL", &[first.pid()]);
    let _ = first.child.wait();
    assert_eq!(delivered, 1_000, "killed in the first page's wait");

    let second = App::start(&db, &scratch.url, &mock, ALL_TRIGGERS, &vars).await;
    let done = eventually(Duration::from_secs(45), || async {
        let (_, body) = second.admin(reqwest::Method::GET, &path, None).await;
        (body["status"] == "done").then_some(body)
    })
    .await
    .expect("another drain took the page over and the broadcast finished");
    assert_eq!(done["delivered"], 3_000);
    let messages = "SELECT count(*) FROM chat_history WHERE broadcast_id IS NOT NULL";
    assert_eq!(count(&scratch.url, messages).await, 3_000);
    let twice = "SELECT count(*) FROM (SELECT user_id FROM chat_history
                 WHERE broadcast_id IS NOT NULL GROUP BY user_id HAVING count(*) > 1) x";
    assert_eq!(count(&scratch.url, twice).await, 0);
    // The taken-over first page ran again and delivered to nobody.
    let pages: Vec<String> = queue_results(db.number)
        .await
        .iter()
        .filter(|r| r["kind"] == "broadcast")
        .map(|r| r["result"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        pages.contains(&"page after user 0: 0 delivered".to_owned()),
        "{pages:?}"
    );
}
