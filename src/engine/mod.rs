//! The sans-IO engine: every decision about what to send and when, with no clock and no I/O.
//!
//! The caller (a shell) feeds inputs and drains outputs, in the manner of quinn-proto:
//!
//! - inputs: [`Engine::capture`], [`Engine::handle_timeout`], [`Engine::handle_outcome`],
//!   [`Engine::page_hidden`], [`Engine::page_visible`], [`Engine::flush`], [`Engine::shutdown`];
//! - outputs: [`Engine::poll_transmit`] (requests to send now), [`Engine::poll_timeout`] (when
//!   to call `handle_timeout` next), [`Engine::poll_notice`] (flushes completed, requests to
//!   abort, warnings).
//!
//! After every input, the shell drains `poll_transmit` until `None`, drains `poll_notice`, and
//! arms its one timer at `poll_timeout`. Time is always an argument: ms since the Unix epoch.
//!
//! # Example
//! ```
//! use spool::engine::{Config, Engine, EventInput, Outcome};
//! let now = 1_700_000_000_000;
//! let mut config = Config::new("https://collector.example/batch/");
//! config.api_key = "phc_test".into();
//! let mut engine = Engine::new(config, 42).unwrap();
//! engine.capture(EventInput::new("signup").properties(r#"{"plan":"pro"}"#), now).unwrap();
//! assert!(engine.poll_transmit(now).is_none()); // lingering
//! let wake = engine.poll_timeout().unwrap();
//! engine.handle_timeout(wake);
//! let t = engine.poll_transmit(wake).unwrap();
//! assert!(t.body.contains(r#""event":"signup""#));
//! engine.handle_outcome(t.id, Outcome::status(200), wake + 40);
//! assert_eq!(engine.stats().delivered, 1);
//! ```

mod batch;
mod capture;
mod config;
mod edge;
mod event;
mod flush;
mod format;
mod gzip;
mod health;
pub mod json;
mod ledger;
mod otlp;
mod page_close;
mod persist;
mod queue;
mod retry;
mod rng;
pub mod sanitize;
mod scheduler;
mod shutdown;
mod stats;
pub mod time;
mod timer;

pub use config::{
    BatchMode, Compression, Config, ConfigError, Format, DEFAULT_SERVICE_NAME, MAX_API_KEY_LEN,
};
pub use edge::{
    CoalesceStats, Coalescer, EdgeConfig, RequestId, WindowId, WindowReport, DEFAULT_DEADLINE_MS,
    FREE_PLAN_SUBREQUESTS, LEADER_GRACE_MS,
};
pub use event::{CaptureError, EventInput, Uuid};
pub use flush::{FlushId, FlushReport};
pub use format::{
    ConfiguredFormat, EventRecord, PostHogBatch, WireFormat, POSTHOG_MAX_PROPERTIES_DEPTH,
};
pub use otlp::{rejected_log_records, OtlpLogs, OTLP_MAX_PROPERTIES_DEPTH};
pub use page_close::{
    PageHideReport, KEEPALIVE_BODY_BYTES, KEEPALIVE_MAX_REQUESTS, KEEPALIVE_QUOTA_BYTES,
};
pub use persist::{
    claimable as stored_copy_claimable, deflated as stored_copy_deflated, PERSIST_LIVE_MS,
    PERSIST_MAX_AGE_MS, PERSIST_MAX_BYTES, RESTORE_AGAIN_MS,
};
pub use retry::{Outcome, RetryAfter, Verdict, MAX_RETRY_AFTER_MS};
pub use rng::Rng;
pub use stats::{DropReason, Dropped, Stats};
pub use timer::Timer;

use batch::Batch;
use ledger::Ledger;
use queue::Queue;
use shutdown::Shutdown;
use timer::TimerTable;

/// Names one request (one attempt of one batch). A retry gets a new id, so a late answer to
/// an abandoned attempt is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransmitId(pub u64);

/// Names one batch of events across its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// How a [`Transmit`] leaves the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// An ordinary `fetch`, answered.
    Ordinary,
    /// A `fetch` with `keepalive: true`: it outlives the page, within the browser's 64 KiB
    /// budget ([`KEEPALIVE_QUOTA_BYTES`]), without the user's headers (no preflight).
    Keepalive,
    /// `navigator.sendBeacon` as the page goes away: never answered. Report at once
    /// [`Outcome::Accepted`] or [`Outcome::Refused`], as the browser's return value says.
    Beacon,
}

/// A request the shell must send now: `POST` `body` to the configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Report the outcome under this id.
    pub id: TransmitId,
    /// The batch this is an attempt of.
    pub batch: BatchId,
    /// The body, with `sent_at` stamped at the time passed to `poll_transmit`.
    pub body: String,
    /// `body` gzipped by the engine: send these bytes instead where there are some, with
    /// `Content-Encoding: gzip` if the format needs it ([`WireFormat::gzip_needs_header`]).
    /// Only page-hide requests (keepalive and beacons) with `compression: "gzip"` have them:
    /// they must leave in the page's last task, and gzip carries about ten times the events
    /// through the browser's keepalive budget. If the bytes cannot go (no keepalive fetch and
    /// a format that needs the header), `body` goes plain.
    pub gzipped: Option<Vec<u8>>,
    /// The format says gzip with `Content-Encoding: gzip` ([`WireFormat::gzip_needs_header`]):
    /// a gzipped body of it must carry that header, so it cannot go by `sendBeacon`.
    pub gzip_header: bool,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
    /// How it leaves the page.
    pub path: Path,
    /// Read a 2xx answer's body and hand it back in [`Outcome::Response`] (an OTLP
    /// `partialSuccess`); otherwise the body is only drained.
    pub read_body: bool,
    /// Events in the body.
    pub events: usize,
    /// 1 for a first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
}

impl Transmit {
    /// The bytes that go on the wire: the gzipped body's where there is one.
    pub fn wire_len(&self) -> usize {
        self.gzipped.as_ref().map_or(self.body.len(), Vec::len)
    }
}

/// How events settled, in a [`Notice::Settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The collector acknowledged them.
    Delivered,
    /// They were given up, for this reason.
    Dropped(DropReason),
}

/// Something the shell should know or do, drained with [`Engine::poll_notice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A flush's events have all settled: resolve the caller's promise.
    FlushComplete(FlushReport),
    /// `shutdown` finished: everything was delivered, dropped or abandoned.
    ShutdownComplete {
        /// Events abandoned at the deadline.
        abandoned: u64,
    },
    /// Stop the request with this id (timed out, or abandoned at shutdown); its outcome, if
    /// any arrives, is ignored.
    Abort(TransmitId),
    /// The queue just filled up and events are being dropped; emitted once per episode (again
    /// only after the queue has drained).
    QueueOverflow {
        /// The `maxQueueEvents` in force.
        max_events: usize,
        /// The `maxQueueBytes` in force.
        max_bytes: usize,
    },
    /// Events settled (only with [`Engine::report_settlements`] on).
    Settled {
        /// How.
        settlement: Settlement,
        /// Which events.
        uuids: Vec<Uuid>,
    },
}

/// The exporter's policy as a state machine. See the [module docs](self).
///
/// Generic over its [`WireFormat`]; [`Engine::new`] speaks the one the config names
/// ([`ConfiguredFormat`]).
///
/// This is the engine's face: its state and its public methods. The work is done by the
/// parts, each in its own file: `capture` takes events in, `scheduler` decides what goes when
/// and handles the timers, `batch` sends and answers batches, `ledger` counts what is held and
/// in flight, `page_close` handles the page going away, `shutdown` the end.
#[derive(Debug)]
pub struct Engine<F: WireFormat = ConfiguredFormat> {
    config: Config,
    format: F,
    distinct_id: String,
    rng: Rng,
    queue: Queue,
    /// Batches waiting to retry or in flight, oldest first.
    batches: Vec<Batch>,
    /// Page-hide transmits built but not yet handed out.
    ready: std::collections::VecDeque<Transmit>,
    next_seq: u64,
    next_batch: u64,
    next_transmit: u64,
    next_flush: u64,
    /// Events and bytes held and in flight, and the counters.
    ledger: Ledger,
    /// No request leaves before this (the endpoint's `Retry-After`).
    gate_until: u64,
    /// What the collector's last answer said of it: whether a beacon may go, and count.
    health: health::Health,
    /// Queued events with a sequence below this go without lingering (a flush asked).
    force_mark: u64,
    hidden: bool,
    /// `navigator.onLine` was false: a failed attempt is not spent against `maxAttempts`.
    offline: bool,
    /// The page went away (`pagehide`): nothing more is sent until it is shown again.
    gone: bool,
    /// Events with a sequence below this were in the last stored copy ([`Engine::persist`]).
    persisted_below: u64,
    /// [`Engine::deflate_stored_copy`].
    deflate_stored: bool,
    /// Events with a sequence below this were taken in by another load: never stored again.
    persist_from: u64,
    shutdown: Option<Shutdown>,
    overflow_warned: bool,
    report_settlements: bool,
    /// Where `capture` encodes, kept to save an allocation per event.
    scratch: String,
    flushes: flush::FlushTracker,
    notices: std::collections::VecDeque<Notice>,
    timers: TimerTable,
}

impl Engine {
    /// An engine speaking the format the config names (`format`: PostHog's batch API or OTLP
    /// logs), its randomness (uuids, jitter) seeded with `seed`. Fails if the config is out of
    /// range.
    pub fn new(config: Config, seed: u64) -> Result<Engine, ConfigError> {
        let format = ConfiguredFormat::of(&config);
        Engine::with_format(config, format, seed)
    }
}

impl<F: WireFormat> Engine<F> {
    /// An engine speaking another wire format.
    pub fn with_format(config: Config, format: F, seed: u64) -> Result<Engine<F>, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let distinct_id = match &config.distinct_id {
            Some(id) => id.clone(),
            None => {
                let mut id = String::with_capacity(36);
                Uuid::new_v7(0, &mut rng).write(&mut id);
                id
            }
        };
        Ok(Engine {
            config,
            format,
            distinct_id,
            rng,
            queue: Queue::default(),
            batches: Vec::new(),
            ready: Default::default(),
            next_seq: 0,
            next_batch: 0,
            next_transmit: 0,
            next_flush: 0,
            ledger: Ledger::default(),
            gate_until: 0,
            health: Default::default(),
            force_mark: 0,
            hidden: false,
            offline: false,
            gone: false,
            persisted_below: 0,
            deflate_stored: true,
            persist_from: 0,
            shutdown: None,
            overflow_warned: false,
            report_settlements: false,
            scratch: String::new(),
            flushes: Default::default(),
            notices: Default::default(),
            timers: TimerTable::default(),
        })
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The distinct id events get when a capture names none.
    pub fn distinct_id(&self) -> &str {
        &self.distinct_id
    }

    /// Turns [`Notice::Settled`] on or off (off by default: it costs an allocation per batch,
    /// and only tests and debugging tools read it).
    pub fn report_settlements(&mut self, on: bool) {
        self.report_settlements = on;
    }

    /// Queues an event captured at `now_ms`; returns its uuid.
    ///
    /// The event is encoded here, once. It is refused, with the reason, if it is malformed,
    /// alone larger than `maxBatchBytes` (counted as dropped `tooLarge`), if the queue is full
    /// (counted as dropped `queueFull`), or after `shutdown`.
    pub fn capture(&mut self, event: EventInput<'_>, now_ms: u64) -> Result<Uuid, CaptureError> {
        if let Some(p) = event.properties {
            json::validate_object(p).map_err(CaptureError::InvalidProperties)?;
        }
        self.capture_json(event, now_ms)
    }

    /// [`capture`](Engine::capture) for properties that are known to be one JSON object, such
    /// as what `JSON.stringify` made of an object: they are not checked again. The browser
    /// shell captures this way; properties that are not a JSON object would make the
    /// collector refuse the whole batch (dropped as `rejected`).
    pub fn capture_json(
        &mut self,
        event: EventInput<'_>,
        now_ms: u64,
    ) -> Result<Uuid, CaptureError> {
        self.enqueue(event, now_ms)
    }

    /// The next request to send at `now_ms`, if any. Drain until `None` after every input.
    #[must_use = "a transmit taken and not sent is never answered: its events wait for the request timeout"]
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        if let Some(t) = self.ready.pop_front() {
            return Some(t);
        }
        let plan = self.plan()?;
        if plan.at > now_ms {
            return None;
        }
        let t = self.send(plan, now_ms);
        self.rearm();
        Some(t)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (ms since the epoch), if
    /// anything is waiting on time. Valid after `poll_transmit` has been drained.
    #[must_use = "nothing that waits on time (linger, backoff, Retry-After, request timeouts, the shutdown deadline) happens unless a timer calls `handle_timeout` then"]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_timeout()
    }

    /// The next thing the shell should know or do.
    #[must_use = "a notice taken is gone: a flush or shutdown it completes is never resolved, a request it aborts keeps running"]
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// Time has reached `now_ms`: expire requests in flight past `requestTimeoutMs` (each gets
    /// a [`Notice::Abort`] and counts as a failed attempt) and enforce the shutdown deadline.
    /// Lingering, backoff and `Retry-After` need nothing here: `poll_transmit` sees the time.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.fire_timers(now_ms);
    }

    /// The request `id` ended with `outcome` at `now_ms`. Returns `false` (and changes
    /// nothing) if `id` is not in flight: unknown, already timed out, or abandoned.
    pub fn handle_outcome(&mut self, id: TransmitId, outcome: Outcome, now_ms: u64) -> bool {
        self.answer(id, outcome, now_ms)
    }

    /// The page is being hidden or closed: from now until [`page_visible`](Self::page_visible),
    /// everything held goes at once (no lingering, no backoff; `Retry-After` still holds), as
    /// keepalive requests while they fit the browser's 64 KiB budget, then as ordinary
    /// requests as `maxInFlight` allows. The keepalive requests are ready in `poll_transmit`.
    pub fn page_hidden(&mut self, now_ms: u64) -> PageHideReport {
        self.hide(now_ms)
    }

    /// The page is going away (`pagehide`): as [`page_hidden`](Self::page_hidden), and first
    /// the ordinary requests in flight are given up (each gets a [`Notice::Abort`]) and their
    /// batches go again on the page-hide path (keepalive, then beacons), their attempts
    /// unspent. A browser ends a page's ordinary requests as it leaves (Chromium as the next
    /// page commits); keepalive requests and beacons outlive it. A request given up may have
    /// reached the collector already, so its events may arrive twice (at-least-once, as for
    /// any request unanswered at unload).
    pub fn page_leaving(&mut self, now_ms: u64) -> PageHideReport {
        self.rescue_ordinary();
        self.hide(now_ms)
    }

    /// The page has gone away (after `pagehide`'s keepalive requests and beacons): nothing
    /// more is sent, not even a retry of a keepalive request that fails while the page
    /// unloads. Such a failure means "unknown", not "lost" (Chromium rejected keepalive
    /// requests at unload that the collector still received: bench/PAGEHIDE.md, finding 7),
    /// and the events are already stored for the next load. [`page_visible`](Self::page_visible)
    /// (a back/forward-cache restore) undoes it.
    pub fn page_gone(&mut self, now_ms: u64) {
        self.gone = true;
        self.after_change(now_ms);
    }

    /// The page is visible again: back to the configured batching.
    pub fn page_visible(&mut self, now_ms: u64) {
        self.hidden = false;
        self.gone = false;
        for b in &mut self.batches {
            b.failed_hidden = false;
            b.keepalive_unknown = false;
        }
        self.after_change(now_ms);
    }

    /// The next body for `navigator.sendBeacon` while the page is going away (`pagehide`),
    /// if anything held is not already in flight. Bodies are at most
    /// [`KEEPALIVE_BODY_BYTES`]. A beacon is not counted against the keepalive budget, and the
    /// shell offers bodies until the browser refuses one: Chromium counts beacons against its
    /// 64 KiB keepalive quota, Firefox has no such limit (bench/PAGEHIDE.md, findings 1 and
    /// 4), and only the browser's answer tells which. Report an accepted beacon as
    /// [`Outcome::Accepted`] to [`handle_outcome`](Self::handle_outcome), a refused one to
    /// [`beacon_refused`](Self::beacon_refused).
    ///
    /// The browser accepts a beacon whatever the collector does with it, so none goes while
    /// the collector's last answer was a failure, a `Retry-After` holds, or the page is
    /// offline: those events stay held, and so stored for the next load. An accepted beacon
    /// counts as delivered only if the last answer before it was a success; with no answer
    /// yet, its events stay held too (they may arrive twice: at-least-once).
    pub fn poll_beacon(&mut self, now_ms: u64) -> Option<Transmit> {
        let beacon = self.next_beacon(now_ms);
        self.check_ledger();
        beacon
    }

    /// The browser refused the beacon `id`: its events wait again, the attempt unspent.
    pub fn beacon_refused(&mut self, id: TransmitId, now_ms: u64) {
        self.unsend_beacon(id, now_ms);
    }

    /// `navigator.onLine` changed. While offline, an attempt that fails (network error or
    /// timeout) is not spent against `maxAttempts`; back online, every batch waiting to retry
    /// goes at once.
    pub fn set_online(&mut self, online: bool, now_ms: u64) {
        let was_offline = self.offline;
        self.offline = !online;
        if online && was_offline {
            self.end_backoffs(now_ms);
        }
        self.after_change(now_ms);
    }

    /// Whether the engine was last told it is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Events held: queued, waiting to retry or in flight.
    pub fn held_events(&self) -> usize {
        self.ledger.held_events()
    }

    /// What to store so that the next load can send it: every held event the collector has
    /// not acknowledged, in flight ones included (their answer may never come), oldest first,
    /// within `persistMaxBytes` (default [`PERSIST_MAX_BYTES`]); `None` when nothing is held (remove the stored text).
    /// Returns the text and the number of events it holds. The events stay held here: this is
    /// a copy, and if the page comes back (a back/forward-cache restore) the shell removes it.
    ///
    /// Events of an earlier copy that another load took in (see
    /// [`stored_copy_taken`](Self::stored_copy_taken)) are left out: that load sends them.
    ///
    /// Written at `now_ms`: until [`PERSIST_LIVE_MS`] later the copy stays this page's (see
    /// [`stored_copy_claimable`]), unless the page is gone ([`page_gone`](Self::page_gone)).
    pub fn persist(&mut self, now_ms: u64) -> Option<(String, usize)> {
        self.stored_text(now_ms)
    }

    /// The copy [`persist`](Self::persist) last made was taken in by another load (another
    /// tab's exporter claimed it): its events are that load's to send now, and are never
    /// stored again from here, so that no later copy hands them to a third load. They stay
    /// held here too (at-least-once).
    pub fn stored_copy_taken(&mut self) {
        self.persist_from = self.persisted_below;
    }

    /// Takes in the text an earlier load stored (see [`persist`](Self::persist)): its events go
    /// before anything captured here, as soon as a request slot is free, each with its uuid
    /// and capture timestamp (a fresh `sent_at`). Events older than [`PERSIST_MAX_AGE_MS`], and
    /// those the earlier write left out, are counted as dropped `persistCap`; lines that are
    /// not readable are counted in `stats().storageErrors`. Events beyond the queue's limits
    /// are dropped as `queueFull`. Returns the events taken in.
    ///
    /// A text whose events are deflated ([`stored_copy_deflated`] gives their bytes) needs
    /// them inflated: pass what they inflated to as `inflated` (`None` if they would not
    /// inflate: the copy is counted in `storageErrors`). A plain text needs nothing.
    pub fn restore(&mut self, text: &str, inflated: Option<&str>, now_ms: u64) -> usize {
        self.take_in(text, inflated, now_ms)
    }

    /// Whether [`persist`](Self::persist) deflates the events it stores (true by default):
    /// the host reading them back must inflate raw deflate ([`restore`](Self::restore)). A
    /// host that cannot (a browser without `DecompressionStream("deflate-raw")`) sets false
    /// and gets plain copies, which hold about a seventh as many events in
    /// `persistMaxBytes`.
    pub fn deflate_stored_copy(&mut self, deflate: bool) {
        self.deflate_stored = deflate;
    }

    /// A storage read or write failed (it threw, the quota is full, storage is disabled):
    /// counted in `stats().storageErrors`.
    pub fn storage_failed(&mut self) {
        self.ledger.stats.storage_errors += 1;
    }

    /// Sends everything captured so far without lingering. The returned id comes back in a
    /// [`Notice::FlushComplete`] once every event captured before this call is delivered or
    /// dropped; later captures and other flushes do not delay it.
    pub fn flush(&mut self, now_ms: u64) -> FlushId {
        let id = FlushId(self.next_flush);
        self.next_flush += 1;
        self.force_mark = self.next_seq;
        if let Some(report) = self
            .flushes
            .open(id, self.next_seq, self.ledger.held_events() as u64)
        {
            self.notices.push_back(Notice::FlushComplete(report));
        }
        self.after_change(now_ms);
        id
    }

    /// Stops taking events and sends everything held; at `deadline_ms` abandons what is left
    /// (counted as dropped `shutdown`, requests in flight aborted). Completes with
    /// [`Notice::ShutdownComplete`], early if nothing could be sent before the deadline anyway.
    /// A second call changes nothing.
    pub fn shutdown(&mut self, now_ms: u64, deadline_ms: u64) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(Shutdown {
            deadline: deadline_ms,
            done: false,
        });
        self.force_mark = u64::MAX;
        self.after_change(now_ms);
    }

    /// Whether `shutdown` has been called.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.ledger.snapshot()
    }

    /// Bytes of event fragments held (queued, waiting to retry, in flight); bounded by
    /// `maxQueueBytes`.
    pub fn held_bytes(&self) -> usize {
        self.ledger.held_bytes()
    }

    /// The instant before which no request may go, from the endpoint's last `Retry-After`.
    pub fn retry_after_until(&self) -> u64 {
        self.gate_until
    }

    /// Holds every request until `until_ms`, as a `Retry-After` answered to another exporter
    /// of the same endpoint asked (the edge middleware shares one hold across the exporters
    /// of an isolate). Capped like a `Retry-After` at [`MAX_RETRY_AFTER_MS`] from `now_ms`;
    /// an earlier time than the current hold changes nothing.
    pub fn hold_until(&mut self, until_ms: u64, now_ms: u64) {
        let capped = until_ms.min(now_ms.saturating_add(MAX_RETRY_AFTER_MS));
        if capped > self.gate_until {
            self.gate_until = capped;
            self.after_change(now_ms);
        }
    }
}
