//! A batch that left the queue: cut, stamped and sent, answered, then retried, split or
//! settled. One batch keeps its events (and their uuids) across its attempts; each attempt
//! gets a new [`TransmitId`], so a late answer to an abandoned attempt is ignored.

use crate::engine::delivery::config::Compression;
use crate::engine::delivery::endpoint::Endpoint;
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::queue::Item;
use crate::engine::delivery::retry::{self, Outcome, Step};
use crate::engine::delivery::scheduler::{Plan, Source};
use crate::engine::delivery::stats::DropReason;
use crate::engine::delivery::Env;
use crate::engine::page::close::{GZIP_PLAIN_PER_BYTE, KEEPALIVE_BODY_BYTES};
use crate::engine::page::pack::Pack;
use crate::engine::page::{Page, PageState};
use crate::engine::wire::format::WireFormat;
use crate::engine::wire::gzip::{self, BODY_LEVEL};
use crate::engine::{json, BatchId, Notice, Path, Settlement, Start, Transmit, TransmitId};

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
    /// so no beacon sends it again at `pagehide`; it stays stored for the next load (it may
    /// as well never have left: Firefox loses some).
    pub keepalive_unknown: bool,
    /// Its request went while the page was unloading (between `beforeunload` and `pagehide`),
    /// after an earlier one was answered: the browser may fail such a request after the page
    /// is gone, unseen (Chromium did, for one started 90 ms into a navigation), so it is never
    /// left out of the stored copy as carried on.
    pub sent_unloading: bool,
    /// Its keepalive request failed in the page as the document went, and the browser sends
    /// it on (`HostFeatures::keepalive_after_unload`): in flight, with no answer to come. If
    /// the page is shown again (the back/forward cache) it goes again at once.
    pub handed_on: bool,
    /// The page is going or gone, the collector healthy, while the browser carries this
    /// batch on (its keepalive request in flight, or armed as a deferred request): the stored
    /// copy leaves it out until any answer comes or the page is shown again (`page/close.rs`).
    pub carried: bool,
    /// Armed as a deferred request ([`Path::Deferred`]) carrying this batch's events.
    pub armed: Option<Armed>,
    /// Its bodies packed ahead by the host (`page/pack`).
    pub pack: Pack,
    /// Since when its events are held out of the queue (ms): cut, restored, or queued before
    /// being cut to be armed.
    pub since: u64,
}

/// A deferred request armed for a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Armed {
    pub transmit: TransmitId,
    /// What it takes of the deferred quota: its body, URL and headers.
    pub quota_bytes: usize,
    /// The batch's events when it was armed: a batch split since is armed again.
    pub events: usize,
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
        /// An ordinary request sent with `keepalive: true` ([`Transmit::outlives`]): it takes
        /// `body_len` of the keepalive quota, and the browser carries it if the page goes.
        outlives: bool,
        body_len: usize,
        /// The collector's last answer before this left was a success, online and with no
        /// `Retry-After` hold: if the host accepts it and reports nothing more
        /// ([`Outcome::Accepted`]), its events count as delivered.
        vouched: bool,
        /// The host accepted it without a vouch: no answer will come, and the events stay
        /// held (stored) until the deadline sends them again, the attempt unspent.
        accepted: bool,
        /// An ordinary request whose body the host gzips first: it has not started until
        /// [`Outbox::compressed`] says it may.
        compressing: bool,
    },
}

impl Batch {
    /// In flight by an ordinary request that outlives the page ([`Transmit::outlives`]).
    pub fn outlives(&self) -> bool {
        matches!(self.state, BatchState::InFlight { outlives: true, .. })
    }

    /// Whether the browser carries it on if the page goes: its keepalive request is in flight
    /// (but not one sent while the page was unloading, `sent_unloading`), or it is armed as a
    /// deferred request. Not one the browser failed as the page unloaded
    /// (`keepalive_unknown`): in Firefox some of those never leave.
    pub fn carried_on(&self) -> bool {
        self.armed.is_some()
            || !self.sent_unloading
                && matches!(
                    self.state,
                    BatchState::InFlight {
                        keepalive: true,
                        ..
                    } | BatchState::InFlight { outlives: true, .. }
                )
    }

    /// A batch of `items` not yet sent, held out of the queue since `since`, free to go at
    /// once.
    pub fn new(id: BatchId, items: Vec<Item>, since: u64) -> Batch {
        Batch {
            since,
            id,
            items,
            attempts: 0,
            state: BatchState::Waiting { not_before: 0 },
            failed_hidden: false,
            keepalive_unknown: false,
            sent_unloading: false,
            handed_on: false,
            carried: false,
            armed: None,
            pack: Pack::default(),
        }
    }
}

impl Outbox {
    /// Carries out `plan`: cuts or picks the batch, stamps the body, marks it in flight, as a
    /// beacon if `beacon` (counted against no budget: the browser answers at once), vouched
    /// for if the endpoint [`vouches`](Endpoint::vouches) for it now.
    ///
    /// A batch packed ahead (`page/pack`) goes as its gzip bytes, its send time in the URL
    /// ([`Transmit::query`]): compressed once, whatever its attempts and paths. A page-hide body
    /// (keepalive or beacon) is at most [`KEEPALIVE_BODY_BYTES`] on the wire (and within what
    /// is left of the keepalive quota): packed bytes that do not fit, and anything not packed,
    /// go plain, cut to fit.
    pub fn send<F: WireFormat>(
        &mut self,
        env: &mut Env<F>,
        endpoint: &Endpoint,
        plan: Plan,
        beacon: bool,
        now_ms: u64,
    ) -> Transmit {
        let page_hide = plan.keepalive || beacon;
        // What is not packed ahead is gzipped here, at once, on the page-close path.
        let gzip_now = page_hide
            && env.config.compression == Compression::Gzip
            && !(beacon && env.format.gzip_needs_header());
        let mut limit = env.batch_limit();
        let mut wire_cap = usize::MAX;
        if page_hide {
            wire_cap = KEEPALIVE_BODY_BYTES;
            if plan.keepalive {
                wire_cap = wire_cap.min(self.ledger.keepalive.room());
            }
            // Cut by how well this page's bodies gzip, where packs have shown it.
            let plain_cap = match (gzip_now, env.pack_ratio) {
                (true, Some(ratio)) => ratio.plain_for(wire_cap),
                (true, None) => wire_cap.saturating_mul(GZIP_PLAIN_PER_BYTE),
                (false, _) => wire_cap,
            };
            limit.bytes = limit.bytes.min(plain_cap);
        }
        // A beacon cannot say `Content-Encoding: gzip`: for a format that needs it, plain.
        let packed = |b: &Batch| match !(beacon && env.format.gzip_needs_header()) {
            true => b
                .pack
                .wire()
                .filter(|w| w.len() <= wire_cap)
                .map(<[u8]>::to_vec),
            false => None,
        };
        let idx = match plan.source {
            Source::Queue => {
                let items = self.queue.take_batch(&env.format, limit);
                let id = self.new_batch_id();
                self.batches.push(Batch::new(id, items, now_ms));
                self.batches.len() - 1
            }
            Source::Batch(idx) => {
                // Under the keepalive budget a waiting batch may have to go in parts.
                if packed(&self.batches[idx]).is_none() {
                    let fit = limit.fitting(&env.format, &self.batches[idx].items);
                    self.split_batch(idx, fit);
                }
                idx
            }
        };
        let ahead = packed(&self.batches[idx]);
        let (body, gzipped) = match ahead {
            Some(bytes) => (String::new(), Some(bytes)),
            None => loop {
                let body = body_of(&env.format, &self.batches[idx].items, Some(now_ms));
                if !gzip_now {
                    break (body, None);
                }
                let bytes = gzip::gzip(body.as_bytes(), BODY_LEVEL);
                // What a pack would have shown: the batches cut after this one are sized by it.
                if let Some(ratio) = &mut env.pack_ratio {
                    ratio.observe(body.len(), bytes.len());
                }
                let n = self.batches[idx].items.len();
                if bytes.len() <= wire_cap || n == 1 {
                    break (body, Some(bytes));
                }
                // Packed worse than hoped: keep the share that fits by the ratio seen.
                let keep = n * wire_cap * 9 / (10 * bytes.len());
                self.split_batch(idx, keep.clamp(1, n - 1));
            },
        };
        let wire_len = gzipped.as_ref().map_or(body.len(), Vec::len);
        // An ordinary request outlives the page where it can, so that it need not go again as
        // the page leaves; one the host gzips first is decided once its size is known
        // (`compressed`).
        let host_gzips =
            env.config.compression == Compression::Gzip && self.packing.on && gzipped.is_none();
        let outlives = !page_hide && !host_gzips && self.may_outlive(wire_len);
        let transmit = self.new_transmit_id();
        let batch = &mut self.batches[idx];
        batch.attempts += 1;
        // Set by the engine for a request that goes late as the page unloads.
        batch.sent_unloading = false;
        batch.state = BatchState::InFlight {
            transmit,
            deadline: now_ms + env.config.request_timeout_ms,
            keepalive: plan.keepalive,
            beacon,
            outlives,
            body_len: wire_len,
            vouched: endpoint.vouches(now_ms),
            accepted: false,
            compressing: host_gzips && !page_hide,
        };
        self.ledger.launch(
            batch.items.len(),
            plan.keepalive,
            beacon,
            wire_len,
            batch.attempts,
        );
        if outlives {
            self.ledger.take_quota(wire_len);
        }
        let path = match (beacon, plan.keepalive) {
            (true, _) => Path::Beacon,
            (false, true) => Path::Keepalive,
            (false, false) => Path::Ordinary,
        };
        // Packed ahead, the body has no `sent_at`: the URL carries it, where the format can.
        let query = match (body.is_empty(), env.format.sent_at_param()) {
            (true, Some(name)) => {
                let mut q = String::from(name);
                q.push('=');
                json::write_u64(&mut q, now_ms);
                Some(q)
            }
            _ => None,
        };
        Transmit {
            id: transmit,
            batch: batch.id,
            body,
            query,
            gzipped,
            gzip_header: env.format.gzip_needs_header(),
            content_type: env.format.content_type(),
            path,
            outlives,
            read_body: env.format.reads_answer(),
            events: batch.items.len(),
            attempt: batch.attempts,
        }
    }

    /// Request `id`, whose body the host compressed asynchronously to `wire_len` bytes, is
    /// ready: whether it may start at `now_ms`, and how. Not if it is no longer in flight
    /// (given up meanwhile), nor under the endpoint's hold (a `Retry-After` answered
    /// meanwhile): then it is taken back, unsent, to go once the hold ends. It outlives the
    /// page (`keepalive: true`) where the host can and the body fits the keepalive quota.
    /// `late`: the page unloads and an answer came since it began to, so a request starting
    /// now is never left out of the stored copy as carried on ([`Batch::sent_unloading`]).
    pub fn compressed(
        &mut self,
        endpoint: &Endpoint,
        id: TransmitId,
        wire_len: usize,
        late: bool,
        now_ms: u64,
    ) -> Start {
        let Some(idx) = self.in_flight_index(id) else {
            return Start::No;
        };
        if endpoint.hold.holds(now_ms) {
            self.take_back(idx);
            return Start::No;
        }
        self.batches[idx].sent_unloading = late;
        let may = self.may_outlive(wire_len);
        if let BatchState::InFlight {
            keepalive: false,
            beacon: false,
            outlives: outlives @ false,
            body_len,
            compressing,
            ..
        } = &mut self.batches[idx].state
        {
            *compressing = false;
            if may {
                *outlives = true;
                *body_len = wire_len;
                self.ledger.take_quota(wire_len);
                return Start::Outliving;
            }
        }
        Start::Ordinary
    }

    /// Whether an ordinary request of `wire_len` bytes may go with `keepalive: true`
    /// ([`Transmit::outlives`]): the host can, and the body fits a keepalive body and what is
    /// left of the quota's bytes.
    fn may_outlive(&self, wire_len: usize) -> bool {
        self.outlive
            && wire_len <= KEEPALIVE_BODY_BYTES
            && self.ledger.keepalive.bytes_fit(wire_len)
    }

    /// Takes batch `idx`'s request back, unsent (a beacon the browser refused, a body that
    /// finished compressing under a hold): the batch waits again, the attempt unspent and the
    /// request uncounted.
    pub fn take_back(&mut self, idx: usize) {
        self.release(idx);
        let b = &mut self.batches[idx];
        b.attempts -= 1;
        b.state = BatchState::Waiting { not_before: 0 };
        self.ledger.stats.requests -= 1;
        if b.attempts > 0 {
            self.ledger.stats.retried -= 1;
        }
    }

    /// Gives up every request in flight past its deadline at `now_ms`: each gets a
    /// [`Notice::Abort`] and is answered [`Outcome::Timeout`].
    pub fn expire<F: WireFormat>(
        &mut self,
        env: &mut Env<F>,
        endpoint: &mut Endpoint,
        page: &mut Page,
        now_ms: u64,
    ) {
        // Found afresh after each answer, rather than collected first: an answer takes its
        // batch out of flight and leaves the others in order, and no Vec is built.
        while let Some(id) = self.first_expired(now_ms) {
            env.notify(Notice::Abort(id));
            self.answer(env, endpoint, page, id, Outcome::Timeout, now_ms);
        }
    }

    /// The request `id` ended with `outcome` at `now_ms`: the batch is delivered, retried,
    /// split or dropped, as [`retry::decide`] says, and the endpoint learns what the answer
    /// said of it. A beacon the browser refused is taken back (the attempt unspent, the
    /// request uncounted) and no other is offered while the page leaves. `false` (and
    /// nothing changed) if `id` is not in flight.
    pub fn answer<F: WireFormat>(
        &mut self,
        env: &mut Env<F>,
        endpoint: &mut Endpoint,
        page: &mut Page,
        id: TransmitId,
        outcome: Outcome,
        now_ms: u64,
    ) -> bool {
        let Some(idx) = self.in_flight_index(id) else {
            return self.answer_deferred(env, id, outcome);
        };
        let BatchState::InFlight {
            keepalive,
            outlives,
            vouched,
            accepted,
            ..
        } = self.batches[idx].state
        else {
            return false;
        };
        if outcome == Outcome::Accepted {
            if vouched {
                self.release(idx);
                self.settle(env, idx, Settlement::Delivered);
            } else if let BatchState::InFlight { accepted, .. } = &mut self.batches[idx].state {
                *accepted = true;
            }
            return true;
        }
        if outcome == Outcome::Refused {
            self.take_back(idx);
            page.beacons_refused = true;
            return true;
        }
        if matches!(outcome, Outcome::NetworkError(_))
            && page.state >= PageState::Unloading
            && self.keepalive_after_unload
            && (keepalive || outlives)
            && !self.batches[idx].sent_unloading
        {
            // The browser failed the page's fetch as the document goes and sends the request
            // on: no answer, it stays in flight and is carried on (left out of the copy while
            // the collector is healthy). If the page is shown again it goes again at once
            // (`Outbox::forget_hidden`).
            // From `beforeunload` on, not only once spool's `pagehide` listener ran: the page's
            // other `pagehide` listeners may run first, and the rejections with them.
            self.batches[idx].handed_on = true;
            return true;
        }
        self.release(idx);
        let b = &mut self.batches[idx];
        if accepted {
            // An accepted request's deadline passed: it says nothing about the collector or
            // the batch, which goes again (the events may arrive twice: at-least-once).
            b.attempts -= 1;
            b.keepalive_unknown = true;
            b.state = BatchState::Waiting { not_before: now_ms };
            return true;
        }
        let network_failure = matches!(outcome, Outcome::NetworkError(_) | Outcome::Timeout);
        // Carried on by the browser no longer: a success settles it, and after a failure (the
        // collector's, or the browser's as the page unloads: in Firefox such a request may
        // never have left) it is stored again.
        b.carried = false;
        if endpoint.offline && network_failure {
            // No network at all: this attempt says nothing about the batch.
            b.attempts -= 1;
        } else if page.hidden() && network_failure {
            // The page is going away: a browser fails requests as it unloads (Firefox rejects
            // the old document's fetches once a navigation starts), which says nothing about
            // the batch either. Unspent, and it keeps its backoff while hidden; its events go
            // by beacon at `pagehide` or are stored for the next load.
            b.attempts -= 1;
            b.failed_hidden = true;
            b.keepalive_unknown = keepalive || outlives;
        }
        let attempt = retry::Attempt {
            sends: b.attempts,
            events: b.items.len(),
        };
        let decision = retry::decide(
            &env.format,
            &outcome,
            attempt,
            &env.config,
            now_ms,
            &mut env.rng,
        );
        if decision.step != Step::Delivered {
            self.ledger.stats.last_error = Some(describe(&outcome));
        }
        let took = matches!(decision.step, Step::Delivered | Step::Partial { .. });
        endpoint.heard(took, network_failure, page.hidden());
        if let Some(until) = decision.hold_until {
            endpoint.hold.extend(until, now_ms);
        }
        match decision.step {
            Step::Delivered => self.settle(env, idx, Settlement::Delivered),
            Step::Reject(reason) => self.settle(env, idx, Settlement::Dropped(reason)),
            Step::Partial { status, rejected } => {
                let batch = &mut self.batches[idx];
                let refused = batch.items.split_off(batch.items.len() - rejected);
                let how = Settlement::Dropped(DropReason::Rejected(status));
                self.settle_items(env, refused, how);
                self.settle(env, idx, Settlement::Delivered);
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
        true
    }
}

/// The body of `items`, stamped `sent_at` = `sent_at_ms` if some.
pub(crate) fn body_of<F: WireFormat>(
    format: &F,
    items: &[Item],
    sent_at_ms: Option<u64>,
) -> String {
    let len = format.body_len(items.len(), items.iter().map(|i| i.fragment.len()).sum());
    let mut body = String::with_capacity(len);
    format.write_body(
        &mut items.iter().map(|i| &*i.fragment),
        sent_at_ms,
        &mut body,
    );
    body
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
