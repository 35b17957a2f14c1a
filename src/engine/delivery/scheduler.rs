//! The scheduler: which request goes next and when, and the one timer the shell arms for it.
//!
//! After every input the engine plans its next request (a waiting batch, or a batch cut from
//! the queue's front), and [`rearm`](Engine::rearm) writes the plan and the deadlines into the
//! [`TimerTable`], each under its kind. [`fire_timers`](Engine::fire_timers) reads them back,
//! kind by kind, as quinn-proto's `handle_timeout` does: each kind is handled where it fires.

use crate::engine::delivery::batch::BatchState;
use crate::engine::delivery::config::BatchMode;
use crate::engine::delivery::queue::{BodyLimit, Item};
use crate::engine::delivery::retry::Outcome;
use crate::engine::delivery::timer::{Timer, TimerTable};
use crate::engine::page::PageState;
use crate::engine::wire::format::WireFormat;
use crate::engine::{Engine, Notice, TransmitId};

/// Where the next request comes from and how it goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Earliest time it may go.
    pub at: u64,
    /// The same, ignoring the endpoint's `Retry-After`.
    pub own_at: u64,
    pub source: Source,
    pub keepalive: bool,
}

/// What the next request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The batch at this index of `Engine::batches`, waiting to be (re)sent.
    Batch(usize),
    /// A new batch cut from the queue's front.
    Queue,
}

impl<F: WireFormat> Engine<F> {
    /// Handles every timer expired at `now_ms`, kind by kind, then re-arms.
    pub(crate) fn fire_timers(&mut self, now_ms: u64) {
        for &timer in &Timer::VALUES {
            // Read live: a kind handled before may have re-armed the table.
            if !self.timers.is_expired(timer, now_ms) {
                continue;
            }
            self.timers.stop(timer);
            match timer {
                // A batch is due: `poll_transmit`, called next, plans at `now_ms` and sends it.
                // Nothing to change here; the plan is made from the state, not the timer.
                Timer::Linger | Timer::Backoff | Timer::RetryAfter => {}
                Timer::RequestTimeout => self.expire_requests(now_ms),
                Timer::ReadStored => self.read_stored_again(now_ms),
                Timer::ShutdownDeadline => self.abandon_all(),
            }
        }
        self.after_change(now_ms);
    }

    /// Gives up every request in flight past its deadline: each gets a [`Notice::Abort`] and
    /// counts as a failed attempt.
    fn expire_requests(&mut self, now_ms: u64) {
        // Found afresh after each answer, rather than collected first: an answer takes its
        // batch out of flight and leaves the others in order, and no Vec is built.
        while let Some(id) = self.first_expired(now_ms) {
            self.notices.push_back(Notice::Abort(id));
            self.answer(id, Outcome::Timeout, now_ms);
        }
    }

    /// The oldest request in flight past its deadline at `now_ms`.
    fn first_expired(&self, now_ms: u64) -> Option<TransmitId> {
        for b in &self.batches {
            match b.state {
                BatchState::InFlight {
                    transmit, deadline, ..
                } if deadline <= now_ms => return Some(transmit),
                _ => {}
            }
        }
        None
    }

    /// The next request that could go, and when; `None` if nothing can go until a request
    /// in flight is answered (or nothing is held).
    pub(crate) fn plan(&self) -> Option<Plan> {
        if self.page.state >= PageState::Leaving || self.shutdown.is_some_and(|s| s.done) {
            return None;
        }
        let ordinary_free = self.ledger.ordinary_in_flight() < self.config.max_in_flight;
        let mut best: Option<Plan> = None;
        let mut consider = |own_at: u64, first_len: usize, source: Source| {
            let keepalive = self.page.hidden()
                && self
                    .ledger
                    .keepalive
                    .fits(self.format.body_len(1, first_len));
            if !keepalive && !ordinary_free {
                return;
            }
            let at = own_at.max(self.hold.until());
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
                let own_at = if self.page.hidden() && !b.failed_hidden {
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
        let forced = self.page.hidden() || front.seq < self.force_mark;
        let full = self.queue.has_full_batch(&self.format, self.batch_limit());
        match self.config.batch_mode {
            BatchMode::Off => Some(0),
            _ if forced || full => Some(0),
            BatchMode::Auto if self.ledger.requests_in_flight() == 0 => Some(0),
            BatchMode::Auto => None,
            BatchMode::Linger => Some(front.enqueued_ms + self.config.flush_interval_ms),
        }
    }

    /// The most one request body may carry, by the batch mode.
    pub(crate) fn batch_limit(&self) -> BodyLimit {
        let events = match self.config.batch_mode {
            BatchMode::Off => 1,
            _ => self.config.max_batch_events,
        };
        BodyLimit {
            events,
            bytes: self.config.max_batch_bytes,
        }
    }

    /// Every batch waiting out a backoff may go at `now_ms` (the network is back).
    pub(crate) fn end_backoffs(&mut self, now_ms: u64) {
        for b in &mut self.batches {
            if let BatchState::Waiting { not_before } = &mut b.state {
                *not_before = (*not_before).min(now_ms);
            }
        }
    }

    /// Finishes a shutdown that has nothing left (or nothing it could still send in time),
    /// then re-arms the timers. Every input that changes the state ends here.
    pub(crate) fn after_change(&mut self, now_ms: u64) {
        self.finish_idle_shutdown();
        self.keep_stored(now_ms);
        self.rearm();
    }

    /// Recomputes every timer from the state, and (in debug builds) checks the ledger.
    pub(crate) fn rearm(&mut self) {
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
        timers.set(
            Timer::ReadStored,
            self.persistence.read_again.first().copied(),
        );
        self.timers = timers;
        self.check_ledger();
    }
}
