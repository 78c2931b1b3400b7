//! The calls that run the queue's Lua scripts (in `super::lua`) and the parsing of their
//! replies.
//!
//! Scripts reply with flat arrays of strings and integers: Spin's Redis interface
//! flattens nested replies, so a nested shape could not be read back on Spin.

use std::time::Duration;

pub use super::lua::*;
use super::task::{Delivery, NewTask, Priority, Task};
use crate::keys;

/// A script and the SHA-1 of its text (kept in step by a unit test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    pub source: &'static str,
    pub sha1: &'static str,
}

/// One run of a script: what the store sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    pub script: Script,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

/// One item of a flat script reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Int(i64),
    Text(String),
    Nil,
}

impl Reply {
    fn text(&self) -> Option<&str> {
        match self {
            Reply::Text(text) => Some(text),
            _ => None,
        }
    }

    fn number(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Text(text) => text.parse().ok(),
            Reply::Nil => None,
        }
    }
}

/// A reply that does not have the shape the script returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected queue script reply: {0}")]
pub struct BadReply(pub String);

/// The consumer group every drain reads in.
pub const GROUP: &str = "drains";

fn streams() -> [String; 3] {
    Priority::ALL.map(|p| keys::queue_stream(p.as_str()))
}

fn call(script: Script, keys: Vec<String>, args: Vec<String>) -> ScriptCall {
    ScriptCall { script, keys, args }
}

fn ms(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

/// What became of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Added as this stream entry.
    Added { entry: String },
    /// Not added: the task with this id has the same reference and is pending.
    Duplicate { task: String },
}

/// Enqueues `task` under the id `task_id` at `now_ms`, publishing `channel`'s wake-up.
pub fn enqueue(task: &NewTask, task_id: &str, now_ms: u64, channel: &str) -> ScriptCall {
    let reference = task.reference.clone().unwrap_or_default();
    call(
        ENQUEUE,
        vec![
            keys::queue_stream(task.priority.as_str()),
            keys::queue_dedup(&reference),
            keys::QUEUE_STATUS.to_owned(),
        ],
        vec![
            task_id.to_owned(),
            task.kind.as_str().to_owned(),
            task.payload.clone(),
            reference,
            now_ms.to_string(),
            ms(task.dedup_ttl),
            channel.to_owned(),
            task.priority.as_str().to_owned(),
        ],
    )
}

pub fn parse_enqueue(reply: &[Reply]) -> Result<Enqueued, BadReply> {
    match reply {
        [added, id] => {
            let id = id.text().unwrap_or_default().to_owned();
            match added.number() {
                Some(1) => Ok(Enqueued::Added { entry: id }),
                Some(0) => Ok(Enqueued::Duplicate { task: id }),
                _ => Err(BadReply(format!("{reply:?}"))),
            }
        }
        _ => Err(BadReply(format!("{reply:?}"))),
    }
}

/// What became of a counted enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// The count is not a multiple of the interval: nothing enqueued.
    NotDue { count: u64 },
    /// This count completed a window: the task was added as this stream entry.
    Added { entry: String },
}

/// Counts one event on `counter` (kept `counter_ttl` after the last event) and, on
/// every `every`-th, enqueues `task` with the reference `<task's reference><count /
/// every>`: one script, one round trip. `every` must not be 0.
pub fn enqueue_every(
    task: &NewTask,
    counter: &str,
    every: u32,
    counter_ttl: Duration,
    task_id: &str,
    now_ms: u64,
    channel: &str,
) -> ScriptCall {
    call(
        ENQUEUE_EVERY,
        vec![
            counter.to_owned(),
            keys::queue_stream(task.priority.as_str()),
            keys::QUEUE_STATUS.to_owned(),
        ],
        vec![
            every.max(1).to_string(),
            ms(counter_ttl),
            task_id.to_owned(),
            task.kind.as_str().to_owned(),
            task.payload.clone(),
            task.reference.clone().unwrap_or_default(),
            now_ms.to_string(),
            channel.to_owned(),
            task.priority.as_str().to_owned(),
        ],
    )
}

pub fn parse_enqueue_every(reply: &[Reply]) -> Result<Counted, BadReply> {
    match reply {
        [added, value] => match (added.number(), value) {
            (Some(0), value) => value
                .number()
                .and_then(|n| u64::try_from(n).ok())
                .map(|count| Counted::NotDue { count })
                .ok_or_else(|| BadReply(format!("{reply:?}"))),
            (Some(1), Reply::Text(entry)) => Ok(Counted::Added {
                entry: entry.clone(),
            }),
            _ => Err(BadReply(format!("{reply:?}"))),
        },
        _ => Err(BadReply(format!("{reply:?}"))),
    }
}

/// Claims up to `count` deliveries for `consumer`.
pub fn claim(
    consumer: &str,
    now_ms: u64,
    visibility: Duration,
    max_deliveries: u32,
    count: u32,
) -> ScriptCall {
    let [high, default, low] = streams();
    call(
        CLAIM,
        vec![
            high,
            default,
            low,
            keys::QUEUE_DELAYED.to_owned(),
            keys::QUEUE_DEAD.to_owned(),
            keys::QUEUE_STATS.to_owned(),
            keys::QUEUE_STATUS.to_owned(),
        ],
        vec![
            GROUP.to_owned(),
            consumer.to_owned(),
            now_ms.to_string(),
            ms(visibility),
            max_deliveries.to_string(),
            count.to_string(),
        ],
    )
}

pub fn parse_claim(reply: &[Reply]) -> Result<Vec<Delivery>, BadReply> {
    if !reply.len().is_multiple_of(9) {
        return Err(BadReply(format!(
            "{} items, not 9 per delivery",
            reply.len()
        )));
    }
    reply
        .chunks_exact(9)
        .map(|item| {
            let bad = || BadReply(format!("{item:?}"));
            let text = |i: usize| item[i].text().map(str::to_owned).ok_or_else(bad);
            let number = |i: usize| item[i].number().ok_or_else(bad);
            Ok(Delivery {
                priority: Priority::from_index(number(0)? as u8).ok_or_else(bad)?,
                entry: text(1)?,
                deliveries: number(2)?.max(1) as u32,
                task: Task {
                    id: text(3)?,
                    kind: text(4)?,
                    payload: text(5)?,
                    attempt: number(6)?.max(0) as u32,
                    reference: text(7)?,
                    enqueued_ms: number(8)?.max(0) as u64,
                },
            })
        })
        .collect()
}

/// Acknowledges a done delivery, keeping `record` among the recent results.
pub fn complete(delivery: &Delivery, record: &str, duration_ms: u64) -> ScriptCall {
    call(
        COMPLETE,
        vec![
            keys::queue_stream(delivery.priority.as_str()),
            keys::QUEUE_STATS.to_owned(),
            keys::QUEUE_STATUS.to_owned(),
            keys::QUEUE_RESULTS.to_owned(),
        ],
        vec![
            GROUP.to_owned(),
            delivery.entry.clone(),
            delivery.task.kind.clone(),
            delivery.task.reference.clone(),
            record.to_owned(),
            super::stats::RESULTS_KEPT.to_string(),
            super::stats::duration_field(&delivery.task.kind, duration_ms),
            duration_ms.to_string(),
        ],
    )
}

/// What to do with a delivery that did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Failed; try again at `at_ms` (counted as failed and retried).
    Retry { at_ms: u64 },
    /// Failed for the last time (counted as failed and dead).
    Dead,
    /// Not failed: the drain ran out of budget; run again from `at_ms` without using
    /// an attempt.
    Release { at_ms: u64 },
}

/// Takes a delivery off its stream as `failure` says, with `error` as its last error.
pub fn fail(
    delivery: &Delivery,
    consumer: &str,
    failure: &Failure,
    error: &str,
    now_ms: u64,
    duration_ms: u64,
) -> ScriptCall {
    let task = &delivery.task;
    let (next_attempt, retry_at, counter, duration_field) = match failure {
        Failure::Retry { at_ms } => (
            task.attempt + 1,
            at_ms.to_string(),
            "failed",
            super::stats::duration_field(&task.kind, duration_ms),
        ),
        Failure::Dead => (
            task.attempt + 1,
            String::new(),
            "failed",
            super::stats::duration_field(&task.kind, duration_ms),
        ),
        Failure::Release { at_ms } => (task.attempt, at_ms.to_string(), "released", String::new()),
    };
    call(
        FAIL,
        vec![
            keys::queue_stream(delivery.priority.as_str()),
            keys::QUEUE_DELAYED.to_owned(),
            keys::QUEUE_DEAD.to_owned(),
            keys::QUEUE_STATS.to_owned(),
            keys::QUEUE_STATUS.to_owned(),
        ],
        vec![
            GROUP.to_owned(),
            consumer.to_owned(),
            delivery.entry.clone(),
            delivery.priority.index().to_string(),
            task.id.clone(),
            task.kind.clone(),
            task.payload.clone(),
            next_attempt.to_string(),
            task.reference.clone(),
            task.enqueued_ms.to_string(),
            error.to_owned(),
            now_ms.to_string(),
            retry_at,
            counter.to_owned(),
            duration_field,
            duration_ms.to_string(),
        ],
    )
}

/// The reply of [`complete`], [`retry_dead`], [`delete_dead`] and [`finish`]: a count.
pub fn parse_count(reply: &[Reply]) -> Result<i64, BadReply> {
    match reply {
        [n] => n.number().ok_or_else(|| BadReply(format!("{reply:?}"))),
        _ => Err(BadReply(format!("{reply:?}"))),
    }
}

/// Puts the dead letter `entry` back on its stream.
pub fn retry_dead(entry: &str, now_ms: u64) -> ScriptCall {
    let [high, default, low] = streams();
    call(
        RETRY_DEAD,
        vec![
            keys::QUEUE_DEAD.to_owned(),
            high,
            default,
            low,
            keys::QUEUE_STATUS.to_owned(),
        ],
        vec![entry.to_owned(), now_ms.to_string()],
    )
}

/// Deletes the dead letter `entry`.
pub fn delete_dead(entry: &str) -> ScriptCall {
    call(
        DELETE_DEAD,
        vec![keys::QUEUE_DEAD.to_owned(), keys::QUEUE_STATUS.to_owned()],
        vec![entry.to_owned()],
    )
}

/// Removes `consumer` and the empty consumers of drains idle longer than `idle`.
pub fn finish(consumer: &str, idle: Duration) -> ScriptCall {
    let [high, default, low] = streams();
    call(
        FINISH,
        vec![high, default, low],
        vec![GROUP.to_owned(), consumer.to_owned(), ms(idle)],
    )
}

/// The newest `count` dead letters.
pub fn list_dead(count: u32) -> ScriptCall {
    call(
        LIST_DEAD,
        vec![keys::QUEUE_DEAD.to_owned()],
        vec![count.to_string()],
    )
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub entry: String,
    pub task: String,
    pub kind: String,
    pub payload: String,
    pub attempts: u32,
    pub reference: String,
    pub enqueued_ms: u64,
    pub priority: String,
    pub error: String,
    pub failed_ms: u64,
}

pub fn parse_dead(reply: &[Reply]) -> Result<Vec<DeadLetter>, BadReply> {
    if !reply.len().is_multiple_of(10) {
        return Err(BadReply(format!(
            "{} items, not 10 per letter",
            reply.len()
        )));
    }
    Ok(reply
        .chunks_exact(10)
        .map(|item| {
            let text = |i: usize| item[i].text().unwrap_or_default().to_owned();
            let number = |i: usize| item[i].number().unwrap_or(0).max(0) as u64;
            DeadLetter {
                entry: text(0),
                task: text(1),
                kind: text(2),
                payload: text(3),
                attempts: number(4) as u32,
                reference: text(5),
                enqueued_ms: number(6),
                priority: Priority::from_index(number(7) as u8)
                    .unwrap_or(Priority::Default)
                    .as_str()
                    .to_owned(),
                error: text(8),
                failed_ms: number(9),
            }
        })
        .collect())
}

/// The queue's figures in one call.
pub fn stats() -> ScriptCall {
    let [high, default, low] = streams();
    call(
        STATS,
        vec![
            high,
            default,
            low,
            keys::QUEUE_DELAYED.to_owned(),
            keys::QUEUE_DEAD.to_owned(),
            keys::QUEUE_STATS.to_owned(),
        ],
        vec![GROUP.to_owned()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_scripts() {
        for script in ALL {
            assert_eq!(
                sha1_smol::Sha1::from(script.source).digest().to_string(),
                script.sha1,
                "{}",
                &script.source[..60]
            );
        }
    }

    #[test]
    fn every_call_keeps_its_keys_in_the_queue_slot() {
        let delivery = Delivery {
            priority: Priority::Low,
            entry: "1-0".into(),
            deliveries: 1,
            task: Task {
                id: "t".into(),
                kind: "probe".into(),
                payload: "{}".into(),
                attempt: 0,
                reference: "r".into(),
                enqueued_ms: 1,
            },
        };
        let new = NewTask::new(super::super::Kind::Voice, "{}".into())
            .with_reference("voice:1".into(), Duration::from_secs(1));
        for call in [
            enqueue(&new, "t", 1, "ch"),
            enqueue_every(
                &new,
                &keys::analysis_turns(&crate::ids::UserRef::parse("u").unwrap()),
                3,
                Duration::from_secs(1),
                "t",
                1,
                "ch",
            ),
            claim("c", 1, Duration::from_secs(1), 3, 10),
            complete(&delivery, "{}", 5),
            fail(&delivery, "c", &Failure::Dead, "e", 1, 1),
            retry_dead("1-0", 1),
            delete_dead("1-0"),
            list_dead(10),
            stats(),
            finish("c", Duration::from_secs(1)),
        ] {
            for key in &call.keys {
                assert_eq!(keys::hash_tag(key), "queue", "{key}");
            }
        }
    }

    #[test]
    fn claim_replies_parse_nine_items_per_delivery() {
        let t = |s: &str| Reply::Text(s.to_owned());
        let reply = vec![
            t("3"),
            t("5-1"),
            Reply::Int(2),
            t("task"),
            t("broadcast"),
            t("{\"page\":1}"),
            t("1"),
            t(""),
            t("1700"),
        ];
        let parsed = parse_claim(&reply).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].priority, Priority::Low);
        assert_eq!(parsed[0].deliveries, 2);
        assert_eq!(parsed[0].task.attempt, 1);
        assert_eq!(parsed[0].task.enqueued_ms, 1700);
        assert!(parse_claim(&reply[..8]).is_err());
        assert!(parse_claim(&[]).unwrap().is_empty());
        assert_eq!(
            parse_enqueue_every(&[Reply::Int(0), Reply::Int(7)]).unwrap(),
            Counted::NotDue { count: 7 }
        );
        assert_eq!(
            parse_enqueue_every(&[Reply::Int(1), t("9-0")]).unwrap(),
            Counted::Added {
                entry: "9-0".into()
            }
        );
        assert!(parse_enqueue_every(&[Reply::Int(1)]).is_err());
        assert_eq!(
            parse_enqueue(&[Reply::Int(0), t("other")]).unwrap(),
            Enqueued::Duplicate {
                task: "other".into()
            }
        );
    }

    #[test]
    fn a_release_uses_no_attempt() {
        let delivery = Delivery {
            priority: Priority::High,
            entry: "1-0".into(),
            deliveries: 1,
            task: Task {
                id: "t".into(),
                kind: "voice".into(),
                payload: "{}".into(),
                attempt: 2,
                reference: String::new(),
                enqueued_ms: 1,
            },
        };
        let release = fail(&delivery, "c", &Failure::Release { at_ms: 9 }, "", 1, 1);
        assert_eq!(release.args[7], "2");
        assert_eq!(release.args[13], "released");
        let retry = fail(&delivery, "c", &Failure::Retry { at_ms: 9 }, "e", 1, 1);
        assert_eq!(retry.args[7], "3");
        assert_eq!(retry.args[12], "9");
    }
}
