//! Prometheus text exposition (version 0.0.4): the families `/metrics` may write, and how
//! the recorded hash, the cache counters and the breaker hash render as their samples.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::{HTTP_BUCKETS, LLM_BUCKETS};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Prometheus text being written: each family's `# HELP` and `# TYPE` come once, before
/// its samples, and every family name is checked against [`FAMILIES`] in tests.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    families: Vec<&'static str>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family (once; a repeated call writes nothing).
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) {
        if self.families.contains(&name) {
            return;
        }
        self.families.push(name);
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample: `name` is the family name, or for histograms the family name with
    /// `_bucket`, `_sum` or `_count`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// The families written so far.
    pub fn families(&self) -> &[&'static str] {
        &self.families
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value escaped for the text format.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN` spelled as Prometheus
/// spells them.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Every family `/metrics` can write, with its type: the dashboard and the alert rules
/// may use only these (a test checks them).
pub const FAMILIES: &[(&str, Kind)] = &[
    ("evolve_http_requests_total", Kind::Counter),
    ("evolve_http_request_duration_seconds", Kind::Histogram),
    ("evolve_llm_calls_total", Kind::Counter),
    ("evolve_llm_attempts_total", Kind::Counter),
    ("evolve_llm_slow_calls_total", Kind::Counter),
    ("evolve_llm_errors_total", Kind::Counter),
    ("evolve_llm_tokens_total", Kind::Counter),
    ("evolve_llm_call_duration_seconds", Kind::Histogram),
    ("evolve_cache_hits_total", Kind::Counter),
    ("evolve_cache_stale_total", Kind::Counter),
    ("evolve_cache_misses_total", Kind::Counter),
    ("evolve_breaker_state", Kind::Gauge),
    ("evolve_breaker_transitions_total", Kind::Counter),
    ("evolve_breaker_calls_total", Kind::Counter),
    ("evolve_breaker_blocked_total", Kind::Counter),
    ("evolve_breaker_failures_total", Kind::Counter),
    ("evolve_breaker_consecutive_failures", Kind::Gauge),
    ("evolve_redis_up", Kind::Gauge),
    ("evolve_redis_used_memory_bytes", Kind::Gauge),
    ("evolve_redis_connected_clients", Kind::Gauge),
    ("evolve_redis_keys", Kind::Gauge),
    ("evolve_redis_keyspace_hits_total", Kind::Counter),
    ("evolve_redis_keyspace_misses_total", Kind::Counter),
    ("evolve_redis_commands_processed_total", Kind::Counter),
    ("evolve_pg_up", Kind::Gauge),
    ("evolve_pg_connections", Kind::Gauge),
    ("evolve_pg_max_connections", Kind::Gauge),
    ("evolve_pg_transactions_total", Kind::Counter),
    ("evolve_pg_blocks_total", Kind::Counter),
    ("evolve_pg_deadlocks_total", Kind::Counter),
    ("evolve_pg_slow_queries", Kind::Gauge),
    ("evolve_pg_longest_query_seconds", Kind::Gauge),
    ("evolve_pg_table_size_bytes", Kind::Gauge),
    ("evolve_job_runs_total", Kind::Counter),
    ("evolve_job_run_seconds_total", Kind::Counter),
    ("evolve_job_last_run_timestamp_seconds", Kind::Gauge),
    ("evolve_job_last_duration_seconds", Kind::Gauge),
    ("evolve_job_last_success", Kind::Gauge),
    ("evolve_queue_length", Kind::Gauge),
    ("evolve_queue_pending", Kind::Gauge),
    ("evolve_queue_oldest_age_seconds", Kind::Gauge),
    ("evolve_queue_delayed", Kind::Gauge),
    ("evolve_queue_dead_letters", Kind::Gauge),
    ("evolve_queue_tasks_total", Kind::Counter),
    ("evolve_queue_task_duration_seconds", Kind::Histogram),
];

fn parse_count(value: &str) -> Option<f64> {
    value.trim().parse::<i64>().ok().map(|n| n.max(0) as f64)
}

/// The bound of a stored `le`, mapped onto `buckets`: a value from an older bucket list
/// counts in the smallest current bucket that holds it, so every series has the same
/// buckets (which `histogram_quantile` over summed series needs).
fn canonical_bucket(buckets: &[f64], le: &str) -> Option<usize> {
    if le == "+Inf" {
        return Some(buckets.len());
    }
    let bound: f64 = le.parse().ok()?;
    Some(
        buckets
            .iter()
            .position(|&b| bound <= b + f64::EPSILON)
            .unwrap_or(buckets.len()),
    )
}

/// Non-cumulative bucket counts (last slot `+Inf`) and the sum in microseconds.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    counts: Vec<f64>,
    sum_us: f64,
}

impl Histogram {
    fn new(buckets: usize) -> Self {
        Histogram {
            counts: vec![0.0; buckets + 1],
            sum_us: 0.0,
        }
    }

    fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    fn write(&self, out: &mut Exposition, name: &str, buckets: &[f64], labels: &[(&str, &str)]) {
        let mut cumulative = 0.0;
        let bucket_name = format!("{name}_bucket");
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count;
            let le = buckets
                .get(i)
                .map_or("+Inf".to_owned(), |b| format_value(*b));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            out.sample(&bucket_name, &with_le, cumulative);
        }
        out.sample(&format!("{name}_sum"), labels, self.sum_us / 1e6);
        out.sample(&format!("{name}_count"), labels, self.total());
    }
}

/// Writes the request and LLM families from the [`crate::keys::METRICS`] hash. Fields it
/// does not understand are skipped (a newer build may write more).
pub fn render_recorded(out: &mut Exposition, fields: &HashMap<String, String>) {
    // (component, method, route, status) -> histogram
    let mut http: BTreeMap<[String; 4], Histogram> = BTreeMap::new();
    let mut llm = Histogram::new(LLM_BUCKETS.len());
    let mut llm_counters: BTreeMap<&str, f64> = BTreeMap::new();
    let mut llm_errors: BTreeMap<&str, f64> = BTreeMap::new();
    let mut llm_tokens: BTreeMap<&str, f64> = BTreeMap::new();
    let mut job_runs: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let mut job_seconds: BTreeMap<&str, f64> = BTreeMap::new();
    for (field, value) in fields {
        let Some(value) = parse_count(value) else {
            continue;
        };
        let parts: Vec<&str> = field.split('|').collect();
        match parts.as_slice() {
            ["http", component, method, route, status, le] => {
                let Some(slot) = canonical_bucket(&HTTP_BUCKETS, le) else {
                    continue;
                };
                let key = [component, method, route, status].map(|s| (*s).to_owned());
                http.entry(key)
                    .or_insert_with(|| Histogram::new(HTTP_BUCKETS.len()))
                    .counts[slot] += value;
            }
            ["http_us", component, method, route, status] => {
                let key = [component, method, route, status].map(|s| (*s).to_owned());
                http.entry(key)
                    .or_insert_with(|| Histogram::new(HTTP_BUCKETS.len()))
                    .sum_us += value;
            }
            ["llm", "le", le] => {
                if let Some(slot) = canonical_bucket(&LLM_BUCKETS, le) {
                    llm.counts[slot] += value;
                }
            }
            ["llm_us"] => llm.sum_us += value,
            ["llm", counter @ ("calls" | "attempts" | "slow")] => {
                *llm_counters.entry(counter).or_default() += value;
            }
            ["llm", "error", kind] => *llm_errors.entry(kind).or_default() += value,
            ["llm", "tokens", kind @ ("prompt" | "output")] => {
                *llm_tokens.entry(kind).or_default() += value;
            }
            ["job", job, outcome] => *job_runs.entry((job, outcome)).or_default() += value,
            ["job_us", job] => *job_seconds.entry(job).or_default() += value / 1e6,
            _ => {}
        }
    }

    out.family(
        "evolve_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by component, method, route and status.",
    );
    for ([component, method, route, status], histogram) in &http {
        let labels = [
            ("component", component.as_str()),
            ("method", method.as_str()),
            ("route", route.as_str()),
            ("status", status.as_str()),
        ];
        out.sample("evolve_http_requests_total", &labels, histogram.total());
    }
    out.family(
        "evolve_http_request_duration_seconds",
        Kind::Histogram,
        "Time from the start of the handler to the response, by component, method, route and status.",
    );
    for ([component, method, route, status], histogram) in &http {
        let labels = [
            ("component", component.as_str()),
            ("method", method.as_str()),
            ("route", route.as_str()),
            ("status", status.as_str()),
        ];
        histogram.write(
            out,
            "evolve_http_request_duration_seconds",
            &HTTP_BUCKETS,
            &labels,
        );
    }

    let counter = |map: &BTreeMap<&str, f64>, key: &str| map.get(key).copied().unwrap_or(0.0);
    for (name, key, help) in [
        (
            "evolve_llm_calls_total",
            "calls",
            "LLM calls made for chat turns (each with all its attempts).",
        ),
        (
            "evolve_llm_attempts_total",
            "attempts",
            "LLM request attempts, retries included.",
        ),
        (
            "evolve_llm_slow_calls_total",
            "slow",
            "LLM calls slower than the breaker's slow-call limit.",
        ),
    ] {
        out.family(name, Kind::Counter, help);
        out.sample(name, &[], counter(&llm_counters, key));
    }
    out.family(
        "evolve_llm_errors_total",
        Kind::Counter,
        "LLM calls that produced no reply, by kind.",
    );
    for (kind, value) in &llm_errors {
        out.sample("evolve_llm_errors_total", &[("kind", kind)], *value);
    }
    out.family(
        "evolve_llm_tokens_total",
        Kind::Counter,
        "Tokens used by LLM calls, by kind (prompt or output).",
    );
    for kind in ["prompt", "output"] {
        out.sample(
            "evolve_llm_tokens_total",
            &[("kind", kind)],
            counter(&llm_tokens, kind),
        );
    }
    out.family(
        "evolve_llm_call_duration_seconds",
        Kind::Histogram,
        "Duration of LLM calls, all attempts and waits between them included.",
    );
    llm.write(out, "evolve_llm_call_duration_seconds", &LLM_BUCKETS, &[]);

    out.family(
        "evolve_job_runs_total",
        Kind::Counter,
        "Scheduled job runs, by job and outcome (ok, error, skipped).",
    );
    for ((job, outcome), value) in &job_runs {
        out.sample(
            "evolve_job_runs_total",
            &[("job", job), ("outcome", outcome)],
            *value,
        );
    }
    out.family(
        "evolve_job_run_seconds_total",
        Kind::Counter,
        "Time spent in scheduled job runs, by job.",
    );
    for (job, value) in &job_seconds {
        out.sample("evolve_job_run_seconds_total", &[("job", job)], *value);
    }
}

/// Writes the per-prefix cache counters from the [`crate::keys::CACHE_STATS`] hash.
pub fn render_cache(out: &mut Exposition, counters: &HashMap<String, String>) {
    let per_prefix = crate::cache::prefix_counters(counters);
    out.family(
        "evolve_cache_hits_total",
        Kind::Counter,
        "Reads served from the shared cache, by prefix (hits are sampled with weight).",
    );
    for (prefix, counts) in &per_prefix {
        out.sample(
            "evolve_cache_hits_total",
            &[("prefix", prefix)],
            counts.hits as f64,
        );
    }
    out.family(
        "evolve_cache_stale_total",
        Kind::Counter,
        "Reads served stale from the shared cache while another caller refreshed the entry, by prefix.",
    );
    for (prefix, counts) in &per_prefix {
        out.sample(
            "evolve_cache_stale_total",
            &[("prefix", prefix)],
            counts.stale as f64,
        );
    }
    out.family(
        "evolve_cache_misses_total",
        Kind::Counter,
        "Reads the shared cache could not serve, by prefix.",
    );
    for (prefix, counts) in &per_prefix {
        out.sample(
            "evolve_cache_misses_total",
            &[("prefix", prefix)],
            counts.misses as f64,
        );
    }
}

/// One breaker for [`render_breakers`]: its name, stats and state hash.
pub struct BreakerFigures<'a> {
    pub name: &'a str,
    pub stats: &'a crate::breaker::BreakerStats,
    pub fields: &'a HashMap<String, String>,
}

fn field(breaker: &BreakerFigures<'_>, key: &str) -> f64 {
    breaker
        .fields
        .get(key)
        .and_then(|v| parse_count(v))
        .unwrap_or(0.0)
}

/// Writes the breaker families, each family's samples for every breaker together (the
/// text format wants a family's lines in one group).
pub fn render_breakers(out: &mut Exposition, breakers: &[BreakerFigures<'_>]) {
    use crate::breaker::BreakerState;
    out.family(
        "evolve_breaker_state",
        Kind::Gauge,
        "1 for the breaker's current state, 0 for the others.",
    );
    for breaker in breakers {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let value = if breaker.stats.state == state {
                1.0
            } else {
                0.0
            };
            out.sample(
                "evolve_breaker_state",
                &[("breaker", breaker.name), ("state", state.as_stored())],
                value,
            );
        }
    }
    type Value = fn(&BreakerFigures<'_>) -> f64;
    let families: [(&'static str, Kind, &str, Value); 5] = [
        (
            "evolve_breaker_transitions_total",
            Kind::Counter,
            "State changes of the breaker.",
            |b| field(b, "transitions"),
        ),
        (
            "evolve_breaker_calls_total",
            Kind::Counter,
            "Calls the breaker let through.",
            |b| b.stats.total_calls as f64,
        ),
        (
            "evolve_breaker_blocked_total",
            Kind::Counter,
            "Calls the breaker refused (answered with the fallback reply, or deferred).",
            |b| b.stats.total_blocked as f64,
        ),
        (
            "evolve_breaker_failures_total",
            Kind::Counter,
            "Calls let through that failed.",
            |b| field(b, "total_failures"),
        ),
        (
            "evolve_breaker_consecutive_failures",
            Kind::Gauge,
            "Consecutive failures counted towards opening.",
            |b| b.stats.failure_count as f64,
        ),
    ];
    for (family, kind, help, value) in families {
        out.family(family, kind, help);
        for breaker in breakers {
            out.sample(family, &[("breaker", breaker.name)], value(breaker));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, i64)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn recorded_fields_render_as_cumulative_histograms() {
        let fields = hash(&[
            ("http|chat|GET|/api/profile|200|0.001", 5),
            ("http|chat|GET|/api/profile|200|0.01", 3),
            // A bound no longer in the list counts in the next one up.
            ("http|chat|GET|/api/profile|200|0.007", 1),
            ("http|chat|GET|/api/profile|200|+Inf", 1),
            ("http_us|chat|GET|/api/profile|200", 45_000_000),
            ("http|chat|POST|/api/chat|503|0.05", 2),
            ("llm|calls", 3),
            ("llm|error|timeout", 1),
            ("llm|le|0.5", 2),
            ("llm|le|+Inf", 1),
            ("llm_us", 61_000_000),
            ("llm|tokens|prompt", 120),
            ("job|cleanup|ok", 2),
            ("job_us|cleanup", 1_500_000),
            ("something|new", 9),
            ("http|broken", 1),
        ]);
        let mut out = Exposition::new();
        render_recorded(&mut out, &fields);
        let text = out.finish();
        let profile = r#"component="chat",method="GET",route="/api/profile",status="200""#;
        for line in [
            format!("evolve_http_requests_total{{{profile}}} 10"),
            format!("evolve_http_request_duration_seconds_bucket{{{profile},le=\"0.001\"}} 5"),
            format!("evolve_http_request_duration_seconds_bucket{{{profile},le=\"0.0025\"}} 5"),
            format!("evolve_http_request_duration_seconds_bucket{{{profile},le=\"0.01\"}} 9"),
            format!("evolve_http_request_duration_seconds_bucket{{{profile},le=\"30\"}} 9"),
            format!("evolve_http_request_duration_seconds_bucket{{{profile},le=\"+Inf\"}} 10"),
            format!("evolve_http_request_duration_seconds_sum{{{profile}}} 45"),
            format!("evolve_http_request_duration_seconds_count{{{profile}}} 10"),
            r#"evolve_http_requests_total{component="chat",method="POST",route="/api/chat",status="503"} 2"#.to_owned(),
            "evolve_llm_calls_total 3".to_owned(),
            "evolve_llm_attempts_total 0".to_owned(),
            r#"evolve_llm_errors_total{kind="timeout"} 1"#.to_owned(),
            r#"evolve_llm_tokens_total{kind="prompt"} 120"#.to_owned(),
            r#"evolve_llm_tokens_total{kind="output"} 0"#.to_owned(),
            r#"evolve_llm_call_duration_seconds_bucket{le="0.5"} 2"#.to_owned(),
            r#"evolve_llm_call_duration_seconds_bucket{le="+Inf"} 3"#.to_owned(),
            "evolve_llm_call_duration_seconds_sum 61".to_owned(),
            "evolve_llm_call_duration_seconds_count 3".to_owned(),
            "# TYPE evolve_http_request_duration_seconds histogram".to_owned(),
            r#"evolve_job_runs_total{job="cleanup",outcome="ok"} 2"#.to_owned(),
            r#"evolve_job_run_seconds_total{job="cleanup"} 1.5"#.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(!text.contains("something"), "{text}");
    }

    #[test]
    fn every_family_written_is_declared_with_its_type() {
        let mut out = Exposition::new();
        render_recorded(&mut out, &HashMap::new());
        render_cache(
            &mut out,
            &hash(&[("profile:hits", 3), ("profile:misses", 1)]),
        );
        let stats = crate::breaker::BreakerStats::closed();
        render_breakers(
            &mut out,
            &[BreakerFigures {
                name: "llm",
                stats: &stats,
                fields: &HashMap::new(),
            }],
        );
        let text = out.finish();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let declared = FAMILIES.iter().find(|(n, _)| *n == name);
            assert_eq!(
                declared.map(|(_, k)| k.as_str()),
                Some(kind),
                "{name} is not declared as {kind}"
            );
        }
        assert!(text.contains("evolve_cache_hits_total{prefix=\"profile\"} 3"));
        assert!(text.contains("evolve_breaker_state{breaker=\"llm\",state=\"closed\"} 1"));
        assert!(text.contains("evolve_breaker_state{breaker=\"llm\",state=\"open\"} 0"));
    }

    #[test]
    fn label_values_and_numbers_are_escaped_and_spelled_as_prometheus_does() {
        let mut out = Exposition::new();
        out.family("x_total", Kind::Counter, "line one\nline two");
        out.sample("x_total", &[("q", "a\"b\\c\nd")], 1.5);
        out.family("x_total", Kind::Counter, "again");
        assert_eq!(
            out.finish(),
            "# HELP x_total line one\\nline two\n# TYPE x_total counter\nx_total{q=\"a\\\"b\\\\c\\nd\"} 1.5\n"
        );
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.0025), "0.0025");
        assert_eq!(format_value(30.0), "30");
    }
}
