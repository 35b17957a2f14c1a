//! What a request's outcome means: delivered, retried (and when), or dropped.

use super::time::parse_http_date;

/// The longest a `Retry-After` may hold the endpoint: 5 minutes. A server naming a later time
/// (or a clock far off) is taken to mean this much, so a typo in a header cannot silence an
/// exporter for a day.
pub const MAX_RETRY_AFTER_MS: u64 = 5 * 60 * 1000;

/// How a request ended, as the shell observed it.
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
/// ([`WireFormat::verdict`](super::WireFormat::verdict)).
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
        }
    }
}

/// The ceiling of the random delay before attempt `attempt + 1`, after `attempt` failures:
/// `initial * 2^(attempt-1)`, capped at `max` ("full jitter" draws uniformly below it).
pub(crate) fn backoff_ceiling(attempt: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let shift = attempt.saturating_sub(1).min(32);
    initial_ms.saturating_mul(1u64 << shift).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

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
