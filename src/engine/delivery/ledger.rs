//! The ledger: how many events and bytes the engine holds, how many of them are in flight and
//! on which path, and the counters a user reads in [`Stats`].
//!
//! Every event the engine takes in is held until it settles (delivered or dropped), exactly
//! once. The ledger keeps the running totals that the queue, the limits and the scheduler
//! read; in debug builds, [`Outbox::check_ledger`] recounts them from the queue and the
//! batches after every input.

use crate::engine::delivery::config::Config;
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::stats::Stats;
use crate::engine::page::close::{KEEPALIVE_MAX_REQUESTS, KEEPALIVE_QUOTA_BYTES};
use crate::engine::Settlement;

/// The engine's running totals.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Events held: queued, waiting to retry or in flight.
    held_events: usize,
    /// Bytes of the held events' fragments; bounded by `maxQueueBytes`.
    held_bytes: usize,
    /// Events in requests not yet answered (beacons included).
    in_flight_events: usize,
    /// Ordinary requests in flight, against `maxInFlight`.
    ordinary_in_flight: usize,
    /// Keepalive requests in flight, against the browser's quota.
    pub keepalive: KeepaliveBudget,
    /// The counters, without the three the totals above give (`queued`, `in_flight`,
    /// `in_flight_requests`: see [`snapshot`](Self::snapshot)).
    pub stats: Stats,
    /// Events ever held, and events settled: held = taken in - settled, so an event settled
    /// twice shows.
    #[cfg(debug_assertions)]
    taken_in: u64,
    #[cfg(debug_assertions)]
    settled: u64,
}

impl Ledger {
    /// Events held: queued, waiting to retry or in flight.
    pub fn held_events(&self) -> usize {
        self.held_events
    }

    /// Bytes of the held events' fragments.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Events in requests not yet answered.
    pub fn in_flight_events(&self) -> usize {
        self.in_flight_events
    }

    /// Events held and not in flight: lingering, or waiting to retry.
    pub fn queued_events(&self) -> usize {
        self.held_events - self.in_flight_events
    }

    /// Ordinary requests in flight.
    pub fn ordinary_in_flight(&self) -> usize {
        self.ordinary_in_flight
    }

    /// Requests in flight that hold a slot: ordinary and keepalive (beacons hold none).
    pub fn requests_in_flight(&self) -> usize {
        self.ordinary_in_flight + self.keepalive.requests
    }

    /// Whether one more event of `len` bytes fits the queue's limits.
    pub fn has_room(&self, config: &Config, len: usize) -> bool {
        self.held_events < config.max_queue_events
            && self.held_bytes + len <= config.max_queue_bytes
    }

    /// An event of `len` bytes is taken in (captured or restored).
    pub fn hold(&mut self, len: usize) {
        self.held_events += 1;
        self.held_bytes += len;
        #[cfg(debug_assertions)]
        {
            self.taken_in += 1;
        }
    }

    /// A request of `events` went, with a body of `body_len` bytes, on its path: a beacon
    /// holds no slot (the browser answers at once), a keepalive request holds the quota, any
    /// other a `maxInFlight` slot.
    pub fn launch(
        &mut self,
        events: usize,
        keepalive: bool,
        beacon: bool,
        body_len: usize,
        attempt: u32,
    ) {
        self.in_flight_events += events;
        if beacon {
            // Answered by the shell before anything else runs: no slot is held.
        } else if keepalive {
            self.keepalive.bytes += body_len;
            self.keepalive.requests += 1;
        } else {
            self.ordinary_in_flight += 1;
        }
        self.stats.requests += 1;
        if attempt > 1 {
            self.stats.retried += 1;
        }
    }

    /// An ordinary request sent with `keepalive: true` ([`Transmit::outlives`]) takes `len`
    /// bytes of the browser's keepalive quota while in flight; it keeps its request slot.
    ///
    /// [`Transmit::outlives`]: crate::engine::Transmit::outlives
    pub fn take_quota(&mut self, len: usize) {
        self.keepalive.bytes += len;
    }

    /// Gives back what [`take_quota`](Self::take_quota) took.
    pub fn free_quota(&mut self, len: usize) {
        self.keepalive.bytes -= len;
    }

    /// A request [`launch`](Self::launch)ed with the same figures is no longer in flight.
    pub fn land(&mut self, events: usize, keepalive: bool, beacon: bool, body_len: usize) {
        self.in_flight_events -= events;
        if beacon {
        } else if keepalive {
            self.keepalive.bytes -= body_len;
            self.keepalive.requests -= 1;
        } else {
            self.ordinary_in_flight -= 1;
        }
    }

    /// `n` events settled `how`: counted delivered or dropped.
    // Inlined into its one caller: called, it costs the wasm 40 bytes of its own.
    #[inline(always)]
    pub fn count(&mut self, how: Settlement, n: u64) {
        match how {
            Settlement::Delivered => self.stats.delivered += n,
            Settlement::Dropped(reason) => self.stats.dropped.add(reason, n),
        }
    }

    /// One held event of `len` bytes settled: it is held no more.
    pub fn settle_one(&mut self, len: usize) {
        self.held_events -= 1;
        self.held_bytes -= len;
        #[cfg(debug_assertions)]
        {
            self.settled += 1;
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Stats {
        let mut s = self.stats.clone();
        s.queued = self.queued_events() as u64;
        s.in_flight = self.in_flight_events as u64;
        s.in_flight_requests = self.requests_in_flight() as u64;
        s
    }
}

/// Keepalive bodies and requests in flight, against the browser's quota.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeepaliveBudget {
    pub bytes: usize,
    pub requests: usize,
}

impl KeepaliveBudget {
    /// Whether a body of `len` bytes may go as keepalive now.
    pub fn fits(self, len: usize) -> bool {
        self.requests < KEEPALIVE_MAX_REQUESTS && self.bytes + len <= KEEPALIVE_QUOTA_BYTES
    }

    /// Whether a body of `len` bytes fits the browser's quota now, however many requests are
    /// in flight: an ordinary request that outlives the page ([`Transmit::outlives`]) is not
    /// one of the page-close chain that [`KEEPALIVE_MAX_REQUESTS`] shapes, and the browser
    /// counts only bytes.
    ///
    /// [`Transmit::outlives`]: crate::engine::Transmit::outlives
    pub fn bytes_fit(self, len: usize) -> bool {
        self.bytes + len <= KEEPALIVE_QUOTA_BYTES
    }

    /// Bytes of the quota not taken.
    pub fn room(self) -> usize {
        KEEPALIVE_QUOTA_BYTES - self.bytes
    }
}

impl Outbox {
    /// Recounts the ledger from the queue and the batches (debug builds only; nothing in a
    /// release build): held = queued + waiting + in flight, in events and in bytes; the
    /// request slots and the keepalive quota match the requests in flight; nothing settled
    /// twice.
    pub fn check_ledger(&self) {
        #[cfg(debug_assertions)]
        {
            use crate::engine::delivery::batch::BatchState;
            let ledger = &self.ledger;
            let (mut events, mut bytes) = (self.queue.len(), self.queue.bytes());
            let (mut in_flight, mut ordinary) = (0, 0);
            let mut keepalive = KeepaliveBudget::default();
            for b in &self.batches {
                debug_assert!(!b.items.is_empty(), "an empty batch is held");
                events += b.items.len();
                for item in &b.items {
                    bytes += item.fragment.len();
                }
                if let BatchState::InFlight {
                    keepalive: k,
                    beacon,
                    body_len,
                    outlives,
                    ..
                } = b.state
                {
                    in_flight += b.items.len();
                    if beacon {
                    } else if k {
                        keepalive.bytes += body_len;
                        keepalive.requests += 1;
                    } else {
                        ordinary += 1;
                        if outlives {
                            keepalive.bytes += body_len;
                        }
                    }
                }
            }
            debug_assert_eq!(
                ledger.held_events, events,
                "held = queued + waiting + in flight"
            );
            debug_assert_eq!(ledger.held_bytes, bytes, "held bytes");
            debug_assert_eq!(ledger.in_flight_events, in_flight, "events in flight");
            debug_assert_eq!(ledger.ordinary_in_flight, ordinary, "ordinary requests");
            debug_assert_eq!(
                (ledger.keepalive.requests, ledger.keepalive.bytes),
                (keepalive.requests, keepalive.bytes),
                "keepalive requests and bytes"
            );
            debug_assert!(ledger.keepalive.bytes <= KEEPALIVE_QUOTA_BYTES);
            debug_assert_eq!(
                ledger.taken_in - ledger.settled,
                ledger.held_events as u64,
                "an event settled twice, or never held"
            );
        }
    }
}
