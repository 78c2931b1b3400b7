//! PostgreSQL paused with SIGSTOP (the server and every backend process stopped, the
//! connections open) while requests arrive.
//!
//! The WASIp3 build bounds every PostgreSQL call by `pg_timeout_ms`: `/ready` names
//! PostgreSQL within `dependency_timeout_ms`; a chat turn answers 503 with `Retry-After`
//! within `pg_timeout_ms` plus a second, stores nothing and releases its idempotency claim,
//! so the same request retried after SIGCONT is served. The WASIp2 build cannot abandon a
//! host call: its requests wait out the pause and then answer, a limit of WASIp2.
//!
//! The server paused is the test's own, so the tests beside it go on.

use crate::common::load::count;
use crate::common::postgres::OwnPostgres;
use crate::common::*;
use evolve_mock_gemini::{MockConfig, MockGemini};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PAUSE: Duration = Duration::from_secs(5);
const PG_TIMEOUT_MS: u64 = 1_000;

/// How many chat history rows the server holds for a user.
async fn stored(pg: &OwnPostgres, user: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM chat_history h JOIN users u ON u.id = h.user_id \
         WHERE u.external_id = '{user}'"
    );
    count(&pg.url, &sql).await
}

async fn timed(request: reqwest::RequestBuilder) -> (Duration, u16, Option<String>, Value) {
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (started.elapsed(), status, retry_after, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_while_postgres_is_paused() {
    let pg = OwnPostgres::start().migrated().await;
    let rdb = RedisDb::claim().await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let mut options = app_options(&rdb.url(), &pg.url);
    set_var(&mut options, "gemini_base_url", mock.base_url());
    set_var(&mut options, "pg_timeout_ms", PG_TIMEOUT_MS);
    let app = start(&options, HTTP_ONLY).await;
    let user = test_user("hang_pg");
    let turn = || {
        client()
            .post(url(app.addr, "/api/chat"))
            .bearer_auth(token(&user))
            .header("idempotency-key", "paused-pg")
            .json(&json!({ "message": "is my message kept?" }))
    };

    let pids = pg.processes();
    let _thaw = Thaw(pids.clone());
    signal("-STOP", &pids);
    let resume = tokio::spawn(async move {
        tokio::time::sleep(PAUSE).await;
        signal("-CONT", &pids);
    });
    let ((ready_took, _, _, ready), (turn_took, turn_status, retry_after, answer)) =
        tokio::join!(timed(client().get(url(app.addr, "/ready"))), timed(turn()),);
    resume.await.unwrap();
    println!("during the pause: /ready {ready_took:?}, chat turn {turn_took:?} ({turn_status})");

    if wasip3_build() {
        assert!(
            ready_took < Duration::from_millis(1_500),
            "/ready took {ready_took:?}"
        );
        assert_eq!(ready["postgres"]["status"], "unhealthy", "{ready}");
        let bound = Duration::from_millis(PG_TIMEOUT_MS + 1_000);
        assert!(turn_took < bound, "chat turn took {turn_took:?}");
        assert_eq!(turn_status, 503, "{answer}");
        assert!(retry_after.is_some(), "a 503 says when to retry");
        assert_eq!(stored(&pg, &user).await, 0, "nothing of the turn is stored");
    } else {
        assert!(
            turn_took >= PAUSE - Duration::from_millis(500),
            "turn took {turn_took:?}"
        );
        assert!(
            ready_took >= PAUSE - Duration::from_millis(500),
            "/ready took {ready_took:?}"
        );
        assert_eq!(turn_status, 200, "{answer}");
    }

    // Recovery: the same request is served once PostgreSQL answers (its claim was
    // released, or it completed), and the turn is stored once.
    let served = eventually(Duration::from_secs(10), || async {
        let response = turn().send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "the retried turn was not served after SIGCONT"
    );
    assert_eq!(stored(&pg, &user).await, 2, "the turn is stored once");
}
