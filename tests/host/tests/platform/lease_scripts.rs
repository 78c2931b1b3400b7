//! The scheduled jobs' lease scripts on their own, against the test Redis: one holder at
//! a time, renewal and release only by the holder, finished slots remembered (and every
//! earlier one), a capped run history.

use crate::common::*;
use evolve_core::jobs;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

async fn eval(
    conn: &mut MultiplexedConnection,
    script: &str,
    keys: &[&str],
    args: &[&str],
) -> redis::Value {
    redis::cmd("EVAL")
        .arg(script)
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query_async(conn)
        .await
        .unwrap()
}

async fn acquire(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    token: &str,
    slot: &str,
) -> (String, String) {
    let reply = eval(
        conn,
        jobs::ACQUIRE_SCRIPT,
        &[&format!("{prefix}lease"), &format!("{prefix}slot")],
        &[token, "60000", slot],
    )
    .await;
    redis::from_redis_value(&reply).unwrap()
}

#[tokio::test]
async fn lease_scripts_keep_one_holder_and_remember_finished_slots() {
    let mut conn = redis().await;
    let prefix = format!("{}{{job:test}}:", unique_prefix("lease"));
    let lease = format!("{prefix}lease");
    let finish = |token: &'static str, slot: &'static str| {
        let prefix = prefix.clone();
        async move {
            let mut conn = redis().await;
            let reply = eval(
                &mut conn,
                jobs::FINISH_SCRIPT,
                &[
                    &format!("{prefix}lease"),
                    &format!("{prefix}slot"),
                    &format!("{prefix}last"),
                    &format!("{prefix}history"),
                ],
                &[token, "{\"record\":1}", slot, "2", "60000"],
            )
            .await;
            redis::from_redis_value::<i64>(&reply).unwrap()
        }
    };

    assert_eq!(
        acquire(&mut conn, &prefix, "a", "1000").await,
        ("ok".into(), "a".into())
    );
    assert_eq!(
        acquire(&mut conn, &prefix, "b", "1000").await,
        ("busy".into(), "a".into())
    );
    // Renewal works only for the holder.
    let renewed = |token: &'static str| {
        let lease = lease.clone();
        async move {
            let mut conn = redis().await;
            let reply = eval(&mut conn, jobs::RENEW_SCRIPT, &[&lease], &[token, "60000"]).await;
            redis::from_redis_value::<i64>(&reply).unwrap()
        }
    };
    assert_eq!(renewed("b").await, 0);
    assert_eq!(renewed("a").await, 1);
    // Someone else's finish does not release the lease; the holder's does.
    assert_eq!(finish("b", "").await, 0);
    assert_eq!(finish("a", "1000").await, 1);
    let held: bool = conn.exists(&lease).await.unwrap();
    assert!(!held);
    // The slot is done, and so is every earlier one; a later slot runs.
    assert_eq!(
        acquire(&mut conn, &prefix, "c", "1000").await,
        ("done".into(), "1000".into())
    );
    assert_eq!(
        acquire(&mut conn, &prefix, "c", "400").await,
        ("done".into(), "1000".into())
    );
    assert_eq!(
        acquire(&mut conn, &prefix, "c", "2000").await,
        ("ok".into(), "c".into())
    );
    // A run without a slot (the admin route) only needs the lease.
    assert_eq!(finish("c", "2000").await, 1);
    assert_eq!(
        acquire(&mut conn, &prefix, "d", "").await,
        ("ok".into(), "d".into())
    );
    // The history is capped.
    assert_eq!(finish("d", "").await, 1);
    let len: i64 = conn.llen(format!("{prefix}history")).await.unwrap();
    assert_eq!(len, 2);
    let _: () = conn
        .del(&[
            format!("{prefix}slot"),
            format!("{prefix}last"),
            format!("{prefix}history"),
        ])
        .await
        .unwrap();
}
