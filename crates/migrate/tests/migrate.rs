//! The migration runner against a real PostgreSQL.
//!
//! `EVOLVE_TEST_PG_URL` names a database whose role may create databases (scripts/test
//! sets it). Each test works in a scratch database of its own, dropped at the end even
//! when the test fails, so tests run in parallel without seeing each other.

use evolve_core::schema::{self, EXPECTED_VERSION, MIGRATIONS};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_postgres::{Client, Config, NoTls};

fn server_config() -> Config {
    let url = std::env::var("EVOLVE_TEST_PG_URL").expect(
        "EVOLVE_TEST_PG_URL is not set: point it at a PostgreSQL database whose role has \
         CREATEDB (scripts/test sets it), e.g. postgres://evolve:evolve@127.0.0.1:5441/evolve_test",
    );
    url.parse()
        .expect("EVOLVE_TEST_PG_URL is not a valid PostgreSQL URL")
}

async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("cannot connect to the test PostgreSQL");
    tokio::spawn(async move {
        // The connection ends when its client is dropped; errors then are expected.
        let _ = connection.await;
    });
    client
}

fn scratch_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "evolve_mig_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `test` with the configuration of a fresh, empty database, then drops it and
/// returns what the test returned.
async fn with_scratch_db<F, Fut, T>(test: F) -> T
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let server = server_config();
    let admin = connect(&server).await;
    let name = scratch_name();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("cannot create a scratch database (does the role have CREATEDB?)");

    let mut config = server.clone();
    config.dbname(&name);
    // Run the test as its own task so a failing assertion still lets us drop the database.
    let outcome = tokio::spawn(test(config)).await;

    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("cannot drop the scratch database");
    match outcome {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// A description of the schema's tables, columns, constraints, indexes and partitions,
/// for comparing two databases.
async fn schema_snapshot(client: &Client) -> Vec<String> {
    let queries = [
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
                || ' default=' || coalesce(column_default, '') || ' identity=' || is_identity
           FROM information_schema.columns WHERE table_schema = 'public'",
        "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "SELECT tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'",
        "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
           FROM pg_class c WHERE c.relispartition AND c.relkind IN ('r', 'p')",
    ];
    let mut lines = Vec::new();
    for query in queries {
        for row in client.query(query, &[]).await.expect("snapshot query") {
            lines.push(row.get::<_, String>(0));
        }
    }
    lines.sort();
    lines
}

async fn recorded_migrations(client: &Client) -> Vec<(i32, String, String)> {
    client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

fn expected_records() -> Vec<(i32, String, String)> {
    MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned(), m.checksum()))
        .collect()
}

#[tokio::test]
async fn second_run_applies_nothing_and_changes_nothing() {
    with_scratch_db(|config| async move {
        let mut client = connect(&config).await;

        let first = evolve_migrate::migrate(&mut client)
            .await
            .expect("first run");
        let names: Vec<_> = first.applied.iter().map(|a| (a.version, a.name)).collect();
        let all: Vec<_> = MIGRATIONS.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(names, all);
        assert_eq!(first.version, EXPECTED_VERSION);
        let after_first = schema_snapshot(&client).await;
        assert!(!after_first.is_empty());

        let second = evolve_migrate::migrate(&mut client)
            .await
            .expect("second run");
        assert!(second.applied.is_empty(), "{second:?}");
        assert_eq!(second.version, EXPECTED_VERSION);
        assert_eq!(schema_snapshot(&client).await, after_first);
        assert_eq!(recorded_migrations(&client).await, expected_records());
    })
    .await;
}

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    // The reference: the schema a single runner produces on a fresh database.
    let reference = with_scratch_db(|config| async move {
        let mut client = connect(&config).await;
        evolve_migrate::migrate(&mut client)
            .await
            .expect("single run");
        schema_snapshot(&client).await
    })
    .await;

    with_scratch_db(|config| async move {
        let runners: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move {
                    let mut client = connect(&config).await;
                    evolve_migrate::migrate(&mut client).await
                })
            })
            .collect();
        let mut applied_total = 0;
        for runner in runners {
            let report = runner.await.expect("runner task").expect("concurrent run");
            assert_eq!(report.version, EXPECTED_VERSION);
            applied_total += report.applied.len();
        }
        assert_eq!(
            applied_total,
            MIGRATIONS.len(),
            "each migration applied exactly once"
        );

        let client = connect(&config).await;
        assert_eq!(recorded_migrations(&client).await, expected_records());
        assert_eq!(schema_snapshot(&client).await, reference);
    })
    .await;
}

#[tokio::test]
async fn edited_migration_is_refused() {
    with_scratch_db(|config| async move {
        let mut client = connect(&config).await;
        evolve_migrate::migrate(&mut client).await.expect("first run");
        client
            .execute(
                "UPDATE schema_migrations SET checksum = 'fnv1a64:0000000000000000' WHERE version = 1",
                &[],
            )
            .await
            .unwrap();

        let error = evolve_migrate::migrate(&mut client)
            .await
            .expect_err("a checksum mismatch must fail");
        let message = format!("{error:#}");
        assert!(message.contains("0001_initial.sql was changed"), "{message}");
        assert!(message.contains("fnv1a64:0000000000000000"), "{message}");

        // The lock was released: another session can take it at once.
        let other = connect(&config).await;
        let row = other
            .query_one("SELECT pg_try_advisory_lock($1)", &[&evolve_migrate::LOCK_KEY])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the migration lock was left held");
    })
    .await;
}

#[tokio::test]
async fn unknown_applied_migration_is_refused() {
    with_scratch_db(|config| async move {
        let mut client = connect(&config).await;
        evolve_migrate::migrate(&mut client).await.expect("first run");
        let future = EXPECTED_VERSION + 1;
        client
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'from_the_future', 'x')",
                &[&future],
            )
            .await
            .unwrap();
        let error = evolve_migrate::migrate(&mut client)
            .await
            .expect_err("an unknown applied migration must fail");
        assert!(
            format!("{error:#}").contains("from_the_future"),
            "{error:#}"
        );
    })
    .await;
}

#[tokio::test]
async fn chat_history_is_partitioned_by_month() {
    with_scratch_db(|config| async move {
        let mut client = connect(&config).await;
        evolve_migrate::migrate(&mut client).await.expect("migrate");

        let row = client
            .query_one(
                "SELECT to_char(m, '\"chat_history_y\"YYYY\"m\"MM'),
                        to_char(m + interval '1 month', '\"chat_history_y\"YYYY\"m\"MM')
                   FROM date_trunc('month', now() AT TIME ZONE 'UTC') AS m",
                &[],
            )
            .await
            .unwrap();
        let current: String = row.get(0);
        let next: String = row.get(1);

        let mut partitions: Vec<String> = client
            .query(
                "SELECT inhrelid::regclass::text FROM pg_inherits
                  WHERE inhparent = 'chat_history'::regclass",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        partitions.sort();
        let mut expected = vec![current.clone(), next, "chat_history_default".to_owned()];
        expected.sort();
        assert_eq!(partitions, expected);

        let strategy: String = client
            .query_one(
                "SELECT partstrat::text FROM pg_partitioned_table
                  WHERE partrelid = 'chat_history'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(strategy, "r", "chat_history is range-partitioned");

        let user_id: i64 = client
            .query_one(
                "INSERT INTO users (external_id) VALUES ('partition-test') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let landed: String = client
            .query_one(
                "INSERT INTO chat_history (user_id, role, content) VALUES ($1, 'user', 'hello')
                 RETURNING tableoid::regclass::text",
                &[&user_id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            landed, current,
            "a message written now lands in this month's partition"
        );

        // Far outside the created months, rows still land somewhere: the default partition.
        let landed: String = client
            .query_one(
                "INSERT INTO chat_history (user_id, role, content, created_at)
                 VALUES ($1, 'assistant', 'from the past', '2001-01-01T00:00:00Z')
                 RETURNING tableoid::regclass::text",
                &[&user_id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(landed, "chat_history_default");

        // Deleting a user removes their history in every partition.
        client
            .execute("DELETE FROM users WHERE id = $1", &[&user_id])
            .await
            .unwrap();
        let left: i64 = client
            .query_one("SELECT count(*) FROM chat_history", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
    })
    .await;
}

#[tokio::test]
async fn schema_constraints_hold() {
    with_scratch_db(|config| async move {
        let mut client = connect(&config).await;
        evolve_migrate::migrate(&mut client).await.expect("migrate");

        let user_id: i64 = client
            .query_one(
                "INSERT INTO users (external_id) VALUES ('c') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let plan: String = client
            .query_one("SELECT plan FROM users WHERE id = $1", &[&user_id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(plan, "free");

        let bad_plan = client
            .execute("UPDATE users SET plan = 'gold' WHERE id = $1", &[&user_id])
            .await;
        assert!(bad_plan.is_err(), "plan is limited to free and premium");
        let bad_role = client
            .execute(
                "INSERT INTO chat_history (user_id, role, content) VALUES ($1, 'bot', 'x')",
                &[&user_id],
            )
            .await;
        assert!(
            bad_role.is_err(),
            "role is limited to user, assistant, system"
        );
        let duplicate = client
            .execute("INSERT INTO users (external_id) VALUES ('c')", &[])
            .await;
        assert!(duplicate.is_err(), "external_id is unique");

        client
            .execute("INSERT INTO profiles (user_id) VALUES ($1)", &[&user_id])
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT data::text, memory::text FROM profiles WHERE user_id = $1",
                &[&user_id],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("{}".into(), "{}".into())
        );

        // The version /ready compares with the build.
        let version: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0)::int FROM schema_migrations",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, schema::EXPECTED_VERSION);
    })
    .await;
}
