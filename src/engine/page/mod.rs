//! The page's lifecycle as the engine sees it: what the browser fired ([`PageEvent`]) and
//! where that leaves the page on its way out ([`PageState`]); what goes as the page leaves
//! (`close`: keepalive requests and beacons); and the copy kept for the next load (`stored`:
//! when it is written and read back; `persist`: its text).

pub(crate) mod close;
pub(crate) mod defer;
pub(crate) mod pack;
pub(crate) mod persist;
pub(crate) mod stored;

/// What the browser fired, for [`Engine::handle_page`](crate::engine::Engine::handle_page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEvent {
    /// `beforeunload`: a navigation or a close has started. The page still runs and can
    /// finish ordinary work: everything held goes at once, keepalive while the budget allows.
    BeforeUnload,
    /// `visibilitychange` to hidden: the page may never be shown again (a mobile browser
    /// discards hidden tabs), so it is treated as `beforeunload`.
    Hidden,
    /// `visibilitychange` to visible.
    Visible,
    /// `pagehide`: the page is going away, or into the back/forward cache. Its ordinary
    /// requests are given up; keepalive requests, then beacons, carry what they can; what is
    /// left is stored for the next load.
    PageHide,
    /// `pageshow`: the page is shown again (from the back/forward cache, among others).
    PageShow,
    /// `online`: `navigator.onLine` became true; waiting retries go at once.
    Online,
    /// `offline`: while offline a failed attempt is not spent against `maxAttempts`, and no
    /// beacon goes (the browser would accept and lose it).
    Offline,
}

/// Where the page is on its way out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PageState {
    /// Shown: the configured batching.
    #[default]
    Shown,
    /// Hidden: everything held goes at once, keepalive first.
    Hidden,
    /// `beforeunload` fired: as hidden, but batches armed as deferred requests are left to the
    /// browser. Until `pagehide`, or until the page is hidden or shown without one (a
    /// `beforeunload` that was cancelled).
    Unloading,
    /// `pagehide` fired: the keepalive requests are out, and beacons carry what they can
    /// until the browser refuses one.
    Leaving,
    /// Everything that could go has gone and what is held is stored: nothing more is sent
    /// (not even a retry of a keepalive request that fails as the page unloads) until the
    /// page is shown again.
    Gone,
}

/// The page's state, and what the browser said of beacons while it leaves.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub state: PageState,
    /// The browser refused a beacon as the page leaves: its budget is spent, and no other
    /// beacon is offered until the page is shown again.
    pub beacons_refused: bool,
    /// A request was answered since `beforeunload`: the navigation is under way, and what goes
    /// from now until `pagehide` is sent late (`Batch::sent_unloading`).
    pub answered_unloading: bool,
    /// `beforeunload` fired and `pagehide` has not: a navigation may be waiting for its
    /// answer, on a connection to the page's host.
    pub navigating: bool,
}

impl Page {
    /// Hidden or on its way out: send at once, keepalive first.
    pub fn hidden(&self) -> bool {
        self.state != PageState::Shown
    }

    /// A request that starts now starts late: between `beforeunload` and `pagehide`, once an
    /// earlier one was answered (`Batch::sent_unloading`).
    pub fn starts_late(&self) -> bool {
        self.state == PageState::Unloading && self.answered_unloading
    }
}
