//! One batching window: the events it took and its delivery through an [`Engine`] of its own,
//! from the moment its leader takes the waiting events to its [`WindowReport`].

use super::{EdgeConfig, RequestId, WindowId};
use crate::engine::{
    CaptureError, Engine, EventInput, Notice, Settlement, Stats, TransmitId, Uuid,
};

/// What a window's delivery came to, from [`Coalescer::take_report`](super::Coalescer::take_report).
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

/// An event waiting for a window, or held by a window's delivery so that it can be handed back.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// A JSON object.
    pub properties: String,
    pub timestamp_ms: u64,
    /// Set once it has been captured: kept when it is handed back, so a resend is recognised.
    pub uuid: Option<Uuid>,
}

#[derive(Debug)]
pub(super) enum Phase {
    /// The leader has not taken the waiting events yet; they are due at `due`.
    Forming { due: u64 },
    /// The leader delivers what it took.
    Delivering(Box<Delivery>),
    /// Nothing left to do; the report waits for `take_report`.
    Finished(WindowReport),
}

#[derive(Debug)]
pub(super) struct Window {
    pub id: WindowId,
    pub leader: RequestId,
    pub phase: Phase,
    /// Requests the leader must abort (timed out, or abandoned at the deadline): kept here, so
    /// those of the last moment are read after the window finished.
    pub aborts: Vec<TransmitId>,
}

pub(super) struct Delivery {
    pub engine: Engine,
    /// When the delivery gives up (the engine's shutdown deadline).
    pub deadline: u64,
    /// Events captured and not yet settled, in capture order: what is handed back if the
    /// delivery stops. A list rather than a map: a window holds few events, and a map's code
    /// would be shipped to every page that loads the wasm.
    pub unsettled: Vec<Pending>,
    /// Requests made.
    pub sent: u32,
    /// Requests in flight and when each times out.
    pub in_flight: Vec<(TransmitId, u64)>,
    /// The engine's shutdown completed: everything settled.
    pub done: bool,
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

impl Delivery {
    /// Captures the first `take` of `waiting` into a new engine (`distinct_id`, seeded with `seed`) and starts
    /// their delivery: everything at once, until `now_ms` plus the deadline. Events the engine
    /// refuses go to `refused`. `None` if the engine cannot be made, which `config` having
    /// passed [`EdgeConfig::validate`] rules out.
    pub fn start(
        config: &EdgeConfig,
        distinct_id: Option<String>,
        seed: u64,
        waiting: &mut Vec<Pending>,
        take: usize,
        now_ms: u64,
        mut refused: impl FnMut(Pending, CaptureError),
    ) -> Option<Delivery> {
        let mut exporter = config.exporter.clone();
        exporter.distinct_id = distinct_id;
        let mut engine = Engine::new(exporter, seed).ok()?;
        engine.report_settlements(true);
        let mut unsettled = Vec::new();
        // Where a handed-back event's uuid is written for its capture.
        let mut uuid_text = String::with_capacity(36);
        for mut event in waiting.drain(..take) {
            let mut input = EventInput::new(&config.event_name)
                .properties(&event.properties)
                .timestamp_ms(event.timestamp_ms);
            if let Some(uuid) = event.uuid {
                uuid_text.clear();
                uuid.write(&mut uuid_text);
                input = input.uuid(&uuid_text);
            }
            match engine.capture_json(input, now_ms) {
                Ok(uuid) => {
                    event.uuid = Some(uuid);
                    unsettled.push(event);
                }
                Err(e) => refused(event, e),
            }
        }
        let deadline = now_ms.saturating_add(config.deadline_ms);
        engine.shutdown(now_ms, deadline);
        Some(Delivery {
            engine,
            deadline,
            unsettled,
            sent: 0,
            in_flight: Vec::new(),
            done: false,
        })
    }

    /// When the leader should wake next: the engine's next timer while it may still send,
    /// else (out of subrequests) only the requests in flight and the deadline matter.
    pub fn poll_timeout(&self, subrequest_limit: u32) -> Option<u64> {
        if self.sent < subrequest_limit {
            return self.engine.poll_timeout();
        }
        self.in_flight
            .iter()
            .map(|(_, at)| *at)
            .min()
            .map(|at| at.min(self.deadline))
    }

    /// Reads the engine's notices: requests to abort go to `aborts`, settled events leave
    /// `unsettled` and go to `settled`.
    pub fn read_notices(
        &mut self,
        aborts: &mut Vec<TransmitId>,
        mut settled: impl FnMut(Settlement, Vec<Uuid>),
    ) {
        while let Some(notice) = self.engine.poll_notice() {
            match notice {
                Notice::Abort(id) => {
                    forget(&mut self.in_flight, id);
                    aborts.push(id);
                }
                Notice::Settled { settlement, uuids } => {
                    self.unsettled
                        .retain(|e| !e.uuid.is_some_and(|u| uuids.contains(&u)));
                    settled(settlement, uuids);
                }
                Notice::ShutdownComplete { .. } => self.done = true,
                _ => {}
            }
        }
    }

    /// Out of subrequests, with nothing in flight and not everything settled: what is left
    /// must go back to the waiting list.
    pub fn exhausted(&self, subrequest_limit: u32) -> bool {
        self.sent >= subrequest_limit && self.in_flight.is_empty() && !self.done
    }
}

/// Takes the first of `items`, if any. Lists here hold a few items, and a `VecDeque` would add
/// its code to every page that loads the wasm.
pub(super) fn first<T>(items: &mut Vec<T>) -> Option<T> {
    (!items.is_empty()).then(|| items.remove(0))
}

/// Forgets request `id` among those in flight.
pub(super) fn forget(in_flight: &mut Vec<(TransmitId, u64)>, id: TransmitId) {
    if let Some(i) = in_flight.iter().position(|(r, _)| *r == id) {
        in_flight.swap_remove(i);
    }
}
