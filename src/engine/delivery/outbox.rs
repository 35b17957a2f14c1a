//! The outbox: every event taken in and not yet settled, queued or in a batch, with the
//! ledger that counts them and the flushes waiting on them. Events enter by
//! [`admit`](Outbox::admit) (captured) or [`restore`](Outbox::restore) (stored by an earlier
//! load) and leave by [`settle`](Outbox::settle), exactly once. Sending and answering batches
//! is in `batch`, choosing what goes next in `scheduler`.

use std::collections::VecDeque;

use crate::engine::delivery::batch::{Batch, BatchState};
use crate::engine::delivery::event::{CaptureError, Uuid};
use crate::engine::delivery::flush::{FlushId, FlushReport, FlushTracker};
use crate::engine::delivery::ledger::Ledger;
use crate::engine::delivery::queue::{Item, Queue};
use crate::engine::delivery::shutdown::Shutdown;
use crate::engine::delivery::stats::DropReason;
use crate::engine::delivery::Env;
use crate::engine::page::defer::DeferredBudget;
use crate::engine::page::pack::{Pack, Packing};
use crate::engine::wire::format::WireFormat;
use crate::engine::{BatchId, Notice, Settlement, Transmit, TransmitId};

/// Events held, and everything counted about them.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub queue: Queue,
    /// Batches waiting to retry or in flight, oldest first.
    pub batches: Vec<Batch>,
    /// Page-hide transmits built but not yet handed out.
    pub ready: VecDeque<Transmit>,
    /// Events and bytes held and in flight, and the counters.
    pub ledger: Ledger,
    flushes: FlushTracker,
    /// The next event's capture sequence.
    pub next_seq: u64,
    next_batch: u64,
    next_transmit: u64,
    next_flush: u64,
    /// Queued events with a sequence below this go without lingering (a flush asked).
    pub force_mark: u64,
    overflow_warned: bool,
    /// Raise [`Notice::Settled`] for every settlement.
    pub report_settlements: bool,
    /// A shutdown asked for: no more events are taken in.
    pub shutdown: Option<Shutdown>,
    /// The deferred requests armed, against the browser's quota.
    pub deferred: DeferredBudget,
    /// Packing ahead, as the host allows it.
    pub packing: Packing,
    /// The host can send an ordinary request with `keepalive: true` (`HostFeatures::keepalive`).
    pub outlive: bool,
    /// The page is on the endpoint's origin (`HostFeatures::same_origin`).
    pub same_origin: bool,
    /// A keepalive request failed once `pagehide` has begun still goes
    /// (`HostFeatures::keepalive_after_unload`).
    pub keepalive_after_unload: bool,
}

impl Outbox {
    /// Queues the event `fragment` (as the wire format wrote it) captured at `now_ms`, or
    /// refuses it, counted as dropped: alone larger than `maxBatchBytes`, or past the queue's
    /// limits.
    pub fn admit<F: WireFormat>(
        &mut self,
        env: &mut Env<F>,
        fragment: &str,
        uuid: Uuid,
        now_ms: u64,
    ) -> Result<Uuid, CaptureError> {
        let config = &env.config;
        let alone = env.format.body_len(1, fragment.len());
        if alone > config.max_batch_bytes {
            self.ledger.stats.dropped.add(DropReason::TooLarge, 1);
            return Err(CaptureError::TooLarge {
                bytes: alone,
                max: config.max_batch_bytes,
            });
        }
        if !self.ledger.has_room(config, fragment.len()) {
            self.ledger.stats.dropped.add(DropReason::QueueFull, 1);
            if !self.overflow_warned {
                self.overflow_warned = true;
                let (max_events, max_bytes) = (config.max_queue_events, config.max_queue_bytes);
                env.notify(Notice::QueueOverflow {
                    max_events,
                    max_bytes,
                });
            }
            return Err(CaptureError::QueueFull);
        }
        self.ledger.hold(fragment.len());
        self.queue.push(Item {
            fragment: Box::from(fragment),
            uuid,
            seq: self.next_seq,
            enqueued_ms: now_ms,
        });
        self.next_seq += 1;
        Ok(uuid)
    }

    /// Takes in `items` an earlier load stored, as batches placed before every other (they go
    /// first); what is past the queue's limits is dropped as `queueFull`. Returns how many
    /// were taken in.
    pub fn restore<F: WireFormat>(
        &mut self,
        env: &Env<F>,
        stored: impl Iterator<Item = (Box<str>, Uuid, u64)>,
        now_ms: u64,
    ) -> usize {
        let mut items = Vec::new();
        for (fragment, uuid, captured_ms) in stored {
            if !self.ledger.has_room(&env.config, fragment.len()) {
                self.ledger.stats.dropped.add(DropReason::QueueFull, 1);
                continue;
            }
            self.ledger.hold(fragment.len());
            items.push(Item {
                fragment,
                uuid,
                seq: self.next_seq,
                enqueued_ms: captured_ms,
            });
            self.next_seq += 1;
        }
        let taken = items.len();
        self.ledger.stats.restored += taken as u64;
        let limit = env.batch_limit();
        let mut rest = items;
        let mut at = 0;
        while !rest.is_empty() {
            let n = limit.fitting(&env.format, &rest).max(1);
            let tail = rest.split_off(n.min(rest.len()));
            let id = self.new_batch_id();
            // Held since their capture, by an earlier load: packed and armed at once.
            let since = rest.iter().map(|i| i.enqueued_ms).min().unwrap_or(now_ms);
            self.batches
                .insert(at, Batch::new(id, rest, since.min(now_ms)));
            at += 1;
            rest = tail;
        }
        taken
    }

    /// Opens a flush of everything captured so far: its report once they have settled, at
    /// once if nothing is held.
    pub fn open_flush<F>(&mut self, env: &mut Env<F>) -> FlushId {
        let id = FlushId(self.next_flush);
        self.next_flush += 1;
        self.force_mark = self.next_seq;
        let held = self.ledger.held_events() as u64;
        if let Some(report) = self.flushes.open(id, self.next_seq, held) {
            env.notices.push_back(Notice::FlushComplete(report));
        }
        id
    }

    pub fn new_batch_id(&mut self) -> BatchId {
        self.next_batch += 1;
        BatchId(self.next_batch)
    }

    pub fn new_transmit_id(&mut self) -> TransmitId {
        self.next_transmit += 1;
        TransmitId(self.next_transmit - 1)
    }

    /// The index of the batch whose attempt in flight is `id`.
    pub fn in_flight_index(&self, id: TransmitId) -> Option<usize> {
        self.batches.iter().position(
            |b| matches!(b.state, BatchState::InFlight { transmit, .. } if transmit == id),
        )
    }

    /// The oldest request in flight past its deadline at `now_ms`.
    pub fn first_expired(&self, now_ms: u64) -> Option<TransmitId> {
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

    /// The earliest deadline of a request in flight.
    pub fn request_deadline(&self) -> Option<u64> {
        // A loop rather than iterator adapters: each adapter chain compiles to code of its
        // own in the wasm.
        let mut earliest = None;
        for b in &self.batches {
            if let BatchState::InFlight { deadline, .. } = b.state {
                earliest = Some(earliest.map_or(deadline, |d: u64| d.min(deadline)));
            }
        }
        earliest
    }

    /// Leaves batch `idx` its first `keep` events; the rest become a batch of their own right
    /// after it, with its attempts and state. Both parts take new ids: a pack the host still
    /// makes of the whole batch comes back to neither (kept, it would send the rest's events
    /// twice).
    pub fn split_batch(&mut self, idx: usize, keep: usize) {
        if keep >= self.batches[idx].items.len() {
            return;
        }
        let rest = self.batches[idx].items.split_off(keep);
        self.batches[idx].pack = Pack::default();
        self.batches[idx].id = self.new_batch_id();
        let id = self.new_batch_id();
        let b = &self.batches[idx];
        let part = Batch {
            id,
            items: rest,
            attempts: b.attempts,
            state: b.state,
            failed_hidden: b.failed_hidden,
            keepalive_unknown: b.keepalive_unknown,
            sent_unloading: b.sent_unloading,
            handed_on: b.handed_on,
            carried: b.carried,
            // The batch keeps its deferred request, to be armed again for its new events.
            armed: None,
            // Both parts are packed again, as they are now.
            pack: Pack::default(),
            since: b.since,
        };
        self.batches.insert(idx + 1, part);
    }

    /// Takes batch `idx` out of flight (its counters only; the state is set by the caller).
    pub fn release(&mut self, idx: usize) {
        let batch = &self.batches[idx];
        if let BatchState::InFlight {
            keepalive,
            beacon,
            outlives,
            body_len,
            ..
        } = batch.state
        {
            self.ledger
                .land(batch.items.len(), keepalive, beacon, body_len);
            if outlives {
                self.ledger.free_quota(body_len);
            }
        }
    }

    /// Removes batch `idx` (not in flight) and settles its events; its deferred request, if
    /// one is armed, is aborted.
    pub fn settle<F>(&mut self, env: &mut Env<F>, idx: usize, how: Settlement) {
        if let Some(id) = self.disarm(idx) {
            env.notify(Notice::Abort(id));
        }
        let batch = self.batches.remove(idx);
        self.settle_items(env, batch.items, how);
    }

    /// Settles `items`, held no more: counted, reported (with `report_settlements`), and the
    /// flushes they complete completed.
    pub fn settle_items<F>(&mut self, env: &mut Env<F>, items: Vec<Item>, how: Settlement) {
        let delivered = how == Settlement::Delivered;
        let n = items.len() as u64;
        self.ledger.count(how, n);
        if self.report_settlements && n > 0 {
            let mut uuids = Vec::with_capacity(items.len());
            for item in &items {
                uuids.push(item.uuid);
            }
            env.notices.push_back(Notice::Settled {
                settlement: how,
                uuids,
            });
        }
        let mut done: Vec<FlushReport> = Vec::new();
        for item in &items {
            self.ledger.settle_one(item.fragment.len());
            self.flushes.settle(item.seq, delivered, &mut done);
        }
        // After the settlements, so a reader of both sees a flush complete with its events.
        // One push_back each: VecDeque's extend from an iterator costs 400 bytes of wasm more.
        for report in done {
            env.notices.push_back(Notice::FlushComplete(report));
        }
        if self.ledger.held_events() == 0 {
            self.overflow_warned = false;
        }
    }

    /// Drops everything held as `reason`, aborting the requests in flight; returns how many
    /// events were dropped.
    pub fn drop_all<F>(&mut self, env: &mut Env<F>, reason: DropReason) -> u64 {
        let before = self.ledger.stats.dropped.total();
        self.ready.clear();
        while let Some(batch) = self.batches.last() {
            if let BatchState::InFlight { transmit, .. } = batch.state {
                env.notices.push_back(Notice::Abort(transmit));
            }
            let idx = self.batches.len() - 1;
            self.release(idx);
            self.settle(env, idx, Settlement::Dropped(reason));
        }
        let items = self.queue.drain_all();
        self.settle_items(env, items, Settlement::Dropped(reason));
        self.ledger.stats.dropped.total() - before
    }

    /// Gives up the ordinary requests in flight (a [`Notice::Abort`] each): their batches wait
    /// again, at once and with the attempt unspent. One that outlives the page is left to the
    /// browser.
    pub fn rescue_ordinary<F>(&mut self, env: &mut Env<F>) {
        for b in &mut self.batches {
            if let BatchState::InFlight {
                transmit,
                keepalive: false,
                beacon: false,
                outlives: false,
                body_len,
                ..
            } = b.state
            {
                self.ledger.land(b.items.len(), false, false, body_len);
                env.notices.push_back(Notice::Abort(transmit));
                b.attempts -= 1;
                b.state = BatchState::Waiting { not_before: 0 };
            }
        }
    }

    /// A navigation starts (`beforeunload`): the ordinary requests whose bodies the host is
    /// still gzipping have not started, and are taken back (a [`Notice::Abort`] each, the
    /// attempt unspent and the request uncounted), so that they go now on the page-close path.
    /// Left to start once compressed, they went after the keepalive chain had taken the quota,
    /// without `keepalive`, and were given up at `pagehide` and sent again: in Chromium the
    /// collector often had them already (a repeat of each).
    pub fn take_back_compressing<F>(&mut self, env: &mut Env<F>) {
        for idx in 0..self.batches.len() {
            if let BatchState::InFlight {
                transmit,
                compressing: true,
                ..
            } = self.batches[idx].state
            {
                env.notices.push_back(Notice::Abort(transmit));
                self.take_back(idx);
            }
        }
    }

    /// Every batch waiting out a backoff may go at `now_ms` (the network is back).
    pub fn end_backoffs(&mut self, now_ms: u64) {
        for b in &mut self.batches {
            if let BatchState::Waiting { not_before } = &mut b.state {
                *not_before = (*not_before).min(now_ms);
            }
        }
    }

    /// The page is shown again: what each batch learnt while it was hidden no longer holds.
    pub fn forget_hidden(&mut self) {
        for idx in 0..self.batches.len() {
            if self.batches[idx].handed_on {
                // Its request went on without the page: no answer comes to the page shown
                // again, so it goes again now (at-least-once) rather than at its deadline.
                self.release(idx);
                self.batches[idx].state = BatchState::Waiting { not_before: 0 };
            }
            let b = &mut self.batches[idx];
            b.handed_on = false;
            b.failed_hidden = false;
            b.keepalive_unknown = false;
            b.carried = false;
        }
    }

    /// Whether a beacon offered to the host awaits its answer.
    pub fn beacon_offered(&self) -> bool {
        self.batches.iter().any(|b| {
            matches!(
                b.state,
                BatchState::InFlight {
                    beacon: true,
                    accepted: false,
                    ..
                }
            )
        })
    }
}
