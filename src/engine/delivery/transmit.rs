//! What the engine asks the shell to send: a [`Transmit`], named by its [`TransmitId`], an
//! attempt of the batch [`BatchId`], leaving the page by its [`Path`].

/// Names one request (one attempt of one batch). A retry gets a new id, so a late answer to
/// an abandoned attempt is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransmitId(pub u64);

/// Names one batch of events across its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// How a [`Transmit`] leaves the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// An ordinary `fetch`, answered.
    Ordinary,
    /// A `fetch` with `keepalive: true`: it outlives the page, within the browser's 64 KiB
    /// budget ([`KEEPALIVE_QUOTA_BYTES`](crate::engine::KEEPALIVE_QUOTA_BYTES)), without the user's headers (no preflight).
    Keepalive,
    /// `navigator.sendBeacon` as the page goes away: never answered. Report at once
    /// [`Outcome::Accepted`](crate::engine::Outcome::Accepted) or [`Outcome::Refused`](crate::engine::Outcome::Refused), as the browser's return value says.
    Beacon,
    /// `fetchLater`: armed now, sent by the browser when the page goes away (a navigation, a
    /// tab close, the back/forward cache, a crash) with nothing to run at unload, and never
    /// answered. Its body carries no `sent_at`. Report [`Outcome::Refused`](crate::engine::Outcome::Refused) if `fetchLater`
    /// throws (its quota, a policy). On [`Notice::Abort`](crate::engine::Notice::Abort), abort it, unless it has activated:
    /// then report [`Outcome::Accepted`](crate::engine::Outcome::Accepted) (as for every one that activated while the page
    /// lived on, in the back/forward cache).
    Deferred,
}

/// Whether a request whose body the host compressed may start, and how
/// ([`Engine::handle_compressed`](crate::engine::Engine::handle_compressed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Given up meanwhile, or taken back to go after a `Retry-After`: do not send it.
    No,
    /// An ordinary request.
    Ordinary,
    /// An ordinary request with `keepalive: true` ([`Transmit::outlives`]).
    Outliving,
}

/// A request the shell must send now: `POST` `body` to the configured endpoint.
///
/// # Example
/// ```
/// use spool::engine::{Config, Engine, EventInput, Outcome, PageEvent, Path};
/// let now = 1_700_000_000_000;
/// let mut config = Config::new("https://collector.example/batch/");
/// config.api_key = "phc_project_key".into();
/// let mut engine = Engine::new(config, 1).unwrap();
/// engine.capture(EventInput::new("checkout"), now).unwrap();
/// // The page is hidden: what is held goes at once, keepalive, gzipped: packed ahead by the
/// // host where it was ready to wait, else by the engine there and then (as here).
/// engine.handle_page(PageEvent::Hidden, now);
/// let t = engine.poll_transmit(now).unwrap();
/// assert_eq!((t.path, t.events, t.attempt), (Path::Keepalive, 1, 1));
/// assert!(t.gzipped.is_some() && t.wire_len() < t.body.len() + 30);
/// engine.handle_outcome(t.id, Outcome::status(200), now + 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Report the outcome under this id.
    pub id: TransmitId,
    /// The batch this is an attempt of.
    pub batch: BatchId,
    /// The body, with `sent_at` stamped at the time passed to `poll_transmit`; empty where it
    /// goes as `gzipped` packed ahead (without `sent_at`: see [`query`](Self::query)).
    pub body: String,
    /// The body gzipped by the host ahead of time ([`Notice::Pack`](crate::engine::Notice::Pack)),
    /// for a batch packed ahead: send these bytes, with `Content-Encoding: gzip` if the format
    /// needs it ([`WireFormat::gzip_needs_header`](crate::engine::WireFormat::gzip_needs_header)).
    /// Packed once, a batch's bytes go with every attempt and path (`body` is then empty). On
    /// the page-close path a batch not packed yet is gzipped by the engine there and then
    /// (`body` is then those bytes' text): gzip carries about ten times the events through the
    /// browser's budgets. A beacon of a format that needs the header goes plain (`body`).
    pub gzipped: Option<Vec<u8>>,
    /// A query parameter to add to the endpoint's URL: `_=<ms>`, the send time, for a PostHog
    /// body packed ahead (its `sent_at`, as PostHog's capture reads it; see
    /// [`WireFormat::sent_at_param`](crate::engine::WireFormat::sent_at_param)).
    pub query: Option<String>,
    /// The format says gzip with `Content-Encoding: gzip` ([`WireFormat::gzip_needs_header`](crate::engine::WireFormat::gzip_needs_header)):
    /// a gzipped body of it must carry that header, so it cannot go by `sendBeacon`.
    pub gzip_header: bool,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
    /// How it leaves the page.
    pub path: Path,
    /// An ordinary request to send with `keepalive: true` (and so without the user's headers):
    /// answered as any while the page lives, carried by the browser if the page goes, so it
    /// need not go again as the page leaves. Set where the host can
    /// ([`HostFeatures::keepalive`](crate::engine::HostFeatures::keepalive)) and the body fits
    /// the keepalive quota; for a body the host gzips first, the engine says it once the size
    /// is known ([`Start::Outliving`]).
    pub outlives: bool,
    /// Read a 2xx answer's body and hand it back in [`Outcome::Response`](crate::engine::Outcome::Response) (an OTLP
    /// `partialSuccess`); otherwise the body is only drained.
    pub read_body: bool,
    /// Events in the body.
    pub events: usize,
    /// 1 for a first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
}

impl Transmit {
    /// The bytes that go on the wire: the gzipped body's where there is one.
    pub fn wire_len(&self) -> usize {
        self.gzipped.as_ref().map_or(self.body.len(), Vec::len)
    }
}
