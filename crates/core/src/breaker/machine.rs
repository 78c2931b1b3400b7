//! [`BreakerMachine`]: the breaker's state machine in Rust, the executable specification
//! the Lua scripts are checked against.

use super::*;

/// The whole breaker hash, typed; the Rust twin of the two scripts. Field names and
/// meanings are those of the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerMachine {
    pub state: BreakerState,
    /// Consecutive failures while closed; reset by a success or when it closes.
    pub failure_count: u64,
    /// Successful probes since it went half-open.
    pub success_count: u64,
    pub total_calls: u64,
    pub total_successes: u64,
    pub total_failures: u64,
    pub total_blocked: u64,
    pub opened_at_ms: u64,
    /// When the current probe's lease ends; 0 when no probe is out.
    pub probe_until_ms: u64,
    /// The last probe handed out.
    pub probe_id: u64,
    /// State changes so far.
    pub transitions: u64,
}

impl Default for BreakerMachine {
    fn default() -> Self {
        BreakerMachine {
            state: BreakerState::Closed,
            failure_count: 0,
            success_count: 0,
            total_calls: 0,
            total_successes: 0,
            total_failures: 0,
            total_blocked: 0,
            opened_at_ms: 0,
            probe_until_ms: 0,
            probe_id: 0,
            transitions: 0,
        }
    }
}

impl BreakerMachine {
    /// Reads the hash as `HGETALL` returns it; missing fields are zero, as in the scripts.
    pub fn from_fields(fields: &HashMap<String, String>) -> Result<Self, BreakerParseError> {
        let state = match fields.get("state") {
            None => BreakerState::Closed,
            Some(value) => {
                BreakerState::from_stored(value).ok_or_else(|| BreakerParseError::InvalidField {
                    field: "state",
                    value: value.clone(),
                })?
            }
        };
        Ok(BreakerMachine {
            state,
            failure_count: counter(fields, "failure_count")?,
            success_count: counter(fields, "success_count")?,
            total_calls: counter(fields, "total_calls")?,
            total_successes: counter(fields, "total_successes")?,
            total_failures: counter(fields, "total_failures")?,
            total_blocked: counter(fields, "total_blocked")?,
            opened_at_ms: counter(fields, "opened_at_ms")?,
            probe_until_ms: counter(fields, "probe_until_ms")?,
            probe_id: counter(fields, "probe_id")?,
            transitions: counter(fields, "transitions")?,
        })
    }

    fn transition(&mut self, to: BreakerState) {
        self.state = to;
        self.transitions += 1;
    }

    /// What [`ACQUIRE_SCRIPT`] decides at `now_ms`.
    pub fn acquire(&mut self, thresholds: &BreakerThresholds, now_ms: u64) -> Decision {
        match self.state {
            BreakerState::Closed => {
                self.total_calls += 1;
                return Decision::Allow;
            }
            BreakerState::Open => {
                let reopen_at = self.opened_at_ms.saturating_add(millis(thresholds.open));
                if now_ms < reopen_at {
                    self.total_blocked += 1;
                    return Decision::Reject {
                        retry_in: Duration::from_millis(reopen_at - now_ms),
                    };
                }
                self.transition(BreakerState::HalfOpen);
                self.success_count = 0;
            }
            BreakerState::HalfOpen => {
                if self.probe_until_ms > now_ms {
                    self.total_blocked += 1;
                    return Decision::Reject {
                        retry_in: Duration::from_millis(self.probe_until_ms - now_ms),
                    };
                }
            }
        }
        self.probe_id += 1;
        self.probe_until_ms = now_ms.saturating_add(millis(thresholds.probe_lease));
        self.total_calls += 1;
        Decision::Probe(ProbeId(self.probe_id))
    }

    /// What [`RECORD_SCRIPT`] does with an outcome at `now_ms`; returns the new state.
    pub fn record(
        &mut self,
        thresholds: &BreakerThresholds,
        outcome: Outcome,
        probe: Option<ProbeId>,
        now_ms: u64,
    ) -> BreakerState {
        match outcome {
            Outcome::Success => self.total_successes += 1,
            Outcome::Failure => self.total_failures += 1,
        }
        match self.state {
            BreakerState::Closed => match outcome {
                Outcome::Success => self.failure_count = 0,
                Outcome::Failure => {
                    self.failure_count += 1;
                    if self.failure_count >= u64::from(thresholds.failure_threshold) {
                        self.transition(BreakerState::Open);
                        self.opened_at_ms = now_ms;
                    }
                }
            },
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                let current = probe.is_some_and(|probe| probe.0 == self.probe_id);
                if current && self.probe_until_ms != 0 {
                    self.probe_until_ms = 0;
                    match outcome {
                        Outcome::Success => {
                            self.success_count += 1;
                            if self.success_count >= u64::from(thresholds.success_threshold) {
                                self.transition(BreakerState::Closed);
                                self.failure_count = 0;
                                self.success_count = 0;
                            }
                        }
                        Outcome::Failure => {
                            self.transition(BreakerState::Open);
                            self.opened_at_ms = now_ms;
                            self.failure_count += 1;
                            self.success_count = 0;
                        }
                    }
                }
            }
        }
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: BreakerThresholds = BreakerThresholds {
        failure_threshold: 5,
        success_threshold: 2,
        open: Duration::from_secs(60),
        probe_lease: Duration::from_secs(30),
    };

    fn opened_at(now_ms: u64) -> BreakerMachine {
        let mut machine = BreakerMachine::default();
        for _ in 0..5 {
            assert_eq!(machine.acquire(&T, now_ms), Decision::Allow);
            machine.record(&T, Outcome::Failure, None, now_ms);
        }
        assert_eq!(machine.state, BreakerState::Open);
        machine
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut machine = BreakerMachine::default();
        for _ in 0..4 {
            machine.acquire(&T, 0);
            assert_eq!(
                machine.record(&T, Outcome::Failure, None, 0),
                BreakerState::Closed
            );
        }
        machine.acquire(&T, 0);
        machine.record(&T, Outcome::Success, None, 0);
        assert_eq!(machine.failure_count, 0);
        for i in 1..=5 {
            machine.acquire(&T, 1_000);
            let state = machine.record(&T, Outcome::Failure, None, 1_000);
            let expected = if i < 5 {
                BreakerState::Closed
            } else {
                BreakerState::Open
            };
            assert_eq!(state, expected);
        }
        assert_eq!(machine.opened_at_ms, 1_000);
        assert_eq!(machine.transitions, 1);
        assert_eq!(machine.total_calls, 10);
        assert_eq!(machine.total_successes, 1);
        assert_eq!(machine.total_failures, 9);
    }

    #[test]
    fn open_rejects_with_the_time_left_and_counts_blocked_calls() {
        let mut machine = opened_at(1_000);
        let decision = machine.acquire(&T, 16_500);
        assert_eq!(
            decision,
            Decision::Reject {
                retry_in: Duration::from_millis(44_500)
            }
        );
        assert!(!decision.is_allowed());
        assert_eq!(decision.probe(), None);
        assert_eq!(
            machine.acquire(&T, 60_999),
            Decision::Reject {
                retry_in: Duration::from_millis(1)
            }
        );
        assert_eq!((machine.total_calls, machine.total_blocked), (5, 2));
        // Late outcomes of calls let through before it opened change only the totals.
        machine.record(&T, Outcome::Success, None, 17_000);
        assert_eq!(machine.state, BreakerState::Open);
        assert_eq!(machine.total_successes, 1);
        assert_eq!(machine.opened_at_ms, 1_000);
    }

    #[test]
    fn one_probe_at_a_time_and_a_new_one_when_its_lease_ends() {
        let mut machine = opened_at(0);
        let first = machine.acquire(&T, 60_000);
        assert_eq!(first, Decision::Probe(ProbeId(1)));
        assert!(first.is_allowed());
        assert_eq!(machine.state, BreakerState::HalfOpen);
        assert_eq!(machine.probe_until_ms, 90_000);
        assert_eq!(
            machine.acquire(&T, 61_000),
            Decision::Reject {
                retry_in: Duration::from_millis(29_000)
            }
        );
        // The first prober vanished: at the end of its lease someone else probes.
        let second = machine.acquire(&T, 90_000);
        assert_eq!(second, Decision::Probe(ProbeId(2)));
        // The vanished prober reports late: ignored, the second still holds the probe.
        machine.record(&T, Outcome::Success, first.probe(), 91_000);
        assert_eq!(machine.success_count, 0);
        assert!(!machine.acquire(&T, 91_000).is_allowed());
        // So is an outcome of a call let through while it was closed.
        machine.record(&T, Outcome::Failure, None, 91_000);
        assert_eq!(machine.state, BreakerState::HalfOpen);
        assert_eq!(machine.total_calls, 7);
        assert_eq!(machine.total_blocked, 2);
    }

    #[test]
    fn two_probe_successes_close() {
        let mut machine = opened_at(0);
        let probe = machine.acquire(&T, 60_000).probe();
        assert_eq!(
            machine.record(&T, Outcome::Success, probe, 60_100),
            BreakerState::HalfOpen
        );
        // The probe is released: the next caller probes at once.
        assert_eq!(machine.probe_until_ms, 0);
        // Recording the same probe twice does not count twice.
        machine.record(&T, Outcome::Success, probe, 60_100);
        assert_eq!(machine.success_count, 1);
        let probe = machine.acquire(&T, 60_200).probe();
        assert_eq!(probe, Some(ProbeId(2)));
        assert_eq!(
            machine.record(&T, Outcome::Success, probe, 60_300),
            BreakerState::Closed
        );
        assert_eq!((machine.failure_count, machine.success_count), (0, 0));
        assert_eq!(machine.transitions, 3);
        assert_eq!(machine.acquire(&T, 60_400), Decision::Allow);
    }

    #[test]
    fn one_probe_failure_reopens() {
        let mut machine = opened_at(0);
        let probe = machine.acquire(&T, 60_000).probe();
        machine.record(&T, Outcome::Success, probe, 60_000);
        let probe = machine.acquire(&T, 61_000).probe();
        assert_eq!(
            machine.record(&T, Outcome::Failure, probe, 62_000),
            BreakerState::Open
        );
        assert_eq!(machine.opened_at_ms, 62_000);
        assert_eq!(machine.success_count, 0);
        assert_eq!(machine.failure_count, 6);
        assert!(!machine.acquire(&T, 121_999).is_allowed());
        assert_eq!(machine.acquire(&T, 122_000), Decision::Probe(ProbeId(3)));
    }

    #[test]
    fn stats_read_the_machine_the_scripts_write() {
        let mut machine = opened_at(0);
        machine.acquire(&T, 1_000);
        let fields: HashMap<String, String> = [
            ("state", machine.state.as_stored().to_owned()),
            ("failure_count", machine.failure_count.to_string()),
            ("total_calls", machine.total_calls.to_string()),
            ("total_successes", machine.total_successes.to_string()),
            ("total_blocked", machine.total_blocked.to_string()),
            ("opened_at_ms", machine.opened_at_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            BreakerMachine::from_fields(&fields).unwrap().failure_count,
            5
        );
        let stats = parse_stats(&fields, millis(T.open), 1_000).unwrap();
        assert_eq!(stats.state, BreakerState::Open);
        assert_eq!((stats.total_calls, stats.total_blocked), (5, 1));
        assert_eq!(stats.success_rate, 0.0);
        assert_eq!(stats.retry_in, Some(59));
        assert_eq!(
            BreakerMachine::from_fields(&HashMap::new()).unwrap(),
            BreakerMachine::default()
        );
    }

    #[test]
    fn script_replies() {
        assert_eq!(Decision::from_reply("allow", 0, 0), Ok(Decision::Allow));
        assert_eq!(
            Decision::from_reply("probe", 0, 7),
            Ok(Decision::Probe(ProbeId(7)))
        );
        assert_eq!(
            Decision::from_reply("reject", 1_500, 0),
            Ok(Decision::Reject {
                retry_in: Duration::from_millis(1_500)
            })
        );
        for (decision, retry, probe) in [("probe", 0, 0), ("reject", -1, 0), ("maybe", 0, 0)] {
            let error = Decision::from_reply(decision, retry, probe).unwrap_err();
            assert!(
                matches!(error, BreakerParseError::UnexpectedReply { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn script_arguments() {
        assert_eq!(T.acquire_args(123), ["123", "60000", "30000"]);
        assert_eq!(
            T.record_args(Outcome::Failure, None, 9),
            ["failure", "9", "5", "2", "0"]
        );
        assert_eq!(
            T.record_args(Outcome::Success, Some(ProbeId(4)), 9),
            ["success", "9", "5", "2", "4"]
        );
    }

    #[test]
    fn thresholds_from_variables() {
        let lease = Duration::from_millis(3_000);
        let none = |_: &str| Ok::<_, String>(None);
        let defaults = BreakerThresholds::try_from_lookup(none, lease).unwrap();
        assert_eq!(defaults, BreakerThresholds::standard(lease));
        let set = |name: &str| {
            Ok::<_, String>(match name {
                "breaker_failure_threshold" => Some("3".to_owned()),
                "breaker_success_threshold" => Some("1".to_owned()),
                "breaker_open_seconds" => Some("2".to_owned()),
                _ => None,
            })
        };
        assert_eq!(
            BreakerThresholds::try_from_lookup(set, lease).unwrap(),
            BreakerThresholds {
                failure_threshold: 3,
                success_threshold: 1,
                open: Duration::from_secs(2),
                probe_lease: Duration::from_millis(3_000),
            }
        );
        let bad = |name: &str| {
            Ok::<_, String>((name == "breaker_failure_threshold").then(|| "0".to_owned()))
        };
        let error = BreakerThresholds::try_from_lookup(bad, lease).unwrap_err();
        assert!(
            error.to_string().contains("breaker_failure_threshold"),
            "{error}"
        );
    }

    #[test]
    fn script_digests_match_the_scripts() {
        for (script, digest) in [(ACQUIRE_SCRIPT, ACQUIRE_SHA1), (RECORD_SCRIPT, RECORD_SHA1)] {
            assert_eq!(
                sha1_smol::Sha1::from(script).digest().to_string(),
                digest,
                "update the digest after changing the script"
            );
        }
    }
}
