//! PostgreSQL over TLS, as Spin connects: unless the URL says `sslmode=disable`, the host
//! negotiates TLS and verifies the server's certificate against the system's roots, and so
//! does `evolve-migrate`. The test server has a self-signed certificate (scripts/services),
//! trusted through `SSL_CERT_FILE`, set for the host process and `evolve-migrate` only
//! (it is process-wide), once the untrusted case has been seen.

use crate::common::process::HostProcess;
use crate::common::*;
use std::process::Command;

/// The test database's URL with `sslmode` and an application name of its own (the host
/// keeps one pool per address, so each case gets its own pool).
fn tls_url(sslmode: &str, name: &str) -> String {
    let mut url = url::Url::parse(&pg_url()).unwrap();
    url.query_pairs_mut()
        .clear()
        .append_pair("sslmode", sslmode)
        .append_pair("application_name", name);
    url.to_string()
}

/// `/ready`'s PostgreSQL report from an app on `url`, and the app (its pooled connections
/// live as long as it does).
async fn postgres_report(
    redis: &RedisDb,
    url: &str,
    env: &[(&str, &str)],
) -> (serde_json::Value, HostProcess) {
    let app = HostProcess::start_with_env(&app_options(&redis.url(), url), env).await;
    let response = client()
        .get(crate::common::url(app.addr, "/ready"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    (body["postgres"].clone(), app)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connections_use_verified_tls_unless_disabled() {
    migrated().await;
    let rdb = RedisDb::claim().await;
    let cert = std::env::var("EVOLVE_TEST_PG_CERT")
        .expect("EVOLVE_TEST_PG_CERT is not set: run the tests through scripts/test");

    // A certificate nobody vouches for is refused: the TLS handshake fails.
    let (untrusted, _app) =
        postgres_report(&rdb, &tls_url("require", "evolve-tls-untrusted"), &[]).await;
    assert_eq!(untrusted["status"], "unhealthy", "{untrusted}");
    assert!(
        untrusted["error"]
            .as_str()
            .is_some_and(|e| e.to_ascii_lowercase().contains("tls")),
        "{untrusted}"
    );

    // Trusted: the connection is made, over TLS.
    let trust = [("SSL_CERT_FILE", cert.as_str())];
    let (trusted, _app) =
        postgres_report(&rdb, &tls_url("require", "evolve-tls-trusted"), &trust).await;
    assert_eq!(trusted["status"], "healthy", "{trusted}");
    let encrypted: i64 = pg()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.application_name = 'evolve-tls-trusted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "no TLS connection from the host");

    // `prefer` (the default) takes TLS when the server offers it.
    let (preferred, _app) =
        postgres_report(&rdb, &tls_url("prefer", "evolve-tls-prefer"), &trust).await;
    assert_eq!(preferred["status"], "healthy", "{preferred}");

    // evolve-migrate speaks TLS too.
    let migrate = workspace().join("target/release/evolve-migrate");
    let output = Command::new(&migrate)
        .arg("--database-url")
        .arg(tls_url("require", "evolve-tls-migrate"))
        .env("SSL_CERT_FILE", &cert)
        .output()
        .expect("run target/release/evolve-migrate (built by scripts/build)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("schema up to date"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
