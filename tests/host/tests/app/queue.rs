//! The work queue through the real application over HTTP: voice messages asked for with
//! `POST /api/chat/messages/{id}/voice`, made by the `worker` component on its Redis
//! trigger (the enqueue's wake-up) and its cron trigger (every 5 s) or by
//! `POST /admin/queues/drain`, with the mock Gemini as the speech model; retries, dead
//! letters, priorities, and a host killed in the middle of a task.
//!
//! The queue's keys are application-wide: each test claims a Redis database of its own,
//! listens on a wake-up channel of its own (pub/sub is not per database) and works in a
//! PostgreSQL database of its own (see [`Fixture`]), so the tests run in parallel. The
//! scripts and the drain loop on their own are tested in `queue_scripts.rs`.

use std::time::{Duration, Instant};

use crate::common::process::HostProcess;
use crate::common::*;
use evolve_host::HostOptions;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use serde_json::{json, Value};

/// What a test runs on: a Redis database and a PostgreSQL database of its own (created
/// and migrated for it, dropped after it, so that the test does not depend on the shared
/// test database's state), the mock Gemini, and the application's options for them.
struct Fixture {
    db: RedisDb,
    pg: ScratchDb,
    mock: MockGemini,
    options: HostOptions,
}

/// The fixture, with a wake-up channel of its own (pub/sub is not per database), one
/// model call per task attempt and no dialog analysis: the queue holds only the tasks
/// the test asks for.
async fn fixture() -> Fixture {
    let db = RedisDb::claim().await;
    let pg = ScratchDb::migrated("queue").await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let mut options = app_options(&db.url(), &pg.url);
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "llm_max_attempts", 1);
    set_var(&mut options, "analysis_every_turns", 0);
    set_var(
        &mut options,
        "queue_channel",
        format!(
            "evolve:queue:wake:test:{}",
            unique_prefix("q").replace(':', ".")
        ),
    );
    Fixture {
        db,
        pg,
        mock,
        options,
    }
}

impl Fixture {
    async fn pg(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.pg.url, tokio_postgres::NoTls)
            .await
            .expect("test PostgreSQL is not reachable");
        tokio::spawn(async move {
            // Ends when the client is dropped.
            let _ = connection.await;
        });
        client
    }

    /// The stored voice rows of a message.
    async fn voice_rows(&self, message_id: i64) -> i64 {
        self.pg()
            .await
            .query_one(
                "SELECT count(*) FROM voice_messages WHERE message_id = $1",
                &[&message_id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The voice row of a message: (voice, etag, audio length).
    async fn voice_row(&self, message_id: i64) -> (String, String, i64) {
        let row = self
            .pg()
            .await
            .query_one(
                "SELECT voice, etag, length(audio)::int8 FROM voice_messages WHERE message_id = $1",
                &[&message_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    /// The queue's recent result records, newest first.
    async fn results(&self) -> Vec<Value> {
        queue_results(self.db.number).await
    }
}

fn voice_path(message_id: i64) -> String {
    format!("/api/chat/messages/{message_id}/voice")
}

/// The application at `addr`, as a user and as an operator.
#[derive(Clone, Copy)]
struct Api {
    addr: std::net::SocketAddr,
}

impl Api {
    fn of(running: &evolve_host::Running) -> Api {
        Api { addr: running.addr }
    }

    fn url(&self, path: &str) -> String {
        url(self.addr, path)
    }

    /// One chat turn; returns (user message id, assistant message id).
    async fn turn(&self, user: &str, message: &str) -> (i64, i64) {
        let response = client()
            .post(self.url("/api/chat"))
            .bearer_auth(token(user))
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["degraded"], false, "{body}");
        (
            body["user_message_id"].as_i64().expect("user_message_id"),
            body["message_id"].as_i64().expect("message_id"),
        )
    }

    async fn post_voice(&self, user: &str, message_id: i64) -> reqwest::Response {
        client()
            .post(self.url(&voice_path(message_id)))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    async fn get_voice(&self, user: &str, message_id: i64) -> reqwest::Response {
        client()
            .get(self.url(&voice_path(message_id)))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }

    /// Waits until GET answers 200 (the voice is stored); returns the response.
    async fn voice_within(
        &self,
        user: &str,
        message_id: i64,
        timeout: Duration,
    ) -> Option<reqwest::Response> {
        eventually(timeout, || async move {
            let response = self.get_voice(user, message_id).await;
            match response.status().as_u16() {
                200 => Some(response),
                202 => None,
                other => panic!(
                    "GET voice answered {other}: {}",
                    response.text().await.unwrap_or_default()
                ),
            }
        })
        .await
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        client()
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    async fn admin_json(&self, method: reqwest::Method, path: &str, status: u16) -> Value {
        let response = self.admin(method, path).await;
        let got = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(got, status, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    async fn stats(&self) -> Value {
        self.admin_json(reqwest::Method::GET, "/admin/queues", 200)
            .await
    }

    async fn drain(&self) -> Value {
        self.admin_json(reqwest::Method::POST, "/admin/queues/drain", 200)
            .await
    }

    async fn dead(&self) -> Vec<Value> {
        let body = self
            .admin_json(reqwest::Method::GET, "/admin/queues/dead", 200)
            .await;
        body["dead"].as_array().expect("a dead list").clone()
    }
}

/// Asserts that no stream holds an entry (waiting or pending).
fn assert_streams_empty(stats: &Value) {
    let streams = stats["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 3, "{stats}");
    for stream in streams {
        assert_eq!(stream["length"], 0, "{stats}");
        assert_eq!(stream["pending"], 0, "{stats}");
        assert_eq!(stream["oldest_age_ms"], 0, "{stats}");
    }
}

/// One counter of one kind in `GET /admin/queues`, 0 when absent.
fn counter(stats: &Value, kind: &str, name: &str) -> u64 {
    stats["kinds"][kind][name].as_u64().unwrap_or(0)
}

fn assert_wav(audio: &[u8]) {
    assert!(audio.len() > 44, "{} bytes", audio.len());
    assert_eq!(&audio[..4], b"RIFF");
    assert_eq!(&audio[8..12], b"WAVE");
}

async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    body
}

// --- the voice end to end ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_is_made_once_and_served_with_its_etag() {
    let f = fixture().await;
    let running = start(&f.options, ALL_TRIGGERS).await;
    let api = Api::of(&running);
    let who = test_user("voice");
    let (_, message) = api.turn(&who, "скажи это вслух").await;

    let posted = api.post_voice(&who, message).await;
    assert_eq!(posted.status(), 202);
    assert_eq!(posted.headers()["location"], voice_path(message).as_str());
    assert_eq!(posted.headers()["retry-after"], "2");
    let body: Value = posted.json().await.unwrap();
    assert_eq!(body["status"], "pending", "{body}");
    assert_eq!(body["message_id"], message, "{body}");

    let got = api
        .voice_within(&who, message, Duration::from_secs(15))
        .await
        .expect("the voice is made within 15 s");
    assert_eq!(got.headers()["content-type"], "audio/wav");
    let etag = got.headers()["etag"].to_str().unwrap().to_owned();
    assert!(!etag.is_empty());
    let audio = got.bytes().await.unwrap();
    assert_wav(&audio);

    let fresh = client()
        .get(api.url(&voice_path(message)))
        .bearer_auth(token(&who))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 304);
    assert_eq!(fresh.headers()["etag"], etag.as_str());
    assert!(fresh.bytes().await.unwrap().is_empty());

    let again = api.post_voice(&who, message).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");

    // Another user can neither fetch the voice nor ask for it.
    let stranger = test_user("voice-stranger");
    assert_problem(api.get_voice(&stranger, message).await, 404).await;
    assert_problem(api.post_voice(&stranger, message).await, 404).await;

    assert_eq!(f.voice_rows(message).await, 1);
    let (voice, stored_etag, length) = f.voice_row(message).await;
    assert_eq!(voice, "Kore");
    assert_eq!(stored_etag, etag);
    assert_eq!(length as usize, audio.len());
    let stats = f.mock.stats();
    assert_eq!(stats.tts_calls, 1, "{stats:?}");
    assert_eq!(stats.last_voice.as_deref(), Some("Kore"));

    let queue = api.stats().await;
    assert_streams_empty(&queue);
    assert_eq!(counter(&queue, "voice", "done"), 1, "{queue}");
    assert_eq!(counter(&queue, "voice", "failed"), 0, "{queue}");
}

#[tokio::test(flavor = "multi_thread")]
async fn voices_of_other_messages_are_not_found_and_nothing_is_enqueued() {
    let f = fixture().await;
    let running = start(&f.options, HTTP_ONLY).await;
    let api = Api::of(&running);
    let who = test_user("voice-404");
    let other = test_user("voice-404-other");
    let (own_user_message, own_reply) = api.turn(&who, "моё").await;
    let (_, others_reply) = api.turn(&other, "чужое").await;

    for id in [own_user_message, others_reply, 9_000_000_000_000_000] {
        let body = assert_problem(api.post_voice(&who, id).await, 404).await;
        assert!(!body.to_string().contains("чужое"), "{body}");
        assert_problem(api.get_voice(&who, id).await, 404).await;
    }
    // The caller's own reply, whose voice was never asked for.
    let never = assert_problem(api.get_voice(&who, own_reply).await, 404).await;
    assert!(
        never["detail"].as_str().unwrap().contains("POST"),
        "{never}"
    );

    let invalid = client()
        .post(api.url("/api/chat/messages/abc/voice"))
        .bearer_auth(token(&who))
        .send()
        .await
        .unwrap();
    assert_problem(invalid, 400).await;

    let anonymous = client()
        .post(api.url(&voice_path(others_reply)))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let queue = api.stats().await;
    assert_streams_empty(&queue);
    assert_eq!(queue["delayed"], 0, "{queue}");
    assert_eq!(queue["dead"], 0, "{queue}");
    assert_eq!(f.mock.stats().tts_calls, 0);
}

// --- failures: retries and dead letters --------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_is_retried_after_two_failures_and_stored_once() {
    let mut f = fixture().await;
    set_var(&mut f.options, "queue_retry_base_ms", 50);
    let running = start(&f.options, ALL_TRIGGERS).await;
    let api = Api::of(&running);
    let who = test_user("voice-retry");
    let (_, message) = api.turn(&who, "попробуй ещё").await;

    // The next two model calls, the speech model's first two, fail.
    f.mock.set_behaviour(Behaviour {
        script: [503, 503].into(),
        ..Behaviour::default()
    });
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    let got = api
        .voice_within(&who, message, Duration::from_secs(30))
        .await
        .expect("the voice is made after its retries");
    assert_wav(&got.bytes().await.unwrap());

    assert_eq!(f.voice_rows(message).await, 1);
    let stats = f.mock.stats();
    assert_eq!(stats.tts_calls, 3, "{stats:?}");
    let queue = api.stats().await;
    assert_eq!(counter(&queue, "voice", "failed"), 2, "{queue}");
    assert_eq!(counter(&queue, "voice", "retried"), 2, "{queue}");
    assert_eq!(counter(&queue, "voice", "done"), 1, "{queue}");
    assert_eq!(counter(&queue, "voice", "dead"), 0, "{queue}");
    assert_streams_empty(&queue);
    assert_eq!(queue["delayed"], 0, "{queue}");
    let record = f.results().await;
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0]["kind"], "voice");
    assert_eq!(record[0]["reference"], format!("voice:{message}"));
    assert_eq!(record[0]["attempts"], 3, "{record:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_that_always_fails_goes_to_the_dead_letters_and_can_be_retried() {
    let mut f = fixture().await;
    set_var(&mut f.options, "queue_retry_base_ms", 50);
    // Drains run only when the test asks (POST /admin/queues/drain).
    let running = start(&f.options, HTTP_ONLY).await;
    let api = Api::of(&running);
    let who = test_user("voice-dead");
    let (_, message) = api.turn(&who, "не получится").await;

    f.mock.set_behaviour(Behaviour {
        status: Some(503),
        ..Behaviour::default()
    });
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    let pending = api.get_voice(&who, message).await;
    assert_eq!(pending.status(), 202);
    assert_eq!(pending.headers()["retry-after"], "2");
    // A second POST while the first is pending adds no task.
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    let queue = api.stats().await;
    assert_eq!(queue["streams"][0]["priority"], "high", "{queue}");
    assert_eq!(queue["streams"][0]["length"], 1, "{queue}");

    let (dead, reports) = drain_until_dead(api).await;
    let total = |field: &str| -> u64 {
        reports
            .iter()
            .map(|r| r[field].as_u64().expect(field))
            .sum()
    };
    assert_eq!(total("claimed"), 4, "{reports:?}");
    assert_eq!(total("retried"), 3, "{reports:?}");
    assert_eq!(total("dead"), 1, "{reports:?}");
    assert_eq!(total("done"), 0, "{reports:?}");
    assert_eq!(counter(&dead, "voice", "failed"), 4, "{dead}");
    assert_eq!(counter(&dead, "voice", "retried"), 3, "{dead}");
    assert_eq!(counter(&dead, "voice", "dead"), 1, "{dead}");
    assert_streams_empty(&dead);
    assert_eq!(dead["delayed"], 0, "{dead}");
    assert_eq!(f.mock.stats().tts_calls, 4);

    // The user sees a clean 502, without the dependency's words.
    let failed = api.get_voice(&who, message).await;
    let body = assert_problem(failed, 502).await;
    assert_eq!(body["type"], "urn:evolve:problem:voice-failed", "{body}");
    let text = body.to_string().to_lowercase();
    for leak in [
        "mock",
        "503",
        "unavailable",
        "gemini",
        "http://",
        "speech model:",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {body}");
    }

    let letters = api.dead().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["kind"], "voice", "{letter}");
    assert_eq!(letter["reference"], format!("voice:{message}"), "{letter}");
    assert_eq!(letter["attempts"], 4, "{letter}");
    assert_eq!(letter["priority"], "high", "{letter}");
    let error = letter["error"].as_str().unwrap();
    assert!(error.contains("503"), "{letter}");
    let entry = letter["entry"].as_str().unwrap().to_owned();

    // The model recovers; the operator puts the task back and drains.
    f.mock.set_behaviour(Behaviour::default());
    let requeued = api
        .admin_json(
            reqwest::Method::POST,
            &format!("/admin/queues/dead/{entry}/retry"),
            200,
        )
        .await;
    assert_eq!(requeued["status"], "requeued", "{requeued}");
    assert!(api.dead().await.is_empty());
    assert_eq!(api.get_voice(&who, message).await.status(), 202);
    // The letter is gone: a second retry finds nothing.
    let again = api
        .admin(
            reqwest::Method::POST,
            &format!("/admin/queues/dead/{entry}/retry"),
        )
        .await;
    assert_eq!(again.status(), 404);

    let report = api.drain().await;
    assert_eq!(report["claimed"], 1, "{report}");
    assert_eq!(report["done"], 1, "{report}");
    let got = api.get_voice(&who, message).await;
    assert_eq!(got.status(), 200);
    assert_wav(&got.bytes().await.unwrap());
    assert_eq!(f.voice_rows(message).await, 1);
    let queue = api.stats().await;
    assert_eq!(counter(&queue, "voice", "done"), 1, "{queue}");
    assert_eq!(queue["dead"], 0, "{queue}");
    assert_streams_empty(&queue);
}

/// Drains (`POST /admin/queues/drain`) until the dead letters hold one task; returns
/// the queue's figures then and every drain's report.
async fn drain_until_dead(api: Api) -> (Value, Vec<Value>) {
    let reports = std::sync::Mutex::new(Vec::new());
    let dead = eventually(Duration::from_secs(20), || async {
        let report = api.drain().await;
        reports.lock().unwrap().push(report);
        let stats = api.stats().await;
        (stats["dead"] == 1).then_some(stats)
    })
    .await;
    let reports = reports.into_inner().unwrap();
    let dead = dead.unwrap_or_else(|| panic!("no dead letter after 20 s of drains: {reports:?}"));
    (dead, reports)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_may_ask_again_for_a_voice_that_failed() {
    let mut f = fixture().await;
    set_var(&mut f.options, "queue_retry_base_ms", 50);
    let running = start(&f.options, HTTP_ONLY).await;
    let api = Api::of(&running);
    let who = test_user("voice-again");
    let (_, message) = api.turn(&who, "ещё раз").await;

    f.mock.set_behaviour(Behaviour {
        status: Some(500),
        ..Behaviour::default()
    });
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    drain_until_dead(api).await;
    assert_problem(api.get_voice(&who, message).await, 502).await;

    // As the 502 says: POST again, and the voice is tried anew.
    f.mock.set_behaviour(Behaviour::default());
    let posted = api.post_voice(&who, message).await;
    assert_eq!(posted.status(), 202);
    assert_eq!(posted.headers()["location"], voice_path(message).as_str());
    assert_eq!(api.get_voice(&who, message).await.status(), 202);
    let report = api.drain().await;
    assert_eq!(report["done"], 1, "{report}");
    let got = api.get_voice(&who, message).await;
    assert_eq!(got.status(), 200);
    assert_wav(&got.bytes().await.unwrap());
    assert_eq!(f.voice_rows(message).await, 1);
    assert_eq!(f.mock.stats().tts_calls, 5);
    let queue = api.stats().await;
    assert_streams_empty(&queue);
    assert_eq!(counter(&queue, "voice", "done"), 1, "{queue}");
}

// --- a host killed mid-task --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_host_was_killed_is_taken_over_after_the_visibility_timeout() {
    let mut f = fixture().await;
    set_var(&mut f.options, "queue_task_timeout_ms", 5_000);
    set_var(&mut f.options, "queue_visibility_ms", 6_000);
    let mut first = HostProcess::start(&f.options).await;
    let api = Api { addr: first.addr };
    let who = test_user("voice-kill");
    let (_, message) = api.turn(&who, "не бросай меня").await;

    f.mock.set_behaviour(Behaviour {
        latency_ms: 3_000,
        ..Behaviour::default()
    });
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    let called = eventually(Duration::from_secs(10), || async {
        (f.mock.stats().tts_calls == 1).then(Instant::now)
    })
    .await
    .expect("the worker called the speech model");
    signal("-KILL", &[first.pid()]);
    let _ = first.child.wait();
    f.mock.set_behaviour(Behaviour::default());

    // The delivery is still pending, held by the dead drain.
    let second = start(&f.options, ALL_TRIGGERS).await;
    let api = Api::of(&second);
    let queue = api.stats().await;
    assert_eq!(queue["streams"][0]["priority"], "high", "{queue}");
    assert_eq!(queue["streams"][0]["pending"], 1, "{queue}");
    assert_eq!(f.voice_rows(message).await, 0);

    let got = api
        .voice_within(&who, message, Duration::from_secs(30))
        .await
        .expect("another drain takes the task over and makes the voice");
    let waited = called.elapsed();
    assert!(
        waited >= Duration::from_millis(5_500),
        "taken over after {waited:?}, before the visibility timeout"
    );
    assert_wav(&got.bytes().await.unwrap());
    assert_eq!(f.voice_rows(message).await, 1);
    assert_eq!(f.mock.stats().tts_calls, 2);

    let queue = api.stats().await;
    assert_streams_empty(&queue);
    assert_eq!(queue["delayed"], 0, "{queue}");
    assert_eq!(queue["dead"], 0, "{queue}");
    assert_eq!(counter(&queue, "voice", "done"), 1, "{queue}");
    assert_eq!(counter(&queue, "voice", "failed"), 0, "{queue}");
    // A killed drain is not a failed attempt.
    let record = f.results().await;
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0]["reference"], format!("voice:{message}"));
    assert_eq!(record[0]["attempts"], 1, "{record:?}");
}

// --- the two triggers --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_wake_up_starts_a_drain_at_once() {
    let f = fixture().await;
    let running = start(&f.options, WAKE_UPS).await;
    let api = Api::of(&running);
    let who = test_user("voice-wake");
    let (_, message) = api.turn(&who, "быстро").await;

    let posted = Instant::now();
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    api.voice_within(&who, message, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("no voice {:?} after the wake-up", posted.elapsed()));
    assert_eq!(f.voice_rows(message).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cron_drain_makes_the_voice_when_nobody_hears_the_wake_up() {
    let f = fixture().await;
    let running = start(&f.options, CRON).await;
    let api = Api::of(&running);
    let who = test_user("voice-cron");
    let (_, message) = api.turn(&who, "не спеши").await;

    let posted = Instant::now();
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    api.voice_within(&who, message, Duration::from_secs(7))
        .await
        .unwrap_or_else(|| panic!("no voice {:?} after the POST", posted.elapsed()));
    assert_eq!(f.voice_rows(message).await, 1);
    assert_eq!(f.mock.stats().tts_calls, 1);
}

// --- priorities --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_voice_enqueued_after_low_priority_work_is_done_first() {
    let mut f = fixture().await;
    // One task per claim, so the order of the results is the order of the claims.
    set_var(&mut f.options, "queue_batch", 1);
    let running = start(&f.options, HTTP_ONLY).await;
    let api = Api::of(&running);
    let who = test_user("voice-priority");
    let (_, message) = api.turn(&who, "вне очереди").await;

    let probes = api
        .admin_json(
            reqwest::Method::POST,
            "/admin/queues/probe?count=20&priority=low",
            202,
        )
        .await;
    assert_eq!(probes["enqueued"], 20, "{probes}");
    assert_eq!(api.post_voice(&who, message).await.status(), 202);
    let queue = api.stats().await;
    assert_eq!(queue["streams"][0]["length"], 1, "{queue}");
    assert_eq!(queue["streams"][2]["priority"], "low", "{queue}");
    assert_eq!(queue["streams"][2]["length"], 20, "{queue}");

    let report = api.drain().await;
    assert_eq!(report["claimed"], 21, "{report}");
    assert_eq!(report["done"], 21, "{report}");
    let records = f.results().await;
    assert_eq!(records.len(), 21, "{records:?}");
    // Newest first: the voice, enqueued last, finished first.
    let oldest = records.last().unwrap();
    assert_eq!(oldest["kind"], "voice", "{records:?}");
    assert!(records[..20].iter().all(|r| r["kind"] == "probe"));
    let first_probe = records[19]["finished_ms"].as_u64().unwrap();
    assert!(oldest["finished_ms"].as_u64().unwrap() <= first_probe);
    assert_eq!(api.get_voice(&who, message).await.status(), 200);
    assert_streams_empty(&api.stats().await);
}
