//! The page going away: at `pagehide` everything held goes at once, as keepalive requests
//! within the browser's quota, then as beacons until the browser refuses one; what is still
//! held is stored for the next page load, which takes it in first, but for what the browser
//! carries on while the collector is healthy (`Outbox::carry`). The text's layout is in
//! [`persist`](crate::engine::page::persist).

use crate::engine::delivery::batch::BatchState;
use crate::engine::delivery::endpoint::Endpoint;
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::scheduler::{Plan, Source};
use crate::engine::delivery::Env;
use crate::engine::page::persist::Persistence;
use crate::engine::page::{Page, PageEvent, PageState};
use crate::engine::wire::format::WireFormat;
use crate::engine::Transmit;

/// The browser's budget for keepalive request bodies in flight, per page: 64 KiB in total.
/// Fetch standard, "HTTP-network-or-cache fetch": a keepalive request whose body would take
/// the in-flight total past 64 kibibytes fails. Chromium counts `sendBeacon` against it too.
pub const KEEPALIVE_QUOTA_BYTES: usize = 64 * 1024;

/// Keepalive requests in flight at once. Chromium counts only bytes against its quota
/// (bench/PAGEHIDE.md: 8 bodies of 8 KB fit as well as one of 60 KB), so this only shapes the
/// chain: four plain bodies of [`KEEPALIVE_BODY_BYTES`] fill the quota, as do four or five
/// batches packed ahead (cut to fill a body once gzipped, `PackRatio`); sixteen is for
/// smaller batches (a small `maxBatchEvents`), 2 to 4 KB each.
pub const KEEPALIVE_MAX_REQUESTS: usize = 16;

/// HTTP/1.1 connections a browser opens to one host at once (Chromium, Firefox, WebKit: 6).
/// Between `beforeunload` and `pagehide` a navigation waits for the next document's answer,
/// and where the collector is the page's own origin that request needs one of them: the
/// page's requests then keep one free ([`HostFeatures::same_origin`]). WebKit, with a
/// collector answering in 500 ms and every connection taken, held a navigation 488 ms at
/// 3,000 events.
///
/// [`HostFeatures::same_origin`]: crate::engine::HostFeatures::same_origin
pub const HOST_CONNECTIONS: usize = 6;

/// Largest body on the page-hide path (keepalive fetch and `sendBeacon`): a quarter of the
/// quota, so four fill it and a refused body leaves room for smaller ones. Measured in
/// Chromium 156 (bench/PAGEHIDE.md): bodies of 8 to 60 KB carry the same 152–176 plain events
/// per quota, and 13 KB gzip bodies fill it better than one 52 KB one.
pub const KEEPALIVE_BODY_BYTES: usize = 16 * 1024;

/// JSON per gzip byte a page-hide batch not packed ahead is cut by, before it is gzipped there
/// and then: spool's JSON events pack 8 to 10 times at level 6 (bench/PAGEHIDE.md), so a batch
/// cut this way fits [`KEEPALIVE_BODY_BYTES`] once gzipped; one that packs worse is cut again.
pub const GZIP_PLAIN_PER_BYTE: usize = 6;

/// What [`Engine::handle_page`](crate::engine::Engine::handle_page) put on the keepalive path.
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

impl Outbox {
    /// The page is gone while the collector's last answer was a success (online, no hold):
    /// the keepalive requests still in flight, which the browser carries on, are left out of
    /// the stored copy (as a beacon sent then would count as delivered), so the next load does
    /// not send them again. Without that showing they stay in it: a repeat costs bytes, a loss
    /// costs data. So do requests the browser failed as the page unloaded: Chromium's still
    /// reach the collector (bench/PAGEHIDE.md finding 7), but Firefox 153 lost up to two
    /// thirds of 10,000 events that way. Their events stay held here: if the page lives on
    /// (the back/forward cache), their answers settle them, and one that fails is stored
    /// again.
    ///
    /// At `beforeunload` too, before the copy that insures against a `pagehide` that never
    /// runs to its end (Firefox ends a closing tab's script inside it): then also the batches
    /// armed as deferred requests, which the browser sends as the document goes.
    fn carry(&mut self) {
        for b in &mut self.batches {
            b.carried = b.carried_on();
        }
    }
}

impl Page {
    /// The browser fired `event` (see `Engine::handle_page`): the page's state moves, and
    /// what it holds goes, waits or is stored accordingly.
    pub fn handle<F: WireFormat>(
        &mut self,
        event: PageEvent,
        outbox: &mut Outbox,
        env: &mut Env<F>,
        endpoint: &mut Endpoint,
        persistence: &mut Persistence,
        now_ms: u64,
    ) -> PageHideReport {
        let mut report = PageHideReport::default();
        match event {
            PageEvent::BeforeUnload | PageEvent::Hidden => {
                if self.state <= PageState::Unloading {
                    self.state = match event {
                        PageEvent::BeforeUnload => PageState::Unloading,
                        _ => PageState::Hidden,
                    };
                    self.navigating = event == PageEvent::BeforeUnload;
                    if self.navigating {
                        outbox.take_back_compressing(env);
                    }
                    // The keepalive chain first: what it takes is gzipped here and now (the
                    // page may be gone before a pack could come back), and the first body
                    // shows how well the rest gzips, so the batches cut after it each fill a
                    // body (`PackRatio`). What is left is packed, and what awaits its pack
                    // goes once back.
                    report = self.hide(outbox, env, endpoint, now_ms);
                    let (copy, hold) = (persistence.packs_copies(), endpoint.hold.until());
                    outbox.pack_ahead(env, self, copy, hold, now_ms);
                    // About to go: what the browser will carry is left out of the copy, as
                    // once gone (a tab merely hidden keeps it all).
                    if event == PageEvent::BeforeUnload && endpoint.vouches_for_carried(now_ms) {
                        outbox.carry();
                    }
                    persistence.write(outbox, env, self.state, now_ms);
                }
            }
            PageEvent::PageHide => {
                if self.state <= PageState::Unloading {
                    outbox.rescue_ordinary(env);
                    outbox.give_up_packs();
                    // The navigation has its answer: every connection may go to the chain.
                    self.navigating = false;
                    self.state = PageState::Unloading;
                    report = self.hide(outbox, env, endpoint, now_ms);
                    // Beacons come next from `poll_leaving`; once none is left to offer,
                    // the page is gone and what it holds is stored.
                    self.state = PageState::Leaving;
                }
            }
            PageEvent::Visible | PageEvent::PageShow => {
                // Back to the configured batching; the stored copy goes, as the events are
                // held here again.
                *self = Page::default();
                outbox.forget_hidden();
                persistence.remove(env);
            }
            PageEvent::Online | PageEvent::Offline => {
                // While offline, an attempt that fails is not spent against `maxAttempts`;
                // back online, every batch waiting to retry goes at once.
                let was_offline = endpoint.offline;
                endpoint.offline = event == PageEvent::Offline;
                if was_offline && !endpoint.offline {
                    outbox.end_backoffs(now_ms);
                }
            }
        }
        report
    }

    /// Readies the keepalive requests that fit the budget now (the page is hidden).
    fn hide<F: WireFormat>(
        &self,
        outbox: &mut Outbox,
        env: &mut Env<F>,
        endpoint: &Endpoint,
        now_ms: u64,
    ) -> PageHideReport {
        let mut report = PageHideReport::default();
        while let Some(plan) = outbox.plan(env, self, endpoint.hold.until()) {
            if plan.at > now_ms || !plan.keepalive {
                break;
            }
            let t = outbox.send(env, endpoint, plan, false, now_ms);
            report.keepalive_requests += 1;
            report.keepalive_events += t.events;
            report.keepalive_bytes += t.wire_len();
            outbox.ready.push_back(t);
        }
        report.left_events = outbox.ledger.queued_events();
        report
    }

    /// While the page leaves (`pagehide`), the next beacon; once none is left to offer (and
    /// the browser has answered every one), the page is gone and what it holds is stored.
    pub fn poll_leaving<F: WireFormat>(
        &mut self,
        outbox: &mut Outbox,
        env: &mut Env<F>,
        endpoint: &Endpoint,
        persistence: &mut Persistence,
        now_ms: u64,
    ) -> Option<Transmit> {
        if let Some(t) = self.next_beacon(outbox, env, endpoint, now_ms) {
            return Some(t);
        }
        if !outbox.beacon_offered() {
            self.state = PageState::Gone;
            outbox.settle_armed(env);
            if endpoint.vouches_for_carried(now_ms) {
                outbox.carry();
            }
            persistence.write(outbox, env, self.state, now_ms);
        }
        None
    }

    /// The next beacon body: the oldest waiting batch (but one whose keepalive request failed
    /// as the page unloaded: it may well have arrived, and it is stored), else a batch cut
    /// from the queue. None while one offered awaits its answer, once the browser refused
    /// one, or while the endpoint takes none ([`Endpoint::takes_beacons`]).
    fn next_beacon<F: WireFormat>(
        &self,
        outbox: &mut Outbox,
        env: &mut Env<F>,
        endpoint: &Endpoint,
        now_ms: u64,
    ) -> Option<Transmit> {
        // One at a time: the host answers each at once, and once the browser refuses one, no
        // other is built and offered in vain (each costs a copy of its bytes and a call at unload).
        if self.state != PageState::Leaving
            || self.beacons_refused
            || outbox.beacon_offered()
            || !endpoint.takes_beacons(now_ms)
        {
            return None;
        }
        let waiting = outbox.batches.iter().position(|b| {
            matches!(b.state, BatchState::Waiting { .. })
                && !b.keepalive_unknown
                && b.armed.is_none()
        });
        let source = match waiting {
            Some(i) => Source::Batch(i),
            None => {
                outbox.queue.front()?;
                Source::Queue
            }
        };
        let plan = Plan {
            at: now_ms,
            own_at: now_ms,
            source,
            keepalive: false,
        };
        Some(outbox.send(env, endpoint, plan, true, now_ms))
    }
}
