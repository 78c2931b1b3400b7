//! The local host against the test fixtures (`tests/fixtures/spin.toml`): routing and
//! Spin's headers, variables, allowed outbound hosts, the Redis, PostgreSQL and
//! key-value interfaces on real servers, and the cron and Redis triggers.

use crate::common::*;
use redis::AsyncCommands;
use serde_json::json;
use std::time::Duration;

async fn fixtures(test: &str) -> (evolve_host::Running, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix(test);
    let options = fixture_options(&prefix, &runtime_config(&dir));
    (start(&options, HTTP_ONLY).await, prefix, dir)
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let response = client().get(url(addr, path)).send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_pick_the_most_specific_component() {
    let (app, _, _dir) = fixtures("routes").await;
    let cases = [
        ("/probe", "probe"),
        ("/probe/anything/below", "probe"),
        ("/probe/deep/x", "probe-deep"),
        ("/probe/deep", "probe-deep"),
        ("/probe/exact", "probe-exact"),
        ("/probe/exactly", "probe"),
        ("/users/42/posts", "probe-exact"),
    ];
    for (path, component) in cases {
        let (status, body) = get_json(app.addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["component"], component, "{path}");
    }
    let response = client()
        .get(url(app.addr, "/nothing/here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = client().get(url(app.addr, "/")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_spins_request_headers() {
    let (app, _, _dir) = fixtures("headers").await;
    let (_, body) = get_json(app.addr, "/probe/a/b/?x=1&y=2").await;
    let h = &body["headers"];
    assert_eq!(
        h["spin-full-url"],
        format!("http://{}/probe/a/b/?x=1&y=2", app.addr)
    );
    assert_eq!(h["spin-path-info"], "/a/b/");
    assert_eq!(h["spin-matched-route"], "/probe/...");
    assert_eq!(h["spin-raw-component-route"], "/probe/...");
    assert_eq!(h["spin-component-route"], "/probe");
    assert_eq!(h["spin-base-path"], "/");
    let client_addr = h["spin-client-addr"].as_str().unwrap();
    assert!(client_addr.starts_with("127.0.0.1:"), "{client_addr}");

    let (_, body) = get_json(app.addr, "/probe/exact").await;
    assert_eq!(body["headers"]["spin-path-info"], "");
    assert_eq!(body["headers"]["spin-component-route"], "/probe/exact");

    let (_, body) = get_json(app.addr, "/users/42/posts").await;
    assert_eq!(body["headers"]["spin-path-match-id"], "42");
    assert_eq!(body["headers"]["spin-path-info"], "/posts");
    assert_eq!(body["headers"]["spin-matched-route"], "/users/:id/...");
}

#[tokio::test(flavor = "multi_thread")]
async fn variables_resolve_from_defaults_templates_and_overrides() {
    let (app, _, _dir) = fixtures("variables").await;
    let get = |name: &str| probe(app.addr, "/probe", json!({"op": "variable", "name": name}));
    assert_eq!(get("greeting_template").await["value"], "hello, world");
    assert_eq!(get("token").await["value"], "t0ken");
    // Application variables are not visible unless the component maps them.
    let undefined = get("greeting").await;
    assert!(
        undefined["error"].as_str().unwrap().contains("Undefined"),
        "{undefined}"
    );
    let invalid = get("Bad-Name").await;
    assert!(
        invalid["error"].as_str().unwrap().contains("InvalidName"),
        "{invalid}"
    );

    // An environment override wins over the default.
    let dir = tempfile::tempdir().unwrap();
    let mut options = fixture_options(&unique_prefix("variables2"), &runtime_config(&dir));
    options
        .variables
        .insert("SPIN_VARIABLE_GREETING".into(), "hi".into());
    let app2 = start(&options, HTTP_ONLY).await;
    let v = probe(
        app2.addr,
        "/probe",
        json!({"op": "variable", "name": "greeting_template"}),
    )
    .await;
    assert_eq!(v["value"], "hi, world");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_variable_without_a_value_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = fixture_options(&unique_prefix("required"), &runtime_config(&dir));
    options.variables.remove("SPIN_VARIABLE_API_TOKEN");
    std::env::remove_var("SPIN_VARIABLE_API_TOKEN");
    let err = match evolve_host::App::load(&options).await {
        Ok(_) => panic!("started without a required variable"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("api_token") && err.contains("SPIN_VARIABLE_API_TOKEN"),
        "{err}"
    );
}

/// A one-shot HTTP server on a free loopback port that answers `200 pong`.
async fn pong_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong")
                .await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_http_is_limited_to_allowed_hosts() {
    let allowed = pong_server().await;
    let other = pong_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = fixture_options(&unique_prefix("http"), &runtime_config(&dir));
    options
        .variables
        .insert("SPIN_VARIABLE_HTTP_HOST".into(), allowed.to_string());
    let app = start(&options, HTTP_ONLY).await;

    let ok = probe(
        app.addr,
        "/probe",
        json!({"op": "http", "url": format!("http://{allowed}/ping")}),
    )
    .await;
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["body"], "pong");

    let denied = probe(
        app.addr,
        "/probe",
        json!({"op": "http", "url": format!("http://{other}/ping")}),
    )
    .await;
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{denied}"
    );
    // A component with no allowed hosts reaches nothing.
    let denied = probe(
        app.addr,
        "/probe/exact",
        json!({"op": "http", "url": format!("http://{allowed}/ping")}),
    )
    .await;
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{denied}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_interface_round_trips_on_a_real_server() {
    let (app, prefix, _dir) = fixtures("redis").await;
    let mut direct = redis().await;
    let mut pubsub = redis::Client::open(redis_url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(format!("{prefix}channel")).await.unwrap();

    let r = probe(
        app.addr,
        "/probe",
        json!({"op": "redis", "address": redis_url(), "prefix": prefix}),
    )
    .await;
    assert_eq!(r["set"], true, "{r}");
    assert_eq!(r["get"], "hello");
    assert_eq!(r["get_missing"], true);
    assert_eq!(r["incr"], 1);
    assert_eq!(r["incr_again"], 2);
    assert_eq!(r["sadd"], 2);
    assert_eq!(r["smembers"], json!(["a", "b"]));
    assert_eq!(r["srem"], 1);
    assert_eq!(r["exec_set_ex"], json!([{"status": "OK"}]));
    assert_eq!(r["exec_get"], json!(["v"]));
    assert_eq!(r["exec_rpush"], json!([2]));
    assert_eq!(r["exec_lrange"], json!(["x", "y"]));
    assert_eq!(r["exec_eval"], json!([format!("{prefix}k"), 42]));
    assert!(r["exec_bad"]["error"].as_str().is_some(), "{r}");
    assert_eq!(r["del"], 5);
    assert_eq!(r["publish"], true);

    let message = tokio::time::timeout(Duration::from_secs(5), async {
        use futures::StreamExt;
        pubsub.on_message().next().await
    })
    .await
    .expect("published message not seen")
    .unwrap();
    assert_eq!(message.get_payload_bytes(), b"ping");
    let left: Vec<String> = direct.keys(format!("{prefix}*")).await.unwrap();
    assert!(left.is_empty(), "keys left behind: {left:?}");

    // Not in allowed_outbound_hosts: Spin's answer is `invalid-address`.
    let denied = probe(
        app.addr,
        "/probe/exact",
        json!({"op": "redis", "address": redis_url(), "prefix": prefix}),
    )
    .await;
    assert_eq!(denied["error"], "Error::InvalidAddress", "{denied}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_redis_open_is_a_new_connection_unless_shared() {
    let (app, prefix, _dir) = fixtures("opens").await;
    let op = json!({"op": "redis", "address": redis_url(), "prefix": prefix});
    let before = app
        .app
        .services
        .redis_opens
        .load(std::sync::atomic::Ordering::Relaxed);
    probe(app.addr, "/probe", op.clone()).await;
    probe(app.addr, "/probe", op.clone()).await;
    let after = app
        .app
        .services
        .redis_opens
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 2);

    let dir = tempfile::tempdir().unwrap();
    let mut options = fixture_options(&prefix, &runtime_config(&dir));
    options.shared_redis = true;
    let shared = start(&options, HTTP_ONLY).await;
    for _ in 0..3 {
        probe(shared.addr, "/probe", op.clone()).await;
    }
    assert_eq!(
        shared
            .app
            .services
            .redis_opens
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_types_round_trip() {
    let (app, _, _dir) = fixtures("pg").await;
    let r = probe(app.addr, "/probe", json!({"op": "pg", "address": pg_url()})).await;
    let expected: Vec<String> = [
        "Int16(-7)",
        "Int32(2000000000)",
        "Int64(9000000000000)",
        "Floating32(1.5)",
        "Floating64(-2.25)",
        "Boolean(true)",
        "Str(\"привет\")",
        "Binary([0, 1, 254, 255])",
        "Datetime((2026, 11, 29, 3, 4, 5, 0))",
        "Date((2026, 2, 28))",
        "Jsonb([123, 34, 97, 34, 58, 91, 49, 44, 50, 93, 125])",
        "Uuid(\"6f1c6a2e-9a43-4c5e-9c5d-3f1f2b7a9e10\")",
        "Decimal(\"12345.678\")",
        "DbNull",
    ]
    .iter()
    .map(|v| format!("DbValue::{v}"))
    .collect();
    let expected = json!(expected);
    assert_eq!(r["params"], expected, "{r}");
    assert_eq!(r["literals"], expected, "{r}");
    let columns: Vec<String> = [
        "a:Int16",
        "b:Int32",
        "c:Int64",
        "d:Floating32",
        "e:Floating64",
        "f:Boolean",
        "g:Str",
        "h:Binary",
        "i:Datetime",
        "j:Date",
        "k:Jsonb",
        "l:Uuid",
        "m:Decimal",
        "n:Int32",
    ]
    .iter()
    .map(|c| c.replacen(':', ":DbDataType::", 1))
    .collect();
    assert_eq!(r["columns"], json!(columns));
    assert_eq!(
        r["typed"],
        json!({"a": -7, "g": "привет", "l": "6f1c6a2e-9a43-4c5e-9c5d-3f1f2b7a9e10", "n": null})
    );
    let bad = r["bad_query"].as_str().unwrap();
    assert!(
        bad.contains("42P01"),
        "an unknown table is a structured db error: {bad}"
    );

    let denied = probe(
        app.addr,
        "/probe/exact",
        json!({"op": "pg", "address": pg_url()}),
    )
    .await;
    let denied = denied["error"].as_str().unwrap();
    assert!(
        denied.contains("ConnectionFailed") && denied.contains("not permitted"),
        "{denied}"
    );
    assert!(
        !denied.contains(":evolve@"),
        "the password must not leak: {denied}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_value_stores_follow_the_runtime_config_and_the_manifest() {
    let (app, _, _dir) = fixtures("kv").await;
    for store in ["default", "cache"] {
        let r = probe(app.addr, "/probe", json!({"op": "kv", "store": store})).await;
        assert_eq!(
            r,
            json!({"before": null, "set": true, "after": "value-1", "exists": true, "deleted": true, "exists_after": false}),
            "{store}"
        );
    }
    // The `cache` store is the Redis server: a value set there is visible to Redis.
    let mut direct = redis().await;
    let _: () = direct.set("probe-key", "from-redis").await.unwrap();
    let r = probe(app.addr, "/probe", json!({"op": "kv", "store": "cache"})).await;
    assert_eq!(r["before"], "from-redis");

    let denied = probe(
        app.addr,
        "/probe/exact",
        json!({"op": "kv", "store": "default"}),
    )
    .await;
    assert_eq!(denied["error"], "Error::AccessDenied");
    let denied = probe(app.addr, "/probe", json!({"op": "kv", "store": "nope"})).await;
    assert_eq!(denied["error"], "Error::AccessDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_component_fires_once_on_demand_and_on_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("cron");
    let options = fixture_options(&prefix, &runtime_config(&dir));
    let app = evolve_host::App::load(&options).await.unwrap();
    evolve_host::cron::fire(&app, "cron-probe", 1_764_000_000)
        .await
        .unwrap();
    let mut direct = redis().await;
    let count: i64 = direct.get(format!("{prefix}cron:count")).await.unwrap();
    let stamp: String = direct.get(format!("{prefix}cron:timestamp")).await.unwrap();
    assert_eq!(count, 1);
    assert_eq!(stamp, "1764000000");
    assert!(
        evolve_host::cron::fire(&app, "probe", 1).await.is_err(),
        "an HTTP component is not a cron component"
    );

    // The schedule (every second) fires by itself.
    let running = start(
        &options,
        evolve_host::Triggers {
            cron: true,
            redis: false,
        },
    )
    .await;
    let fired = eventually(Duration::from_secs(5), || {
        let mut direct = direct.clone();
        let key = format!("{prefix}cron:count");
        async move {
            let n: i64 = direct.get(&key).await.ok()?;
            (n >= 3).then_some(n)
        }
    })
    .await;
    drop(running);
    assert!(
        fired.is_some(),
        "the every-second schedule did not fire twice more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_triggered_component_receives_published_messages() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("trigger");
    let options = fixture_options(&prefix, &runtime_config(&dir));
    let _running = start(
        &options,
        evolve_host::Triggers {
            cron: false,
            redis: true,
        },
    )
    .await;
    let mut direct = redis().await;
    for payload in ["first", "second"] {
        let _: i64 = direct
            .publish(format!("{prefix}channel"), payload)
            .await
            .unwrap();
    }
    let received = eventually(Duration::from_secs(5), || {
        let mut direct = direct.clone();
        let key = format!("{prefix}redis:received");
        async move {
            let items: Vec<String> = direct.lrange(&key, 0, -1).await.ok()?;
            (items.len() >= 2).then_some(items)
        }
    })
    .await;
    assert_eq!(
        received,
        Some(vec!["first".to_string(), "second".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_may_use_as_much_memory_as_on_spin_unless_capped() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("memory");
    let alloc = |app: &evolve_host::Running| {
        client()
            .post(url(app.addr, "/probe"))
            .json(&serde_json::json!({"op": "alloc", "bytes": 64 << 20}))
            .send()
    };

    // Spin's default: 64 MiB in one instance is fine.
    let options = fixture_options(&prefix, &runtime_config(&dir));
    assert_eq!(
        options.max_instance_memory,
        evolve_host::app::SPIN_MAX_MEMORY_BYTES
    );
    let app = start(&options, HTTP_ONLY).await;
    let response = alloc(&app).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["allocated"], 64 << 20);

    // A cap below that stops the instance, and the host answers a bare 500.
    let mut capped = fixture_options(&prefix, &runtime_config(&dir));
    capped.max_instance_memory = 32 << 20;
    let app = start(&capped, HTTP_ONLY).await;
    let response = alloc(&app).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), "Internal Server Error");
}
