//! Edge coalescing: which Worker request leads which batching window, when the window's batch
//! goes, and how many subrequests its delivery may spend.
//!
//! A Worker isolate serves many requests, and the events of those it serves within one batching
//! window should reach the collector together. But workerd refuses I/O shared between requests
//! ("Cannot perform I/O on behalf of a different request"): a `fetch` or a timer started for
//! request A must be awaited in A's `ctx.waitUntil`. Plain data may pass between requests, so
//! a request's event goes, as data, into the isolate's waiting list, and the first request to
//! find no window forming leads one. Its `waitUntil` sleeps until the window is
//! [due](Coalescer::poll_timeout), then takes every event waiting and delivers them through an
//! [`Engine`] of the window's own (batches, retries, `Retry-After`, the `deadlineMs` budget):
//! every request, timer and answer of that delivery belongs to the leading request.
//!
//! [`Coalescer`] is that policy, sans-IO like the engine: time is an argument, and the shell
//! (`edge.js` through `src/web/edge.rs`) only tells it what happened and carries out what it
//! says, window by window, each from its leader's `waitUntil`:
//!
//! - inputs: [`arrive`](Coalescer::arrive), [`event_ready`](Coalescer::event_ready),
//!   [`handle_timeout`](Coalescer::handle_timeout), [`handle_outcome`](Coalescer::handle_outcome),
//!   [`wait_until_ended`](Coalescer::wait_until_ended),
//!   [`wait_until_cancelled`](Coalescer::wait_until_cancelled);
//! - outputs, per window: [`poll_transmit`](Coalescer::poll_transmit),
//!   [`poll_abort`](Coalescer::poll_abort), [`poll_timeout`](Coalescer::poll_timeout),
//!   [`is_finished`](Coalescer::is_finished), [`take_report`](Coalescer::take_report).
//!
//! What a leader cannot finish goes back to the waiting list, uuid and capture time kept, for
//! the next leader: when its window has spent its subrequests (Cloudflare allows 50 per
//! request on the free plan, and every batch and retry of a window is one of its leader's),
//! and when its `waitUntil` is cancelled. A leader that never takes its window (its
//! `waitUntil` was cancelled without a word) is replaced once [`LEADER_GRACE_MS`] are past.
//!
//! # Example
//! ```
//! use spool::engine::{Config, Coalescer, EdgeConfig, Outcome, RequestId};
//! let now = 1_700_000_000_000;
//! let mut config = Config::new("https://collector.example/batch/");
//! config.api_key = "phc_test".into();
//! let edge = EdgeConfig::new(config);
//! let mut coalescer = Coalescer::new(edge, 7).unwrap();
//! // Two requests within the window (1 s by default): the first leads it.
//! let window = coalescer.event_ready(RequestId(1), r#"{"path":"/a"}"#.into(), now, now).unwrap();
//! let window = window.expect("the first request leads");
//! assert_eq!(coalescer.event_ready(RequestId(2), r#"{"path":"/b"}"#.into(), now + 5, now + 5), Ok(None));
//! // The leader's waitUntil sleeps until the window is due, then sends one batch of both.
//! let due = coalescer.poll_timeout(window).unwrap();
//! coalescer.handle_timeout(window, due);
//! let request = coalescer.poll_transmit(window, due).unwrap();
//! assert_eq!(request.events, 2);
//! coalescer.handle_outcome(window, request.id, Outcome::status(200), due + 30);
//! assert!(coalescer.is_finished(window));
//! assert_eq!(coalescer.take_report(window).unwrap().stats.delivered, 2);
//! ```

use super::{
    BatchMode, CaptureError, Config, ConfigError, DropReason, Engine, EventInput, Notice, Outcome,
    Rng, Settlement, Stats, Transmit, TransmitId, Uuid,
};

/// How long after its window is due a leading request may still not have taken it before the
/// next request leads instead (its `waitUntil` was cancelled, or its isolate is stuck), and
/// how long after its deadline a delivery may still not have ended before its events are
/// handed to the next leader. Taking is exclusive, so a late leader finds nothing to take.
pub const LEADER_GRACE_MS: u64 = 5_000;

/// Subrequests one Worker request may make on Cloudflare's free plan (1,000 on paid plans):
/// every batch and every retry of a window counts against its leading request.
pub const FREE_PLAN_SUBREQUESTS: u32 = 50;

/// How long a window's delivery may run after the window when no `deadline_ms` is given.
/// Cloudflare keeps `waitUntil` work alive for about 30 s after the response; the window and
/// the last 4 s are a margin for aborting what is abandoned and logging it.
pub const DEFAULT_DEADLINE_MS: u64 = 25_000;

/// Names one Worker request, as the shell numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one batching window (and its delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId(pub u64);

/// How the edge coalesces: the exporter's config for every window's delivery, and the edge's
/// own settings.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The config of each window's [`Engine`]. Its batch mode sets the window: in `linger`
    /// mode, `flush_interval_ms`; in `auto` and `off`, none (each event goes at once).
    pub exporter: Config,
    /// The name of every event, e.g. `"http_request"`.
    pub event_name: String,
    /// How long a window's delivery may run after the window before what is left is
    /// abandoned (counted as dropped `shutdown`).
    pub deadline_ms: u64,
    /// See [`LEADER_GRACE_MS`].
    pub leader_grace_ms: u64,
    /// Requests (batches and retries) one window's delivery may make: its leader's
    /// subrequests. See [`FREE_PLAN_SUBREQUESTS`].
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

    /// Checks the exporter's config and the edge's own settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.exporter.validate()?;
        if self.event_name.is_empty() {
            return Err(ConfigError::new("eventName", "must not be empty".into()));
        }
        if self.subrequest_limit == 0 {
            return Err(ConfigError::new(
                "subrequestLimit",
                "must be 1 or more: each batch is one subrequest".into(),
            ));
        }
        Ok(())
    }
}

/// What a window's delivery came to, from [`Coalescer::take_report`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowReport {
    /// The window's engine's counters: delivered, dropped by reason, requests, retries, the
    /// last error.
    pub stats: Stats,
    /// Events handed back to the waiting list for the next leader (the subrequests ran out,
    /// or the leader's `waitUntil` was cancelled). They are neither delivered nor dropped yet.
    pub handed_back: u64,
    /// Requests the delivery made: subrequests of the leading request.
    pub subrequests: u32,
}

/// The coalescer's own counters, across windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalesceStats {
    /// Requests told of with [`Coalescer::arrive`].
    pub requests: u64,
    /// Events taken in with [`Coalescer::event_ready`].
    pub events: u64,
    /// Windows opened.
    pub windows: u64,
    /// Windows whose leader never took them and were replaced.
    pub replaced_leaders: u64,
    /// Deliveries that stopped because their leader's `waitUntil` was cancelled (or went
    /// silent past its deadline and grace).
    pub cancelled_deliveries: u64,
    /// Deliveries that stopped because they had spent their subrequests.
    pub exhausted_deliveries: u64,
    /// Events handed back to the waiting list, summed over every hand-back.
    pub handed_back: u64,
    /// Events refused because the waiting list was full (`maxQueueEvents`).
    pub dropped_waiting_full: u64,
    /// Requests made, all windows together.
    pub subrequests: u64,
    /// Events delivered, all windows together.
    pub delivered: u64,
    /// Events dropped by windows' deliveries, whatever the reason (`tooLarge`, `rejected`,
    /// `attemptsExhausted`, abandoned at the deadline...).
    pub dropped: u64,
}

/// An event waiting for a window, or held by a window's delivery so that it can be handed back.
#[derive(Debug, Clone)]
struct Pending {
    /// A JSON object.
    properties: String,
    timestamp_ms: u64,
    /// Set once it has been captured: kept when it is handed back, so a resend is recognised.
    uuid: Option<Uuid>,
}

#[derive(Debug)]
enum Phase {
    /// The leader has not taken the waiting events yet; they are due at `due`.
    Forming { due: u64 },
    /// The leader delivers what it took.
    Delivering(Box<Delivery>),
    /// Nothing left to do; the report waits for [`Coalescer::take_report`].
    Finished(WindowReport),
}

struct Delivery {
    engine: Engine,
    /// When the delivery gives up (the engine's shutdown deadline).
    deadline: u64,
    /// Events captured and not yet settled, in capture order: what is handed back if the
    /// delivery stops. A list rather than a map: a window holds few events, and a map's code
    /// would be shipped to every page that loads the wasm.
    unsettled: Vec<Pending>,
    /// Requests made.
    sent: u32,
    /// Requests in flight and when each times out.
    in_flight: Vec<(TransmitId, u64)>,
    /// The engine's shutdown completed: everything settled.
    done: bool,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("deadline", &self.deadline)
            .field("unsettled", &self.unsettled.len())
            .field("sent", &self.sent)
            .field("in_flight", &self.in_flight)
            .field("done", &self.done)
            .finish()
    }
}

#[derive(Debug)]
struct Window {
    id: WindowId,
    leader: RequestId,
    phase: Phase,
    /// Requests the leader must abort (timed out, or abandoned at the deadline): kept here, so
    /// those of the last moment are read after the window finished.
    aborts: Vec<TransmitId>,
}

/// The edge's batching policy for one isolate. See the [module docs](self).
#[derive(Debug)]
pub struct Coalescer {
    config: EdgeConfig,
    rng: Rng,
    /// The isolate's distinct id, minted by the first window's engine (unless configured).
    distinct_id: Option<String>,
    /// Events no window has taken, oldest first.
    waiting: Vec<Pending>,
    windows: Vec<Window>,
    next_window: u64,
    /// No request of any window leaves before this (the endpoint's last `Retry-After`).
    hold: u64,
    stats: CoalesceStats,
    /// Whether settlements are reported, and those not yet polled.
    report_settlements: bool,
    settled: Vec<(Settlement, Vec<Uuid>)>,
    /// Where uuids are written for `capture`, kept to save an allocation per event.
    scratch: String,
}

impl Coalescer {
    /// A coalescer for one isolate; each window's engine is seeded from `seed`'s generator.
    /// Fails if the config is out of range.
    pub fn new(config: EdgeConfig, seed: u64) -> Result<Coalescer, ConfigError> {
        config.validate()?;
        Ok(Coalescer {
            distinct_id: config.exporter.distinct_id.clone(),
            config,
            rng: Rng::new(seed),
            waiting: Vec::new(),
            windows: Vec::new(),
            next_window: 0,
            hold: 0,
            stats: CoalesceStats::default(),
            report_settlements: false,
            settled: Vec::new(),
            scratch: String::with_capacity(36),
        })
    }

    /// The config in force.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// Turns [`poll_settled`](Self::poll_settled) on or off (off by default: only tests and
    /// debugging tools read it).
    pub fn report_settlements(&mut self, on: bool) {
        self.report_settlements = on;
    }

    /// Events settled (delivered or dropped) since the last call, with how, when
    /// [`report_settlements`](Self::report_settlements) is on. Events refused at capture by a
    /// window's engine (`tooLarge`) come with the uuid they were captured with before, or none.
    #[must_use = "settlements taken are gone: their events are never reported"]
    pub fn poll_settled(&mut self) -> Option<(Settlement, Vec<Uuid>)> {
        first(&mut self.settled)
    }

    /// A Worker request arrived at `now_ms`. Leaders past their grace are replaced now.
    pub fn arrive(&mut self, _request: RequestId, now_ms: u64) {
        self.stats.requests += 1;
        self.expire(now_ms);
    }

    /// Request `request`'s event is ready (its response is made): `properties` is a JSON
    /// object, `timestamp_ms` the capture time. Returns the window this request now leads, if
    /// it found none forming: its `ctx.waitUntil` must then carry out that window (sleep until
    /// [`poll_timeout`](Self::poll_timeout), [`handle_timeout`](Self::handle_timeout), send what
    /// [`poll_transmit`](Self::poll_transmit) says...) until [`is_finished`](Self::is_finished).
    ///
    /// Refuses the event with [`CaptureError::QueueFull`] (counted) when `maxQueueEvents` are
    /// already waiting.
    pub fn event_ready(
        &mut self,
        request: RequestId,
        properties: String,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<Option<WindowId>, CaptureError> {
        self.expire(now_ms);
        if self.waiting.len() >= self.config.exporter.max_queue_events {
            self.stats.dropped_waiting_full += 1;
            return Err(CaptureError::QueueFull);
        }
        self.stats.events += 1;
        self.waiting.push(Pending {
            properties,
            timestamp_ms,
            uuid: None,
        });
        if self.forming().is_some() {
            return Ok(None);
        }
        Ok(Some(self.open(request, now_ms)))
    }

    /// The time is `now_ms` in window `window`'s leader: take the waiting events if the window
    /// is due, expire its requests past `requestTimeoutMs` and enforce its deadline.
    pub fn handle_timeout(&mut self, window: WindowId, now_ms: u64) {
        let Some(idx) = self.index(window) else {
            return;
        };
        match &mut self.windows[idx].phase {
            Phase::Forming { due } if *due <= now_ms => self.take(idx, now_ms),
            Phase::Delivering(d) => {
                d.engine.handle_timeout(now_ms);
                self.after(idx);
            }
            _ => {}
        }
    }

    /// The next request window `window`'s leader must send now, if any: its batch, or a retry.
    /// Drain until `None` after every input. None once the window has spent its subrequests.
    #[must_use = "a transmit taken and not sent is never answered: its events wait for the request timeout"]
    pub fn poll_transmit(&mut self, window: WindowId, now_ms: u64) -> Option<Transmit> {
        let idx = self.index(window)?;
        let limit = self.config.subrequest_limit;
        let hold = self.hold;
        let Phase::Delivering(d) = &mut self.windows[idx].phase else {
            return None;
        };
        // A Retry-After answered to another window holds this one too.
        d.engine.handle_hold(hold, now_ms);
        let sent = if d.sent < limit {
            d.engine.poll_transmit(now_ms)
        } else {
            None
        };
        if let Some(t) = &sent {
            d.sent += 1;
            d.in_flight
                .push((t.id, now_ms + self.config.exporter.request_timeout_ms));
            self.stats.subrequests += 1;
        }
        self.after(idx);
        sent
    }

    /// The next request of window `window` its leader must abort (timed out, or abandoned at
    /// the deadline), if any.
    #[must_use = "an abort taken and not carried out leaves its request running past the window"]
    pub fn poll_abort(&mut self, window: WindowId) -> Option<TransmitId> {
        let idx = self.index(window)?;
        first(&mut self.windows[idx].aborts)
    }

    /// When window `window`'s leader should call [`handle_timeout`](Self::handle_timeout)
    /// next: the window's end while it forms, then its engine's next timer (batches, backoff,
    /// `Retry-After`, request timeouts, the deadline). `None` when it need not wake: it waits
    /// for an answer, or is finished. Valid after `poll_transmit` has been drained.
    #[must_use = "the window acts on time only when its leader calls `handle_timeout` then"]
    pub fn poll_timeout(&self, window: WindowId) -> Option<u64> {
        let idx = self.index(window)?;
        match &self.windows[idx].phase {
            Phase::Forming { due } => Some(*due),
            Phase::Delivering(d) if d.sent < self.config.subrequest_limit => {
                d.engine.poll_timeout()
            }
            // Out of subrequests: only the requests in flight, and the deadline, matter.
            Phase::Delivering(d) => d
                .in_flight
                .iter()
                .map(|(_, at)| *at)
                .min()
                .map(|at| at.min(d.deadline)),
            Phase::Finished(_) => None,
        }
    }

    /// Request `id` of window `window` ended with `outcome` at `now_ms`. Returns `false` (and
    /// changes nothing) if it is not in flight.
    pub fn handle_outcome(
        &mut self,
        window: WindowId,
        id: TransmitId,
        outcome: Outcome,
        now_ms: u64,
    ) -> bool {
        let Some(idx) = self.index(window) else {
            return false;
        };
        let Phase::Delivering(d) = &mut self.windows[idx].phase else {
            return false;
        };
        forget(&mut d.in_flight, id);
        let known = d.engine.handle_outcome(id, outcome, now_ms);
        self.hold = self.hold.max(d.engine.hold_until());
        self.after(idx);
        known
    }

    /// Whether window `window` has nothing left to do (or is unknown): its leader's
    /// `waitUntil` may end, after [`take_report`](Self::take_report).
    pub fn is_finished(&self, window: WindowId) -> bool {
        self.index(window)
            .is_none_or(|idx| matches!(self.windows[idx].phase, Phase::Finished(_)))
    }

    /// The report of finished window `window`, once; the window is forgotten.
    #[must_use]
    pub fn take_report(&mut self, window: WindowId) -> Option<WindowReport> {
        let idx = self.index(window)?;
        if !matches!(self.windows[idx].phase, Phase::Finished(_)) {
            return None;
        }
        match self.windows.remove(idx).phase {
            Phase::Finished(report) => Some(report),
            _ => None,
        }
    }

    /// Request `request`'s `waitUntil` ended at `now_ms`. A window it led that is not finished
    /// (its delivery stopped early) hands its events back; a window it never took is given up,
    /// and the next request leads.
    pub fn wait_until_ended(&mut self, request: RequestId, now_ms: u64) {
        self.stop_led_by(request, now_ms);
    }

    /// Request `request`'s `waitUntil` was cancelled at `now_ms`: the runtime stopped its
    /// timers and requests. A window it led hands back every event not yet acknowledged (those
    /// in flight too: at least once, and the uuid makes a resend idempotent).
    pub fn wait_until_cancelled(&mut self, request: RequestId, now_ms: u64) {
        self.stop_led_by(request, now_ms);
    }

    /// Events waiting for a window.
    pub fn waiting_events(&self) -> usize {
        self.waiting.len()
    }

    /// Events the isolate holds: waiting, or taken by a window and not yet settled. An evicted
    /// isolate loses them.
    pub fn held_events(&self) -> usize {
        let mut n = self.waiting.len();
        for w in &self.windows {
            if let Phase::Delivering(d) = &w.phase {
                n += d.unsettled.len();
            }
        }
        n
    }

    /// The window forming now and its leader, if any.
    pub fn forming(&self) -> Option<(WindowId, RequestId)> {
        self.windows
            .iter()
            .find(|w| matches!(w.phase, Phase::Forming { .. }))
            .map(|w| (w.id, w.leader))
    }

    /// The instant before which no request may go, from the endpoint's last `Retry-After`.
    pub fn retry_after_until(&self) -> u64 {
        self.hold
    }

    /// The isolate's distinct id, once a window has minted it (or as configured).
    pub fn distinct_id(&self) -> Option<&str> {
        self.distinct_id.as_deref()
    }

    /// The counters now.
    pub fn stats(&self) -> CoalesceStats {
        self.stats
    }

    fn index(&self, window: WindowId) -> Option<usize> {
        self.windows.iter().position(|w| w.id == window)
    }

    fn open(&mut self, leader: RequestId, now_ms: u64) -> WindowId {
        self.next_window += 1;
        let id = WindowId(self.next_window);
        self.stats.windows += 1;
        self.windows.push(Window {
            id,
            leader,
            aborts: Vec::new(),
            phase: Phase::Forming {
                due: now_ms + self.config.window_ms(),
            },
        });
        id
    }

    /// Replaces leaders that never took their window within its grace, and hands back the
    /// events of deliveries silent past their deadline and grace.
    fn expire(&mut self, now_ms: u64) {
        let grace = self.config.leader_grace_ms;
        let mut i = 0;
        while i < self.windows.len() {
            let stale = match &self.windows[i].phase {
                Phase::Forming { due } => now_ms > due.saturating_add(grace),
                Phase::Delivering(d) => now_ms > d.deadline.saturating_add(grace),
                Phase::Finished(_) => false,
            };
            if !stale {
                i += 1;
                continue;
            }
            match self.windows.remove(i).phase {
                Phase::Delivering(d) => {
                    self.stats.cancelled_deliveries += 1;
                    self.hand_back(*d);
                }
                _ => self.stats.replaced_leaders += 1,
            }
        }
    }

    /// Takes the waiting events into window `idx`'s own engine and starts their delivery:
    /// everything at once, until the deadline.
    fn take(&mut self, idx: usize, now_ms: u64) {
        let mut exporter = self.config.exporter.clone();
        exporter.distinct_id = self.distinct_id.clone();
        let seed = self.rng.next_u64();
        // Validated in `new`, and only the distinct id changed: one the engine minted itself.
        let Ok(mut engine) = Engine::new(exporter, seed) else {
            return;
        };
        if self.distinct_id.is_none() {
            self.distinct_id = Some(engine.distinct_id().to_owned());
        }
        engine.report_settlements(true);
        // Never more than the window's subrequests could carry in first attempts; the rest
        // waits for the next window.
        let cap = (self.config.subrequest_limit as usize)
            .saturating_mul(self.config.exporter.max_batch_events)
            .min(self.config.exporter.max_queue_events);
        let mut unsettled = Vec::new();
        let n = self.waiting.len().min(cap);
        for mut event in self.waiting.drain(..n) {
            let mut input = EventInput::new(&self.config.event_name)
                .properties(&event.properties)
                .timestamp_ms(event.timestamp_ms);
            if let Some(uuid) = event.uuid {
                self.scratch.clear();
                uuid.write(&mut self.scratch);
                input = input.uuid(&self.scratch);
            }
            match engine.capture_json(input, now_ms) {
                Ok(uuid) => {
                    event.uuid = Some(uuid);
                    unsettled.push(event);
                }
                // Refused (tooLarge, queueFull): counted in the engine's stats, and here.
                Err(e) => {
                    self.stats.dropped += 1;
                    if self.report_settlements {
                        let reason = match e {
                            CaptureError::QueueFull => DropReason::QueueFull,
                            _ => DropReason::TooLarge,
                        };
                        let uuids = event.uuid.into_iter().collect();
                        self.settled.push((Settlement::Dropped(reason), uuids));
                    }
                }
            }
        }
        let deadline = now_ms.saturating_add(self.config.deadline_ms);
        engine.shutdown(now_ms, deadline);
        self.windows[idx].phase = Phase::Delivering(Box::new(Delivery {
            engine,
            deadline,
            unsettled,
            sent: 0,
            in_flight: Vec::new(),
            done: false,
        }));
        self.after(idx);
    }

    /// After any input to window `idx`'s engine: reads its notices, and finishes the window
    /// when everything settled, or when it is out of subrequests with nothing in flight (what
    /// is left goes back to the waiting list).
    fn after(&mut self, idx: usize) {
        let limit = self.config.subrequest_limit;
        let window = &mut self.windows[idx];
        let Phase::Delivering(d) = &mut window.phase else {
            return;
        };
        while let Some(notice) = d.engine.poll_notice() {
            match notice {
                Notice::Abort(id) => {
                    forget(&mut d.in_flight, id);
                    window.aborts.push(id);
                }
                Notice::Settled { settlement, uuids } => {
                    d.unsettled
                        .retain(|e| !e.uuid.is_some_and(|u| uuids.contains(&u)));
                    match settlement {
                        Settlement::Delivered => self.stats.delivered += uuids.len() as u64,
                        Settlement::Dropped(_) => self.stats.dropped += uuids.len() as u64,
                    }
                    if self.report_settlements {
                        self.settled.push((settlement, uuids));
                    }
                }
                Notice::ShutdownComplete { .. } => d.done = true,
                _ => {}
            }
        }
        self.hold = self.hold.max(d.engine.hold_until());
        let exhausted = d.sent >= limit && d.in_flight.is_empty() && !d.done;
        if !(d.done || exhausted) {
            return;
        }
        if exhausted {
            self.stats.exhausted_deliveries += 1;
        }
        let phase = std::mem::replace(
            &mut self.windows[idx].phase,
            Phase::Finished(WindowReport::default()),
        );
        if let Phase::Delivering(d) = phase {
            let report = self.hand_back(*d);
            self.windows[idx].phase = Phase::Finished(report);
        }
    }

    /// Stops every window `request` leads: one forming is given up, one delivering hands back
    /// what it has not settled.
    fn stop_led_by(&mut self, request: RequestId, _now_ms: u64) {
        let mut i = 0;
        while i < self.windows.len() {
            if self.windows[i].leader != request {
                i += 1;
                continue;
            }
            let window = self.windows.remove(i);
            match window.phase {
                Phase::Forming { .. } => self.stats.replaced_leaders += 1,
                Phase::Delivering(d) => {
                    self.stats.cancelled_deliveries += 1;
                    self.hand_back(*d);
                }
                Phase::Finished(_) => {}
            }
        }
    }

    /// Puts a stopped delivery's unsettled events back at the front of the waiting list, in
    /// capture order; returns its report.
    fn hand_back(&mut self, d: Delivery) -> WindowReport {
        let handed_back = d.unsettled.len() as u64;
        let mut events = d.unsettled;
        events.append(&mut self.waiting);
        self.waiting = events;
        self.stats.handed_back += handed_back;
        WindowReport {
            stats: d.engine.stats(),
            handed_back,
            subrequests: d.sent,
        }
    }
}

/// Takes the first of `items`, if any. Lists here hold a few items, and a `VecDeque` would add
/// its code to every page that loads the wasm.
fn first<T>(items: &mut Vec<T>) -> Option<T> {
    (!items.is_empty()).then(|| items.remove(0))
}

/// Forgets request `id` among those in flight.
fn forget(in_flight: &mut Vec<(TransmitId, u64)>, id: TransmitId) {
    if let Some(i) = in_flight.iter().position(|(r, _)| *r == id) {
        in_flight.swap_remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RetryAfter;

    const T0: u64 = 1_700_000_000_000;

    fn coalescer(adjust: impl FnOnce(&mut EdgeConfig)) -> Coalescer {
        let mut exporter = Config::new("https://collector.example/batch/");
        exporter.api_key = "phc_test".into();
        let mut config = EdgeConfig::new(exporter);
        adjust(&mut config);
        Coalescer::new(config, 7).unwrap()
    }

    /// Request `n` arrives and its event (path `/n`) is ready at `now`.
    fn request(c: &mut Coalescer, n: u64, now: u64) -> Option<WindowId> {
        c.arrive(RequestId(n), now);
        let properties = format!(r#"{{"path":"/{n}"}}"#);
        c.event_ready(RequestId(n), properties, now, now).unwrap()
    }

    /// Everything window `w` sends at `now`.
    fn drain(c: &mut Coalescer, w: WindowId, now: u64) -> Vec<Transmit> {
        c.handle_timeout(w, now);
        std::iter::from_fn(|| c.poll_transmit(w, now)).collect()
    }

    /// The paths of a body's events, in order.
    fn paths(t: &Transmit) -> Vec<String> {
        field(t, |event| &event["properties"]["path"])
    }

    fn uuids(t: &Transmit) -> Vec<String> {
        field(t, |event| &event["uuid"])
    }

    /// A string of each event of a PostHog body, in order, parsed.
    fn field(t: &Transmit, get: impl Fn(&serde_json::Value) -> &serde_json::Value) -> Vec<String> {
        let body: serde_json::Value = serde_json::from_str(&t.body).expect("the body is JSON");
        let events = body["batch"].as_array().expect("a PostHog batch");
        events
            .iter()
            .map(|event| get(event).as_str().expect("a string").to_owned())
            .collect()
    }

    fn retry_after(seconds: u64) -> Outcome {
        Outcome::Response {
            status: 429,
            retry_after: RetryAfter::parse(&seconds.to_string()),
            body: None,
        }
    }

    #[test]
    fn requests_within_one_window_reach_the_collector_in_one_request() {
        let mut c = coalescer(|_| {});
        let w = request(&mut c, 1, T0).expect("the first request leads");
        for n in 2..=5 {
            assert_eq!(request(&mut c, n, T0 + 100 * n), None, "request {n} joins");
        }
        let sent = drain(&mut c, w, T0 + 1000);
        assert_eq!(sent.len(), 1);
        assert_eq!(paths(&sent[0]), ["/1", "/2", "/3", "/4", "/5"]);
        assert!(c.handle_outcome(w, sent[0].id, Outcome::status(200), T0 + 1040));
        assert!(c.is_finished(w));
        let report = c.take_report(w).unwrap();
        assert_eq!((report.stats.delivered, report.subrequests), (5, 1));
    }

    #[test]
    fn the_batch_waits_out_the_window_from_its_first_request() {
        let mut c = coalescer(|e| e.exporter.flush_interval_ms = 300);
        let w = request(&mut c, 1, T0).unwrap();
        assert_eq!(c.poll_timeout(w), Some(T0 + 300));
        assert!(
            drain(&mut c, w, T0 + 299).is_empty(),
            "nothing before the window ends"
        );
        assert_eq!(drain(&mut c, w, T0 + 300).len(), 1);
    }

    #[test]
    fn a_request_after_the_window_went_leads_the_next_window() {
        let mut c = coalescer(|_| {});
        let first = request(&mut c, 1, T0).unwrap();
        drain(&mut c, first, T0 + 1000);
        let next = request(&mut c, 2, T0 + 1001).expect("no window forming: request 2 leads");
        assert_ne!(first, next);
        assert_eq!(paths(&drain(&mut c, next, T0 + 2001)[0]), ["/2"]);
    }

    #[test]
    fn in_auto_and_off_mode_each_event_goes_at_once_from_its_own_request() {
        for mode in [BatchMode::Auto, BatchMode::Off] {
            let mut c = coalescer(|e| e.exporter.batch_mode = mode);
            for n in 1..=3 {
                let w = request(&mut c, n, T0).expect("every request leads its own window");
                assert_eq!(c.poll_timeout(w), Some(T0), "no window to wait out");
                let sent = drain(&mut c, w, T0);
                assert_eq!(sent.len(), 1, "{mode:?}");
                assert_eq!(paths(&sent[0]), [format!("/{n}")]);
            }
        }
    }

    #[test]
    fn a_window_of_250_events_goes_in_batches_of_at_most_100() {
        let mut c = coalescer(|_| {});
        let w = request(&mut c, 0, T0).unwrap();
        for n in 1..250 {
            request(&mut c, n, T0 + 1);
        }
        let sent = drain(&mut c, w, T0 + 1000);
        assert_eq!(
            sent.iter().map(|t| t.events).collect::<Vec<_>>(),
            [100, 100, 50]
        );
    }

    #[test]
    fn a_leader_that_never_takes_its_window_is_replaced_after_its_grace_and_no_event_is_lost() {
        let mut c = coalescer(|e| e.exporter.flush_interval_ms = 100);
        let lost = request(&mut c, 1, T0).unwrap();
        // Its waitUntil was cancelled: it never wakes. Within its window and grace, it keeps
        // the window.
        assert_eq!(request(&mut c, 2, T0 + 100 + LEADER_GRACE_MS), None);
        let next = request(&mut c, 3, T0 + 100 + LEADER_GRACE_MS + 1).expect("request 3 leads");
        let sent = drain(&mut c, next, T0 + 200 + LEADER_GRACE_MS + 1);
        assert_eq!(paths(&sent[0]), ["/1", "/2", "/3"]);
        assert_eq!(c.stats().replaced_leaders, 1);
        // Should the first leader wake after all, there is nothing left for it to take.
        assert!(drain(&mut c, lost, T0 + 200 + LEADER_GRACE_MS + 2).is_empty());
        assert!(c.is_finished(lost));
    }

    #[test]
    fn a_leader_told_cancelled_before_its_window_leaves_the_events_to_the_next_request() {
        let mut c = coalescer(|_| {});
        request(&mut c, 1, T0).unwrap();
        c.wait_until_cancelled(RequestId(1), T0 + 10);
        let next = request(&mut c, 2, T0 + 20).expect("request 2 leads at once");
        assert_eq!(paths(&drain(&mut c, next, T0 + 1020)[0]), ["/1", "/2"]);
    }

    #[test]
    fn events_of_a_leader_cancelled_mid_delivery_go_to_the_next_leader_with_their_uuids() {
        let mut c = coalescer(|_| {});
        let w = request(&mut c, 1, T0).unwrap();
        request(&mut c, 2, T0 + 1);
        let first = drain(&mut c, w, T0 + 1000).remove(0);
        // The runtime cancels the waitUntil with the request in flight: unacknowledged.
        c.wait_until_cancelled(RequestId(1), T0 + 1100);
        assert_eq!(c.waiting_events(), 2);
        let next = request(&mut c, 3, T0 + 1200).unwrap();
        let resent = drain(&mut c, next, T0 + 2200).remove(0);
        assert_eq!(paths(&resent), ["/1", "/2", "/3"]);
        assert_eq!(
            uuids(&resent)[..2],
            uuids(&first)[..],
            "the same events, resent"
        );
        assert!(c.handle_outcome(next, resent.id, Outcome::status(200), T0 + 2300));
        assert_eq!(c.take_report(next).unwrap().stats.delivered, 3);
    }

    #[test]
    fn a_window_never_makes_more_requests_than_its_leader_may_and_hands_the_rest_on() {
        let mut c = coalescer(|e| {
            e.subrequest_limit = 3;
            e.exporter.max_batch_events = 1;
            e.exporter.initial_backoff_ms = 10;
            e.exporter.max_backoff_ms = 10;
        });
        let w = request(&mut c, 1, T0).unwrap();
        for n in 2..=5 {
            request(&mut c, n, T0);
        }
        let sent = drain(&mut c, w, T0 + 1000);
        assert_eq!(
            sent.len(),
            3,
            "3 of the 5 batches: the leader's subrequests"
        );
        for t in &sent {
            c.handle_outcome(w, t.id, Outcome::status(503), T0 + 1010);
        }
        assert!(drain(&mut c, w, T0 + 2000).is_empty(), "no retry either");
        assert!(c.is_finished(w));
        let report = c.take_report(w).unwrap();
        assert_eq!((report.subrequests, report.handed_back), (3, 3));
        assert_eq!(report.stats.dropped.total(), 0, "not dropped: handed on");
        // The window took no more than its subrequests could carry: 2 never left the list.
        assert_eq!(c.waiting_events(), 5);
        let next = request(&mut c, 6, T0 + 2000).expect("the next request leads");
        let resent = drain(&mut c, next, T0 + 3000);
        let paths: Vec<_> = resent.iter().flat_map(paths).collect();
        assert_eq!(paths, ["/1", "/2", "/3"], "the oldest first");
        assert_eq!(uuids(&resent[0]), uuids(&sent[0]), "the same event, resent");
    }

    #[test]
    fn a_retry_after_answered_to_one_window_holds_back_the_next_window() {
        let mut c = coalescer(|_| {});
        let a = request(&mut c, 1, T0).unwrap();
        let t = drain(&mut c, a, T0 + 1000).remove(0);
        c.handle_outcome(a, t.id, retry_after(10), T0 + 1050);
        let until = T0 + 11_050;
        assert_eq!(c.retry_after_until(), until);
        let b = request(&mut c, 2, T0 + 2000).unwrap();
        assert!(
            drain(&mut c, b, T0 + 3000).is_empty(),
            "B's batch waits for A's Retry-After"
        );
        assert_eq!(c.poll_timeout(b), Some(until));
        assert!(drain(&mut c, b, until - 1).is_empty());
        assert_eq!(paths(&drain(&mut c, b, until)[0]), ["/2"]);
        assert_eq!(
            paths(&drain(&mut c, a, until)[0]),
            ["/1"],
            "A's retry waits too"
        );
    }

    #[test]
    fn a_retry_after_past_the_deadline_abandons_the_window_at_once_and_counts_it() {
        let mut c = coalescer(|e| e.deadline_ms = 3000);
        let w = request(&mut c, 1, T0).unwrap();
        let t = drain(&mut c, w, T0 + 1000).remove(0);
        c.handle_outcome(w, t.id, retry_after(60), T0 + 1100);
        assert!(c.is_finished(w), "at once, not at the deadline");
        let report = c.take_report(w).unwrap();
        assert_eq!(report.stats.dropped.shutdown, 1);
        assert_eq!(report.stats.last_error.as_deref(), Some("HTTP 429"));
    }

    #[test]
    fn at_the_deadline_the_request_in_flight_is_aborted_and_its_events_counted_abandoned() {
        let mut c = coalescer(|e| {
            e.deadline_ms = 1000;
            e.exporter.request_timeout_ms = 5000;
        });
        let w = request(&mut c, 1, T0).unwrap();
        let t = drain(&mut c, w, T0 + 1000).remove(0);
        assert_eq!(c.poll_timeout(w), Some(T0 + 2000));
        c.handle_timeout(w, T0 + 2000);
        assert_eq!(c.poll_abort(w), Some(t.id));
        assert!(c.is_finished(w));
        assert_eq!(c.take_report(w).unwrap().stats.dropped.shutdown, 1);
    }

    #[test]
    fn a_delivery_silent_past_its_deadline_and_grace_hands_its_events_to_the_next_leader() {
        let mut c = coalescer(|e| e.deadline_ms = 1000);
        let w = request(&mut c, 1, T0).unwrap();
        drain(&mut c, w, T0 + 1000);
        // The leader is gone without a word. Until its deadline and grace are past, its
        // events stay its own.
        let silent_until = T0 + 2000 + LEADER_GRACE_MS;
        let next = request(&mut c, 2, silent_until).expect("request 2 leads the next window");
        assert_eq!(c.waiting_events(), 1);
        c.arrive(RequestId(3), silent_until + 1);
        assert_eq!(c.stats().cancelled_deliveries, 1);
        let sent = drain(&mut c, next, silent_until + 1000);
        assert_eq!(
            paths(&sent[0]),
            ["/1", "/2"],
            "request 1's event goes with request 2's"
        );
    }

    #[test]
    fn the_isolates_events_share_one_distinct_id_across_windows() {
        let mut c = coalescer(|_| {});
        let a = request(&mut c, 1, T0).unwrap();
        let first = drain(&mut c, a, T0 + 1000).remove(0);
        let b = request(&mut c, 2, T0 + 1001).unwrap();
        let second = drain(&mut c, b, T0 + 2001).remove(0);
        let ids = |t: &Transmit| field(t, |event| &event["distinct_id"]);
        assert_eq!(ids(&first), ids(&second));
        assert_eq!(Some(ids(&first)[0].as_str()), c.distinct_id());
    }

    #[test]
    fn a_full_waiting_list_refuses_the_event_and_counts_it() {
        let mut c = coalescer(|e| e.exporter.max_queue_events = 2);
        request(&mut c, 1, T0);
        request(&mut c, 2, T0);
        let refused = c.event_ready(RequestId(3), "{}".into(), T0, T0);
        assert_eq!(refused, Err(CaptureError::QueueFull));
        assert_eq!(c.stats().dropped_waiting_full, 1);
    }
}
