//! The local host running a spin-sdk 6 (WASIp3) component as Spin 4.0.2 runs it
//! (`tests/fixtures/spin-p3.toml`): each async Spin interface answers on real servers,
//! outbound calls outside the allowed hosts are refused, instances are reused across
//! requests (up to the reuse count), a guest that gives up on a Redis call hung on a
//! frozen server answers on its own deadline and keeps working once Redis is back, an
//! async (`spin:cron@3.0.0`) cron component fires, and an async
//! (`spin:redis/inbound-redis@3.0.0`) Redis component receives messages.

use crate::common::*;
use evolve_host::instance_reuse::Range;
use evolve_host::HostOptions;
use redis::AsyncCommands;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn manifest() -> std::path::PathBuf {
    workspace().join("tests/fixtures/spin-p3.toml")
}

/// The p3 fixtures pointed at the given Redis, the test PostgreSQL and an HTTP server.
fn options(redis_url: &str, http_host: &str, dir: &tempfile::TempDir) -> HostOptions {
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        evolve_host::runtime_config::RuntimeConfig::with_cache_in(redis_url),
    )
    .unwrap();
    let mut options = HostOptions::new(manifest());
    options.runtime_config = Some(runtime_config);
    options.variables = HashMap::from([
        ("SPIN_VARIABLE_REDIS_URL".to_string(), redis_url.to_string()),
        ("SPIN_VARIABLE_REDIS_HOST".to_string(), host_port(redis_url)),
        ("SPIN_VARIABLE_PG_HOST".to_string(), host_port(&pg_url())),
        ("SPIN_VARIABLE_HTTP_HOST".to_string(), http_host.to_string()),
    ]);
    options
}

/// A one-route HTTP server that answers every request `200 pong`.
async fn pong_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong",
                    )
                    .await;
            });
        }
    });
    addr.to_string()
}

/// The request count of the instance that answered, and that instance's id.
async fn count_on(addr: std::net::SocketAddr) -> (u64, String) {
    let response = client().get(url(addr, "/p3/count")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (
        body["count"].as_u64().unwrap(),
        body["instance"].as_str().unwrap().to_string(),
    )
}

async fn count(addr: std::net::SocketAddr) -> u64 {
    count_on(addr).await.0
}

/// Each instance's request counts, in the order they answered.
async fn counts_by_instance(
    addr: std::net::SocketAddr,
    requests: usize,
) -> Vec<(String, Vec<u64>)> {
    let mut by_instance: Vec<(String, Vec<u64>)> = Vec::new();
    for _ in 0..requests {
        let (n, instance) = count_on(addr).await;
        match by_instance.iter_mut().find(|(i, _)| *i == instance) {
            Some((_, counts)) => counts.push(n),
            None => by_instance.push((instance, vec![n])),
        }
    }
    by_instance
}

#[tokio::test(flavor = "multi_thread")]
async fn each_async_interface_answers() {
    let dir = tempfile::tempdir().unwrap();
    let http_host = pong_server().await;
    let app = start(&options(&redis_url(), &http_host, &dir), HTTP_ONLY).await;
    let prefix = unique_prefix("p3-interfaces");

    let v = probe(
        app.addr,
        "/p3/x",
        json!({"op": "variable", "name": "greeting"}),
    )
    .await;
    assert_eq!(v["value"], "hello, p3", "{v}");
    let v = probe(app.addr, "/p3/x", json!({"op": "variable", "name": "nope"})).await;
    assert!(v["error"].as_str().unwrap().contains("Undefined"), "{v}");

    let v = probe(
        app.addr,
        "/p3/x",
        json!({"op": "redis", "address": redis_url(), "prefix": prefix}),
    )
    .await;
    assert_eq!(v["get"], "v1", "{v}");
    assert_eq!(v["incr"], 1, "{v}");
    assert_eq!(v["echo"], "hi", "{v}");

    let v = probe(app.addr, "/p3/x", json!({"op": "pg", "address": pg_url()})).await;
    assert_eq!(v["n"], 42, "{v}");
    assert_eq!(v["columns"], json!(["n", "t"]), "{v}");
    // As in Spin 4.0.2, a query without rows has no columns either.
    assert_eq!(v["empty_columns"], 0, "{v}");
    assert_eq!(v["empty_rows"], 0, "{v}");
    assert_eq!(v["executed"], 2, "{v}");

    for store in ["default", "cache"] {
        let v = probe(
            app.addr,
            "/p3/x",
            json!({"op": "kv", "store": store, "prefix": prefix}),
        )
        .await;
        assert_eq!(v["get"], "stored", "{store}: {v}");
        assert_eq!(v["exists"], true, "{store}: {v}");
        assert_eq!(v["listed"], true, "{store}: {v}");
        assert_eq!(v["exists_after_delete"], false, "{store}: {v}");
    }

    let v = probe(
        app.addr,
        "/p3/x",
        json!({"op": "http", "url": format!("http://{http_host}/ping")}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "pong", "{v}");

    let mut conn = redis().await;
    let _: () = conn
        .del(&[format!("{prefix}p3"), format!("{prefix}p3:n")])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_outside_the_manifest_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let http_host = pong_server().await;
    let app = start(&options(&redis_url(), &http_host, &dir), HTTP_ONLY).await;

    let v = probe(
        app.addr,
        "/p3-bare/x",
        json!({"op": "http", "url": format!("http://{http_host}/ping")}),
    )
    .await;
    assert!(
        v["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{v}"
    );
    let v = probe(
        app.addr,
        "/p3-bare/x",
        json!({"op": "redis", "address": redis_url(), "prefix": "x"}),
    )
    .await;
    assert!(
        v["error"].as_str().unwrap().contains("InvalidAddress"),
        "{v}"
    );
    let v = probe(
        app.addr,
        "/p3-bare/x",
        json!({"op": "pg", "address": pg_url()}),
    )
    .await;
    assert!(
        v["error"].as_str().unwrap().contains("ConnectionFailed"),
        "{v}"
    );
    let v = probe(
        app.addr,
        "/p3-bare/x",
        json!({"op": "kv", "store": "default", "prefix": "x"}),
    )
    .await;
    assert!(v["error"].as_str().unwrap().contains("AccessDenied"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_serves_up_to_the_reuse_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&redis_url(), "127.0.0.1:1", &dir);
    // Spin's default reuse count: 128 requests per instance, then a fresh one. The idle
    // timeout is raised from Spin's 1 s only so that a slow test machine cannot let
    // the instance expire between two requests.
    options.instance_reuse.idle_instance_timeout = Range::Value(Duration::from_secs(60));
    let app = start(&options, HTTP_ONLY).await;
    // The handler may start another worker while one is busy finishing a response, so
    // requests can alternate between instances; each instance counts on from where it
    // was, and none serves more than the reuse count.
    let by_instance = counts_by_instance(app.addr, 130).await;
    for (instance, counts) in &by_instance {
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, &expected, "instance {instance}");
        assert!(
            counts.len() <= 128,
            "instance {instance} served {}",
            counts.len()
        );
    }
    // Instances are reused, not made per request: a few serve all 130 (how the requests
    // split between the ones in use depends on the machine's timing).
    assert!(
        by_instance.len() <= 4,
        "{} instances served 130 requests",
        by_instance.len()
    );
    assert!(by_instance.len() >= 2, "130 requests on one instance");

    options.instance_reuse.max_instance_reuse_count = Range::Value(3);
    let app = start(&options, HTTP_ONLY).await;
    let by_instance = counts_by_instance(app.addr, 7).await;
    for (instance, counts) in &by_instance {
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, &expected, "instance {instance}");
        assert!(
            counts.len() <= 3,
            "instance {instance} served {}",
            counts.len()
        );
    }
    assert!(by_instance.len() >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_deadline_beats_a_frozen_redis() {
    let dir = tempfile::tempdir().unwrap();
    let own = OwnRedis::start().await;
    let app = start(&options(&own.url, "127.0.0.1:1", &dir), HTTP_ONLY).await;
    let mut conn = redis::Client::open(own.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = conn.set("p3:race", "here").await.unwrap();
    let race = json!({"op": "race", "address": own.url, "key": "p3:race", "ms": 300});

    let v = probe(app.addr, "/p3/x", race.clone()).await;
    assert_eq!(v["outcome"], "value", "{v}");
    assert_eq!(v["value"], "here", "{v}");
    let before = count(app.addr).await;

    own.pause();
    let started = Instant::now();
    let v = probe(app.addr, "/p3/x", race.clone()).await;
    let took = started.elapsed();
    assert_eq!(v["outcome"], "timeout", "{v}");
    assert!(
        took < Duration::from_millis(300 + 1_500),
        "the guest's 300 ms deadline took {took:?}"
    );
    // The same instance still answers while Redis is frozen.
    assert_eq!(count(app.addr).await, before + 2);

    own.resume();
    let v = probe(app.addr, "/p3/x", race).await;
    assert_eq!(v["outcome"], "value", "{v}");
    assert_eq!(v["value"], "here", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_cron_component_fires() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("p3-cron");
    let mut options = options(&redis_url(), "127.0.0.1:1", &dir);
    options
        .variables
        .insert("SPIN_VARIABLE_KEY_PREFIX".to_string(), prefix.clone());
    let app = evolve_host::App::load(&options).await.unwrap();
    evolve_host::cron::fire(&app, "p3-cron", 1_764_000_000)
        .await
        .unwrap();
    evolve_host::cron::fire(&app, "p3-cron", 1_764_000_060)
        .await
        .unwrap();
    let mut conn = redis().await;
    let count: i64 = conn.get(format!("{prefix}cron:count")).await.unwrap();
    let stamp: String = conn.get(format!("{prefix}cron:timestamp")).await.unwrap();
    assert_eq!(count, 2);
    assert_eq!(stamp, "1764000060");
    assert!(
        evolve_host::cron::fire(&app, "p3-probe", 1).await.is_err(),
        "an HTTP component is not a cron component"
    );
    let _: () = conn
        .del(&[
            format!("{prefix}cron:count"),
            format!("{prefix}cron:timestamp"),
        ])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_redis_component_receives_messages() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("p3-redis");
    let mut options = options(&redis_url(), "127.0.0.1:1", &dir);
    options
        .variables
        .insert("SPIN_VARIABLE_KEY_PREFIX".to_string(), prefix.clone());
    let _app = start(
        &options,
        evolve_host::Triggers {
            cron: false,
            redis: true,
        },
    )
    .await;
    let mut conn = redis().await;
    let channel = format!("{prefix}channel");
    let _: i64 = conn.publish(&channel, "first").await.unwrap();
    let _: i64 = conn.publish(&channel, "second").await.unwrap();
    let key = format!("{prefix}redis:messages");
    let messages = eventually(Duration::from_secs(30), || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let messages: Vec<String> = conn.lrange(&key, 0, -1).await.ok()?;
            (messages.len() == 2).then_some(messages)
        }
    })
    .await;
    assert_eq!(
        messages,
        Some(vec!["first".to_string(), "second".to_string()])
    );
    let _: () = conn.del(&key).await.unwrap();
}
