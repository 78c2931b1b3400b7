//! How a call's result is classified (what may be retried, what counts against the
//! circuit breaker) and when to try again: backoff, budget and `Retry-After`.

use crate::breaker::Outcome;
use std::time::Duration;

/// The model's reply to a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
}

/// Why a call produced no reply. Messages never contain the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No (complete) answer within the attempt's time limit.
    #[error("gemini did not answer in time")]
    Timeout,
    /// Gemini answered with a non-success status.
    #[error("gemini answered {code}: {message}")]
    Status {
        code: u16,
        /// How long the server asked us to wait (`Retry-After`, or a `RetryInfo` detail).
        retry_after: Option<Duration>,
        /// Gemini's status name and message, when the body had them.
        message: String,
    },
    /// The connection failed (refused, reset, DNS, TLS).
    #[error("gemini unreachable: {0}")]
    Transport(String),
    /// The platform refused to send the request at all (host not in
    /// `allowed_outbound_hosts`, invalid URL): a configuration error, not an outage.
    #[error("gemini request refused by the platform: {0}")]
    Refused(String),
    /// A success status with a body that is not a `generateContent` answer.
    #[error("gemini answered with an unreadable body: {0}")]
    BadResponse(String),
    /// The model answered without usable text: prompt or reply blocked by safety filters,
    /// or no candidate.
    #[error("gemini gave no reply: {reason}")]
    Blocked { reason: String },
}

impl CallError {
    /// Whether another attempt may succeed: timeouts, connection failures, 429 and the
    /// transient 5xx statuses. A 4xx caused by our request would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Timeout | CallError::Transport(_) => true,
            CallError::Status { code, .. } => matches!(code, 429 | 500 | 502 | 503 | 504),
            CallError::Refused(_) | CallError::BadResponse(_) | CallError::Blocked { .. } => false,
        }
    }

    /// Whether this says the LLM is unhealthy, so the circuit breaker counts it: timeouts,
    /// connection failures, 429, every 5xx, and garbage behind a success status. A 4xx
    /// caused by our request, a refused request or a safety block says nothing about the
    /// service's health.
    pub fn counts_as_breaker_failure(&self) -> bool {
        match self {
            CallError::Timeout | CallError::Transport(_) | CallError::BadResponse(_) => true,
            CallError::Status { code, .. } => *code == 429 || *code >= 500,
            CallError::Refused(_) | CallError::Blocked { .. } => false,
        }
    }

    /// The server's requested wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Replaces the requested wait when the response carried a `Retry-After` header,
    /// which takes precedence over a delay found in the body.
    pub fn with_retry_after(self, header: Option<Duration>) -> Self {
        match self {
            CallError::Status {
                code,
                retry_after,
                message,
            } => CallError::Status {
                code,
                retry_after: header.or(retry_after),
                message,
            },
            other => other,
        }
    }
}

/// How a finished call counts for the circuit breaker: a failure that says the LLM is
/// unhealthy counts, and so does any call slower than the slow-call limit (`slow`), even
/// one that produced a reply.
pub fn breaker_outcome<T>(result: &Result<T, CallError>, slow: bool) -> Outcome {
    let failed = result
        .as_ref()
        .err()
        .is_some_and(CallError::counts_as_breaker_failure);
    if slow || failed {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// A `Retry-After` header value: delay-seconds, or an HTTP date (IMF-fixdate, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`) compared with `now_unix_secs`. A date in the past
/// means no wait; anything unreadable means no advice.
pub fn parse_retry_after(value: &str, now_unix_secs: u64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_secs(at.saturating_sub(now_unix_secs)))
}

/// IMF-fixdate to Unix seconds.
fn parse_http_date(value: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_weekday, rest) = value.split_once(", ")?;
    let mut fields = rest.split(' ');
    let day: u64 = fields.next()?.parse().ok()?;
    let month = match fields.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = fields.next()?.parse().ok()?;
    let mut clock = fields.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if fields.next()? != "GMT" || fields.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1970..=9999).contains(&year)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (civil-from-days, inverted).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// How a call is retried: exponential backoff with full jitter, at most `max_attempts`
/// attempts, all within `total_budget` measured from the first attempt's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// The first backoff's upper bound; each later one doubles it.
    pub base: Duration,
    /// No jittered backoff exceeds this (a server's `Retry-After` may).
    pub max_backoff: Duration,
    pub total_budget: Duration,
}

impl RetryPolicy {
    /// An attempt given less time than this would only add load and latency: if a retry
    /// would leave less, the call gives up instead.
    pub const MIN_ATTEMPT: Duration = Duration::from_millis(200);

    /// How long to wait before the next attempt, or `None` to give up.
    ///
    /// `attempt` is the number of attempts made so far (1 after the first failed),
    /// `retry_after` what the server asked for, `elapsed` the time since the first attempt
    /// started and `random_fraction` a uniform random number in `[0, 1)`. The wait is a
    /// uniformly random part of `min(max_backoff, base * 2^(attempt-1))`, but never less
    /// than `retry_after`. There is no retry once `max_attempts` are spent, nor when the
    /// wait plus [`Self::MIN_ATTEMPT`] does not fit in what is left of the budget: better
    /// to fail now than to retry before the server's `Retry-After` or past the budget.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        random_fraction: f64,
    ) -> Option<Duration> {
        if attempt == 0 || attempt >= self.max_attempts {
            return None;
        }
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff);
        let fraction = if random_fraction.is_finite() {
            random_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = ceiling.mul_f64(fraction);
        let delay = retry_after.map_or(jittered, |wait| wait.max(jittered));
        let remaining = self.total_budget.checked_sub(elapsed)?;
        (delay.saturating_add(Self::MIN_ATTEMPT) <= remaining).then_some(delay)
    }

    /// The time limit of an attempt that starts at `elapsed`: `per_attempt`, cut to what
    /// is left of the budget; `None` when nothing useful is left.
    pub fn attempt_timeout(&self, per_attempt: Duration, elapsed: Duration) -> Option<Duration> {
        let remaining = self.total_budget.checked_sub(elapsed)?;
        (remaining >= Self::MIN_ATTEMPT.min(per_attempt)).then(|| per_attempt.min(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::test_support::ms;

    #[test]
    fn classification() {
        let status = |code| CallError::Status {
            code,
            retry_after: None,
            message: String::new(),
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).is_retryable(), "{code}");
            assert!(status(code).counts_as_breaker_failure(), "{code}");
        }
        assert!(!status(501).is_retryable());
        assert!(status(501).counts_as_breaker_failure());
        for code in [400, 401, 403, 404, 413] {
            assert!(!status(code).is_retryable(), "{code}");
            assert!(!status(code).counts_as_breaker_failure(), "{code}");
        }
        for error in [CallError::Timeout, CallError::Transport("reset".into())] {
            assert!(error.is_retryable() && error.counts_as_breaker_failure());
        }
        let refused = CallError::Refused("HTTP-request-denied".into());
        assert!(!refused.is_retryable() && !refused.counts_as_breaker_failure());
    }

    #[test]
    fn slow_calls_count_as_breaker_failures() {
        let ok = Ok(Reply {
            text: "hi".into(),
            prompt_tokens: 1,
            output_tokens: 1,
        });
        assert_eq!(breaker_outcome(&ok, false), Outcome::Success);
        assert_eq!(breaker_outcome(&ok, true), Outcome::Failure);
        assert_eq!(
            breaker_outcome::<Reply>(&Err(CallError::Timeout), false),
            Outcome::Failure
        );
        let ours: Result<Reply, CallError> = Err(CallError::Status {
            code: 400,
            retry_after: None,
            message: String::new(),
        });
        assert_eq!(breaker_outcome(&ours, false), Outcome::Success);
        assert_eq!(breaker_outcome(&ours, true), Outcome::Failure);
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(500),
        max_backoff: Duration::from_millis(1_500),
        total_budget: Duration::from_secs(30),
    };

    #[test]
    fn backoff_is_full_jitter_exponential_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            ..POLICY
        };
        assert!(p.next_delay(1, None, ms(0), 0.999_999).unwrap() < ms(500));
        assert_eq!(p.next_delay(1, None, ms(0), 0.5), Some(ms(250)));
        assert_eq!(p.next_delay(2, None, ms(0), 0.5), Some(ms(500)));
        assert_eq!(p.next_delay(3, None, ms(0), 0.5), Some(ms(750)));
        assert_eq!(p.next_delay(9, None, ms(0), 1.0), Some(ms(1_500)));
        assert_eq!(p.next_delay(2, None, ms(0), 0.0), Some(ms(0)));
        // Out-of-range randomness is clamped, not trusted.
        assert_eq!(p.next_delay(1, None, ms(0), 7.0), Some(ms(500)));
        assert_eq!(p.next_delay(1, None, ms(0), -1.0), Some(ms(0)));
        assert_eq!(p.next_delay(1, None, ms(0), f64::NAN), Some(ms(0)));
        // Huge attempt numbers do not overflow.
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..POLICY
        };
        assert_eq!(p.next_delay(200, None, ms(0), 1.0), Some(ms(1_500)));
    }

    #[test]
    fn attempts_are_limited() {
        assert!(POLICY.next_delay(1, None, ms(0), 0.5).is_some());
        assert!(POLICY.next_delay(2, None, ms(0), 0.5).is_some());
        assert_eq!(POLICY.next_delay(3, None, ms(0), 0.5), None);
        assert_eq!(POLICY.next_delay(0, None, ms(0), 0.5), None);
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(once.next_delay(1, None, ms(0), 0.5), None);
    }

    #[test]
    fn retry_after_is_a_floor_even_beyond_the_backoff_cap() {
        let wait = Duration::from_secs(5);
        assert_eq!(POLICY.next_delay(1, Some(wait), ms(0), 0.5), Some(wait));
        // A jittered wait longer than Retry-After is kept.
        assert_eq!(
            POLICY.next_delay(2, Some(ms(10)), ms(0), 1.0),
            Some(ms(1_000))
        );
    }

    #[test]
    fn the_budget_is_never_exceeded() {
        // 29.5 s spent of 30: a 250 ms wait fits with 200 ms for the attempt, 400 ms not.
        assert_eq!(POLICY.next_delay(1, None, ms(29_500), 0.5), Some(ms(250)));
        assert_eq!(POLICY.next_delay(1, None, ms(29_500), 0.8), None);
        // The server asks for longer than is left: give up at once.
        assert_eq!(
            POLICY.next_delay(1, Some(Duration::from_secs(37)), ms(0), 0.0),
            None
        );
        assert_eq!(POLICY.next_delay(1, None, ms(31_000), 0.0), None);
    }

    #[test]
    fn attempt_timeout_is_cut_to_the_budget() {
        let per = ms(20_000);
        assert_eq!(POLICY.attempt_timeout(per, ms(0)), Some(per));
        assert_eq!(POLICY.attempt_timeout(per, ms(25_000)), Some(ms(5_000)));
        assert_eq!(POLICY.attempt_timeout(per, ms(29_900)), None);
        assert_eq!(POLICY.attempt_timeout(per, ms(40_000)), None);
        // A per-attempt limit below MIN_ATTEMPT is the operator's choice.
        assert_eq!(POLICY.attempt_timeout(ms(50), ms(0)), Some(ms(50)));
    }

    #[test]
    fn retry_after_header_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, 784_111_777 - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(date, 784_111_777 + 5),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
    }
}
