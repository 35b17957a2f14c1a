//! The endpoint as the engine knows it: the hold its `Retry-After` asked for, its health as
//! its answers showed it, and whether the page is offline (then no answer says anything of it).

use crate::engine::delivery::health::Health;
use crate::engine::delivery::hold::Hold;

/// What the collector asked and showed, and whether it can be reached at all.
#[derive(Debug, Default)]
pub(crate) struct Endpoint {
    /// No request leaves before this (the endpoint's `Retry-After`).
    pub hold: Hold,
    /// What the collector's last answer said of it.
    pub health: Health,
    /// `navigator.onLine` was false: a failed attempt is not spent against `maxAttempts`,
    /// and no beacon goes.
    pub offline: bool,
    /// The collector failed a request of this page at least once (an answer that did not
    /// take it): then its last success does not show it will take the requests the browser
    /// carries on after the page.
    pub failed_once: bool,
}

impl Endpoint {
    /// Whether a request leaving at `now_ms` is vouched for: the collector's last answer was
    /// a success, online and with no hold. A host's acceptance of such a request (a beacon)
    /// counts its events as delivered.
    pub fn vouches(&self, now_ms: u64) -> bool {
        self.health == Health::Answering && !self.offline && !self.hold.holds(now_ms)
    }

    /// Whether a beacon may go at `now_ms`. Offline, under a hold, or behind a failing
    /// collector, a beacon the browser accepts is refused or lost: the events stay held.
    pub fn takes_beacons(&self, now_ms: u64) -> bool {
        !self.offline && !self.hold.holds(now_ms) && self.health != Health::Failing
    }

    /// An answer came for a request; `took` by the format's verdict. A network failure
    /// offline or while the page goes away is the browser's, not the collector's, and says
    /// nothing of it.
    pub fn heard(&mut self, took: bool, network_failure: bool, hidden: bool) {
        if !(network_failure && (self.offline || hidden)) {
            self.health.answered(took);
            self.failed_once |= !took;
        }
    }

    /// Whether the requests the browser carries on after the page is gone may be left out of
    /// the stored copy: it [`vouches`](Self::vouches) now, and the collector has failed none
    /// of this page's requests (a success after failures says too little of the next answer:
    /// the copy is kept, a repeat rather than a loss).
    pub fn vouches_for_carried(&self, now_ms: u64) -> bool {
        self.vouches(now_ms) && !self.failed_once
    }
}
