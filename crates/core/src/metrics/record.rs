//! What a request, an LLM call or a job run adds to the metrics hash: its field
//! increments, whether a request is sampled, and the script that applies them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::exposition::format_value;
use super::{HTTP_BUCKETS, LLM_BUCKETS};

/// Default of `metrics_sample`: one request in this many without an open Redis connection
/// is recorded.
pub const DEFAULT_SAMPLE: u32 = 64;

/// The largest accepted `metrics_sample`.
pub const MAX_SAMPLE: u32 = 100_000;

/// Methods kept as a label value; anything else is `OTHER`, so a client cannot create
/// series at will.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A method as a label value.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("OTHER")
}

/// The route label of a request that matched no route: raw paths are never labels.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A label value as stored in a hash field: `|` (the field separator) and control
/// characters become `_`. Components pass their own fixed route names, so this only
/// guards against mistakes.
pub fn label(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == '|' || c.is_control() { '_' } else { c })
        .collect()
}

/// The weight a request is recorded with, or `None` when it is not recorded.
///
/// - `every == 0`: recording is off.
/// - the request already has an open Redis connection: recorded exactly (weight 1).
/// - a server error (5xx): recorded exactly, even if that costs a connection, because
///   errors are rare and the error-rate alert needs them all.
/// - otherwise one in `every`, with weight `every`; `random` is uniform in [0, 1).
pub fn weight(every: u32, random: f64, status: u16, connection_open: bool) -> Option<u64> {
    if every == 0 {
        return None;
    }
    if connection_open || status >= 500 || every == 1 {
        return Some(1);
    }
    (random * f64::from(every) < 1.0).then_some(u64::from(every))
}

/// Reads `metrics_sample` (unset or empty: [`DEFAULT_SAMPLE`]; 0 turns recording off).
pub fn sample_from(value: Option<&str>) -> Result<u32, crate::variables::ConfigError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_SAMPLE),
        Some(value) => {
            Ok(
                crate::variables::parse_ranged("metrics_sample", value, 0, u64::from(MAX_SAMPLE))?
                    as u32,
            )
        }
    }
}

/// The `le` text of the bucket a duration falls in (`+Inf` past the last bound).
fn bucket_le(buckets: &[f64], elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    buckets
        .iter()
        .find(|&&bound| seconds <= bound)
        .map_or_else(|| "+Inf".to_owned(), |bound| format_value(*bound))
}

fn micros(elapsed: Duration) -> i64 {
    i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
}

/// One answered HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord<'a> {
    /// The component that answered (`chat`).
    pub component: &'a str,
    /// The request method, any case.
    pub method: &'a str,
    /// The route as the component names it (`/api/profile`), never a raw path.
    pub route: &'a str,
    pub status: u16,
    /// From the start of the handler to the response.
    pub elapsed: Duration,
}

impl RequestRecord<'_> {
    /// The hash increments of this request at `weight`.
    pub fn increments(&self, weight: u64) -> Vec<(String, i64)> {
        let weight = i64::try_from(weight).unwrap_or(i64::MAX);
        let series = format!(
            "{}|{}|{}|{}",
            label(self.component),
            method_label(self.method),
            label(self.route),
            self.status
        );
        vec![
            (
                format!("http|{series}|{}", bucket_le(&HTTP_BUCKETS, self.elapsed)),
                weight,
            ),
            (
                format!("http_us|{series}"),
                micros(self.elapsed).saturating_mul(weight),
            ),
        ]
    }
}

/// How an LLM call ended, for the error counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmOutcome {
    Ok,
    /// Failed; the kind is a fixed label (`timeout`, `status_5xx`, ...).
    Failed(&'static str),
}

/// One LLM call (all its attempts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmRecord {
    pub attempts: u32,
    pub elapsed: Duration,
    /// Slower than the breaker's slow-call limit.
    pub slow: bool,
    pub outcome: LlmOutcome,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

impl LlmRecord {
    /// The hash increments of this call. LLM calls are always recorded exactly: a chat turn
    /// has its Redis connection open for the breaker anyway.
    pub fn increments(&self) -> Vec<(String, i64)> {
        let mut out = vec![
            ("llm|calls".to_owned(), 1),
            ("llm|attempts".to_owned(), i64::from(self.attempts)),
            (
                format!("llm|le|{}", bucket_le(&LLM_BUCKETS, self.elapsed)),
                1,
            ),
            ("llm_us".to_owned(), micros(self.elapsed)),
        ];
        if self.slow {
            out.push(("llm|slow".to_owned(), 1));
        }
        if let LlmOutcome::Failed(kind) = self.outcome {
            out.push((format!("llm|error|{}", label(kind)), 1));
        }
        for (name, tokens) in [
            ("prompt", self.prompt_tokens),
            ("output", self.output_tokens),
        ] {
            if tokens > 0 {
                out.push((
                    format!("llm|tokens|{name}"),
                    i64::try_from(tokens).unwrap_or(i64::MAX),
                ));
            }
        }
        out
    }
}

impl LlmRecord {
    /// The record of a finished call.
    pub fn of(
        result: &Result<crate::llm::Reply, crate::llm::CallError>,
        attempts: u32,
        elapsed: Duration,
        slow: bool,
    ) -> Self {
        let (outcome, prompt_tokens, output_tokens) = match result {
            Ok(reply) => (
                LlmOutcome::Ok,
                u64::from(reply.prompt_tokens),
                u64::from(reply.output_tokens),
            ),
            Err(error) => (LlmOutcome::Failed(llm_error_kind(error)), 0, 0),
        };
        LlmRecord {
            attempts,
            elapsed,
            slow,
            outcome,
            prompt_tokens,
            output_tokens,
        }
    }
}

/// The `kind` label of a failed LLM call: a fixed, small set (messages never become labels).
pub fn llm_error_kind(error: &crate::llm::CallError) -> &'static str {
    use crate::llm::CallError;
    match error {
        CallError::Timeout => "timeout",
        CallError::Status { code: 429, .. } => "status_429",
        CallError::Status { code, .. } if *code >= 500 => "status_5xx",
        CallError::Status { .. } => "status_4xx",
        CallError::Transport(_) => "transport",
        CallError::Refused(_) => "refused",
        CallError::BadResponse(_) => "bad_response",
        CallError::Blocked { .. } => "blocked",
    }
}

/// The hash increments of one finished job run (`outcome`: `ok`, `error`, `skipped`).
pub fn job_increments(job: &str, outcome: &str, duration: Duration) -> Vec<(String, i64)> {
    vec![
        (format!("job|{}|{}", label(job), label(outcome)), 1),
        (format!("job_us|{}", label(job)), micros(duration)),
    ]
}

/// Adds up increments of the same field, so one request writes each field once.
pub fn merge(increments: impl IntoIterator<Item = (String, i64)>) -> Vec<(String, i64)> {
    let mut merged: BTreeMap<String, i64> = BTreeMap::new();
    for (field, by) in increments {
        let slot = merged.entry(field).or_default();
        *slot = slot.saturating_add(by);
    }
    merged.into_iter().filter(|(_, by)| *by != 0).collect()
}

/// Lua: `HINCRBY` of each `field, by` pair of `ARGV` on `KEYS[1]`, in one round trip.
pub const RECORD_SCRIPT: &str = "\
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
";

/// SHA-1 of [`RECORD_SCRIPT`], for `EVALSHA` (checked by a unit test).
pub const RECORD_SHA1: &str = "1aef85cf49182ecc60c55479e50fe4f1b23b06b1";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_script_digest_matches_its_text() {
        let digest = sha1_smol::Sha1::from(RECORD_SCRIPT).digest().to_string();
        assert_eq!(digest, RECORD_SHA1);
    }

    #[test]
    fn weights_are_exact_on_open_connections_and_for_errors() {
        assert_eq!(weight(0, 0.0, 500, true), None, "0 turns recording off");
        assert_eq!(weight(64, 0.99, 200, true), Some(1));
        assert_eq!(weight(64, 0.99, 503, false), Some(1));
        assert_eq!(weight(64, 0.5, 200, false), None);
        assert_eq!(weight(64, 0.0, 200, false), Some(64));
        assert_eq!(weight(64, 0.0156, 404, false), Some(64));
        assert_eq!(weight(1, 0.99, 200, false), Some(1));
        // One in `every` is taken: the expected recorded weight equals the request count.
        let n = 64_000;
        let recorded: u64 = (0..n)
            .map(|i| weight(64, i as f64 / n as f64, 200, false).unwrap_or(0))
            .sum();
        assert_eq!(recorded, n as u64);
    }

    #[test]
    fn the_sample_variable_is_checked() {
        assert_eq!(sample_from(None).unwrap(), DEFAULT_SAMPLE);
        assert_eq!(sample_from(Some(" ")).unwrap(), DEFAULT_SAMPLE);
        assert_eq!(sample_from(Some("0")).unwrap(), 0);
        assert_eq!(sample_from(Some("8")).unwrap(), 8);
        assert!(sample_from(Some("-1")).is_err());
        assert!(sample_from(Some("100001")).is_err());
    }

    #[test]
    fn a_request_increments_its_bucket_and_sum() {
        let record = RequestRecord {
            component: "chat",
            method: "get",
            route: "/api/profile",
            status: 200,
            elapsed: Duration::from_micros(1_800),
        };
        assert_eq!(
            record.increments(64),
            vec![
                ("http|chat|GET|/api/profile|200|0.0025".to_owned(), 64),
                ("http_us|chat|GET|/api/profile|200".to_owned(), 64 * 1_800),
            ]
        );
        let slow = RequestRecord {
            elapsed: Duration::from_secs(31),
            method: "BREW",
            route: "a|b",
            ..record
        };
        assert_eq!(slow.increments(1)[0].0, "http|chat|OTHER|a_b|200|+Inf");
        // On a bound, the bucket is that bound (le means "less or equal").
        let exact = RequestRecord {
            elapsed: ms(1_000),
            ..record
        };
        assert_eq!(exact.increments(1)[0].0, "http|chat|GET|/api/profile|200|1");
    }

    #[test]
    fn an_llm_call_records_latency_tokens_and_errors() {
        let call = LlmRecord {
            attempts: 2,
            elapsed: ms(1_500),
            slow: false,
            outcome: LlmOutcome::Failed("timeout"),
            prompt_tokens: 0,
            output_tokens: 0,
        };
        let fields = merge(call.increments());
        assert_eq!(
            fields,
            vec![
                ("llm_us".to_owned(), 1_500_000),
                ("llm|attempts".to_owned(), 2),
                ("llm|calls".to_owned(), 1),
                ("llm|error|timeout".to_owned(), 1),
                ("llm|le|2".to_owned(), 1),
            ]
        );
        let ok = LlmRecord {
            outcome: LlmOutcome::Ok,
            prompt_tokens: 40,
            output_tokens: 7,
            slow: true,
            ..call
        };
        let fields: HashMap<_, _> = ok.increments().into_iter().collect();
        assert_eq!(fields["llm|tokens|prompt"], 40);
        assert_eq!(fields["llm|tokens|output"], 7);
        assert_eq!(fields["llm|slow"], 1);
        assert!(!fields.contains_key("llm|error|timeout"));
    }

    #[test]
    fn llm_errors_have_fixed_kinds() {
        use crate::llm::CallError;
        let status = |code| CallError::Status {
            code,
            retry_after: None,
            message: "secret text".to_owned(),
        };
        assert_eq!(llm_error_kind(&status(429)), "status_429");
        assert_eq!(llm_error_kind(&status(503)), "status_5xx");
        assert_eq!(llm_error_kind(&status(400)), "status_4xx");
        assert_eq!(llm_error_kind(&CallError::Timeout), "timeout");
        let record = LlmRecord::of(&Err(status(500)), 3, ms(10), false);
        assert_eq!(record.outcome, LlmOutcome::Failed("status_5xx"));
        let reply = crate::llm::Reply {
            text: "hi".to_owned(),
            prompt_tokens: 5,
            output_tokens: 2,
        };
        let record = LlmRecord::of(&Ok(reply), 1, ms(10), false);
        assert_eq!((record.prompt_tokens, record.output_tokens), (5, 2));
    }

    #[test]
    fn methods_outside_the_list_are_one_label() {
        assert_eq!(method_label("get"), "GET");
        assert_eq!(method_label("PROPFIND"), "OTHER");
    }
}
