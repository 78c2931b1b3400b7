//! The metrics of every component and the monitoring files: `/metrics` as valid
//! Prometheus text (checked by our parser and by `promtool check metrics`) whose counters
//! rise with traffic on two instances and that still answers with a dependency down; the
//! alert rules and the dashboard under `deploy/` checked with `promtool` (Prometheus' own
//! tools; the tests fail if it is missing).

use crate::admin::app;
use crate::common::*;
use evolve_mock_gemini::{MockConfig, MockGemini};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// Samples of a Prometheus text exposition, checked while parsed: names and label syntax,
/// `# TYPE` before a family's samples, one `# TYPE` per family, histogram buckets
/// cumulative with `+Inf` equal to `_count`.
pub struct Samples {
    values: BTreeMap<(String, Labels), f64>,
    types: HashMap<String, String>,
}

impl Samples {
    /// The value of the sample `name` whose labels include `labels`, summed over the rest.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.values
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(text: &str) -> Labels {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(
            valid_name(name) && !name.contains(':'),
            "bad label name {name:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels.sort();
    labels
}

pub fn parse_exposition(text: &str) -> Samples {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut samples = Samples {
        values: BTreeMap::new(),
        types: HashMap::new(),
    };
    let family_of_sample = |name: &str, types: &HashMap<String, String>| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).map(String::as_str) == Some("histogram") {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                samples
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                parse_labels(labels.strip_suffix('}').expect("closing brace")),
            ),
            None => (series, Vec::new()),
        };
        assert!(valid_name(name), "{line}");
        let family = family_of_sample(name, &samples.types);
        assert!(
            samples.types.contains_key(&family),
            "sample before its TYPE: {line}"
        );
        assert!(
            samples
                .values
                .insert((name.to_owned(), labels), value)
                .is_none(),
            "duplicate sample {line}"
        );
    }
    // Histograms: buckets cumulative, +Inf equals _count.
    for (family, _) in samples.types.iter().filter(|(_, k)| *k == "histogram") {
        let bucket = format!("{family}_bucket");
        // Labels without `le` -> (le, cumulative count) pairs.
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), value) in &samples.values {
            if *name == bucket {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .expect("le")
                    .1
                    .clone();
                let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                series.entry(rest).or_default().push((le, *value));
            }
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}");
            assert_eq!(buckets.last().unwrap().0, f64::INFINITY, "{family}");
            let count = samples.values[&(format!("{family}_count"), labels.clone())];
            assert_eq!(buckets.last().unwrap().1, count, "{family} {labels:?}");
        }
    }
    samples
}

/// `promtool check metrics` on the text: Prometheus' own parser and linter.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_valid_prometheus_text_and_rise_with_traffic_on_two_instances() {
    let rdb = RedisDb::claim().await;
    migrated().await;
    let mock = MockGemini::start(MockConfig::new(GEMINI_KEY))
        .await
        .unwrap();
    let tune = |o: &mut evolve_host::HostOptions| {
        set_var(o, "metrics_sample", 1);
        set_var(o, "cache_hit_sample", 1);
        set_var(o, "gemini_base_url", mock.base_url());
        set_var(o, "llm_max_attempts", 1);
    };
    let a = app(rdb.number, &pg_url(), tune).await;
    let b = app(rdb.number, &pg_url(), tune).await;

    let before = a.metrics().await;
    promtool_check_metrics(&before);
    let before = parse_exposition(&before);
    for (family, kind) in evolve_core::metrics::FAMILIES {
        if family.starts_with("evolve_job_") {
            continue; // written once the jobs record runs
        }
        let kind = match kind {
            evolve_core::metrics::Kind::Counter => "counter",
            evolve_core::metrics::Kind::Gauge => "gauge",
            evolve_core::metrics::Kind::Histogram => "histogram",
        };
        assert_eq!(
            before.types.get(*family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(before.get("evolve_redis_up", &[]), 1.0);
    assert_eq!(before.get("evolve_pg_up", &[]), 1.0);
    assert!(before.get("evolve_pg_max_connections", &[]) > 0.0);
    assert!(before.get("evolve_redis_used_memory_bytes", &[]) > 0.0);

    // Traffic on both instances.
    let who = test_user("metrics");
    for app in [&a, &a, &a, &b, &b] {
        assert_eq!(app.profile(&who).await.status(), 200);
    }
    let turn = client()
        .post(b.url("/api/chat"))
        .bearer_auth(token(&who))
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(turn.status(), 200);
    let unauthorized = client().get(a.url("/api/profile")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        client()
            .get(a.url("/api/nowhere"))
            .bearer_auth(token(&who))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client().get(b.url("/ready")).send().await.unwrap().status(),
        200
    );

    let profile = [
        ("component", "chat"),
        ("method", "GET"),
        ("route", "/api/profile"),
        ("status", "200"),
    ];
    // Recording happens after each response has gone: look until it has landed.
    let after = eventually(Duration::from_secs(10), || async {
        let text = b.metrics().await;
        let samples = parse_exposition(&text);
        let count = |labels: &[(&str, &str)]| {
            samples.get("evolve_http_requests_total", labels)
                - before.get("evolve_http_requests_total", labels)
        };
        let done = count(&profile) == 5.0
            && count(&[("route", "/api/chat"), ("status", "200")]) == 1.0
            && count(&[("component", "ready"), ("route", "/ready")]) == 1.0
            && count(&[("component", "chat"), ("status", "401")]) == 1.0
            && count(&[("route", "unmatched"), ("status", "404")]) == 1.0;
        done.then_some(text)
    })
    .await
    .expect("the counters did not rise with the traffic");
    promtool_check_metrics(&after);
    let after = parse_exposition(&after);
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);

    // Latency histogram of the same requests: five observations, a positive sum.
    assert_eq!(
        delta("evolve_http_request_duration_seconds_count", &profile),
        5.0
    );
    assert!(delta("evolve_http_request_duration_seconds_sum", &profile) > 0.0);
    assert_eq!(
        delta(
            "evolve_http_request_duration_seconds_bucket",
            &[profile.as_slice(), &[("le", "+Inf")]].concat()
        ),
        5.0
    );
    // The chat turn: one LLM call with its tokens and latency.
    assert_eq!(delta("evolve_llm_calls_total", &[]), 1.0);
    assert_eq!(delta("evolve_llm_attempts_total", &[]), 1.0);
    assert!(delta("evolve_llm_tokens_total", &[("kind", "prompt")]) > 0.0);
    assert!(delta("evolve_llm_tokens_total", &[("kind", "output")]) > 0.0);
    assert_eq!(delta("evolve_llm_call_duration_seconds_count", &[]), 1.0);
    assert_eq!(delta("evolve_breaker_calls_total", &[]), 1.0);
    // Cache: the first read missed, the other reads (and the turn's profile) hit.
    assert_eq!(
        delta("evolve_cache_misses_total", &[("prefix", "profile")]),
        1.0
    );
    assert_eq!(
        delta("evolve_cache_hits_total", &[("prefix", "profile")]),
        5.0
    );
    // The scrapes themselves are recorded too.
    assert!(
        delta(
            "evolve_http_requests_total",
            &[("component", "admin"), ("route", "/metrics")]
        ) >= 1.0
    );
    // /health is never recorded: liveness touches no dependency.
    assert_eq!(
        client()
            .get(a.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = parse_exposition(&a.metrics().await);
    assert_eq!(
        last.get("evolve_http_requests_total", &[("route", "/health")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_a_dependency_that_is_down_and_still_answer() {
    let rdb = RedisDb::claim().await;
    let dead_pg = format!(
        "postgres://evolve:evolve@127.0.0.1:{}/evolve_test",
        free_port()
    );
    let app = app(rdb.number, &dead_pg, |_| {}).await;
    let text = app.metrics().await;
    promtool_check_metrics(&text);
    let samples = parse_exposition(&text);
    assert_eq!(samples.get("evolve_pg_up", &[]), 0.0);
    assert_eq!(samples.get("evolve_redis_up", &[]), 1.0);
    assert!(!samples.types.contains_key("evolve_pg_connections"));
    let db = app.admin("/admin/db_metrics").await;
    assert_eq!(db.status(), 503);
    assert!(db.headers().contains_key("retry-after"));
    let body = db.text().await.unwrap();
    assert!(!body.contains("evolve:evolve@"), "{body}");
}

// ---------------------------------------------------------------------------------------
// deploy/: alert rules, scrape config and dashboard

fn promtool() -> &'static str {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is not installed (Debian package `prometheus`; scripts/bootstrap installs it)"
    );
    "promtool"
}

fn run_promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_fire_at_the_fastapi_thresholds() {
    let dir = workspace().join("deploy/prometheus");
    let checked = run_promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    // The unit tests in alerts.test.yml: each alert fires past its threshold and not below.
    let tested = run_promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The scrape config, with its credentials file pointed at a real file.
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let config = std::fs::read_to_string(dir.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/secrets/evolve-metrics-token",
            token_file.to_str().unwrap(),
        );
    std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(dir.join("alerts.yml"), tmp.path().join("alerts.yml")).unwrap();
    run_promtool(&["check", "config", "prometheus.yml"], tmp.path());
}

/// Metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("evolve_")
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            names.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

fn is_exported(name: &str) -> bool {
    use evolve_core::metrics::{Kind, FAMILIES};
    FAMILIES.iter().any(|(family, kind)| {
        name == *family
            || (*kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}")))
    })
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics_and_valid_promql() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("deploy/grafana/evolve-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 20, "{}", exprs.len());
    let used: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for name in &used {
        assert!(
            is_exported(name),
            "the dashboard uses {name}, which /metrics never writes"
        );
    }
    // The FastAPI service's list: Redis hit rate, memory, ops/s; PostgreSQL connections, slow
    // queries, transactions/s; API p50/p95/p99, requests/s, error rate; LLM requests/s,
    // tokens, latency.
    for needed in [
        "evolve_cache_hits_total",
        "evolve_redis_keyspace_hits_total",
        "evolve_redis_used_memory_bytes",
        "evolve_redis_commands_processed_total",
        "evolve_pg_connections",
        "evolve_pg_max_connections",
        "evolve_pg_slow_queries",
        "evolve_pg_transactions_total",
        "evolve_http_request_duration_seconds_bucket",
        "evolve_http_requests_total",
        "evolve_llm_calls_total",
        "evolve_llm_tokens_total",
        "evolve_llm_call_duration_seconds_bucket",
    ] {
        assert!(used.iter().any(|u| u == needed), "no panel shows {needed}");
    }
    for quantile in ["0.50", "0.95", "0.99"] {
        assert!(
            exprs
                .iter()
                .any(|e| e.contains(&format!("histogram_quantile({quantile}"))
                    && e.contains("evolve_http_request_duration_seconds_bucket")),
            "no API p{quantile}"
        );
    }
    assert!(exprs.iter().any(|e| e.contains("status=~\"5..\"")));

    // Every expression is valid PromQL: promtool parses them as recording rules, with
    // Grafana's variables replaced by values.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$route", ".*");
            json!({"record": format!("evolve:dashboard:{i}"), "expr": expr})
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    // JSON is YAML: promtool reads it as a rules file.
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(tmp.path().join("dashboard.yml"), file.to_string()).unwrap();
    run_promtool(&["check", "rules", "dashboard.yml"], tmp.path());

    // The alert rules also use only exported metrics (and Prometheus' own `up`).
    let alerts = std::fs::read_to_string(workspace().join("deploy/prometheus/alerts.yml")).unwrap();
    let in_alerts = metric_names(&alerts);
    assert!(in_alerts.len() >= 8);
    for name in in_alerts {
        assert!(
            is_exported(&name),
            "alerts.yml uses {name}, which /metrics never writes"
        );
    }
}
