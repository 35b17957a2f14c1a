//! What a request's outcome means for its batch: delivered, retried (and when), split or
//! dropped. [`decide`] is the whole decision, sans-IO: the engine calls it once per outcome.

use crate::engine::delivery::rng::Rng;
use crate::engine::delivery::stats::DropReason;
use crate::engine::wire::format::WireFormat;
use crate::engine::wire::time::parse_http_date;
use crate::engine::Config;

/// The longest a `Retry-After` may hold the endpoint: 5 minutes. A server naming a later time
/// (or a clock far off) is taken to mean this much, so a typo in a header cannot silence an
/// exporter for a day.
pub const MAX_RETRY_AFTER_MS: u64 = 5 * 60 * 1000;

/// How a request ended, as the shell observed it.
///
/// # Example
/// ```
/// use spool::engine::{Outcome, RetryAfter};
/// // A 429 with `Retry-After: 2`, as the shell reports it.
/// let outcome = Outcome::retry_after(429, RetryAfter::parse("2").unwrap());
/// assert_eq!(outcome, Outcome::Response {
///     status: 429,
///     retry_after: Some(RetryAfter::Delay(2_000)),
///     body: None,
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered.
    Response {
        /// The HTTP status.
        status: u16,
        /// The parsed `Retry-After` header, if any.
        retry_after: Option<RetryAfter>,
        /// The response body, where the format reads one (an OTLP 2xx answer's
        /// `partialSuccess`); `None` when the shell did not read it.
        body: Option<String>,
    },
    /// The request failed before an answer (DNS, connection reset, CORS refusal, offline).
    NetworkError(String),
    /// No answer within `requestTimeoutMs` (the shell aborted it).
    Timeout,
    /// The host took the request to send on its own and will report nothing more:
    /// `navigator.sendBeacon` returned true. A browser's acceptance says nothing about the
    /// collector, so the engine counts the events delivered only if the collector's last
    /// answer before the request left was a 2xx (online, with no `Retry-After` hold);
    /// otherwise they stay held, in flight and in the stored copy, until the request times
    /// out and they go again.
    Accepted,
    /// The host would not take the request (`navigator.sendBeacon` returned false: the
    /// browser's budget is spent). The attempt is not spent and the events wait again; no
    /// other beacon goes until the page is shown again.
    Refused,
}

impl Outcome {
    /// A response with `status` and no `Retry-After`.
    pub fn status(status: u16) -> Outcome {
        Outcome::Response {
            status,
            retry_after: None,
            body: None,
        }
    }

    /// A response with `status` and `Retry-After`.
    pub fn retry_after(status: u16, retry_after: RetryAfter) -> Outcome {
        Outcome::Response {
            status,
            retry_after: Some(retry_after),
            body: None,
        }
    }
}

/// A `Retry-After` header (RFC 9110 §10.2.3): a delay or a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`: wait this many ms.
    Delay(u64),
    /// `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`: wait until this instant (ms since epoch).
    At(u64),
}

impl RetryAfter {
    /// Parses delta-seconds or an HTTP-date; `None` for anything else (the header is then
    /// ignored and ordinary backoff applies).
    pub fn parse(header: &str) -> Option<RetryAfter> {
        let h = header.trim_ascii();
        if !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()) {
            // A huge number of seconds saturates; the cap applies in `deadline`. Summed here
            // rather than with `str::parse`, which adds its own code to the wasm.
            let secs = h.bytes().fold(0u64, |n, b| {
                n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
            });
            return Some(RetryAfter::Delay(secs.saturating_mul(1000)));
        }
        parse_http_date(h).map(RetryAfter::At)
    }

    /// The instant before which nothing may be sent, capped at [`MAX_RETRY_AFTER_MS`] from `now`.
    pub fn deadline(self, now_ms: u64) -> u64 {
        let wait = match self {
            RetryAfter::Delay(ms) => ms,
            RetryAfter::At(at) => at.saturating_sub(now_ms),
        };
        now_ms.saturating_add(wait.min(MAX_RETRY_AFTER_MS))
    }
}

/// What the engine does with a batch after an outcome: the wire format's reading of it
/// ([`WireFormat::verdict`](crate::engine::WireFormat::verdict)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every event was taken.
    Delivered,
    /// The collector took all but `rejected` of the events (an OTLP `partialSuccess`); those
    /// are dropped as rejected with the status.
    Partial {
        /// The status of the answer.
        status: u16,
        /// How many events the collector refused.
        rejected: u64,
    },
    /// Try again later (honouring a `Retry-After`).
    Retry,
    /// The collector refused the body as a whole (413: too large; 400: something in it is
    /// malformed): send the halves, so that a single event refused alone is dropped and the
    /// others are delivered.
    Split(u16),
    /// The collector will never take it.
    Reject(u16),
}

impl Verdict {
    /// PostHog's batch API: 2xx delivered; 408, 429, 5xx, network errors and timeouts retried;
    /// 400 and 413 split; any other status rejected.
    pub fn posthog(outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Response { status, .. } => match status {
                200..=299 => Verdict::Delivered,
                408 | 429 | 500..=599 => Verdict::Retry,
                400 | 413 => Verdict::Split(*status),
                s => Verdict::Reject(*s),
            },
            Outcome::NetworkError(_) | Outcome::Timeout => Verdict::Retry,
            // Never asked: the engine settles these itself (see the variants).
            Outcome::Accepted | Outcome::Refused => Verdict::Delivered,
        }
    }
}

/// The batch an outcome answered, as [`decide`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// Sends of the batch so far, the answered one included: 1 after a first attempt.
    pub sends: u32,
    /// Events in the body that was answered.
    pub events: usize,
}

/// What becomes of a batch after an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every event was taken: settle them delivered.
    Delivered,
    /// The collector took all but the last `rejected` events (an OTLP `partialSuccess`, which
    /// does not say which): those are dropped as rejected with `status`, the rest delivered.
    Partial {
        /// The status of the answer.
        status: u16,
        /// How many events were refused, at most the events sent.
        rejected: usize,
    },
    /// Send the batch again, not before this instant (ms since the epoch).
    Retry(u64),
    /// The collector refused the body as a whole: send its two halves again at once, so that
    /// an event refused alone is dropped and the others are delivered.
    Split,
    /// Give every event of the batch up, counted under this reason.
    Reject(DropReason),
}

/// [`decide`]'s answer: the batch's next step, and the hold the answer puts on the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// What to do with the batch.
    pub step: Step,
    /// A retried answer's `Retry-After`, capped at [`MAX_RETRY_AFTER_MS`]: no request of any
    /// batch may go to the endpoint before this instant. Set even when this batch is given up,
    /// since the server's wish holds for the others.
    pub hold_until: Option<u64>,
}

/// The whole retry decision for one outcome of one batch, sans-IO.
///
/// The wire format's status rules ([`WireFormat::verdict`]) say whether the outcome is
/// delivered, retried, split or final. A retry waits out the answer's `Retry-After` if it has
/// one (capped at [`MAX_RETRY_AFTER_MS`]), else a backoff with full jitter: a uniform draw from
/// `rng` between 0 and `initialBackoffMs · 2^(sends-1)` ms, that ceiling capped at
/// `maxBackoffMs`. After `maxAttempts`
/// sends a batch that would be retried is dropped as `attemptsExhausted`; a body of one event
/// that would be split is dropped as rejected with the status.
// Inlined at its one call site: 44 bytes less gzipped wasm than a call.
#[inline(always)]
pub(crate) fn decide<F: WireFormat + ?Sized>(
    format: &F,
    outcome: &Outcome,
    attempt: Attempt,
    config: &Config,
    now_ms: u64,
    rng: &mut Rng,
) -> Decision {
    let mut hold_until = None;
    let step = match format.verdict(outcome) {
        Verdict::Delivered => Step::Delivered,
        Verdict::Partial { status, rejected } => Step::Partial {
            status,
            rejected: rejected.min(attempt.events as u64) as usize,
        },
        Verdict::Split(status) if attempt.events <= 1 => Step::Reject(DropReason::Rejected(status)),
        // Bisection: a batch of n events with k refused ones costs at most 2·k·⌈log2 n⌉ extra
        // requests, and never more than 2·(n − 1).
        Verdict::Split(_) => Step::Split,
        Verdict::Reject(status) => Step::Reject(DropReason::Rejected(status)),
        Verdict::Retry => {
            if let Outcome::Response {
                retry_after: Some(ra),
                ..
            } = outcome
            {
                hold_until = Some(ra.deadline(now_ms));
            }
            if attempt.sends >= config.max_attempts {
                Step::Reject(DropReason::AttemptsExhausted)
            } else {
                // Drawn only when used, so one seed gives one sequence of uuids and delays.
                Step::Retry(hold_until.unwrap_or_else(|| {
                    let ceiling = backoff_ceiling(
                        attempt.sends,
                        config.initial_backoff_ms,
                        config.max_backoff_ms,
                    );
                    now_ms + rng.up_to(ceiling)
                }))
            }
        }
    };
    Decision { step, hold_until }
}

/// The ceiling of the random delay before attempt `attempt + 1`, after `attempt` failures:
/// `initial * 2^(attempt-1)`, capped at `max` ("full jitter" draws uniformly below it).
fn backoff_ceiling(attempt: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let shift = attempt.saturating_sub(1).min(32);
    initial_ms.saturating_mul(1u64 << shift).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{OtlpLogs, PostHogBatch};

    const NOW: u64 = 1_700_000_000_000;

    /// The defaults: 10 attempts, backoff from 1 s doubling up to 30 s.
    fn config() -> Config {
        Config::new("https://collector.example/batch/")
    }

    /// What becomes of a first attempt of `events` events answered with `outcome`, by
    /// PostHog's rules and the default config.
    fn after(outcome: Outcome, events: usize) -> Decision {
        let attempt = Attempt { sends: 1, events };
        decide_with(&outcome, attempt, &config())
    }

    fn decide_with(outcome: &Outcome, attempt: Attempt, config: &Config) -> Decision {
        let format = PostHogBatch::new("phc_test");
        decide(&format, outcome, attempt, config, NOW, &mut Rng::new(1))
    }

    /// The waits before the next send after `sends` failed sends (503, no `Retry-After`),
    /// over many draws.
    fn waits_after(sends: u32, config: &Config, draws: u64) -> Vec<u64> {
        let mut rng = Rng::new(sends.into());
        let format = PostHogBatch::new("phc_test");
        let attempt = Attempt { sends, events: 5 };
        (0..draws)
            .map(|_| {
                match decide(
                    &format,
                    &Outcome::status(503),
                    attempt,
                    config,
                    NOW,
                    &mut rng,
                )
                .step
                {
                    Step::Retry(at) => at - NOW,
                    other => panic!("not a retry: {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn an_accepted_batch_is_delivered_and_holds_nothing_back() {
        for status in [200, 202, 204] {
            let d = after(Outcome::status(status), 10);
            assert_eq!(d.step, Step::Delivered, "{status}");
            assert_eq!(d.hold_until, None);
        }
    }

    #[test]
    fn a_failed_send_waits_a_random_time_below_a_ceiling_that_doubles_up_to_max_backoff() {
        let c = config();
        for (sends, ceiling) in [(1, 1000), (2, 2000), (3, 4000), (5, 16_000), (6, 30_000)] {
            let waits = waits_after(sends, &c, 2000);
            let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
            assert!(*hi <= ceiling, "after {sends}: waited {hi} > {ceiling}");
            // Full jitter: the whole range is used, so retries of many clients spread out.
            assert!(*lo < ceiling / 10, "after {sends}: never under {lo}");
            assert!(*hi > ceiling * 9 / 10, "after {sends}: never over {hi}");
        }
        // Far past the cap it stays at maxBackoffMs.
        assert!(waits_after(9, &c, 500).iter().all(|&w| w <= 30_000));
    }

    #[test]
    fn every_failure_a_collector_may_recover_from_is_retried() {
        let retried = [
            Outcome::status(408),
            Outcome::status(429),
            Outcome::status(500),
            Outcome::status(503),
            Outcome::NetworkError("connection reset".into()),
            Outcome::Timeout,
        ];
        for outcome in retried {
            let d = after(outcome.clone(), 3);
            assert!(
                matches!(d.step, Step::Retry(at) if (NOW..=NOW + 1000).contains(&at)),
                "{outcome:?}: {d:?}"
            );
            assert_eq!(d.hold_until, None, "{outcome:?}");
        }
    }

    #[test]
    fn a_retry_after_is_waited_out_exactly_and_holds_every_batch_of_the_endpoint() {
        let d = after(Outcome::retry_after(429, RetryAfter::Delay(2000)), 3);
        assert_eq!(d.step, Step::Retry(NOW + 2000));
        assert_eq!(d.hold_until, Some(NOW + 2000));
        // As an HTTP-date, and on a 503 too.
        let date = RetryAfter::At(NOW + 7000);
        let d = after(Outcome::retry_after(503, date), 3);
        assert_eq!(
            (d.step, d.hold_until),
            (Step::Retry(NOW + 7000), Some(NOW + 7000))
        );
        // `Retry-After: 0` means at once, not a backoff.
        let d = after(Outcome::retry_after(503, RetryAfter::Delay(0)), 3);
        assert_eq!(d.step, Step::Retry(NOW));
    }

    #[test]
    fn a_retry_after_of_a_day_silences_the_exporter_for_five_minutes_at_most() {
        let day = RetryAfter::Delay(24 * 3600 * 1000);
        let d = after(Outcome::retry_after(429, day), 3);
        assert_eq!(d.step, Step::Retry(NOW + MAX_RETRY_AFTER_MS));
        assert_eq!(d.hold_until, Some(NOW + MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn after_max_attempts_the_batch_is_dropped_as_exhausted_and_a_retry_after_still_holds() {
        let mut c = config();
        c.max_attempts = 3;
        let last = Attempt {
            sends: 3,
            events: 4,
        };
        let d = decide_with(&Outcome::status(503), last, &c);
        assert_eq!(d.step, Step::Reject(DropReason::AttemptsExhausted));
        let d = decide_with(
            &Outcome::retry_after(429, RetryAfter::Delay(9000)),
            last,
            &c,
        );
        assert_eq!(d.step, Step::Reject(DropReason::AttemptsExhausted));
        assert_eq!(
            d.hold_until,
            Some(NOW + 9000),
            "the other batches still wait"
        );
        // One send short of the limit, it is still retried.
        let second = Attempt { sends: 2, ..last };
        assert!(matches!(
            decide_with(&Outcome::status(503), second, &c).step,
            Step::Retry(_)
        ));
    }

    #[test]
    fn a_body_refused_as_a_whole_is_split_and_a_lone_refused_event_is_dropped() {
        for status in [400, 413] {
            assert_eq!(after(Outcome::status(status), 8).step, Step::Split);
            assert_eq!(
                after(Outcome::status(status), 1).step,
                Step::Reject(DropReason::Rejected(status))
            );
        }
    }

    #[test]
    fn a_final_status_drops_the_batch_at_once_even_with_a_retry_after() {
        for status in [401, 403, 404, 422] {
            let d = after(Outcome::status(status), 5);
            assert_eq!(d.step, Step::Reject(DropReason::Rejected(status)));
        }
        let d = after(Outcome::retry_after(401, RetryAfter::Delay(5000)), 5);
        assert_eq!(d.step, Step::Reject(DropReason::Rejected(401)));
        assert_eq!(d.hold_until, None);
    }

    #[test]
    fn an_otlp_collector_is_judged_by_the_otlp_rules() {
        let otlp = OtlpLogs::new("checkout");
        let c = config();
        let first = Attempt {
            sends: 1,
            events: 5,
        };
        let step =
            |outcome: Outcome| decide(&otlp, &outcome, first, &c, NOW, &mut Rng::new(1)).step;
        // 500 is final for OTLP (PostHog retries it); 502 is retried.
        assert_eq!(
            step(Outcome::status(500)),
            Step::Reject(DropReason::Rejected(500))
        );
        assert!(matches!(step(Outcome::status(502)), Step::Retry(_)));
        let partial = |rejected: &str| Outcome::Response {
            status: 200,
            retry_after: None,
            body: Some(format!(
                r#"{{"partialSuccess":{{"rejectedLogRecords":"{rejected}"}}}}"#
            )),
        };
        assert_eq!(
            step(partial("2")),
            Step::Partial {
                status: 200,
                rejected: 2
            }
        );
        // A collector claiming more refusals than events sent refuses them all, no more.
        assert_eq!(
            step(partial("99")),
            Step::Partial {
                status: 200,
                rejected: 5
            }
        );
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date_both_parse() {
        assert_eq!(RetryAfter::parse("2"), Some(RetryAfter::Delay(2000)));
        assert_eq!(RetryAfter::parse(" 0 "), Some(RetryAfter::Delay(0)));
        assert_eq!(
            RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(RetryAfter::At(784_111_777_000))
        );
        for bad in ["", "-1", "1.5", "soon", "2 s"] {
            assert_eq!(RetryAfter::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_is_capped_and_a_past_date_means_now() {
        let now = 1_000_000_000_000;
        assert_eq!(RetryAfter::Delay(2000).deadline(now), now + 2000);
        assert_eq!(
            RetryAfter::parse("99999999999999999999")
                .unwrap()
                .deadline(now),
            now + MAX_RETRY_AFTER_MS
        );
        assert_eq!(RetryAfter::At(now - 5).deadline(now), now);
        assert_eq!(RetryAfter::At(now + 3000).deadline(now), now + 3000);
        assert_eq!(
            RetryAfter::At(u64::MAX).deadline(now),
            now + MAX_RETRY_AFTER_MS
        );
    }

    #[test]
    fn statuses_map_to_delivered_retried_split_or_rejected() {
        let v = |s| Verdict::posthog(&Outcome::status(s));
        assert_eq!(v(200), Verdict::Delivered);
        assert_eq!(v(204), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(v(s), Verdict::Retry, "{s}");
        }
        assert_eq!(v(413), Verdict::Split(413));
        assert_eq!(v(400), Verdict::Split(400));
        for s in [301, 401, 403, 404, 422] {
            assert_eq!(v(s), Verdict::Reject(s), "{s}");
        }
        assert_eq!(Verdict::posthog(&Outcome::Timeout), Verdict::Retry);
        assert_eq!(
            Verdict::posthog(&Outcome::NetworkError("reset".into())),
            Verdict::Retry
        );
    }

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let c: Vec<u64> = (1..=7).map(|a| backoff_ceiling(a, 1000, 30_000)).collect();
        assert_eq!(c, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
        assert_eq!(backoff_ceiling(200, 1000, 30_000), 30_000);
    }
}
