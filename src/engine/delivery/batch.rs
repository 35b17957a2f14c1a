//! A batch that left the queue: cut, stamped and sent, answered, then retried, split or
//! settled. One batch keeps its events (and their uuids) across its attempts; each attempt
//! gets a new [`TransmitId`], so a late answer to an abandoned attempt is ignored.

use crate::engine::delivery::config::Compression;
use crate::engine::delivery::health::Health;
use crate::engine::delivery::queue::Item;
use crate::engine::delivery::retry::{self, Outcome, Step};
use crate::engine::delivery::scheduler::{Plan, Source};
use crate::engine::delivery::stats::DropReason;
use crate::engine::page::close::{GZIP_PLAIN_PER_BYTE, KEEPALIVE_BODY_BYTES};
use crate::engine::wire::format::WireFormat;
use crate::engine::wire::gzip::{self, BODY_LEVEL};
use crate::engine::{json, BatchId, Engine, Notice, Path, Settlement, Transmit, TransmitId};

/// A batch that left the queue: waiting to be (re)sent, or in flight.
#[derive(Debug)]
pub(crate) struct Batch {
    pub id: BatchId,
    pub items: Vec<Item>,
    /// Sends so far.
    pub attempts: u32,
    pub state: BatchState,
    /// A send failed at the network level while the page was hidden: until the page is
    /// visible again this batch keeps its backoff (no resending at once in a loop).
    pub failed_hidden: bool,
    /// That send was a keepalive request: it may well have arrived (browsers reject keepalive
    /// requests as a page unloads that still reach the collector, bench/PAGEHIDE.md finding 7),
    /// so no beacon sends it again at `pagehide`; it stays stored for the next load.
    pub keepalive_unknown: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum BatchState {
    /// Not to be sent before this time (backoff or split); 0 for at once.
    Waiting { not_before: u64 },
    InFlight {
        transmit: TransmitId,
        deadline: u64,
        keepalive: bool,
        /// Handed to `sendBeacon`: holds no request slot.
        beacon: bool,
        body_len: usize,
        /// The collector's last answer before this left was a success, online and with no
        /// `Retry-After` hold: if the host accepts it and reports nothing more
        /// ([`Outcome::Accepted`]), its events count as delivered.
        vouched: bool,
        /// The host accepted it without a vouch: no answer will come, and the events stay
        /// held (stored) until the deadline sends them again, the attempt unspent.
        accepted: bool,
    },
}

impl<F: WireFormat> Engine<F> {
    /// Carries out `plan`: cuts or picks the batch, stamps the body, marks it in flight.
    pub(crate) fn send(&mut self, plan: Plan, now_ms: u64) -> Transmit {
        self.send_as(plan, now_ms, false)
    }

    /// [`send`](Self::send), as a beacon if `beacon`: counted against no budget, since the
    /// browser answers at once.
    ///
    /// A page-hide body (keepalive or beacon) is at most [`KEEPALIVE_BODY_BYTES`] on the wire
    /// (and within what is left of the keepalive quota). With `compression: "gzip"` that is
    /// gzip bytes: the batch is cut by [`GZIP_PLAIN_PER_BYTE`] times as much JSON, and cut
    /// again by the ratio seen if it packs worse.
    pub(crate) fn send_as(&mut self, plan: Plan, now_ms: u64, beacon: bool) -> Transmit {
        let page_hide = plan.keepalive || beacon;
        let gzip = page_hide
            && self.config.compression == Compression::Gzip
            && !(beacon && self.format.gzip_needs_header());
        let mut limit = self.batch_limit();
        let mut wire_cap = usize::MAX;
        if page_hide {
            wire_cap = KEEPALIVE_BODY_BYTES;
            if plan.keepalive {
                wire_cap = wire_cap.min(self.ledger.keepalive.room());
            }
            let plain_cap = match gzip {
                true => wire_cap.saturating_mul(GZIP_PLAIN_PER_BYTE),
                false => wire_cap,
            };
            limit.bytes = limit.bytes.min(plain_cap);
        }
        let idx = match plan.source {
            Source::Queue => {
                let items = self.queue.take_batch(&self.format, limit);
                let id = self.new_batch_id();
                self.batches.push(Batch {
                    id,
                    items,
                    attempts: 0,
                    state: BatchState::Waiting { not_before: 0 },
                    failed_hidden: false,
                    keepalive_unknown: false,
                });
                self.batches.len() - 1
            }
            Source::Batch(idx) => {
                // Under the keepalive budget a waiting batch may have to go in parts.
                let fit = limit.fitting(&self.format, &self.batches[idx].items);
                self.split_batch(idx, fit);
                idx
            }
        };
        let (body, gzipped) = loop {
            let body = self.body_of(idx, now_ms);
            if !gzip {
                break (body, None);
            }
            let packed = gzip::gzip(body.as_bytes(), BODY_LEVEL);
            let n = self.batches[idx].items.len();
            if packed.len() <= wire_cap || n == 1 {
                break (body, Some(packed));
            }
            // Packed worse than hoped: keep the share that fits by the ratio seen.
            let keep = n * wire_cap * 9 / (10 * packed.len());
            self.split_batch(idx, keep.clamp(1, n - 1));
        };
        let wire_len = gzipped.as_ref().map_or(body.len(), Vec::len);
        let transmit = TransmitId(self.next_transmit);
        self.next_transmit += 1;
        let vouched = self.health == Health::Answering && !self.offline && !self.hold.holds(now_ms);
        let batch = &mut self.batches[idx];
        batch.attempts += 1;
        batch.state = BatchState::InFlight {
            transmit,
            deadline: now_ms + self.config.request_timeout_ms,
            keepalive: plan.keepalive,
            beacon,
            body_len: wire_len,
            vouched,
            accepted: false,
        };
        self.ledger.launch(
            batch.items.len(),
            plan.keepalive,
            beacon,
            wire_len,
            batch.attempts,
        );
        let path = match (beacon, plan.keepalive) {
            (true, _) => Path::Beacon,
            (false, true) => Path::Keepalive,
            (false, false) => Path::Ordinary,
        };
        Transmit {
            id: transmit,
            batch: batch.id,
            body,
            gzipped,
            gzip_header: self.format.gzip_needs_header(),
            content_type: self.format.content_type(),
            path,
            read_body: self.format.reads_answer(),
            events: batch.items.len(),
            attempt: batch.attempts,
        }
    }

    /// The body of batch `idx`'s events, stamped `sent_at` = `now_ms`.
    fn body_of(&self, idx: usize, now_ms: u64) -> String {
        let items = &self.batches[idx].items;
        let mut body = String::with_capacity(
            self.format
                .body_len(items.len(), items.iter().map(|i| i.fragment.len()).sum()),
        );
        self.format
            .write_body(&mut items.iter().map(|i| &*i.fragment), now_ms, &mut body);
        body
    }

    /// Leaves batch `idx` its first `keep` events; the rest become a batch of their own right
    /// after it, with its attempts and state.
    fn split_batch(&mut self, idx: usize, keep: usize) {
        if keep >= self.batches[idx].items.len() {
            return;
        }
        let rest = self.batches[idx].items.split_off(keep);
        let b = &self.batches[idx];
        let (attempts, state, failed_hidden, keepalive_unknown) =
            (b.attempts, b.state, b.failed_hidden, b.keepalive_unknown);
        let id = self.new_batch_id();
        self.batches.insert(
            idx + 1,
            Batch {
                id,
                items: rest,
                attempts,
                state,
                failed_hidden,
                keepalive_unknown,
            },
        );
    }

    /// The request `id` ended with `outcome`: the batch is delivered, retried, split or
    /// dropped, as [`retry::decide`] says. `false` (and nothing changed) if `id` is not in
    /// flight.
    pub(crate) fn answer(&mut self, id: TransmitId, outcome: Outcome, now_ms: u64) -> bool {
        let Some(idx) = self.in_flight_index(id) else {
            return false;
        };
        let BatchState::InFlight {
            keepalive: was_keepalive,
            vouched,
            accepted,
            ..
        } = self.batches[idx].state
        else {
            return false;
        };
        if outcome == Outcome::Refused {
            self.unsend_beacon(idx, now_ms);
            return true;
        }
        if outcome == Outcome::Accepted {
            if vouched {
                self.release(idx);
                self.settle(idx, Settlement::Delivered);
            } else if let BatchState::InFlight { accepted, .. } = &mut self.batches[idx].state {
                *accepted = true;
            }
            self.after_change(now_ms);
            return true;
        }
        self.release(idx);
        let network_failure = matches!(outcome, Outcome::NetworkError(_) | Outcome::Timeout);
        if accepted {
            // An accepted request's deadline passed: it says nothing about the collector or
            // the batch, which goes again (the events may arrive twice: at-least-once).
            let b = &mut self.batches[idx];
            b.attempts -= 1;
            b.keepalive_unknown = true;
            b.state = BatchState::Waiting { not_before: now_ms };
            self.after_change(now_ms);
            return true;
        }
        if self.offline && network_failure {
            // No network at all: this attempt says nothing about the batch.
            self.batches[idx].attempts -= 1;
        } else if self.page.hidden() && network_failure {
            // The page is going away: a browser fails requests as it unloads (Firefox rejects
            // the old document's fetches once a navigation starts), which says nothing about
            // the batch either. Unspent, and it keeps its backoff while hidden; its events go
            // by beacon at `pagehide` or are stored for the next load.
            self.batches[idx].attempts -= 1;
            self.batches[idx].failed_hidden = true;
            self.batches[idx].keepalive_unknown = was_keepalive;
        }
        let attempt = retry::Attempt {
            sends: self.batches[idx].attempts,
            events: self.batches[idx].items.len(),
        };
        let decision = retry::decide(
            &self.format,
            &outcome,
            attempt,
            &self.config,
            now_ms,
            &mut self.rng,
        );
        if decision.step != Step::Delivered {
            self.ledger.stats.last_error = Some(describe(&outcome));
        }
        if !(network_failure && (self.offline || self.page.hidden())) {
            // What the collector said of itself, by the format's verdict; a failure offline
            // or while the page goes away is the browser's, not the collector's.
            let took = matches!(decision.step, Step::Delivered | Step::Partial { .. });
            self.health.answered(took);
        }
        if let Some(until) = decision.hold_until {
            self.hold.extend(until, now_ms);
        }
        match decision.step {
            Step::Delivered => self.settle(idx, Settlement::Delivered),
            Step::Reject(reason) => self.settle(idx, Settlement::Dropped(reason)),
            Step::Partial { status, rejected } => {
                let batch = &mut self.batches[idx];
                let refused = batch.items.split_off(batch.items.len() - rejected);
                self.settle_items(refused, Settlement::Dropped(DropReason::Rejected(status)));
                self.settle(idx, Settlement::Delivered);
            }
            Step::Split => {
                // Both halves wait until now, with the attempts so far.
                let half = self.batches[idx].items.len() / 2;
                self.batches[idx].state = BatchState::Waiting { not_before: now_ms };
                self.split_batch(idx, half);
            }
            Step::Retry(not_before) => {
                self.batches[idx].state = BatchState::Waiting { not_before };
            }
        }
        self.after_change(now_ms);
        true
    }

    /// The index of the batch whose attempt in flight is `id`.
    pub(crate) fn in_flight_index(&self, id: TransmitId) -> Option<usize> {
        self.batches.iter().position(
            |b| matches!(b.state, BatchState::InFlight { transmit, .. } if transmit == id),
        )
    }

    pub(crate) fn new_batch_id(&mut self) -> BatchId {
        self.next_batch += 1;
        BatchId(self.next_batch)
    }

    /// Takes batch `idx` out of flight (its counters only; the state is set by the caller).
    pub(crate) fn release(&mut self, idx: usize) {
        let batch = &self.batches[idx];
        if let BatchState::InFlight {
            keepalive,
            beacon,
            body_len,
            ..
        } = batch.state
        {
            self.ledger
                .land(batch.items.len(), keepalive, beacon, body_len);
        }
    }

    /// Removes batch `idx` (not in flight) and settles its events.
    pub(crate) fn settle(&mut self, idx: usize, how: Settlement) {
        let batch = self.batches.remove(idx);
        self.settle_items(batch.items, how);
    }

    /// Settles `items`, held no more: counted, reported (with
    /// [`report_settlements`](Engine::report_settlements)), and the flushes they complete
    /// completed.
    pub(crate) fn settle_items(&mut self, items: Vec<Item>, how: Settlement) {
        let delivered = how == Settlement::Delivered;
        let n = items.len() as u64;
        self.ledger.count(how, n);
        if self.report_settlements && n > 0 {
            let mut uuids = Vec::with_capacity(items.len());
            for item in &items {
                uuids.push(item.uuid);
            }
            self.notices.push_back(Notice::Settled {
                settlement: how,
                uuids,
            });
        }
        let mut done = Vec::new();
        for item in &items {
            self.ledger.settle_one(item.fragment.len());
            self.flushes.settle(item.seq, delivered, &mut done);
        }
        // After the settlements, so a reader of both sees a flush complete with its events.
        // One push_back each: VecDeque's extend from an iterator costs 400 bytes of wasm more.
        for report in done {
            self.notices.push_back(Notice::FlushComplete(report));
        }
        if self.ledger.held_events() == 0 {
            self.overflow_warned = false;
        }
    }
}

/// A short description of a failed outcome for `Stats::last_error`.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Response { status, .. } => {
            let mut s = String::from("HTTP ");
            json::write_u64(&mut s, (*status).into());
            s
        }
        Outcome::NetworkError(e) => {
            let mut s = String::from("network error: ");
            s.push_str(e);
            s
        }
        Outcome::Timeout => String::from("timeout"),
        Outcome::Accepted => String::from("accepted, unanswered"),
        Outcome::Refused => String::from("refused by the browser"),
    }
}
