//! Deferred requests (`fetchLater`, where the browser has it): what is held stays armed, so
//! that a navigation, a tab close, the back/forward cache or a crash delivers it with nothing
//! to run at unload.
//!
//! The policy:
//! - A batch is armed only while the endpoint [vouches](Endpoint::vouches) for a request
//!   leaving now (its last answer a success, online, no hold): a deferred request is never
//!   answered, so, as for a beacon, its events count as delivered when it goes only if the
//!   collector was known to take them. When that ends, every armed request is aborted.
//! - A batch is armed once it has been held [`DEFERRED_AFTER_MS`] out of the queue, waiting
//!   or in flight alike: most batches are answered sooner, and arming one costs a pack (see
//!   `pack`: with `compression: "gzip"` it is armed once its pack is back) and two calls to
//!   the browser, wasted on a batch answered at once. Batches are armed oldest first
//!   within [`DEFERRED_QUOTA_BYTES`] (body, URL and headers); full batches that waited that
//!   long in the queue are cut to be armed; the unfinished tail is not (it would be armed again
//!   at every capture), and goes at close by keepalive or beacon.
//! - An armed batch is still sent as usual while the page lives; once it settles, or is split,
//!   its deferred request is aborted (and a split one armed again). There is no update: abort,
//!   then arm again.
//! - From `beforeunload` on, the page-close path leaves armed batches to the browser, and at
//!   `pagehide` they count as delivered (the endpoint vouched for them) and are not stored.

use crate::engine::delivery::batch::{body_of, Armed, Batch, BatchState};
use crate::engine::delivery::config::{BatchMode, Compression};
use crate::engine::delivery::endpoint::Endpoint;
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::retry::Outcome;
use crate::engine::delivery::Env;
use crate::engine::page::pack::on_its_way;
use crate::engine::page::{Page, PageState};
use crate::engine::wire::format::WireFormat;
use crate::engine::{Notice, Path, Settlement, Transmit, TransmitId};

/// The browser's quota for deferred requests to one origin from one document: 64 KiB,
/// counting URL, headers and body (Fetch standard, "deferred fetching"; measured in Chromium
/// 156). Apart from the 64 KiB keepalive budget.
pub const DEFERRED_QUOTA_BYTES: usize = 64 * 1024;

/// How long a batch is held out of the queue (unanswered, or waiting to retry) before it is
/// armed. A collector that answers takes less; a page that goes away sooner sends the batch by
/// keepalive or beacon, as where there is no `fetchLater`.
pub const DEFERRED_AFTER_MS: u64 = 1_000;

/// What a deferred request's headers are counted at, besides its URL: measured in Chromium 156,
/// a body may take the quota less the URL and 48 bytes (its implicit `Content-Type`), or 68
/// with `Content-Encoding: gzip`; twice that, for room to spare.
const DEFERRED_HEADER_BYTES: usize = 136;

/// The deferred requests armed, against the browser's quota.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeferredBudget {
    /// The host can arm deferred requests.
    pub on: bool,
    /// Quota taken by the requests armed.
    pub bytes: usize,
    /// The quota there is: [`DEFERRED_QUOTA_BYTES`], or what was armed when the browser
    /// refused one (others on the page share the origin's quota).
    pub cap: usize,
    /// The last batch due to be armed did not fit: nothing more is armed until room frees.
    pub full: bool,
}

impl DeferredBudget {
    /// The host can arm deferred requests from now on.
    pub fn open(&mut self) {
        self.on = true;
        self.cap = DEFERRED_QUOTA_BYTES;
    }
}

impl Outbox {
    /// After every change: aborts the deferred requests that no longer stand (the endpoint no
    /// longer vouches for them, or their batch was split), then arms what is held and not
    /// armed, oldest first, within the quota (not once the page is leaving, or shutting down).
    pub fn keep_armed<F: WireFormat>(
        &mut self,
        env: &mut Env<F>,
        endpoint: &Endpoint,
        page: &Page,
        now_ms: u64,
    ) {
        if !self.deferred.on {
            return;
        }
        let vouched = endpoint.vouches(now_ms);
        for idx in 0..self.batches.len() {
            let b = &self.batches[idx];
            // Disarmed: the collector no longer answers, the batch was split, or it is in
            // flight by a request the browser carries on anyway.
            if b.armed
                .is_some_and(|a| !vouched || a.events != b.items.len() || b.outlives())
            {
                if let Some(id) = self.disarm(idx) {
                    env.notify(Notice::Abort(id));
                }
            }
        }
        if !self.may_arm(endpoint, page, now_ms) {
            return;
        }
        // Full batches that waited a second are cut to be armed (not with `batchMode: "off"`:
        // one event per request).
        if env.config.batch_mode != BatchMode::Off {
            self.cut_held(env, false, now_ms.saturating_sub(DEFERRED_AFTER_MS));
        }
        let gzip = env.config.compression == Compression::Gzip && self.packing.on;
        let overhead = env.config.endpoint.len() + DEFERRED_HEADER_BYTES;
        self.deferred.full = false;
        for idx in 0..self.batches.len() {
            let b = &self.batches[idx];
            if !armable(b) || b.since.saturating_add(DEFERRED_AFTER_MS) > now_ms {
                continue;
            }
            // Gzipped, it goes as packed ahead: a batch whose pack is not back waits for it.
            if gzip && !b.pack.is_ready() {
                continue;
            }
            let gzipped = b.pack.wire().filter(|_| gzip).map(<[u8]>::to_vec);
            let body = match gzipped {
                Some(_) => String::new(),
                None => body_of(&env.format, &b.items, None),
            };
            let quota_bytes = gzipped.as_ref().map_or(body.len(), Vec::len) + overhead;
            if self.deferred.bytes + quota_bytes > self.deferred.cap {
                self.deferred.full = true;
                break;
            }
            let (batch, events, attempt) = (b.id, b.items.len(), b.attempts + 1);
            let transmit = self.new_transmit_id();
            self.batches[idx].armed = Some(Armed {
                transmit,
                quota_bytes,
                events,
            });
            self.deferred.bytes += quota_bytes;
            self.ready.push_back(Transmit {
                id: transmit,
                batch,
                body,
                // Its send time is not known: no `sent_at` at all.
                query: None,
                gzipped,
                gzip_header: env.format.gzip_needs_header(),
                content_type: env.format.content_type(),
                path: Path::Deferred,
                outlives: false,
                read_body: false,
                events,
                attempt,
            });
        }
    }

    /// Whether batches may be armed at `now_ms`: the host has `fetchLater`, the endpoint
    /// vouches for a request leaving now, the page is not leaving and no shutdown runs.
    fn may_arm(&self, endpoint: &Endpoint, page: &Page, now_ms: u64) -> bool {
        self.deferred.on
            && endpoint.vouches(now_ms)
            && page.state < PageState::Leaving
            && self.shutdown.is_none()
    }

    /// When the next batch is due to be armed (the `Defer` timer), if one will be: the
    /// earliest a held batch, or a full batch in the queue, has been held
    /// [`DEFERRED_AFTER_MS`]. None while the quota is full.
    pub fn arm_at<F: WireFormat>(
        &self,
        env: &Env<F>,
        endpoint: &Endpoint,
        page: &Page,
        now_ms: u64,
    ) -> Option<u64> {
        if !self.may_arm(endpoint, page, now_ms) || self.deferred.full {
            return None;
        }
        let held = self.batches.iter().filter(|b| armable(b)).map(|b| b.since);
        let full = self.queue.has_full_batch(&env.format, env.batch_limit());
        let queued = self.queue.front().filter(|_| full).map(|i| i.enqueued_ms);
        held.chain(queued)
            .min()
            .map(|t| t.saturating_add(DEFERRED_AFTER_MS))
    }

    /// Takes batch `idx`'s deferred request off the books; returns it, to abort, if there was
    /// one the shell has (one not yet handed out is simply dropped).
    pub fn disarm(&mut self, idx: usize) -> Option<TransmitId> {
        let armed = self.batches[idx].armed.take()?;
        // Disarmed, the browser no longer carries it: stored again with the rest.
        let b = &mut self.batches[idx];
        b.carried &= b.carried_on();
        self.deferred.bytes -= armed.quota_bytes;
        self.deferred.full = false;
        match self.ready.iter().position(|t| t.id == armed.transmit) {
            Some(i) => {
                self.ready.remove(i);
                None
            }
            None => Some(armed.transmit),
        }
    }

    /// The host's word on deferred request `id`: refused (`fetchLater` threw: the quota left
    /// is what is armed now), or activated (the browser sent it: the page went into the
    /// back/forward cache and came back), its events then delivered: it was armed only while
    /// the endpoint vouched for it. `false` if `id` is not armed.
    pub fn answer_deferred<F>(
        &mut self,
        env: &mut Env<F>,
        id: TransmitId,
        outcome: Outcome,
    ) -> bool {
        let Some(idx) = self
            .batches
            .iter()
            .position(|b| b.armed.is_some_and(|a| a.transmit == id))
        else {
            return false;
        };
        self.disarm(idx);
        match outcome {
            Outcome::Accepted => {
                if let BatchState::InFlight { transmit, .. } = self.batches[idx].state {
                    env.notify(Notice::Abort(transmit));
                }
                self.release(idx);
                self.settle(env, idx, Settlement::Delivered);
            }
            Outcome::Refused => self.deferred.cap = self.deferred.bytes,
            _ => {}
        }
        true
    }

    /// The page is gone: every armed batch goes by its deferred request, so it counts as
    /// delivered (the endpoint vouched for it), is not stored, and is not aborted.
    pub fn settle_armed<F>(&mut self, env: &mut Env<F>) {
        let mut idx = 0;
        while idx < self.batches.len() {
            if self.disarm(idx).is_some() {
                self.release(idx);
                self.settle(env, idx, Settlement::Delivered);
            } else {
                idx += 1;
            }
        }
    }
}

/// Whether batch `b` could be armed: not armed yet, not on its way by keepalive or beacon, and
/// not in flight by a request that outlives the page (the browser carries that one on).
fn armable(b: &Batch) -> bool {
    b.armed.is_none() && !on_its_way(b) && !b.outlives()
}
