//! A PostgreSQL streaming replica behind the application: history pages and profile loads
//! read it, a user always reads their own writes, and a replica that is paused, lagging or
//! stopped never fails a request.
//!
//! Each test has its own primary and replica (`pg_basebackup -R`), so pausing replay does
//! not touch the shared test server. Where a read went is told by rows written on the
//! primary behind the application's back while replay is paused: the replica does not
//! have them.

use crate::common::postgres::OwnPostgres;
use crate::common::*;
use evolve_core::ids::UserRef;
use evolve_core::keys;
use evolve_mock_gemini::{MockConfig, MockGemini};
use serde_json::{json, Value};
use std::time::Duration;

/// Runs one statement and returns its rows.
async fn sql(url: &str, statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query(statement, &[]).await.unwrap()
}

/// Waits until the replica has replayed everything the primary has written so far.
async fn caught_up(primary: &OwnPostgres, replica: &OwnPostgres) {
    let lsn: String = sql(&primary.url, "SELECT pg_current_wal_lsn()::text").await[0].get(0);
    let check = format!("SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)");
    let done = eventually(Duration::from_secs(10), || async {
        let rows = sql(&replica.url, &check).await;
        rows[0].get::<_, bool>(0).then_some(())
    })
    .await;
    assert!(done.is_some(), "the replica did not catch up");
}

/// A primary with its migrations, a replica of it, and the app reading from both.
struct Setup {
    primary: OwnPostgres,
    replica: OwnPostgres,
    rdb: RedisDb,
    app: evolve_host::Running,
    _mock: MockGemini,
}

impl Setup {
    async fn start(max_lag_ms: u64) -> Setup {
        let primary = OwnPostgres::start().migrated().await;
        let replica = primary.replica();
        caught_up(&primary, &replica).await;
        let rdb = RedisDb::claim().await;
        let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
            .await
            .unwrap();
        let mut options = app_options(&rdb.url(), &primary.url);
        set_var(&mut options, "gemini_base_url", mock.base_url());
        set_var(&mut options, "pg_read_url", &replica.url);
        set_var(&mut options, "pg_read_host", host_port(&replica.url));
        set_var(&mut options, "pg_replica_max_lag_ms", max_lag_ms);
        // Where reads go is under test, not the replica's deadline: on a machine busy with
        // the whole suite, a replica call can take longer than the default 500 ms.
        set_var(&mut options, "pg_read_timeout_ms", 5_000);
        let app = start(&options, HTTP_ONLY).await;
        Setup {
            primary,
            replica,
            rdb,
            app,
            _mock: mock,
        }
    }

    async fn get(&self, user: &str, path: &str) -> Value {
        let response = client()
            .get(url(self.app.addr, path))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn contents(&self, user: &str) -> Vec<String> {
        let page = self.get(user, "/api/chat/history?limit=50").await;
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn chat(&self, user: &str, message: &str) -> Value {
        let response = client()
            .post(url(self.app.addr, "/api/chat"))
            .bearer_auth(token(user))
            .json(&json!({ "message": message }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn put_profile(&self, user: &str, data: Value) {
        let response = client()
            .put(url(self.app.addr, "/api/profile"))
            .bearer_auth(token(user))
            .json(&data)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn admin(&self, path: &str) -> Value {
        let response = client()
            .get(url(self.app.addr, path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn ready(&self) -> Value {
        let response = client()
            .get(url(self.app.addr, "/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "the replica never takes an instance out"
        );
        response.json().await.unwrap()
    }

    /// Adds a message to `user`'s history on the primary, behind the app's back.
    async fn write_behind(&self, user: &str, content: &str) {
        sql(
            &self.primary.url,
            &format!(
                "INSERT INTO chat_history (user_id, role, content, created_at)
                 SELECT id, 'assistant', '{content}', now() FROM users WHERE external_id = '{user}'"
            ),
        )
        .await;
    }

    /// Why the replica is bypassed, if it is (the marker in Redis).
    async fn bypass(&self) -> Option<String> {
        let mut redis = redis_in(self.rdb.number).await;
        redis::cmd("GET")
            .arg(keys::REPLICA_BYPASS)
            .query_async(&mut redis)
            .await
            .unwrap()
    }

    async fn bypassed(&self) -> bool {
        self.bypass().await.is_some()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_replay_paused_a_user_reads_their_own_writes_and_others_read_the_replica() {
    let s = Setup::start(30_000).await;
    let (writer, reader) = (test_user("replica-writer"), test_user("replica-reader"));
    // First contact creates both users (on the primary); the replica then has them.
    assert!(s.contents(&writer).await.is_empty());
    assert!(s.contents(&reader).await.is_empty());
    caught_up(&s.primary, &s.replica).await;
    // A freshly started replica that has replayed no transaction yet cannot tell its lag
    // while WAL arrives, and is bypassed for a few seconds then: start from one in use.
    let in_use = eventually(Duration::from_secs(15), || async {
        (!s.bypassed().await).then_some(())
    })
    .await;
    assert!(in_use.is_some(), "the replica stays bypassed");
    sql(&s.replica.url, "SELECT pg_wal_replay_pause()").await;

    // The writer's turn is past the replica's replay: their reads go to the primary.
    s.chat(&writer, "remember this").await;
    assert_eq!(
        s.contents(&writer).await,
        ["echo: remember this", "remember this"]
    );
    s.put_profile(&writer, json!({ "name": "Ana" })).await;
    let profile = s.get(&writer, "/api/profile").await;
    assert_eq!(profile["data"]["name"], "Ana", "{profile}");

    // The reader wrote nothing: their reads go to the replica, which has not replayed
    // what was written behind the app's back.
    s.write_behind(&reader, "written while replay is paused")
        .await;
    let page = s.contents(&reader).await;
    assert!(page.is_empty(), "read the primary ({:?})", s.bypass().await);
    sql(
        &s.primary.url,
        &format!(
            "UPDATE profiles SET data = '{{\"name\": \"Rui\"}}'
             FROM users WHERE users.id = profiles.user_id AND external_id = '{reader}'"
        ),
    )
    .await;
    let cached = keys::profile(&UserRef::parse(&reader).unwrap());
    let mut redis = redis_in(s.rdb.number).await;
    let _: i64 = redis::cmd("DEL")
        .arg(&cached)
        .query_async(&mut redis)
        .await
        .unwrap();
    let profile = s.get(&reader, "/api/profile").await;
    assert_eq!(
        profile["data"],
        json!({}),
        "read the primary ({:?}): {profile}",
        s.bypass().await
    );
    assert!(
        !s.bypassed().await,
        "a paused replica within its lag bound is used"
    );

    // Lag and the paused replay are shown.
    let ready = s.ready().await;
    assert_eq!(ready["replica"]["replay_paused"], true, "{ready}");
    assert!(ready["replica"]["lag_ms"].as_i64().unwrap() > 0, "{ready}");
    let db = s.admin("/admin/db_metrics").await;
    assert_eq!(db["replica"]["replay_paused"], true, "{db}");
    assert!(db["replica"]["lag_ms"].as_i64().is_some(), "{db}");

    // Replay resumed: the replica catches up and the reader sees the row.
    sql(&s.replica.url, "SELECT pg_wal_replay_resume()").await;
    caught_up(&s.primary, &s.replica).await;
    assert_eq!(
        s.contents(&reader).await,
        ["written while replay is paused"]
    );
    // With nothing left to replay, the lag is 0 (the server's own background records
    // may keep it above for a moment).
    let current = eventually(Duration::from_secs(10), || async {
        let ready = s.ready().await;
        (ready["replica"]["status"] == "healthy" && ready["replica"]["lag_ms"] == 0).then_some(())
    })
    .await;
    assert!(current.is_some(), "{}", s.ready().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_lagging_past_its_bound_is_bypassed_for_everyone() {
    let s = Setup::start(1_000).await;
    let user = test_user("replica-lagging");
    assert!(s.contents(&user).await.is_empty());
    caught_up(&s.primary, &s.replica).await;
    sql(&s.replica.url, "SELECT pg_wal_replay_pause()").await;
    s.write_behind(&user, "newer than the replica").await;
    // Once the replica is further behind than the bound, reads go to the primary.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(s.contents(&user).await, ["newer than the replica"]);
    assert!(
        s.bypassed().await,
        "the lagging replica is bypassed for everyone"
    );
    let ready = s.ready().await;
    assert_eq!(ready["replica"]["status"], "degraded", "{ready}");
    assert!(
        ready["replica"]["lag_ms"].as_i64().unwrap() > 1_000,
        "{ready}"
    );
    assert_eq!(ready["overall"], "degraded", "{ready}");
    sql(&s.replica.url, "SELECT pg_wal_replay_resume()").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_replica_sends_reads_to_the_primary_and_nothing_fails() {
    let s = Setup::start(30_000).await;
    let user = test_user("replica-stopped");
    s.chat(&user, "before the stop").await;
    caught_up(&s.primary, &s.replica).await;
    s.replica.stop();

    // Every read and write still answers, from the primary.
    s.chat(&user, "during the stop").await;
    assert_eq!(s.contents(&user).await.len(), 4);
    let other = test_user("replica-stopped-other");
    assert!(s.contents(&other).await.is_empty(), "a new user is created");
    s.write_behind(&other, "on the primary").await;
    assert_eq!(s.contents(&other).await, ["on the primary"]);
    assert!(s.bypassed().await, "the stopped replica is bypassed");
    let ready = s.ready().await;
    assert_eq!(ready["replica"]["status"], "degraded", "{ready}");
    assert!(ready["replica"]["error"].is_string(), "{ready}");
    assert!(
        !ready.to_string().contains("postgres://"),
        "no URL in the report: {ready}"
    );

    // Started again, it is reported healthy again.
    s.replica.start_again();
    caught_up(&s.primary, &s.replica).await;
    let healthy = eventually(Duration::from_secs(10), || async {
        let ready = s.ready().await;
        (ready["replica"]["status"] == "healthy").then_some(())
    })
    .await;
    assert!(
        healthy.is_some(),
        "the replica is not reported healthy again"
    );
    assert_eq!(s.contents(&user).await.len(), 4);
}
