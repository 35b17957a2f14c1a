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
//! [`Engine`](super::Engine) of the window's own (batches, retries, `Retry-After`, the `deadlineMs` budget):
//! every request, timer and answer of that delivery belongs to the leading request.
//!
//! [`Coalescer`] is that policy, sans-IO like the engine: time is an argument, and the edge
//! shell (`src/web/edge.rs`, which `edge.js` calls once per Worker request) only tells it what
//! happened and carries out what it says, window by window, each from its leader's
//! `waitUntil`:
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
//! Here is the coalescer's API; [`EdgeConfig`] (its defaults and bounds) is in `config.rs`, a
//! window's state and delivery in `window.rs`.

mod config;
mod window;

pub use config::{EdgeConfig, DEFAULT_DEADLINE_MS, FREE_PLAN_SUBREQUESTS, LEADER_GRACE_MS};
pub use window::WindowReport;

use super::{
    CaptureError, ConfigError, DropReason, Outcome, Rng, Settlement, Start, Transmit, TransmitId,
    Uuid,
};
use window::{first, forget, Delivery, Pending, Phase, Window};

/// Names one Worker request, as the shell numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one batching window (and its delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowId(pub u64);

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

/// The edge's batching policy for one isolate. See the [module docs](self).
///
/// # Example
/// ```
/// use spool::engine::{Config, Coalescer, EdgeConfig, Outcome, RequestId};
/// let now = 1_700_000_000_000;
/// let mut config = Config::new("https://collector.example/batch/");
/// config.api_key = "phc_test".into();
/// let edge = EdgeConfig::new(config);
/// let mut coalescer = Coalescer::new(edge, 7).unwrap();
/// // Two requests within the window (1 s by default): the first leads it.
/// let window = coalescer.event_ready(RequestId(1), r#"{"path":"/a"}"#.into(), now, now).unwrap();
/// let window = window.expect("the first request leads");
/// assert_eq!(coalescer.event_ready(RequestId(2), r#"{"path":"/b"}"#.into(), now + 5, now + 5), Ok(None));
/// // The leader's waitUntil sleeps until the window is due, then sends one batch of both.
/// let due = coalescer.poll_timeout(window).unwrap();
/// coalescer.handle_timeout(window, due);
/// let request = coalescer.poll_transmit(window, due).unwrap();
/// assert_eq!(request.events, 2);
/// coalescer.handle_outcome(window, request.id, Outcome::status(200), due + 30);
/// assert!(coalescer.is_finished(window));
/// assert_eq!(coalescer.take_report(window).unwrap().stats.delivered, 2);
/// ```
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
            Phase::Delivering(d) => d.poll_timeout(self.config.subrequest_limit),
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

    /// Request `id` of window `window`, whose body the host compressed asynchronously to
    /// `wire_len` bytes, is ready: whether it may start at `now_ms`. [`Start::No`] if it was
    /// given up meanwhile, or if a `Retry-After` (answered to any window) began: it was taken
    /// back, its subrequest unspent.
    pub fn handle_compressed(
        &mut self,
        window: WindowId,
        id: TransmitId,
        wire_len: usize,
        now_ms: u64,
    ) -> Start {
        let Some(idx) = self.index(window) else {
            return Start::No;
        };
        let hold = self.hold;
        let Phase::Delivering(d) = &mut self.windows[idx].phase else {
            return Start::No;
        };
        d.engine.handle_hold(hold, now_ms);
        let go = d.engine.handle_compressed(id, wire_len, now_ms);
        if go == Start::No && d.in_flight.iter().any(|(r, _)| *r == id) {
            forget(&mut d.in_flight, id);
            d.sent -= 1;
            self.stats.subrequests -= 1;
        }
        self.after(idx);
        go
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

    /// When the endpoint's hold ends: no request may go before it (the last `Retry-After`), as
    /// [`Engine::hold_until`](crate::engine::Engine::hold_until).
    pub fn hold_until(&self) -> u64 {
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
    /// never more than the window's subrequests could carry in first attempts; the rest
    /// waits for the next window.
    fn take(&mut self, idx: usize, now_ms: u64) {
        let cap = (self.config.subrequest_limit as usize)
            .saturating_mul(self.config.exporter.max_batch_events)
            .min(self.config.exporter.max_queue_events);
        let n = self.waiting.len().min(cap);
        let seed = self.rng.next_u64();
        let (stats, settled, report) =
            (&mut self.stats, &mut self.settled, self.report_settlements);
        // Refused (tooLarge, queueFull): counted in the engine's stats, and here.
        let refused = |event: Pending, e: CaptureError| {
            stats.dropped += 1;
            if report {
                let reason = match e {
                    CaptureError::QueueFull => DropReason::QueueFull,
                    _ => DropReason::TooLarge,
                };
                settled.push((
                    Settlement::Dropped(reason),
                    event.uuid.into_iter().collect(),
                ));
            }
        };
        let started = Delivery::start(
            &self.config,
            self.distinct_id.clone(),
            seed,
            &mut self.waiting,
            n,
            now_ms,
            refused,
        );
        let Some(delivery) = started else {
            return;
        };
        if self.distinct_id.is_none() {
            self.distinct_id = Some(delivery.engine.distinct_id().to_owned());
        }
        self.windows[idx].phase = Phase::Delivering(Box::new(delivery));
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
        let (stats, settled, report) =
            (&mut self.stats, &mut self.settled, self.report_settlements);
        d.read_notices(&mut window.aborts, |settlement, uuids| {
            match settlement {
                Settlement::Delivered => stats.delivered += uuids.len() as u64,
                Settlement::Dropped(_) => stats.dropped += uuids.len() as u64,
            }
            if report {
                settled.push((settlement, uuids));
            }
        });
        self.hold = self.hold.max(d.engine.hold_until());
        let exhausted = d.exhausted(limit);
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
