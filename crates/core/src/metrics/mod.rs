//! Service figures as Prometheus metrics, apart from the I/O.
//!
//! Instances are stateless and short-lived (a fresh instance per request), so nothing can
//! be counted in memory: every figure is an increment of a field of one Redis hash
//! ([`crate::keys::METRICS`]), summed across instances by Redis itself, and `/metrics`
//! renders that hash (with the cache counters, the breaker hash, Redis `INFO` and
//! PostgreSQL statistics read at scrape time) as Prometheus text.
//!
//! Writing costs a Redis round trip, and on Spin a new TCP connection when the request had
//! none open, so a request is recorded exactly when its Redis connection is already open
//! and otherwise sampled ([`weight`]): one in `every` is written with weight `every`, which
//! keeps counters and histograms unbiased. Server errors are always written, so the error
//! rate stays exact where it matters.
//!
//! Hash fields (`|` never occurs in a label value, see [`label`]):
//!
//! | field | value |
//! |---|---|
//! | `http\|<component>\|<method>\|<route>\|<status>\|<le>` | requests in that latency bucket |
//! | `http_us\|<component>\|<method>\|<route>\|<status>` | their summed latency, microseconds |
//! | `llm\|calls`, `llm\|attempts`, `llm\|slow` | LLM calls, attempts, calls slower than the breaker's limit |
//! | `llm\|error\|<kind>` | failed LLM calls by kind |
//! | `llm\|tokens\|prompt`, `llm\|tokens\|output` | tokens used |
//! | `llm\|le\|<le>`, `llm_us` | LLM call latency histogram and its sum, microseconds |
//! | `job\|<job>\|<outcome>`, `job_us\|<job>` | job runs by outcome, their summed duration |

mod exposition;
mod record;

pub use exposition::{
    format_value, render_breakers, render_cache, render_recorded, BreakerFigures, Exposition, Kind,
    CONTENT_TYPE, FAMILIES,
};
pub use record::{
    job_increments, label, llm_error_kind, merge, method_label, sample_from, weight, LlmOutcome,
    LlmRecord, RequestRecord, DEFAULT_SAMPLE, MAX_SAMPLE, RECORD_SCRIPT, RECORD_SHA1,
    UNMATCHED_ROUTE,
};

/// Upper bounds (seconds) of the request latency buckets: cached reads take about a
/// millisecond, chat turns seconds (the LLM), the alert threshold is 1 s.
pub const HTTP_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the LLM call latency buckets.
pub const LLM_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0];
