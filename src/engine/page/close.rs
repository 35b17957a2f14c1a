//! The page going away: at `pagehide` everything held goes at once, as keepalive requests
//! within the browser's quota, then as beacons until the browser refuses one; what is still
//! held is stored for the next page load, which takes it in first. The text's layout is in
//! [`persist`](crate::engine::page::persist).

use crate::engine::delivery::batch::{Batch, BatchState};
use crate::engine::delivery::health::Health;
use crate::engine::delivery::queue::Item;
use crate::engine::delivery::scheduler::{Plan, Source};
use crate::engine::delivery::stats::DropReason;
use crate::engine::page::persist::{self, PERSIST_LIVE_MS, PERSIST_MAX_AGE_MS};
use crate::engine::page::{Page, PageState};
use crate::engine::wire::format::WireFormat;
use crate::engine::{Engine, Notice, Transmit};

/// The browser's budget for keepalive request bodies in flight, per page: 64 KiB in total.
/// Fetch standard, "HTTP-network-or-cache fetch": a keepalive request whose body would take
/// the in-flight total past 64 kibibytes fails. Chromium counts `sendBeacon` against it too.
pub const KEEPALIVE_QUOTA_BYTES: usize = 64 * 1024;

/// Keepalive requests in flight at once. Chromium counts only bytes against its quota
/// (bench/PAGEHIDE.md: 8 bodies of 8 KB fit as well as one of 60 KB), so this only shapes the
/// chain: four plain bodies of [`KEEPALIVE_BODY_BYTES`] fill the quota, and sixteen gzip
/// bodies of a default batch (100 events, 2 to 4 KB) fill most of it.
pub const KEEPALIVE_MAX_REQUESTS: usize = 16;

/// Largest body on the page-hide path (keepalive fetch and `sendBeacon`): a quarter of the
/// quota, so four fill it and a refused body leaves room for smaller ones. Measured in
/// Chromium 156 (bench/PAGEHIDE.md): bodies of 8 to 60 KB carry the same 152–176 plain events
/// per quota, and 13 KB gzip bodies fill it better than one 52 KB one.
pub const KEEPALIVE_BODY_BYTES: usize = 16 * 1024;

/// JSON per gzip byte a page-hide batch is cut by, before it is packed: spool's JSON events
/// pack 8 to 10 times at level 6 (bench/PAGEHIDE.md), so a batch cut this way fits
/// [`KEEPALIVE_BODY_BYTES`] once gzipped; one that packs worse is cut again.
pub const GZIP_PLAIN_PER_BYTE: usize = 6;

/// What [`Engine::handle_page`] put on the keepalive path.
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

impl<F: WireFormat> Engine<F> {
    /// Readies the keepalive requests that fit the budget now (the page is hidden).
    pub(crate) fn hide(&mut self, now_ms: u64) -> PageHideReport {
        let mut report = PageHideReport::default();
        while let Some(plan) = self.plan() {
            if plan.at > now_ms || !plan.keepalive {
                break;
            }
            let t = self.send(plan, now_ms);
            report.keepalive_requests += 1;
            report.keepalive_events += t.events;
            report.keepalive_bytes += t.wire_len();
            self.ready.push_back(t);
        }
        report.left_events = self.ledger.queued_events();
        report
    }

    /// The page is shown again: back to the configured batching; the stored copy goes, as
    /// the events are held here again.
    pub(crate) fn show(&mut self) {
        self.page = Page::default();
        for b in &mut self.batches {
            b.failed_hidden = false;
            b.keepalive_unknown = false;
        }
        if self.persistence.stored.take().is_some() {
            self.notices.push_back(Notice::RemoveStored);
        }
    }

    /// `navigator.onLine` changed. While offline, an attempt that fails (network error or
    /// timeout) is not spent against `maxAttempts`; back online, every batch waiting to retry
    /// goes at once.
    pub(crate) fn set_online(&mut self, online: bool, now_ms: u64) {
        let was_offline = self.offline;
        self.offline = !online;
        if online && was_offline {
            self.end_backoffs(now_ms);
        }
    }

    /// While the page leaves (`pagehide`), the next beacon; once none is left to offer (and
    /// the browser has answered every one), the page is gone and what it holds is stored.
    pub(crate) fn poll_leaving(&mut self, now_ms: u64) -> Option<Transmit> {
        if let Some(t) = self.next_beacon(now_ms) {
            return Some(t);
        }
        let offered = self.batches.iter().any(|b| {
            matches!(
                b.state,
                BatchState::InFlight {
                    beacon: true,
                    accepted: false,
                    ..
                }
            )
        });
        if !offered {
            self.page.state = PageState::Gone;
            self.write_stored(now_ms);
            self.rearm();
        }
        None
    }

    /// Has the copy for the next load written (or removed, once nothing is held), if the
    /// host keeps copies.
    pub(crate) fn write_stored(&mut self, now_ms: u64) {
        if !self.persistence.on {
            return;
        }
        match self.stored_text(now_ms) {
            Some((text, events)) => {
                self.persistence.stored = Some(self.ledger.held_events());
                self.notices.push_back(Notice::WriteStored { text, events });
            }
            None => {
                if self.persistence.stored.take().is_some() {
                    self.notices.push_back(Notice::RemoveStored);
                }
            }
        }
    }

    /// After a change: a stored copy is written again if what is held changed (not while
    /// the page leaves: it is written once, when the page is gone).
    pub(crate) fn keep_stored(&mut self, now_ms: u64) {
        if self.page.state != PageState::Leaving
            && self
                .persistence
                .stored
                .is_some_and(|n| n != self.ledger.held_events())
        {
            self.write_stored(now_ms);
        }
    }

    /// Storage is due to be read again at `now_ms`.
    pub(crate) fn read_stored_again(&mut self, now_ms: u64) {
        let due = self
            .persistence
            .read_again
            .iter()
            .filter(|&&t| t <= now_ms)
            .count();
        if due > 0 {
            self.persistence.read_again.drain(..due);
            self.notices.push_back(Notice::ReadStored);
        }
    }

    /// Gives up the ordinary requests in flight (a [`Notice::Abort`] each): their batches wait
    /// again, at once and with the attempt unspent, for the keepalive path.
    pub(crate) fn rescue_ordinary(&mut self) {
        for b in &mut self.batches {
            if let BatchState::InFlight {
                transmit,
                keepalive: false,
                beacon: false,
                body_len,
                ..
            } = b.state
            {
                self.ledger.land(b.items.len(), false, false, body_len);
                self.notices.push_back(Notice::Abort(transmit));
                b.attempts -= 1;
                b.state = BatchState::Waiting { not_before: 0 };
            }
        }
    }

    /// The next beacon body: the oldest waiting batch (but one whose keepalive request failed
    /// as the page unloaded: it may well have arrived, and it is stored), else a batch cut
    /// from the queue.
    pub(crate) fn next_beacon(&mut self, now_ms: u64) -> Option<Transmit> {
        // Offline, held by a Retry-After, or behind a failing collector, a beacon the browser
        // accepts is refused or lost: the events stay held (stored for the next load).
        if self.page.state != PageState::Leaving
            || self.page.beacons_refused
            || self.offline
            || self.hold.holds(now_ms)
            || self.health == Health::Failing
        {
            return None;
        }
        if let Some(i) = self
            .batches
            .iter()
            .position(|b| matches!(b.state, BatchState::Waiting { .. }) && !b.keepalive_unknown)
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

    /// Takes back the refused beacon of batch `idx` (in flight): the batch waits again, the
    /// attempt unspent and the request uncounted, and no other beacon is offered.
    pub(crate) fn unsend_beacon(&mut self, idx: usize, now_ms: u64) {
        self.release(idx);
        let b = &mut self.batches[idx];
        b.attempts -= 1;
        b.state = BatchState::Waiting { not_before: 0 };
        self.ledger.stats.requests -= 1;
        self.page.beacons_refused = true;
        self.after_change(now_ms);
    }

    /// The text to store at `now_ms`: every held event another load has not taken, batches
    /// (oldest first) before the queue; marked as this live page's for [`PERSIST_LIVE_MS`],
    /// or as gone after `pagehide`.
    pub(crate) fn stored_text(&mut self, now_ms: u64) -> Option<(String, usize)> {
        if self.ledger.held_events() == 0 {
            return None;
        }
        self.persistence.written_below = self.next_seq;
        let from = self.persistence.stored_from;
        let mut items: Vec<&Item> = Vec::with_capacity(self.ledger.held_events());
        for b in &self.batches {
            items.extend(b.items.iter().filter(|i| i.seq >= from));
        }
        items.extend(self.queue.iter().filter(|i| i.seq >= from));
        if items.is_empty() {
            return None;
        }
        let kept_until = match self.page.state == PageState::Gone {
            true => 0,
            false => now_ms.saturating_add(PERSIST_LIVE_MS),
        };
        Some(persist::encode(
            &items,
            0,
            kept_until,
            self.config.persist_max_bytes,
            self.persistence.deflate,
        ))
    }

    /// Takes in a stored text's events, within the age cap and the queue's limits, as
    /// batches placed before every other: they go first.
    pub(crate) fn take_in(&mut self, text: &str, inflated: Option<&str>, now_ms: u64) -> usize {
        let decoded = persist::decode(text, inflated);
        self.ledger.stats.storage_errors += decoded.corrupt;
        self.ledger
            .stats
            .dropped
            .add(DropReason::PersistCap, decoded.cut);
        let mut items = Vec::with_capacity(decoded.events.len());
        for e in decoded.events {
            if now_ms.saturating_sub(e.captured_ms) > PERSIST_MAX_AGE_MS {
                self.ledger.stats.dropped.add(DropReason::PersistCap, 1);
                continue;
            }
            if !self.ledger.has_room(&self.config, e.fragment.len()) {
                self.ledger.stats.dropped.add(DropReason::QueueFull, 1);
                continue;
            }
            self.ledger.hold(e.fragment.len());
            items.push(Item {
                fragment: e.fragment,
                uuid: e.uuid,
                seq: self.next_seq,
                enqueued_ms: e.captured_ms,
            });
            self.next_seq += 1;
        }
        let taken = items.len();
        self.ledger.stats.restored += taken as u64;
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
                    keepalive_unknown: false,
                },
            );
            at += 1;
            rest = tail;
        }
        self.after_change(now_ms);
        taken
    }
}
