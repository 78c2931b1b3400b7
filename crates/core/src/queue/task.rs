//! What a task is: its kind, its priority, and the envelope the scripts keep in the
//! streams, the delayed set and the dead letters.

use std::fmt;
use std::time::Duration;

/// The kinds of work. A kind names its handler, its attempts and its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Speech for one assistant message (TTS), stored as audio.
    Voice,
    /// The dialog analysis of one user's recent turns into the companion's memory.
    Analysis,
    /// One page of a broadcast's recipients.
    Broadcast,
    /// Does nothing: an operator's check that drains run, and the benchmarks' load.
    Probe,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Voice, Kind::Analysis, Kind::Broadcast, Kind::Probe];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Voice => "voice",
            Kind::Analysis => "analysis",
            Kind::Broadcast => "broadcast",
            Kind::Probe => "probe",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Attempts before the task goes to the dead letters. Voice is worth a few tries (a
    /// user asked for it); analysis runs again with the next window anyway.
    pub fn max_attempts(self) -> u32 {
        match self {
            Kind::Voice => 4,
            Kind::Analysis => 3,
            Kind::Broadcast => 5,
            Kind::Probe => 3,
        }
    }

    /// The priority a task of this kind is enqueued with: a user waits for voice; the
    /// companion's memory can wait a little; broadcasts must never delay either.
    pub fn priority(self) -> Priority {
        match self {
            Kind::Voice => Priority::High,
            Kind::Analysis => Priority::Default,
            Kind::Broadcast => Priority::Low,
            Kind::Probe => Priority::Default,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream of its own per priority; drains read them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    High,
    Default,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Default, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Default => "default",
            Priority::Low => "low",
        }
    }

    pub fn parse(name: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The 1-based position the scripts use (`KEYS[n]` of the streams).
    pub fn index(self) -> u8 {
        match self {
            Priority::High => 1,
            Priority::Default => 2,
            Priority::Low => 3,
        }
    }

    pub fn from_index(index: u8) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.index() == index)
    }
}

/// A task to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub kind: Kind,
    pub priority: Priority,
    /// The kind's input, JSON.
    pub payload: String,
    /// What the task is about (`voice:42`): while a task with this reference is
    /// pending, or for `dedup_ttl` after it was enqueued, another is not enqueued; its
    /// state can be asked for ([`crate::keys::QUEUE_STATUS`]).
    pub reference: Option<String>,
    pub dedup_ttl: Duration,
}

impl NewTask {
    /// A task of `kind` at the kind's priority, without a reference.
    pub fn new(kind: Kind, payload: String) -> NewTask {
        NewTask {
            kind,
            priority: kind.priority(),
            payload,
            reference: None,
            dedup_ttl: Duration::from_secs(86_400),
        }
    }

    /// The same task, de-duplicated by `reference` for `ttl`.
    pub fn with_reference(mut self, reference: String, ttl: Duration) -> NewTask {
        self.reference = Some(reference);
        self.dedup_ttl = ttl;
        self
    }
}

/// A task as the streams keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Stable across retries (the stream entry changes with each retry).
    pub id: String,
    /// The kind's name; a name this build does not know is kept as it is and fails.
    pub kind: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempt: u32,
    /// The reference, empty when none.
    pub reference: String,
    pub enqueued_ms: u64,
}

/// One task handed to one drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub priority: Priority,
    /// The stream entry's id, for acknowledging it.
    pub entry: String,
    /// Times the entry has been handed out, this one included; above the limit the
    /// entry crashed its drains and goes to the dead letters instead.
    pub deliveries: u32,
    pub task: Task,
}
