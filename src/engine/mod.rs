//! The sans-IO engine: every decision about what to send and when, with no clock and no I/O.
//!
//! A shell feeds inputs (`handle_*`) and commands (`capture`, `flush`, `shutdown`), then drains
//! outputs as quinn-proto's driver does: `poll_transmit` until `None` (requests, each with its
//! [`Path`]), `poll_notice`, and arms its one timer at `poll_timeout`. Time is always an
//! argument: ms since the Unix epoch.
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
//! let wake = engine.poll_timeout().unwrap(); // when the linger ends
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
pub use delivery::transmit::{BatchId, Path, Start, Transmit, TransmitId};
pub use edge::{
    CoalesceStats, Coalescer, EdgeConfig, RequestId, WindowId, WindowReport, DEFAULT_DEADLINE_MS,
    FREE_PLAN_SUBREQUESTS, LEADER_GRACE_MS,
};
pub use page::close::{
    PageHideReport, HOST_CONNECTIONS, KEEPALIVE_BODY_BYTES, KEEPALIVE_MAX_REQUESTS,
    KEEPALIVE_QUOTA_BYTES,
};
pub use page::defer::{DEFERRED_AFTER_MS, DEFERRED_QUOTA_BYTES};
pub use page::pack::HostFeatures;
pub use page::persist::{
    claimable as stored_copy_claimable, deflated as stored_copy_deflated, PERSIST_LIVE_MS,
    PERSIST_MAX_AGE_MS, PERSIST_MAX_BYTES, RESTORE_AGAIN_MS,
};
pub use page::PageEvent;
pub use wire::format::{
    ConfiguredFormat, EventRecord, PostHogBatch, WireFormat, POSTHOG_MAX_PROPERTIES_DEPTH,
};
pub use wire::gzip::warm_up_page_close;
#[cfg(fuzzing)]
pub use wire::json;
#[cfg(not(fuzzing))]
pub(crate) use wire::json;
pub use wire::otlp::{rejected_log_records, OtlpLogs, OTLP_MAX_PROPERTIES_DEPTH};

use delivery::scheduler::{self, Plan};
use delivery::{capture::Intake, endpoint::Endpoint, outbox::Outbox, timer::TimerTable, Env};
use page::{pack::PackRatio, persist::Persistence, Page, PageState};

/// The exporter's policy as a state machine (see the [module docs](self)), generic over its
/// [`WireFormat`]: a facade over parts that own their state and borrow each other explicitly
/// (ARCHITECTURE.md maps them).
#[derive(Debug)]
pub struct Engine<F: WireFormat = ConfiguredFormat> {
    env: Env<F>,
    intake: Intake,
    outbox: Outbox,
    endpoint: Endpoint,
    page: Page,
    persistence: Persistence,
    timers: TimerTable,
    /// The page-close path's compression is to be warmed up at the next answer while the page
    /// is shown ([`HostFeatures::page_close`]). The host's, so kept apart from [`Page`], which
    /// a page shown again resets.
    warm_up_due: bool,
}

impl Engine {
    /// An engine speaking the format the config names, its randomness (uuids, jitter) seeded
    /// with `seed`. Fails if the config is out of range.
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
        let intake = Intake::new(config.distinct_id.as_deref(), &mut rng);
        Ok(Engine {
            env: Env::new(config, format, rng),
            intake,
            outbox: Outbox::default(),
            endpoint: Endpoint::default(),
            page: Page::default(),
            persistence: Persistence::default(),
            timers: TimerTable::default(),
            warm_up_due: false,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.env.config
    }

    /// The distinct id events get when a capture names none.
    pub fn distinct_id(&self) -> &str {
        &self.intake.distinct_id
    }

    /// Turns [`Notice::Settled`] on or off (off by default: an allocation per batch).
    pub fn report_settlements(&mut self, on: bool) {
        self.outbox.report_settlements = on;
    }

    /// Queues an event captured at `now_ms`, encoded here once; returns its uuid. Refused, with
    /// the reason, if malformed, alone over `maxBatchBytes` (dropped `tooLarge`), past the
    /// queue's limits (dropped `queueFull`), or after `shutdown`.
    pub fn capture(&mut self, event: EventInput<'_>, now_ms: u64) -> Result<Uuid, CaptureError> {
        if let Some(p) = event.properties {
            json::validate_object(p).map_err(CaptureError::InvalidProperties)?;
        }
        self.capture_json(event, now_ms)
    }

    /// [`capture`](Engine::capture) for properties known to be one JSON object (what
    /// `JSON.stringify` made of an object), not checked again; anything else would make the
    /// collector refuse the whole batch.
    pub fn capture_json(
        &mut self,
        event: EventInput<'_>,
        now_ms: u64,
    ) -> Result<Uuid, CaptureError> {
        if self.outbox.shutdown.is_some() {
            return Err(CaptureError::ShutDown);
        }
        let env = &mut self.env;
        let (fragment, uuid) = self
            .intake
            .encode(&env.format, &mut env.rng, event, now_ms)?;
        let first = self.outbox.queue.front().is_none();
        let limit = env.batch_limit();
        let cuts = env.config.batch_mode != BatchMode::Off;
        let was_full = cuts && self.outbox.queue.has_full_batch(&env.format, limit);
        self.outbox.admit(env, fragment, uuid, now_ms)?;
        // Full now, and not before: a queue that stays full (waiting for a request slot or a
        // pack) costs the captures after it nothing more.
        let full = cuts && !was_full && self.outbox.queue.has_full_batch(&env.format, limit);
        if self.page.hidden() || full {
            // Ready to wait, packed at once (`page/pack`).
            let (copy, hold) = (self.persistence.packs_copies(), self.endpoint.hold.until());
            self.outbox.pack_ahead(env, &self.page, copy, hold, now_ms);
        }
        // Only a first event (the linger starts) or a full batch moves a timer: the others
        // cost no pass over the batches held.
        if first || full || self.page.hidden() {
            self.rearm(now_ms);
        }
        Ok(uuid)
    }

    /// The next request to send at `now_ms`, if any. Drain until `None` after every input.
    #[must_use = "a transmit taken and not sent is never answered: its events wait for the request timeout"]
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        if let Some(t) = self.outbox.ready.pop_front() {
            return Some(t);
        }
        let (outbox, env, endpoint) = (&mut self.outbox, &mut self.env, &self.endpoint);
        let t = if self.page.state == PageState::Leaving {
            let store = &mut self.persistence;
            self.page.poll_leaving(outbox, env, endpoint, store, now_ms)
        } else {
            let plan = outbox.plan(env, &self.page, endpoint.hold.until());
            let t = outbox.send(
                env,
                endpoint,
                plan.filter(|p| p.at <= now_ms)?,
                false,
                now_ms,
            );
            outbox.pack_retry(env, &t);
            // Late: not carried on if the page goes (`Batch::sent_unloading`).
            if self.page.starts_late() {
                if let Some(b) = outbox.batches.iter_mut().find(|b| b.id == t.batch) {
                    b.sent_unloading = true;
                }
            }
            Some(t)
        };
        self.rearm(now_ms);
        t
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (valid once drained).
    #[must_use = "nothing that waits on time (linger, backoff, Retry-After, request timeouts, the shutdown deadline) happens unless a timer calls `handle_timeout` then"]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next_timeout()
    }

    /// The next thing the shell should know or do.
    #[must_use = "a notice taken is gone: a flush or shutdown it completes is never resolved, a request it aborts keeps running"]
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.env.notices.pop_front()
    }

    /// Time has reached `now_ms`: requests past `requestTimeoutMs` are given up (a
    /// [`Notice::Abort`] each), storage read again when due, the shutdown deadline enforced.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let (outbox, env, endpoint) = (&mut self.outbox, &mut self.env, &mut self.endpoint);
        for timer in Timer::VALUES {
            match timer {
                _ if !self.timers.take_expired(timer, now_ms) => {}
                // A batch is due: `poll_transmit`, called next, plans at `now_ms` and sends it.
                // `Defer`: a batch is due to be packed or armed, in `after_change`.
                Timer::Linger | Timer::Backoff | Timer::RetryAfter | Timer::Defer => {}
                Timer::RequestTimeout => outbox.expire(env, endpoint, &mut self.page, now_ms),
                Timer::ReadStored => self.persistence.read_due(env, now_ms),
                Timer::ShutdownDeadline => outbox.abandon_all(env),
            }
        }
        self.after_change(now_ms);
    }

    /// Request `id` ended with `outcome` at `now_ms`; `false` (nothing changed) if it is not
    /// in flight: unknown, timed out or abandoned.
    pub fn handle_outcome(&mut self, id: TransmitId, outcome: Outcome, now_ms: u64) -> bool {
        let (env, endpoint, page) = (&mut self.env, &mut self.endpoint, &mut self.page);
        let known = self.outbox.answer(env, endpoint, page, id, outcome, now_ms);
        if known {
            page.answered_unloading |= page.state == PageState::Unloading;
            // A quiet moment, while the page is shown: its close will not compress cold. Once
            // it is hidden or leaving, the close path has run already.
            if page.state == PageState::Shown && std::mem::take(&mut self.warm_up_due) {
                // Kept from being optimized away: its result is unused, its work is the point.
                std::hint::black_box(warm_up_page_close());
            }
            self.after_change(now_ms);
        }
        known
    }

    /// Request `id`'s body, which the host compressed asynchronously to `wire_len` bytes, is
    /// ready: whether it may start now, and how ([`Start`]). [`Start::No`]: it was given up
    /// meanwhile, or taken back to go after a `Retry-After`.
    pub fn handle_compressed(&mut self, id: TransmitId, wire_len: usize, now_ms: u64) -> Start {
        let late = self.page.starts_late();
        let start = self
            .outbox
            .compressed(&self.endpoint, id, wire_len, late, now_ms);
        self.after_change(now_ms);
        start
    }

    /// Batch `batch`'s [`Notice::Pack`] is done: its body gzipped and its lines deflated, each
    /// `None` if not asked for or the host could not.
    pub fn handle_packed(
        &mut self,
        batch: BatchId,
        wire: Option<Vec<u8>>,
        copy: Option<Vec<u8>>,
        now_ms: u64,
    ) {
        self.outbox.packed(&mut self.env, batch, wire, copy);
        self.after_change(now_ms);
    }

    /// The browser fired `event` ([`PageEvent`] says what each does, [`Path`] how each request
    /// leaves as the page goes away); the report says what went keepalive.
    pub fn handle_page(&mut self, event: PageEvent, now_ms: u64) -> PageHideReport {
        let (outbox, env, store) = (&mut self.outbox, &mut self.env, &mut self.persistence);
        let (page, endpoint) = (&mut self.page, &mut self.endpoint);
        let report = page.handle(event, outbox, env, endpoint, store, now_ms);
        self.after_change(now_ms);
        report
    }

    /// Events held: queued, waiting to retry or in flight.
    pub fn held_events(&self) -> usize {
        self.outbox.ledger.held_events()
    }

    /// Bytes of event fragments held; bounded by `maxQueueBytes`.
    pub fn held_bytes(&self) -> usize {
        self.outbox.ledger.held_bytes()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.outbox.ledger.snapshot()
    }

    /// The host keeps copies for the next load ([`Notice::ReadStored`], [`Notice::WriteStored`]),
    /// with batches' lines packed ahead ([`Notice::Pack`]) if it `can_inflate`.
    pub fn handle_storage_opened(&mut self, can_inflate: bool, now_ms: u64) {
        self.persistence.open(can_inflate, now_ms);
        self.env.notify(Notice::ReadStored);
        self.after_change(now_ms);
    }

    /// The copy [`Notice::WriteStored`] carries, made now, with its event count and its mark:
    /// every held event not acknowledged and not taken by another load, within
    /// `persistMaxBytes`.
    pub fn persist(&mut self, now_ms: u64) -> Option<(String, usize, u64)> {
        let page = self.page.state;
        self.persistence
            .deflate_copies(&mut self.outbox, &self.env, page);
        let (text, events) = self
            .persistence
            .text(&self.outbox, &self.env.config, page, now_ms)?;
        Some((text, events, self.persistence.written_below))
    }

    /// Another load took in the copy last written, the one [`Notice::WriteStored`] gave
    /// `mark`: its events are never stored again from here (no third load gets them), though
    /// held here too; those captured since are.
    pub fn handle_stored_copy_taken(&mut self, mark: u64, now_ms: u64) {
        let page = self.page.state;
        self.persistence.taken(mark);
        self.persistence
            .write(&mut self.outbox, &mut self.env, page, now_ms);
        self.after_change(now_ms);
    }

    /// Takes in a copy an earlier load stored, its events first in line; returns how many.
    /// Too old ([`PERSIST_MAX_AGE_MS`]): dropped `persistCap`; unreadable: `storageErrors`.
    /// Its packed parts ([`stored_copy_deflated`]) come `inflated` by the host, in order
    /// (`None`: failed).
    pub fn handle_restore(
        &mut self,
        text: &str,
        inflated: &[Option<String>],
        now_ms: u64,
    ) -> usize {
        let taken = page::stored::restore(&mut self.outbox, &self.env, text, inflated, now_ms);
        self.after_change(now_ms);
        taken
    }

    /// What the host can do: `fetchLater` (held batches stay armed as [`Path::Deferred`]
    /// transmits), an asynchronous compressor (batches are packed ahead: [`Notice::Pack`]),
    /// keepalive ordinary requests ([`Transmit::outlives`]), and whether the page shares the
    /// endpoint's origin (a connection is kept free for its navigation).
    pub fn handle_host_features(&mut self, features: HostFeatures) {
        if features.deferred {
            self.outbox.deferred.open();
        }
        self.outbox.packing.on = features.compress;
        if features.compress && self.env.config.compression == Compression::Gzip {
            self.env.pack_ratio.get_or_insert_with(PackRatio::new);
        }
        self.outbox.outlive = features.keepalive;
        self.outbox.same_origin = features.same_origin;
        self.outbox.keepalive_after_unload = features.keepalive_after_unload;
        self.warm_up_due = features.page_close;
    }

    /// A storage read or write failed: counted in `stats().storageErrors`.
    pub fn handle_storage_failed(&mut self) {
        self.outbox.ledger.stats.storage_errors += 1;
    }

    /// Sends everything captured so far without lingering; the id comes back in a
    /// [`Notice::FlushComplete`] once each of those events is delivered or dropped.
    pub fn flush(&mut self, now_ms: u64) -> FlushId {
        let id = self.outbox.open_flush(&mut self.env);
        self.after_change(now_ms);
        id
    }

    /// Stops taking events and sends everything held; at `deadline_ms` (or once nothing could
    /// go before it) abandons the rest as dropped `shutdown` and raises
    /// [`Notice::ShutdownComplete`]. A second call changes nothing.
    pub fn shutdown(&mut self, now_ms: u64, deadline_ms: u64) {
        if self.outbox.begin_shutdown(deadline_ms) {
            self.after_change(now_ms);
        }
    }

    /// When the endpoint's hold ends: no request may go before it (the last `Retry-After`).
    pub fn hold_until(&self) -> u64 {
        self.endpoint.hold.until()
    }

    /// Holds every request until `until_ms`, as a `Retry-After` answered to another exporter
    /// of the endpoint asked; capped at [`MAX_RETRY_AFTER_MS`] from `now_ms`.
    pub fn handle_hold(&mut self, until_ms: u64, now_ms: u64) {
        if self.endpoint.hold.extend(until_ms, now_ms) {
            self.after_change(now_ms);
        }
    }

    /// The next request the scheduler would send, under the endpoint's hold.
    fn plan(&self) -> Option<Plan> {
        let hold = self.endpoint.hold.until();
        self.outbox.plan(&self.env, &self.page, hold)
    }

    /// Every input that changes the state ends here: what is held is armed (`page/defer`), an
    /// idle shutdown completes, the stored copy follows what is held, the timers are re-armed.
    fn after_change(&mut self, now_ms: u64) {
        let (outbox, env) = (&mut self.outbox, &mut self.env);
        let copy = self.persistence.packs_copies();
        outbox.pack_ahead(env, &self.page, copy, self.endpoint.hold.until(), now_ms);
        outbox.keep_armed(env, &self.endpoint, &self.page, now_ms);
        let next = self.plan();
        self.outbox.finish_idle_shutdown(&mut self.env, next);
        let state = self.page.state;
        self.persistence
            .keep(&mut self.outbox, &mut self.env, state, now_ms);
        self.rearm(now_ms);
    }

    /// Re-arms every timer from the state, then (in debug builds) checks the ledger.
    fn rearm(&mut self, now_ms: u64) {
        let (outbox, env, page) = (&self.outbox, &self.env, &self.page);
        let arm = outbox.arm_at(env, &self.endpoint, page, now_ms);
        let pack = outbox.pack_at(env, page);
        let arm = arm.min(pack).or(arm).or(pack);
        let read = self.persistence.read_again.first().copied();
        self.timers = scheduler::timers(&self.outbox, self.plan(), read, arm);
        self.outbox.check_ledger();
    }
}
