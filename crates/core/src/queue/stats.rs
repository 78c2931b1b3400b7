//! The queue's figures: per-stream depth and age, and per-kind counters and task
//! durations, as `GET /admin/queues` and `/metrics` show them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::scripts::{BadReply, Reply};
use super::task::Priority;
use crate::metrics::{Exposition, Kind as MetricKind};

/// Result records kept in [`crate::keys::QUEUE_RESULTS`].
pub const RESULTS_KEPT: u32 = 1_000;

/// Upper bounds (ms) of the task duration histogram's buckets; the last is +Inf.
pub const DURATION_BUCKETS_MS: [u64; 8] = [10, 50, 100, 500, 1_000, 5_000, 10_000, 30_000];

/// The counter field of the bucket a duration falls in: `<kind>:duration_le:<bound>`,
/// `inf` above the last bound. Buckets are stored apart and summed when rendered.
pub fn duration_field(kind: &str, duration_ms: u64) -> String {
    match DURATION_BUCKETS_MS.iter().find(|&&b| duration_ms <= b) {
        Some(bound) => format!("{kind}:duration_le:{bound}"),
        None => format!("{kind}:duration_le:inf"),
    }
}

/// One priority's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    pub priority: &'static str,
    /// Entries not finished: waiting or being worked on.
    pub length: u64,
    /// Entries handed to a drain and not yet finished.
    pub pending: u64,
    /// Age of the oldest unfinished entry, 0 when none.
    pub oldest_age_ms: u64,
}

/// One kind's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindStats {
    pub done: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead: u64,
    pub released: u64,
    /// Sum of the durations of finished and failed runs.
    pub duration_ms_sum: u64,
    /// Runs per duration bucket (not cumulative), keyed by the bucket's bound.
    pub duration_buckets: BTreeMap<String, u64>,
}

/// Everything [`super::scripts::STATS`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub streams: Vec<StreamStats>,
    pub delayed: u64,
    pub dead: u64,
    pub kinds: BTreeMap<String, KindStats>,
}

impl QueueStats {
    /// Parses the reply of the stats script, with ages taken at `now_ms`.
    pub fn parse(reply: &[Reply], now_ms: u64) -> Result<QueueStats, BadReply> {
        let bad = || BadReply(format!("stats reply of {} items", reply.len()));
        let number = |item: &Reply| -> Result<u64, BadReply> {
            match item {
                Reply::Int(n) => Ok((*n).max(0) as u64),
                Reply::Text(text) => text.parse().map_err(|_| bad()),
                Reply::Nil => Ok(0),
            }
        };
        if reply.len() < 11 || !(reply.len() - 11).is_multiple_of(2) {
            return Err(bad());
        }
        let mut streams = Vec::new();
        for (i, priority) in Priority::ALL.into_iter().enumerate() {
            let oldest = number(&reply[i * 3 + 2])?;
            streams.push(StreamStats {
                priority: priority.as_str(),
                length: number(&reply[i * 3])?,
                pending: number(&reply[i * 3 + 1])?,
                oldest_age_ms: if oldest == 0 {
                    0
                } else {
                    now_ms.saturating_sub(oldest)
                },
            });
        }
        let mut kinds: BTreeMap<String, KindStats> = BTreeMap::new();
        for pair in reply[11..].chunks_exact(2) {
            let Reply::Text(field) = &pair[0] else {
                return Err(bad());
            };
            let value = number(&pair[1])?;
            let Some((kind, counter)) = field.split_once(':') else {
                continue;
            };
            let stats = kinds.entry(kind.to_owned()).or_default();
            match counter {
                "done" => stats.done = value,
                "failed" => stats.failed = value,
                "retried" => stats.retried = value,
                "dead" => stats.dead = value,
                "released" => stats.released = value,
                "duration_ms_sum" => stats.duration_ms_sum = value,
                other => {
                    if let Some(bound) = other.strip_prefix("duration_le:") {
                        stats.duration_buckets.insert(bound.to_owned(), value);
                    }
                }
            }
        }
        Ok(QueueStats {
            streams,
            delayed: number(&reply[9])?,
            dead: number(&reply[10])?,
            kinds,
        })
    }

    /// The age of the oldest unfinished entry of any priority.
    pub fn oldest_age_ms(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| s.oldest_age_ms)
            .max()
            .unwrap_or(0)
    }
}

impl KindStats {
    /// The histogram's cumulative counts per bound, in order, `+Inf` last.
    pub fn cumulative_buckets(&self) -> Vec<(String, u64)> {
        let mut total = 0;
        let mut out = Vec::new();
        for bound in DURATION_BUCKETS_MS {
            total += self
                .duration_buckets
                .get(&bound.to_string())
                .copied()
                .unwrap_or(0);
            out.push(((bound as f64 / 1000.0).to_string(), total));
        }
        total += self.duration_buckets.get("inf").copied().unwrap_or(0);
        out.push(("+Inf".to_owned(), total));
        out
    }
}

/// A per-stream family: name, help, and its value for one stream.
type PerStream = (&'static str, &'static str, fn(&StreamStats) -> f64);

impl QueueStats {
    /// Writes the queue's families: depth, pending, oldest age, delayed and dead-letter
    /// counts, tasks by kind and outcome, and the task duration histogram.
    pub fn render(&self, out: &mut Exposition) {
        let per_stream: [PerStream; 3] = [
            (
                "evolve_queue_length",
                "Unfinished tasks in each priority's stream (waiting or running).",
                |s| s.length as f64,
            ),
            (
                "evolve_queue_pending",
                "Tasks handed to a drain and not finished, per priority.",
                |s| s.pending as f64,
            ),
            (
                "evolve_queue_oldest_age_seconds",
                "Age of the oldest unfinished task, per priority (0 when none).",
                |s| s.oldest_age_ms as f64 / 1000.0,
            ),
        ];
        for (family, help, value) in per_stream {
            out.family(family, MetricKind::Gauge, help);
            for stream in &self.streams {
                out.sample(family, &[("priority", stream.priority)], value(stream));
            }
        }
        out.family(
            "evolve_queue_delayed",
            MetricKind::Gauge,
            "Failed tasks waiting for their retry.",
        );
        out.sample("evolve_queue_delayed", &[], self.delayed as f64);
        out.family(
            "evolve_queue_dead_letters",
            MetricKind::Gauge,
            "Tasks in the dead letters (not tried again until an operator retries them).",
        );
        out.sample("evolve_queue_dead_letters", &[], self.dead as f64);
        out.family(
            "evolve_queue_tasks_total",
            MetricKind::Counter,
            "Task runs by kind and outcome (done, failed; of the failed: retried, dead; released: put back unrun).",
        );
        for (kind, stats) in &self.kinds {
            for (outcome, value) in [
                ("done", stats.done),
                ("failed", stats.failed),
                ("retried", stats.retried),
                ("dead", stats.dead),
                ("released", stats.released),
            ] {
                out.sample(
                    "evolve_queue_tasks_total",
                    &[("kind", kind), ("outcome", outcome)],
                    value as f64,
                );
            }
        }
        out.family(
            "evolve_queue_task_duration_seconds",
            MetricKind::Histogram,
            "How long task runs took, done or failed, by kind.",
        );
        for (kind, stats) in &self.kinds {
            let buckets = stats.cumulative_buckets();
            for (le, count) in &buckets {
                out.sample(
                    "evolve_queue_task_duration_seconds_bucket",
                    &[("kind", kind), ("le", le)],
                    *count as f64,
                );
            }
            out.sample(
                "evolve_queue_task_duration_seconds_sum",
                &[("kind", kind)],
                stats.duration_ms_sum as f64 / 1000.0,
            );
            let count = buckets.last().map_or(0, |(_, c)| *c);
            out.sample(
                "evolve_queue_task_duration_seconds_count",
                &[("kind", kind)],
                count as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_their_bucket() {
        assert_eq!(duration_field("voice", 0), "voice:duration_le:10");
        assert_eq!(duration_field("voice", 10), "voice:duration_le:10");
        assert_eq!(duration_field("voice", 11), "voice:duration_le:50");
        assert_eq!(duration_field("voice", 30_001), "voice:duration_le:inf");
    }

    #[test]
    fn stats_replies_parse() {
        let n = Reply::Int;
        let t = |s: &str| Reply::Text(s.to_owned());
        let mut reply = vec![
            n(2),
            n(1),
            t("1000"), // high
            n(0),
            n(0),
            t("0"), // default
            n(5),
            n(0),
            t("1500"), // low
            n(3),
            n(1),
        ];
        reply.extend([
            t("voice:done"),
            t("4"),
            t("voice:duration_le:10"),
            t("3"),
            t("voice:duration_le:inf"),
            t("1"),
            t("probe:dead"),
            t("2"),
        ]);
        let stats = QueueStats::parse(&reply, 2_000).unwrap();
        assert_eq!(stats.streams[0].oldest_age_ms, 1_000);
        assert_eq!(stats.streams[1].oldest_age_ms, 0);
        assert_eq!(stats.oldest_age_ms(), 1_000);
        assert_eq!(stats.delayed, 3);
        assert_eq!(stats.kinds["voice"].done, 4);
        assert_eq!(stats.kinds["probe"].dead, 2);
        let buckets = stats.kinds["voice"].cumulative_buckets();
        assert_eq!(buckets[0], ("0.01".to_owned(), 3));
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 4));
        assert!(QueueStats::parse(&reply[..10], 0).is_err());

        let mut out = Exposition::new();
        stats.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains("evolve_queue_length{priority=\"low\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("evolve_queue_tasks_total{kind=\"probe\",outcome=\"dead\"} 2\n"));
        assert!(text
            .contains("evolve_queue_task_duration_seconds_bucket{kind=\"voice\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("evolve_queue_task_duration_seconds_count{kind=\"voice\"} 4\n"));
    }
}
