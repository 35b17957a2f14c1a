//! The sans-IO engine: every decision about what to send and when, with no clock and no I/O.
//!
//! The caller (a shell) feeds inputs and drains outputs, in the manner of quinn-proto. The
//! methods are of four kinds:
//!
//! - getters: [`Engine::stats`], [`Engine::held_events`], [`Engine::config`], ...;
//! - inputs, named `handle_*`: [`Engine::handle_timeout`] (the one timer fired),
//!   [`Engine::handle_outcome`] (a request's answer, or a beacon's acceptance or refusal),
//!   [`Engine::handle_page`] (what the browser fired: `beforeunload`, hidden, visible,
//!   `pagehide`, `pageshow`, online, offline), and storage: [`Engine::handle_storage_opened`],
//!   [`Engine::handle_restore`], [`Engine::handle_stored_copy_taken`],
//!   [`Engine::handle_storage_failed`];
//! - commands: [`Engine::capture`], [`Engine::flush`], [`Engine::shutdown`];
//! - outputs, named `poll_*`: [`Engine::poll_transmit`] (requests to send now, each with its
//!   [`Path`]: ordinary, keepalive or beacon), [`Engine::poll_notice`] (flushes completed,
//!   requests to abort, the stored copy to read, write or remove, warnings) and
//!   [`Engine::poll_timeout`] (when to call `handle_timeout` next).
//!
//! After every input or command, the shell drains `poll_transmit` until `None` (answering
//! each beacon at once), then `poll_notice`, and arms its one timer at `poll_timeout`. Time is
//! always an argument: ms since the Unix epoch.
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

mod delivery;
mod edge;
mod page;
mod wire;

pub use delivery::config::{
    BatchMode, Compression, Config, ConfigError, Format, DEFAULT_SERVICE_NAME, MAX_API_KEY_LEN,
};
pub use delivery::event::{CaptureError, EventInput, Uuid};
pub use delivery::flush::{FlushId, FlushReport};
pub use delivery::notice::{Notice, Settlement};
pub use delivery::retry::{Outcome, RetryAfter, Verdict, MAX_RETRY_AFTER_MS};
pub use delivery::rng::Rng;
pub use delivery::stats::{DropReason, Dropped, Stats};
pub use delivery::timer::Timer;
pub use delivery::transmit::{BatchId, Path, Transmit, TransmitId};
pub use edge::{
    CoalesceStats, Coalescer, EdgeConfig, RequestId, WindowId, WindowReport, DEFAULT_DEADLINE_MS,
    FREE_PLAN_SUBREQUESTS, LEADER_GRACE_MS,
};
pub use page::close::{
    PageHideReport, KEEPALIVE_BODY_BYTES, KEEPALIVE_MAX_REQUESTS, KEEPALIVE_QUOTA_BYTES,
};
pub use page::persist::{
    claimable as stored_copy_claimable, deflated as stored_copy_deflated, PERSIST_LIVE_MS,
    PERSIST_MAX_AGE_MS, PERSIST_MAX_BYTES, RESTORE_AGAIN_MS,
};
pub use page::PageEvent;
pub use wire::format::{
    ConfiguredFormat, EventRecord, PostHogBatch, WireFormat, POSTHOG_MAX_PROPERTIES_DEPTH,
};
#[cfg(fuzzing)]
pub use wire::json;
#[cfg(not(fuzzing))]
pub(crate) use wire::json;
pub use wire::otlp::{rejected_log_records, OtlpLogs, OTLP_MAX_PROPERTIES_DEPTH};

use delivery::batch::Batch;
use delivery::ledger::Ledger;
use delivery::queue::Queue;
use delivery::shutdown::Shutdown;
use delivery::timer::TimerTable;
use delivery::{health, hold};
use page::persist;
use page::PageState;

/// The exporter's policy as a state machine. See the [module docs](self).
///
/// Generic over its [`WireFormat`]; [`Engine::new`] speaks the one the config names
/// ([`ConfiguredFormat`]).
///
/// This is the engine's face: its state and its public methods. The work is done by the
/// parts (ARCHITECTURE.md maps them): in `delivery/`, `capture` takes events in, `scheduler`
/// decides what goes when and handles the timers, `batch` sends and answers batches, `ledger`
/// counts what is held and in flight, `shutdown` ends it; in `page/`, `close` handles the
/// page going away and `persist` the copy kept for the next load.
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
    hold: hold::Hold,
    /// What the collector's last answer said of it: whether a beacon may go, and count.
    health: health::Health,
    /// Queued events with a sequence below this go without lingering (a flush asked).
    force_mark: u64,
    /// Shown, hidden, leaving or gone.
    page: page::Page,
    /// `navigator.onLine` was false: a failed attempt is not spent against `maxAttempts`.
    offline: bool,
    /// The copy kept for the next load: whether one is written, and what it left out.
    persistence: persist::Persistence,
    shutdown: Option<Shutdown>,
    overflow_warned: bool,
    report_settlements: bool,
    /// Where `capture` encodes, kept to save an allocation per event.
    scratch: String,
    flushes: delivery::flush::FlushTracker,
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
            hold: Default::default(),
            health: Default::default(),
            force_mark: 0,
            page: Default::default(),
            offline: false,
            persistence: Default::default(),
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
        if self.page.state == PageState::Leaving {
            return self.poll_leaving(now_ms);
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

    /// The browser fired `event` at the page (see [`PageEvent`] for what each does). Going
    /// away, everything held goes at once: keepalive requests while they fit the browser's
    /// 64 KiB budget (ready in `poll_transmit`, with the returned report saying what they
    /// carry), then at `pagehide` beacons, then what is left is stored for the next load
    /// ([`Notice::WriteStored`]). Shown again, the configured batching resumes and the stored
    /// copy is removed ([`Notice::RemoveStored`]): the events are held here again.
    ///
    /// At `pagehide` the ordinary requests in flight are given up (a [`Notice::Abort`] each)
    /// and their batches go again on the page-close path, their attempts unspent: a browser
    /// ends a page's ordinary requests as it leaves (Chromium as the next page commits), while
    /// keepalive requests and beacons outlive it. A request given up may have reached the
    /// collector already, so its events may arrive twice (at-least-once, as for any request
    /// unanswered at unload).
    ///
    /// A beacon is never answered: report the browser's return value at once, as
    /// [`Outcome::Accepted`] or [`Outcome::Refused`]. Once one is refused, no other is
    /// offered. Since a browser accepts a beacon whatever the collector does with it, none
    /// goes while the collector's last answer was a failure, a `Retry-After` holds, or the
    /// page is offline, and an accepted one counts as delivered only if the collector's last
    /// answer before it was a success: otherwise its events stay held, and so stored.
    pub fn handle_page(&mut self, event: PageEvent, now_ms: u64) -> PageHideReport {
        let mut report = PageHideReport::default();
        match event {
            PageEvent::BeforeUnload | PageEvent::Hidden => {
                if self.page.state <= PageState::Hidden {
                    self.page.state = PageState::Hidden;
                    report = self.hide(now_ms);
                    self.write_stored(now_ms);
                }
            }
            PageEvent::PageHide => {
                if self.page.state <= PageState::Hidden {
                    self.rescue_ordinary();
                    self.page.state = PageState::Hidden;
                    report = self.hide(now_ms);
                    // Beacons come next from `poll_transmit`; once none is left to offer,
                    // the page is gone and what it holds is stored.
                    self.page.state = PageState::Leaving;
                }
            }
            PageEvent::Visible | PageEvent::PageShow => self.show(),
            PageEvent::Online => self.set_online(true, now_ms),
            PageEvent::Offline => self.set_online(false, now_ms),
        }
        self.after_change(now_ms);
        report
    }

    /// Whether the engine was last told it is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Events held: queued, waiting to retry or in flight.
    pub fn held_events(&self) -> usize {
        self.ledger.held_events()
    }

    /// The host keeps copies for the next page load (a page's `localStorage`). From now on
    /// the engine asks for what earlier loads of the endpoint stored at once, again
    /// [`RESTORE_AGAIN_MS`] later and once more after [`PERSIST_LIVE_MS`]
    /// ([`Notice::ReadStored`]: answer with [`handle_restore`](Self::handle_restore)), and
    /// has what it holds stored when the page is hidden or goes away
    /// ([`Notice::WriteStored`]), rewritten while it changes, removed once nothing is held or
    /// the page is shown again ([`Notice::RemoveStored`]).
    ///
    /// `can_inflate`: the host can inflate raw deflate (`DecompressionStream("deflate-raw")`
    /// in a browser), so the events are stored deflated, about a seventh of their plain size;
    /// otherwise they are stored plain.
    pub fn handle_storage_opened(&mut self, can_inflate: bool, now_ms: u64) {
        self.persistence.open(can_inflate, now_ms);
        self.notices.push_back(Notice::ReadStored);
        self.after_change(now_ms);
    }

    /// What to store so that the next load can send it: every held event the collector has
    /// not acknowledged, in flight ones included (their answer may never come), oldest first,
    /// within `persistMaxBytes` (default [`PERSIST_MAX_BYTES`]); `None` when nothing is held.
    /// Returns the text and the number of events it holds. The events stay held here: this is
    /// a copy. [`Notice::WriteStored`] carries it when the engine decides it is due.
    ///
    /// Events of an earlier copy that another load took in (see
    /// [`handle_stored_copy_taken`](Self::handle_stored_copy_taken)) are left out: that load
    /// sends them. Written at `now_ms`: until [`PERSIST_LIVE_MS`] later the copy stays this
    /// page's (see [`stored_copy_claimable`]), unless the page is gone.
    pub fn persist(&mut self, now_ms: u64) -> Option<(String, usize)> {
        self.stored_text(now_ms)
    }

    /// The copy last written was taken in by another load (another tab's exporter claimed
    /// it): its events are that load's to send now, and are never stored again from here, so
    /// that no later copy hands them to a third load. They stay held here too
    /// (at-least-once). A new copy without them is due at once ([`Notice::WriteStored`]).
    pub fn handle_stored_copy_taken(&mut self, now_ms: u64) {
        self.persistence.taken();
        self.write_stored(now_ms);
        self.after_change(now_ms);
    }

    /// Takes in the text an earlier load stored (see [`persist`](Self::persist)): its events
    /// go before anything captured here, as soon as a request slot is free, each with its uuid
    /// and capture timestamp (a fresh `sent_at`). Events older than [`PERSIST_MAX_AGE_MS`], and
    /// those the earlier write left out, are counted as dropped `persistCap`; lines that are
    /// not readable are counted in `stats().storageErrors`. Events beyond the queue's limits
    /// are dropped as `queueFull`. Returns the events taken in.
    ///
    /// A text whose events are deflated ([`stored_copy_deflated`] gives their bytes) needs
    /// them inflated: pass what they inflated to as `inflated` (`None` if they would not
    /// inflate: the copy is counted in `storageErrors`). A plain text needs nothing.
    pub fn handle_restore(&mut self, text: &str, inflated: Option<&str>, now_ms: u64) -> usize {
        self.take_in(text, inflated, now_ms)
    }

    /// A storage read or write failed (it threw, the quota is full, storage is disabled):
    /// counted in `stats().storageErrors`.
    pub fn handle_storage_failed(&mut self) {
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

    /// When the endpoint's hold ends: no request may go before it (the last `Retry-After`).
    pub fn hold_until(&self) -> u64 {
        self.hold.until()
    }

    /// Holds every request until `until_ms`, as a `Retry-After` answered to another exporter
    /// of the same endpoint asked (the edge shares one hold across the exporters of an
    /// isolate, the page across those of a page). Capped like a `Retry-After` at
    /// [`MAX_RETRY_AFTER_MS`] from `now_ms`; an earlier time than the hold changes nothing.
    pub fn handle_hold(&mut self, until_ms: u64, now_ms: u64) {
        if self.hold.extend(until_ms, now_ms) {
            self.after_change(now_ms);
        }
    }
}
