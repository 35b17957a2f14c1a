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

mod coalesce;
mod config;
mod event;
mod flush;
mod format;
pub mod json;
mod otlp;
mod persist;
mod queue;
mod retry;
mod rng;
pub mod sanitize;
mod stats;
pub mod time;
mod timer;

pub use coalesce::{
    CoalesceStats, Coalescer, EdgeConfig, RequestId, WindowId, WindowReport, DEFAULT_DEADLINE_MS,
    FREE_PLAN_SUBREQUESTS, LEADER_GRACE_MS,
};
pub use config::{BatchMode, Config, ConfigError, Format, DEFAULT_SERVICE_NAME, MAX_API_KEY_LEN};
pub use event::{CaptureError, EventInput, Uuid};
pub use flush::{FlushId, FlushReport};
pub use format::{
    ConfiguredFormat, EventRecord, PostHogBatch, WireFormat, POSTHOG_MAX_PROPERTIES_DEPTH,
};
pub use otlp::{rejected_log_records, OtlpLogs, OTLP_MAX_PROPERTIES_DEPTH};
pub use persist::{
    claimable as stored_copy_claimable, PERSIST_LIVE_MS, PERSIST_MAX_AGE_MS, PERSIST_MAX_BYTES,
    RESTORE_AGAIN_MS,
};
pub use retry::{Outcome, RetryAfter, Verdict, MAX_RETRY_AFTER_MS};
pub use rng::Rng;
pub use stats::{DropReason, Dropped, Stats};
pub use timer::Timer;

use queue::{BodyLimit, Item, Queue};
use retry::Step;
use timer::TimerTable;

/// The browser's budget for keepalive request bodies in flight, per page: 64 KiB in total.
/// Fetch standard, "HTTP-network-or-cache fetch": a keepalive request whose body would take
/// the in-flight total past 64 kibibytes fails. Chromium counts `sendBeacon` against it too.
pub const KEEPALIVE_QUOTA_BYTES: usize = 64 * 1024;

/// Keepalive requests in flight at once. Chromium counts only bytes against its quota
/// (bench/PAGEHIDE.md: 8 bodies of 8 KB fit as well as one of 60 KB), so this only shapes the
/// chain: four bodies of [`KEEPALIVE_BODY_BYTES`] fill the quota.
pub const KEEPALIVE_MAX_REQUESTS: usize = 4;

/// Largest body on the page-hide path (keepalive fetch and `sendBeacon`): a quarter of the
/// quota, so four fill it and a refused body leaves room for smaller ones. Measured in
/// Chromium 156 (bench/PAGEHIDE.md): bodies of 8 to 60 KB carry the same 152–176 plain events
/// per quota, and 13 KB gzip bodies fill it better than one 52 KB one.
pub const KEEPALIVE_BODY_BYTES: usize = 16 * 1024;

/// Names one request (one attempt of one batch). A retry gets a new id, so a late answer to
/// an abandoned attempt is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransmitId(pub u64);

/// Names one batch of events across its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// A request the shell must send now: `POST` `body` to the configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Report the outcome under this id.
    pub id: TransmitId,
    /// The batch this is an attempt of.
    pub batch: BatchId,
    /// The body, with `sent_at` stamped at the time passed to `poll_transmit`.
    pub body: String,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
    /// Send with `keepalive: true` (or `sendBeacon`): the page is being hidden or closed.
    pub keepalive: bool,
    /// Events in the body.
    pub events: usize,
    /// 1 for a first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
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

/// What [`Engine::page_hidden`] put on the keepalive path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageHideReport {
    /// Keepalive requests made ready (drain them with `poll_transmit`).
    pub keepalive_requests: usize,
    /// Events in them.
    pub keepalive_events: usize,
    /// Bytes in their bodies.
    pub keepalive_bytes: usize,
    /// Events held back: they did not fit the keepalive budget, or a `Retry-After` forbids
    /// sending now. They go as ordinary requests as slots allow.
    pub left_events: usize,
}

/// A batch that left the queue: waiting to be (re)sent, or in flight.
#[derive(Debug)]
struct Batch {
    id: BatchId,
    items: Vec<Item>,
    /// Sends so far.
    attempts: u32,
    state: BatchState,
    /// A send failed at the network level while the page was hidden: until the page is
    /// visible again this batch keeps its backoff (no resending at once in a loop).
    failed_hidden: bool,
}

#[derive(Debug, Clone, Copy)]
enum BatchState {
    /// Not to be sent before this time (backoff or split); 0 for at once.
    Waiting { not_before: u64 },
    InFlight {
        transmit: TransmitId,
        deadline: u64,
        keepalive: bool,
        /// Handed to `sendBeacon`: holds no request slot.
        beacon: bool,
        body_len: usize,
    },
}

/// Keepalive bodies and requests in flight, against the browser's quota.
#[derive(Debug, Default, Clone, Copy)]
struct KeepaliveBudget {
    bytes: usize,
    requests: usize,
}

impl KeepaliveBudget {
    /// Whether a body of `len` bytes may go as keepalive now.
    fn fits(self, len: usize) -> bool {
        self.requests < KEEPALIVE_MAX_REQUESTS && self.bytes + len <= KEEPALIVE_QUOTA_BYTES
    }

    fn room(self) -> usize {
        KEEPALIVE_QUOTA_BYTES - self.bytes
    }
}

#[derive(Debug, Clone, Copy)]
struct Shutdown {
    deadline: u64,
    done: bool,
}

/// Where the next request comes from and how it goes.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Earliest time it may go.
    at: u64,
    /// The same, ignoring the endpoint's `Retry-After`.
    own_at: u64,
    source: Source,
    keepalive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Batch(usize),
    Queue,
}

/// The exporter's policy as a state machine. See the [module docs](self).
///
/// Generic over its [`WireFormat`]; [`Engine::new`] speaks the one the config names
/// ([`ConfiguredFormat`]).
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
    held_events: usize,
    held_bytes: usize,
    in_flight_events: usize,
    ordinary_in_flight: usize,
    keepalive: KeepaliveBudget,
    /// No request leaves before this (the endpoint's `Retry-After`).
    gate_until: u64,
    /// Queued events with a sequence below this go without lingering (a flush asked).
    force_mark: u64,
    hidden: bool,
    /// `navigator.onLine` was false: a failed attempt is not spent against `maxAttempts`.
    offline: bool,
    /// The page went away (`pagehide`): nothing more is sent until it is shown again.
    gone: bool,
    /// Events with a sequence below this were in the last stored copy ([`Engine::persist`]).
    persisted_below: u64,
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
    stats: Stats,
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
            held_events: 0,
            held_bytes: 0,
            in_flight_events: 0,
            ordinary_in_flight: 0,
            keepalive: KeepaliveBudget::default(),
            gate_until: 0,
            force_mark: 0,
            hidden: false,
            offline: false,
            gone: false,
            persisted_below: 0,
            persist_from: 0,
            shutdown: None,
            overflow_warned: false,
            report_settlements: false,
            scratch: String::new(),
            flushes: Default::default(),
            notices: Default::default(),
            timers: TimerTable::default(),
            stats: Stats::default(),
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
        if self.shutdown.is_some() {
            return Err(CaptureError::ShutDown);
        }
        if event.name.is_empty() {
            return Err(CaptureError::EmptyName);
        }
        let raw_properties = event.properties.unwrap_or("{}");
        // Lone surrogates are repaired and over-deep nesting refused here, so the collector's
        // parser never refuses a whole batch for this event.
        let repaired =
            sanitize::check_properties(raw_properties, self.format.max_properties_depth())
                .map_err(|e| CaptureError::TooDeep {
                    depth: e.depth,
                    max: e.max,
                })?;
        let properties = repaired.as_deref().unwrap_or(raw_properties);
        let timestamp_ms = event.timestamp_ms.unwrap_or(now_ms);
        if timestamp_ms > time::MAX_TIMESTAMP_MS {
            return Err(CaptureError::InvalidTimestamp(timestamp_ms));
        }
        let uuid = match event.uuid {
            Some(text) => Uuid::parse(text).ok_or(CaptureError::InvalidUuid)?,
            None => Uuid::new_v7(timestamp_ms, &mut self.rng),
        };
        let distinct_id = event.distinct_id.unwrap_or(&self.distinct_id);
        if sanitize::is_blank(distinct_id) {
            return Err(CaptureError::BlankDistinctId);
        }
        // Encoded into a reused buffer, then copied into an allocation of exactly its size.
        self.scratch.clear();
        self.format.write_event(
            &EventRecord {
                name: event.name,
                distinct_id,
                properties,
                timestamp_ms,
                uuid,
            },
            &mut self.scratch,
        );
        let len = self.scratch.len();
        let alone = self.format.body_len(1, len);
        if alone > self.config.max_batch_bytes {
            self.stats.dropped.add(DropReason::TooLarge, 1);
            return Err(CaptureError::TooLarge {
                bytes: alone,
                max: self.config.max_batch_bytes,
            });
        }
        if self.held_events >= self.config.max_queue_events
            || self.held_bytes + len > self.config.max_queue_bytes
        {
            self.stats.dropped.add(DropReason::QueueFull, 1);
            if !self.overflow_warned {
                self.overflow_warned = true;
                self.notices.push_back(Notice::QueueOverflow {
                    max_events: self.config.max_queue_events,
                    max_bytes: self.config.max_queue_bytes,
                });
            }
            return Err(CaptureError::QueueFull);
        }
        self.held_events += 1;
        self.held_bytes += len;
        self.queue.push(Item {
            fragment: Box::from(self.scratch.as_str()),
            uuid,
            seq: self.next_seq,
            enqueued_ms: now_ms,
        });
        self.next_seq += 1;
        self.rearm();
        Ok(uuid)
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
        if self.timers.is_expired(Timer::RequestTimeout, now_ms) {
            // A loop rather than filter_map and collect: the iterator adapter and its
            // collection cost the wasm more than this.
            let mut expired = Vec::new();
            for b in &self.batches {
                match b.state {
                    BatchState::InFlight {
                        transmit, deadline, ..
                    } if deadline <= now_ms => expired.push(transmit),
                    _ => {}
                }
            }
            for id in expired {
                self.notices.push_back(Notice::Abort(id));
                self.handle_outcome(id, Outcome::Timeout, now_ms);
            }
        }
        if self.timers.is_expired(Timer::ShutdownDeadline, now_ms) {
            self.abandon_all();
        }
        self.after_change(now_ms);
    }

    /// The request `id` ended with `outcome` at `now_ms`. Returns `false` (and changes
    /// nothing) if `id` is not in flight: unknown, already timed out, or abandoned.
    pub fn handle_outcome(&mut self, id: TransmitId, outcome: Outcome, now_ms: u64) -> bool {
        let Some(idx) = self.in_flight_index(id) else {
            return false;
        };
        self.release(idx);
        let network_failure = matches!(outcome, Outcome::NetworkError(_) | Outcome::Timeout);
        if self.offline && network_failure {
            // No network at all: this attempt says nothing about the batch.
            self.batches[idx].attempts -= 1;
        } else if self.hidden && network_failure {
            // The page is going away: a browser fails requests as it unloads (Firefox rejects
            // the old document's fetches once a navigation starts), which says nothing about
            // the batch either. Unspent, and it keeps its backoff while hidden; its events go
            // by beacon at `pagehide` or are stored for the next load.
            self.batches[idx].attempts -= 1;
            self.batches[idx].failed_hidden = true;
        }
        let attempt = retry::Attempt {
            sends: self.batches[idx].attempts,
            events: self.batches[idx].items.len(),
        };
        let decision = retry::decide(
            &self.format,
            &outcome,
            attempt,
            &self.config,
            now_ms,
            &mut self.rng,
        );
        if decision.step != Step::Delivered {
            self.stats.last_error = Some(describe(&outcome));
        }
        if let Some(until) = decision.hold_until {
            self.gate_until = self.gate_until.max(until);
        }
        match decision.step {
            Step::Delivered => self.settle(idx, Settlement::Delivered),
            Step::Reject(reason) => self.settle(idx, Settlement::Dropped(reason)),
            Step::Partial { status, rejected } => {
                let batch = &mut self.batches[idx];
                let refused = batch.items.split_off(batch.items.len() - rejected);
                self.settle_items(refused, Settlement::Dropped(DropReason::Rejected(status)));
                self.settle(idx, Settlement::Delivered);
            }
            Step::Split => {
                let batch = &mut self.batches[idx];
                let second = batch.items.split_off(batch.items.len() / 2);
                batch.state = BatchState::Waiting { not_before: now_ms };
                let attempts = batch.attempts;
                let id = self.new_batch_id();
                self.batches.insert(
                    idx + 1,
                    Batch {
                        id,
                        items: second,
                        attempts,
                        state: BatchState::Waiting { not_before: now_ms },
                        failed_hidden: self.batches[idx].failed_hidden,
                    },
                );
            }
            Step::Retry(not_before) => {
                self.batches[idx].state = BatchState::Waiting { not_before };
            }
        }
        self.after_change(now_ms);
        true
    }

    /// The page is being hidden or closed: from now until [`page_visible`](Self::page_visible),
    /// everything held goes at once (no lingering, no backoff; `Retry-After` still holds), as
    /// keepalive requests while they fit the browser's 64 KiB budget, then as ordinary
    /// requests as `maxInFlight` allows. The keepalive requests are ready in `poll_transmit`.
    pub fn page_hidden(&mut self, now_ms: u64) -> PageHideReport {
        self.hidden = true;
        let mut report = PageHideReport::default();
        while let Some(plan) = self.plan() {
            if plan.at > now_ms || !plan.keepalive {
                break;
            }
            let t = self.send(plan, now_ms);
            report.keepalive_requests += 1;
            report.keepalive_events += t.events;
            report.keepalive_bytes += t.body.len();
            self.ready.push_back(t);
        }
        report.left_events = self.held_events - self.in_flight_events;
        self.after_change(now_ms);
        report
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
        }
        self.after_change(now_ms);
    }

    /// The next body for `navigator.sendBeacon` while the page is going away (`pagehide`),
    /// if anything held is not already in flight; `Retry-After` still holds. Bodies are at
    /// most [`KEEPALIVE_BODY_BYTES`]; none while offline. A beacon is not counted against the keepalive budget,
    /// and the shell offers bodies until the browser refuses one: Chromium counts beacons
    /// against its 64 KiB keepalive quota, Firefox has no such limit (bench/PAGEHIDE.md,
    /// findings 1 and 4), and only the browser's answer tells which. Report an accepted
    /// beacon as status 202 to [`handle_outcome`](Self::handle_outcome), a refused one to
    /// [`beacon_refused`](Self::beacon_refused).
    pub fn poll_beacon(&mut self, now_ms: u64) -> Option<Transmit> {
        // Offline, a beacon the browser accepts is still lost: the events stay held (stored).
        if !self.hidden || self.offline || self.gate_until > now_ms {
            return None;
        }
        if let Some(i) = self
            .batches
            .iter()
            .position(|b| matches!(b.state, BatchState::Waiting { .. }))
        {
            let plan = Plan {
                at: now_ms,
                own_at: now_ms,
                source: Source::Batch(i),
                keepalive: false,
            };
            return Some(self.send_as(plan, now_ms, true));
        }
        self.queue.front()?;
        let plan = Plan {
            at: now_ms,
            own_at: now_ms,
            source: Source::Queue,
            keepalive: false,
        };
        Some(self.send_as(plan, now_ms, true))
    }

    /// The browser refused the beacon `id`: its events wait again, the attempt unspent.
    pub fn beacon_refused(&mut self, id: TransmitId, now_ms: u64) {
        if let Some(idx) = self.in_flight_index(id) {
            self.release(idx);
            let b = &mut self.batches[idx];
            b.attempts -= 1;
            b.state = BatchState::Waiting { not_before: 0 };
            self.stats.requests -= 1;
            self.after_change(now_ms);
        }
    }

    /// `navigator.onLine` changed. While offline, an attempt that fails (network error or
    /// timeout) is not spent against `maxAttempts`; back online, every batch waiting to retry
    /// goes at once.
    pub fn set_online(&mut self, online: bool, now_ms: u64) {
        let was_offline = self.offline;
        self.offline = !online;
        if online && was_offline {
            for b in &mut self.batches {
                if let BatchState::Waiting { not_before } = &mut b.state {
                    *not_before = (*not_before).min(now_ms);
                }
            }
        }
        self.after_change(now_ms);
    }

    /// Whether the engine was last told it is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Events held: queued, waiting to retry or in flight.
    pub fn held_events(&self) -> usize {
        self.held_events
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
        if self.held_events == 0 {
            return None;
        }
        self.persisted_below = self.next_seq;
        let from = self.persist_from;
        let mut items: Vec<&queue::Item> = Vec::with_capacity(self.held_events);
        for b in &self.batches {
            items.extend(b.items.iter().filter(|i| i.seq >= from));
        }
        items.extend(self.queue.iter().filter(|i| i.seq >= from));
        if items.is_empty() {
            return None;
        }
        let kept_until = match self.gone {
            true => 0,
            false => now_ms.saturating_add(PERSIST_LIVE_MS),
        };
        Some(persist::encode(
            &items,
            0,
            kept_until,
            self.config.persist_max_bytes,
        ))
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
    pub fn restore(&mut self, text: &str, now_ms: u64) -> usize {
        let decoded = persist::decode(text);
        self.stats.storage_errors += decoded.corrupt;
        self.stats.dropped.add(DropReason::PersistCap, decoded.cut);
        let mut items = Vec::with_capacity(decoded.events.len());
        for e in decoded.events {
            if now_ms.saturating_sub(e.captured_ms) > PERSIST_MAX_AGE_MS {
                self.stats.dropped.add(DropReason::PersistCap, 1);
                continue;
            }
            if self.held_events >= self.config.max_queue_events
                || self.held_bytes + e.fragment.len() > self.config.max_queue_bytes
            {
                self.stats.dropped.add(DropReason::QueueFull, 1);
                continue;
            }
            self.held_events += 1;
            self.held_bytes += e.fragment.len();
            items.push(queue::Item {
                fragment: Box::from(e.fragment),
                uuid: e.uuid,
                seq: self.next_seq,
                enqueued_ms: e.captured_ms,
            });
            self.next_seq += 1;
        }
        let taken = items.len();
        self.stats.restored += taken as u64;
        // Cut into batches now, placed before every other batch: they go first.
        let limit = self.batch_limit();
        let mut rest = items;
        let mut at = 0;
        while !rest.is_empty() {
            let n = limit.fitting(&self.format, &rest).max(1);
            let tail = rest.split_off(n.min(rest.len()));
            let id = self.new_batch_id();
            self.batches.insert(
                at,
                Batch {
                    id,
                    items: rest,
                    attempts: 0,
                    state: BatchState::Waiting { not_before: 0 },
                    failed_hidden: false,
                },
            );
            at += 1;
            rest = tail;
        }
        self.after_change(now_ms);
        taken
    }

    /// A storage read or write failed (it threw, the quota is full, storage is disabled):
    /// counted in `stats().storageErrors`.
    pub fn storage_failed(&mut self) {
        self.stats.storage_errors += 1;
    }

    fn in_flight_index(&self, id: TransmitId) -> Option<usize> {
        self.batches.iter().position(
            |b| matches!(b.state, BatchState::InFlight { transmit, .. } if transmit == id),
        )
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
            .open(id, self.next_seq, self.held_events as u64)
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
        let mut s = self.stats.clone();
        s.queued = (self.held_events - self.in_flight_events) as u64;
        s.in_flight = self.in_flight_events as u64;
        s.in_flight_requests = (self.ordinary_in_flight + self.keepalive.requests) as u64;
        s
    }

    /// Bytes of event fragments held (queued, waiting to retry, in flight); bounded by
    /// `maxQueueBytes`.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
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

    fn new_batch_id(&mut self) -> BatchId {
        self.next_batch += 1;
        BatchId(self.next_batch)
    }

    /// The next request that could go, and when; `None` if nothing can go until a request
    /// in flight is answered (or nothing is held).
    fn plan(&self) -> Option<Plan> {
        if self.gone || self.shutdown.is_some_and(|s| s.done) {
            return None;
        }
        let ordinary_free = self.ordinary_in_flight < self.config.max_in_flight;
        let mut best: Option<Plan> = None;
        let mut consider = |own_at: u64, first_len: usize, source: Source| {
            let keepalive = self.hidden && self.keepalive.fits(self.format.body_len(1, first_len));
            if !keepalive && !ordinary_free {
                return;
            }
            let at = own_at.max(self.gate_until);
            if best.is_none_or(|b| at < b.at) {
                best = Some(Plan {
                    at,
                    own_at,
                    source,
                    keepalive,
                });
            }
        };
        for (i, b) in self.batches.iter().enumerate() {
            if let BatchState::Waiting { not_before } = b.state {
                let own_at = if self.hidden && !b.failed_hidden {
                    0
                } else {
                    not_before
                };
                consider(own_at, b.items[0].fragment.len(), Source::Batch(i));
            }
        }
        if let Some(front) = self.queue.front() {
            if let Some(own_at) = self.queue_ready_at(front) {
                consider(own_at, front.fragment.len(), Source::Queue);
            }
        }
        best
    }

    /// When the queue's front may be cut into a batch, by the batch mode.
    fn queue_ready_at(&self, front: &Item) -> Option<u64> {
        let forced = self.hidden || front.seq < self.force_mark;
        let full = self.queue.has_full_batch(&self.format, self.batch_limit());
        match self.config.batch_mode {
            BatchMode::Off => Some(0),
            _ if forced || full => Some(0),
            BatchMode::Auto if self.ordinary_in_flight + self.keepalive.requests == 0 => Some(0),
            BatchMode::Auto => None,
            BatchMode::Linger => Some(front.enqueued_ms + self.config.flush_interval_ms),
        }
    }

    fn batch_limit(&self) -> BodyLimit {
        let events = match self.config.batch_mode {
            BatchMode::Off => 1,
            _ => self.config.max_batch_events,
        };
        BodyLimit {
            events,
            bytes: self.config.max_batch_bytes,
        }
    }

    /// Carries out `plan`: cuts or picks the batch, stamps the body, marks it in flight.
    fn send(&mut self, plan: Plan, now_ms: u64) -> Transmit {
        self.send_as(plan, now_ms, false)
    }

    /// [`send`](Self::send), as a beacon if `beacon`: counted against no budget, since the
    /// browser answers at once.
    fn send_as(&mut self, plan: Plan, now_ms: u64, beacon: bool) -> Transmit {
        let mut limit = self.batch_limit();
        if plan.keepalive {
            limit.bytes = limit
                .bytes
                .min(self.keepalive.room())
                .min(KEEPALIVE_BODY_BYTES);
        }
        if beacon {
            limit.bytes = limit.bytes.min(KEEPALIVE_BODY_BYTES);
        }
        let idx = match plan.source {
            Source::Queue => {
                let items = self.queue.take_batch(&self.format, limit);
                let id = self.new_batch_id();
                self.batches.push(Batch {
                    id,
                    items,
                    attempts: 0,
                    state: BatchState::Waiting { not_before: 0 },
                    failed_hidden: false,
                });
                self.batches.len() - 1
            }
            Source::Batch(idx) => {
                // Under the keepalive budget a waiting batch may have to go in parts.
                let fit = limit.fitting(&self.format, &self.batches[idx].items);
                if fit < self.batches[idx].items.len() {
                    let rest = self.batches[idx].items.split_off(fit);
                    let (attempts, state, failed_hidden) = (
                        self.batches[idx].attempts,
                        self.batches[idx].state,
                        self.batches[idx].failed_hidden,
                    );
                    let id = self.new_batch_id();
                    self.batches.insert(
                        idx + 1,
                        Batch {
                            id,
                            items: rest,
                            attempts,
                            state,
                            failed_hidden,
                        },
                    );
                }
                idx
            }
        };
        let transmit = TransmitId(self.next_transmit);
        self.next_transmit += 1;
        let batch = &mut self.batches[idx];
        batch.attempts += 1;
        let mut body = String::with_capacity(self.format.body_len(
            batch.items.len(),
            batch.items.iter().map(|i| i.fragment.len()).sum(),
        ));
        self.format.write_body(
            &mut batch.items.iter().map(|i| &*i.fragment),
            now_ms,
            &mut body,
        );
        batch.state = BatchState::InFlight {
            transmit,
            deadline: now_ms + self.config.request_timeout_ms,
            keepalive: plan.keepalive,
            beacon,
            body_len: body.len(),
        };
        self.in_flight_events += batch.items.len();
        if beacon {
            // Answered by the shell before anything else runs: no slot is held.
        } else if plan.keepalive {
            self.keepalive.bytes += body.len();
            self.keepalive.requests += 1;
        } else {
            self.ordinary_in_flight += 1;
        }
        self.stats.requests += 1;
        if batch.attempts > 1 {
            self.stats.retried += 1;
        }
        Transmit {
            id: transmit,
            batch: batch.id,
            body,
            content_type: self.format.content_type(),
            keepalive: plan.keepalive,
            events: batch.items.len(),
            attempt: batch.attempts,
        }
    }

    /// Takes batch `idx` out of flight (its counters only; the state is set by the caller).
    fn release(&mut self, idx: usize) {
        let batch = &self.batches[idx];
        if let BatchState::InFlight {
            keepalive,
            beacon,
            body_len,
            ..
        } = batch.state
        {
            self.in_flight_events -= batch.items.len();
            if beacon {
            } else if keepalive {
                self.keepalive.bytes -= body_len;
                self.keepalive.requests -= 1;
            } else {
                self.ordinary_in_flight -= 1;
            }
        }
    }

    /// Removes batch `idx` (not in flight) and settles its events.
    fn settle(&mut self, idx: usize, how: Settlement) {
        let batch = self.batches.remove(idx);
        self.settle_items(batch.items, how);
    }

    fn settle_items(&mut self, items: Vec<Item>, how: Settlement) {
        let delivered = how == Settlement::Delivered;
        let n = items.len() as u64;
        match how {
            Settlement::Delivered => self.stats.delivered += n,
            Settlement::Dropped(reason) => self.stats.dropped.add(reason, n),
        }
        if self.report_settlements && n > 0 {
            let mut uuids = Vec::with_capacity(items.len());
            for item in &items {
                uuids.push(item.uuid);
            }
            self.notices.push_back(Notice::Settled {
                settlement: how,
                uuids,
            });
        }
        let mut done = Vec::new();
        for item in &items {
            self.held_events -= 1;
            self.held_bytes -= item.fragment.len();
            self.flushes.settle(item.seq, delivered, &mut done);
        }
        // After the settlements, so a reader of both sees a flush complete with its events.
        // One push_back each: VecDeque's extend from an iterator costs 400 bytes of wasm more.
        for report in done {
            self.notices.push_back(Notice::FlushComplete(report));
        }
        if self.held_events == 0 {
            self.overflow_warned = false;
        }
    }

    /// Drops everything held as `shutdown`, aborting requests in flight.
    fn abandon_all(&mut self) {
        let before = self.stats.dropped.shutdown;
        self.ready.clear();
        while let Some(batch) = self.batches.last() {
            if let BatchState::InFlight { transmit, .. } = batch.state {
                self.notices.push_back(Notice::Abort(transmit));
            }
            let idx = self.batches.len() - 1;
            self.release(idx);
            self.settle(idx, Settlement::Dropped(DropReason::Shutdown));
        }
        let items = self.queue.drain_all();
        self.settle_items(items, Settlement::Dropped(DropReason::Shutdown));
        if let Some(s) = &mut self.shutdown {
            if !s.done {
                s.done = true;
                let abandoned = self.stats.dropped.shutdown - before;
                self.notices
                    .push_back(Notice::ShutdownComplete { abandoned });
            }
        }
    }

    /// Finishes a shutdown that has nothing left (or nothing it could still send in time),
    /// then re-arms the timers.
    fn after_change(&mut self, _now_ms: u64) {
        if let Some(s) = self.shutdown {
            if !s.done {
                let idle = self.in_flight_events == 0 && self.ready.is_empty();
                if self.held_events == 0 {
                    self.abandon_all();
                } else if idle && self.plan().is_none_or(|p| p.at > s.deadline) {
                    // Backoff or Retry-After reaches past the deadline: waiting changes nothing.
                    self.abandon_all();
                }
            }
        }
        self.rearm();
    }

    /// Recomputes every timer from the state.
    fn rearm(&mut self) {
        let plan = self.plan();
        let mut timers = TimerTable::default();
        if let Some(p) = plan {
            let timer = if p.at > p.own_at {
                Timer::RetryAfter
            } else if p.source == Source::Queue {
                Timer::Linger
            } else {
                Timer::Backoff
            };
            timers.set(timer, Some(p.at));
        }
        // Loops rather than iterator adapters here and below: each adapter chain compiles to
        // code of its own in the wasm.
        let mut request_deadline = None;
        for b in &self.batches {
            if let BatchState::InFlight { deadline, .. } = b.state {
                request_deadline =
                    Some(request_deadline.map_or(deadline, |d: u64| d.min(deadline)));
            }
        }
        timers.set(Timer::RequestTimeout, request_deadline);
        if let Some(s) = self.shutdown.filter(|s| !s.done) {
            timers.set(Timer::ShutdownDeadline, Some(s.deadline));
        }
        self.timers = timers;
    }
}

/// A short description of a failed outcome for `Stats::last_error`.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response { status, .. } => {
            let mut s = String::from("HTTP ");
            json::write_u64(&mut s, (*status).into());
            s
        }
        Outcome::NetworkError(e) => {
            let mut s = String::from("network error: ");
            s.push_str(e);
            s
        }
        Outcome::Timeout => String::from("timeout"),
    }
}

#[cfg(test)]
mod tests;
