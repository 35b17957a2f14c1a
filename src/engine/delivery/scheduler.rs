//! The scheduler: which request goes next and when, and the one timer the shell arms for it.
//!
//! After every input the engine plans its next request ([`Outbox::plan`]: a waiting batch, or
//! a batch cut from the queue's front), and [`timers`] writes the plan and the deadlines into
//! the [`TimerTable`], each under its kind. `Engine::handle_timeout` reads them back, kind by
//! kind, as quinn-proto's `handle_timeout` does: each kind is handled where it fires.

use crate::engine::delivery::batch::BatchState;
use crate::engine::delivery::config::BatchMode;
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::queue::Item;
use crate::engine::delivery::timer::{Timer, TimerTable};
use crate::engine::delivery::Env;
use crate::engine::page::close::{HOST_CONNECTIONS, KEEPALIVE_BODY_BYTES};
use crate::engine::page::{Page, PageState};
use crate::engine::wire::format::WireFormat;

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
    /// The batch at this index of `Outbox::batches`, waiting to be (re)sent.
    Batch(usize),
    /// A new batch cut from the queue's front.
    Queue,
}

impl Outbox {
    /// The next request that could go, and when; `None` if nothing can go until a request
    /// in flight is answered (or nothing is held, or the page has left, or a shutdown is
    /// done). `hold_until`: the endpoint's hold.
    pub fn plan<F: WireFormat>(&self, env: &Env<F>, page: &Page, hold_until: u64) -> Option<Plan> {
        if page.state >= PageState::Leaving || self.shutdown.is_some_and(|s| s.done) {
            return None;
        }
        // A navigation waiting for its answer on a connection to the page's own host (the
        // collector's too) gets one: nothing more goes until a request is answered or
        // `pagehide` comes.
        if page.navigating
            && self.same_origin
            && self.ledger.requests_in_flight() + 1 >= HOST_CONNECTIONS
        {
            return None;
        }
        let ordinary_free = self.ledger.ordinary_in_flight() < env.config.max_in_flight;
        let mut best: Option<Plan> = None;
        // `need`: the wire bytes of the smallest keepalive body it could go as.
        let mut consider = |own_at: u64, need: usize, source: Source| {
            let keepalive = page.hidden() && self.ledger.keepalive.fits(need);
            if !keepalive && !ordinary_free {
                return;
            }
            let at = own_at.max(hold_until);
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
            if b.armed.is_some() && page.state >= PageState::Unloading {
                // Left to the browser: its deferred request goes as the page unloads.
                continue;
            }
            if b.keepalive_unknown && page.state >= PageState::Unloading {
                // Its keepalive request failed as the page unloads, and may well have arrived
                // (Firefox fails them once a navigation starts, and delivers some): it stays
                // stored for the next load, and is not sent again while the page goes (each
                // retry failed and arrived again: one event arrived six times).
                continue;
            }
            if let BatchState::Waiting { not_before } = b.state {
                let own_at = if page.hidden() && !b.failed_hidden {
                    0
                } else {
                    not_before
                };
                // A batch packed ahead goes whole or waits: cut to fit what is left of the
                // quota, it would be gzipped again in the wasm as the page leaves, and its
                // stored copy deflated again too.
                let need = match b.pack.wire() {
                    Some(w) if w.len() <= KEEPALIVE_BODY_BYTES => w.len(),
                    _ => env.format.body_len(1, b.items[0].fragment.len()),
                };
                consider(own_at, need, Source::Batch(i));
            }
        }
        if let Some(front) = self.queue.front() {
            if let Some(own_at) = self.queue_ready_at(env, page, front) {
                consider(
                    own_at,
                    env.format.body_len(1, front.fragment.len()),
                    Source::Queue,
                );
            }
        }
        best
    }

    /// When the queue's front may be cut into a batch, by the batch mode.
    fn queue_ready_at<F: WireFormat>(
        &self,
        env: &Env<F>,
        page: &Page,
        front: &Item,
    ) -> Option<u64> {
        let forced = page.hidden() || front.seq < self.force_mark;
        let full = self.queue.has_full_batch(&env.format, env.batch_limit());
        match env.config.batch_mode {
            BatchMode::Off => Some(0),
            _ if forced || full => Some(0),
            BatchMode::Auto if self.ledger.requests_in_flight() == 0 => Some(0),
            BatchMode::Auto => None,
            BatchMode::Linger => Some(front.enqueued_ms + env.config.flush_interval_ms),
        }
    }
}

/// The timers for the state: the planned request under its kind (held by `Retry-After`,
/// cut from the queue, or a retry), the outbox's earliest request deadline and shutdown
/// deadline, the next read of storage and the next batch to arm.
pub(crate) fn timers(
    outbox: &Outbox,
    plan: Option<Plan>,
    read_stored: Option<u64>,
    arm: Option<u64>,
) -> TimerTable {
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
    timers.set(Timer::RequestTimeout, outbox.request_deadline());
    timers.set(Timer::ShutdownDeadline, outbox.shutdown_deadline());
    timers.set(Timer::ReadStored, read_stored);
    timers.set(Timer::Defer, arm);
    timers
}
