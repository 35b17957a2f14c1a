//! [`EdgeConfig`]: how the edge coalesces, with its defaults and its bounds. This is the one
//! place either is written: `edge.js` and the wasm shell read and check the options through it.

use crate::engine::json::write_u64;
use crate::engine::{BatchMode, Config, ConfigError};

/// How long after its window is due a leading request may still not have taken it before the
/// next request leads instead (its `waitUntil` was cancelled, or its isolate is stuck), and
/// how long after its deadline a delivery may still not have ended before its events are
/// handed to the next leader. Taking is exclusive, so a late leader finds nothing to take.
pub const LEADER_GRACE_MS: u64 = 5_000;

/// Subrequests one Worker request may make on Cloudflare's free plan: every batch and every
/// retry of a window counts against its leading request.
pub const FREE_PLAN_SUBREQUESTS: u32 = 50;

/// Subrequests one Worker request may make on Cloudflare's paid plans: the most
/// `subrequest_limit` may be.
const PAID_PLAN_SUBREQUESTS: u32 = 1_000;

/// How long a window's delivery may run after the window when no `deadline_ms` is given.
/// Cloudflare keeps `waitUntil` work alive for about 30 s after the response; the window and
/// the last 4 s are a margin for aborting what is abandoned and logging it.
pub const DEFAULT_DEADLINE_MS: u64 = 25_000;

/// The shortest deadline: the shortest `requestTimeoutMs`, so that one request can be waited for.
const MIN_DEADLINE_MS: u64 = 100;

/// How long Cloudflare keeps `waitUntil` work alive after the response. The window and the
/// deadline must fit in it: past it the runtime cancels the work, and events not yet
/// delivered would be lost without being counted or logged.
const WAIT_UNTIL_MS: u64 = 30_000;

/// How the edge coalesces: the exporter's config for every window's delivery, and the edge's
/// own settings. [`EdgeConfig::new`] gives the defaults, [`EdgeConfig::validate`] checks every
/// bound (the coalescer refuses a config it does not pass).
///
/// # Example
/// ```
/// use spool::engine::{Config, EdgeConfig};
/// let mut exporter = Config::new("https://collector.example/batch/");
/// exporter.api_key = "phc_test".into();
/// let mut edge = EdgeConfig::new(exporter);
/// assert_eq!((edge.event_name.as_str(), edge.deadline_ms), ("http_request", 25_000));
/// // The batching window (flushIntervalMs, 1 s) and the deadline must fit in waitUntil's 30 s.
/// edge.deadline_ms = 29_500;
/// let e = edge.validate().unwrap_err();
/// assert_eq!(e.field, "deadlineMs");
/// assert!(e.message.ends_with("at most 29000 (got 29500)"));
/// ```
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The config of each window's [`Engine`](crate::engine::Engine). Its batch mode sets the
    /// window: in `linger` mode, `flush_interval_ms`; in `auto` and `off`, none (each event
    /// goes at once).
    pub exporter: Config,
    /// `eventName`: the name of every event. Default `"http_request"`.
    pub event_name: String,
    /// `deadlineMs`: how long a window's delivery may run after the window before what is
    /// left is abandoned (counted as dropped `shutdown`). Default [`DEFAULT_DEADLINE_MS`], 100
    /// to 30,000, and with the window at most 30,000.
    pub deadline_ms: u64,
    /// See [`LEADER_GRACE_MS`] (the default).
    pub leader_grace_ms: u64,
    /// `subrequestLimit`: requests (batches and retries) one window's delivery may make: its
    /// leader's subrequests. Default [`FREE_PLAN_SUBREQUESTS`], 1 to 1,000 (the paid plans').
    pub subrequest_limit: u32,
}

impl EdgeConfig {
    /// The defaults around `exporter`: events named `http_request`, [`DEFAULT_DEADLINE_MS`],
    /// [`LEADER_GRACE_MS`], [`FREE_PLAN_SUBREQUESTS`].
    pub fn new(exporter: Config) -> EdgeConfig {
        EdgeConfig {
            exporter,
            event_name: "http_request".into(),
            deadline_ms: DEFAULT_DEADLINE_MS,
            leader_grace_ms: LEADER_GRACE_MS,
            subrequest_limit: FREE_PLAN_SUBREQUESTS,
        }
    }

    /// How long a window lasts: `flush_interval_ms` in `linger` mode, else 0.
    pub fn window_ms(&self) -> u64 {
        match self.exporter.batch_mode {
            BatchMode::Linger => self.exporter.flush_interval_ms,
            _ => 0,
        }
    }

    /// Checks the exporter's config and the edge's own settings; the error names the option
    /// as JavaScript spells it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.exporter.validate()?;
        if self.event_name.is_empty() {
            return Err(ConfigError::new("eventName", "must not be empty".into()));
        }
        within(
            "deadlineMs",
            self.deadline_ms,
            MIN_DEADLINE_MS,
            WAIT_UNTIL_MS,
        )?;
        within(
            "subrequestLimit",
            self.subrequest_limit.into(),
            1,
            PAID_PLAN_SUBREQUESTS.into(),
        )?;
        let window = self.window_ms();
        if window.saturating_add(self.deadline_ms) > WAIT_UNTIL_MS {
            return Err(ConfigError::new(
                "deadlineMs",
                words(&[
                    Word::Text("must leave the batching window (flushIntervalMs "),
                    Word::Number(window),
                    Word::Text(") within waitUntil's "),
                    Word::Number(WAIT_UNTIL_MS),
                    Word::Text(" ms: at most "),
                    Word::Number(WAIT_UNTIL_MS.saturating_sub(window)),
                    Word::Text(" (got "),
                    Word::Number(self.deadline_ms),
                    Word::Text(")"),
                ]),
            ));
        }
        Ok(())
    }
}

/// `field` is from `min` to `max`, or the error says so as the exporter's own bounds do.
fn within(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let message = words(&[
        Word::Text("must be from "),
        Word::Number(min),
        Word::Text(" to "),
        Word::Number(max),
        Word::Text(" (got "),
        Word::Number(value),
        Word::Text(")"),
    ]);
    Err(ConfigError::new(field, message))
}

/// A piece of an error message.
enum Word {
    Text(&'static str),
    Number(u64),
}

/// The message `parts` spell, without the formatting machinery (which the wasm leaves out).
fn words(parts: &[Word]) -> String {
    let mut m = String::new();
    for part in parts {
        match part {
            Word::Text(text) => m.push_str(text),
            Word::Number(n) => write_u64(&mut m, *n),
        }
    }
    m
}
