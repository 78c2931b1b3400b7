//! Queries as the WASIp2 build sends them. Spin 4.0's synchronous PostgreSQL `query`
//! never returns a result without rows, so that build wraps every query in
//! `evolve_core::sql::at_least_one_row`: a marker row of nulls when the statement has no
//! rows, and the statement's own rows, in its own order, each with a last column `true`,
//! when it has. Checked here on the real server, for every statement the components send.

use crate::common::*;
use evolve_core::sql;
use tokio_postgres::{Client, NoTls};

async fn client(db: &ScratchDb) -> Client {
    let (client, connection) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The marker column of each row the wrapped statement returns.
async fn markers(client: &Client, statement: &str) -> Vec<Option<bool>> {
    client
        .query(&sql::at_least_one_row(statement), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("evolve_present"))
        .collect()
}

#[tokio::test]
async fn an_empty_result_becomes_one_marker_row_of_nulls() {
    let db = ScratchDb::migrated("rows_empty").await;
    let client = client(&db).await;
    assert_eq!(markers(&client, "SELECT 1 AS n WHERE false").await, [None]);
    // A data-modifying statement with nothing to change, as the subscriptions job sends.
    assert_eq!(markers(&client, sql::EXPIRE_SUBSCRIPTIONS).await, [None]);
    assert_eq!(markers(&client, "SELECT 1 AS n").await, [Some(true)]);
}

#[tokio::test]
async fn rows_keep_their_values_and_their_order() {
    let db = ScratchDb::migrated("rows_order").await;
    let client = client(&db).await;
    let rows = client
        .query(
            &sql::at_least_one_row(
                "SELECT g AS n, 'row ' || g AS label FROM generate_series(1, 500) g \
                 ORDER BY g % 7, g DESC",
            ),
            &[],
        )
        .await
        .unwrap();
    let mut expected: Vec<i32> = (1..=500).collect();
    expected.sort_by_key(|g| (g % 7, -g));
    let got: Vec<i32> = rows.iter().map(|row| row.get("n")).collect();
    assert_eq!(got, expected);
    assert!(rows
        .iter()
        .all(|row| row.get::<_, Option<bool>>("evolve_present") == Some(true)));
    assert_eq!(
        rows[0].get::<_, String>("label"),
        format!("row {}", expected[0])
    );
    assert_eq!(rows[0].columns().last().unwrap().name(), "evolve_present");
}

#[tokio::test]
async fn a_data_modifying_statement_runs_once_and_returns_its_rows() {
    let db = ScratchDb::migrated("rows_insert").await;
    let client = client(&db).await;
    client
        .execute(sql::ENSURE_USER, &[&"wrapped-user"])
        .await
        .unwrap();
    let user_id: i64 = client
        .query_one(
            "SELECT id FROM users WHERE external_id = 'wrapped-user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let rows = client
        .query(
            &sql::at_least_one_row(sql::INSERT_TURN),
            &[&user_id, &"hello", &"hi there", &false],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "both rows of the turn come back");
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM chat_history WHERE user_id = $1",
            &[&user_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2, "the insert ran once");
}

/// Every statement the components send through `query` that prepares as written still
/// prepares once wrapped (a statement the wrapper broke would fail here, not on Spin 4).
/// `pg_stat_statements` is not installed in a scratch database, so the statement that
/// reads it is the one that prepares in neither form.
#[tokio::test]
async fn every_query_statement_prepares_when_wrapped() {
    let db = ScratchDb::migrated("rows_prepare").await;
    let client = client(&db).await;
    let statements = [
        sql::PROFILE_BY_EXTERNAL_ID,
        sql::PATCH_PROFILE_DATA,
        sql::RECENT_TURNS,
        sql::INSERT_TURN,
        sql::HISTORY_FIRST_PAGE,
        sql::HISTORY_PAGE_BEFORE,
        sql::ADMIN_CONNECTIONS,
        sql::ADMIN_MAX_CONNECTIONS,
        sql::ADMIN_DATABASE_STATS,
        sql::ADMIN_TABLES,
        sql::ADMIN_HISTORY_PARTITIONS,
        sql::ADMIN_SLOW_ACTIVITY,
        sql::ADMIN_LONGEST_RUNNING,
        sql::ADMIN_HAS_STATEMENTS,
        sql::ADMIN_SLOWEST_STATEMENTS,
        sql::CHAT_PARTITIONS,
        sql::DEFAULT_PARTITION_MONTHS,
        sql::ATTACH_MONTH,
        sql::DROP_MONTH,
        sql::DELETE_BEFORE,
        sql::EXPIRE_SUBSCRIPTIONS,
        sql::RECENTLY_ACTIVE_USERS,
        "SELECT 1",
        "SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations",
    ];
    let mut checked = 0;
    for statement in statements {
        if client.prepare(statement).await.is_err() {
            continue;
        }
        if let Err(error) = client.prepare(&sql::at_least_one_row(statement)).await {
            panic!("{statement}\nfails once wrapped: {error:?}");
        }
        checked += 1;
    }
    assert_eq!(checked, statements.len() - 1);
}
