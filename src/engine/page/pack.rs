//! Bodies packed ahead: a batch that waits is compressed by the host, asynchronously
//! (`CompressionStream` in a browser), while the page lives, so that what was held a while is
//! not compressed again on each attempt, nor as the page goes away.
//!
//! The policy:
//! - Once the host says it can compress ([`HostFeatures::compress`]), a batch is handed out in
//!   a [`Notice::Pack`] when it is ready to wait: full, with no free request slot to take it
//!   now (full batches are cut from the queue at once for it); behind a backoff or a
//!   `Retry-After` hold; in flight unanswered [`DEFERRED_AFTER_MS`] (a slow collector);
//!   restored from an earlier load; or, once the page is hidden, whatever is held (the whole
//!   queue is cut). A batch that goes at once, in a free slot, is not packed: most are
//!   answered before they would need it. The notice carries its body without `sent_at` (with
//!   `compression: "gzip"`) to gzip, and its lines for the stored copy (when the host keeps
//!   copies and can inflate them) to raw-deflate.
//! - The bytes come back by [`Engine::handle_packed`](crate::engine::Engine::handle_packed) and
//!   stay with the batch until it settles or is split (a split batch is packed again). A
//!   deferred request carries the gzip bytes; a keepalive request or a beacon sends them; the
//!   stored copy is made of the deflated lines.
//! - At most [`PACK_TEXT_AT_ONCE`] of text is out to pack at a time: the next batch is asked
//!   for as one comes back, so the text handed out stays a few batches, however many are held.
//! - On the page-close path a batch not packed yet does not wait for its pack (there may be no
//!   time: figure 7 measured none between `beforeunload` and `pagehide`): it is gzipped there
//!   and then, synchronously, as before packs (`batch.rs`); for the stored copy its lines are
//!   deflated in the engine once, kept as its copy part ([`Outbox::deflate_copies`]).
//! - Ordinary requests still carry a body stamped with `sent_at`, compressed by the host as
//!   they go: most are answered before they would be packed.

use crate::engine::delivery::batch::{body_of, Batch, BatchState};
use crate::engine::delivery::config::{BatchMode, Compression};
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::Env;
use crate::engine::page::close::{GZIP_PLAIN_PER_BYTE, KEEPALIVE_BODY_BYTES};
use crate::engine::page::defer::DEFERRED_AFTER_MS;
use crate::engine::page::persist::{self, PackedPart};
use crate::engine::page::{Page, PageState};
use crate::engine::wire::format::WireFormat;
use crate::engine::wire::gzip;
use crate::engine::{BatchId, Notice, Path, Transmit};

/// What the host can do besides `fetch`, told once by
/// [`Engine::handle_host_features`](crate::engine::Engine::handle_host_features).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostFeatures {
    /// `fetchLater`: held batches stay armed as
    /// [`Path::Deferred`](crate::engine::Path::Deferred) transmits.
    pub deferred: bool,
    /// An asynchronous compressor (gzip and raw deflate): batches are packed ahead
    /// ([`Notice::Pack`]).
    pub compress: bool,
    /// Ordinary requests may go with `keepalive: true` ([`Transmit::outlives`]): a page whose
    /// `fetch` has it and whose requests carry none of the user's headers (a custom header
    /// forces a preflight, which cannot finish once the page is gone).
    ///
    /// [`Transmit::outlives`]: crate::engine::Transmit::outlives
    pub keepalive: bool,
    /// The page is on the endpoint's origin ([`Config::same_origin`]): its requests and its
    /// navigations share the browser's connections to that host, so while a navigation waits
    /// for its answer (`beforeunload` to `pagehide`) the page keeps one free
    /// ([`HOST_CONNECTIONS`](crate::engine::HOST_CONNECTIONS)).
    ///
    /// [`Config::same_origin`]: crate::engine::Config::same_origin
    pub same_origin: bool,
    /// The browser sends a keepalive request on when it fails the page's `fetch` as the
    /// document goes (Chromium, which hands keepalive requests to its browser process and
    /// rejects their promises as `pagehide` is dispatched, though they still arrive:
    /// bench/PAGEHIDE.md finding 7). A network failure of a keepalive request sent before
    /// anything was answered since `beforeunload` is then no answer: the request is carried on
    /// as one still in flight would be. Firefox 153 fails them too, and loses some.
    pub keepalive_after_unload: bool,
    /// The host tells the page's lifecycle (`flushOnPageHide` in a page): the page-close path
    /// will run, and what it compresses in the engine is warmed up once, when the collector
    /// first answers while the page is shown
    /// ([`warm_up_page_close`](crate::engine::warm_up_page_close)), rather than run cold as
    /// the page goes.
    pub page_close: bool,
}

/// Text handed out to pack and not back yet, at most (bytes of bodies and lines; one pack
/// always goes): the next is asked for as one comes back, so the text waiting to be
/// compressed stays a few batches (four or five cut to [`PackRatio::target`]), however many
/// are held.
pub const PACK_TEXT_AT_ONCE: usize = 384 * 1024;

/// How well this page's batches gzip: JSON bytes per gzip byte, in sixteenths, a moving
/// average of the bodies gzipped (packs come back, and bodies gzipped in the engine on the
/// page-close path), each weighing a quarter and counted between 2 and 16; the first replaces
/// the guess of [`GZIP_PLAIN_PER_BYTE`]. The ceiling bounds a batch's text (224 KiB), and so
/// the memory its body takes while it is built. Each keepalive request or beacon costs the
/// leaving page about half a millisecond in Chromium whatever its size (bench/PAGEHIDE.md), so
/// a batch is cut to fill one keepalive body once packed: a few full bodies carry the quota.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackRatio {
    sixteenths: usize,
    /// Whether a body was seen: the first replaces the guess.
    seen: bool,
}

impl PackRatio {
    pub fn new() -> PackRatio {
        PackRatio {
            sixteenths: GZIP_PLAIN_PER_BYTE * 16,
            seen: false,
        }
    }

    /// A body of `plain` bytes came back (or was gzipped in the engine) as `wire` bytes of
    /// gzip.
    pub fn observe(&mut self, plain: usize, wire: usize) {
        if let Some(seen) = plain.saturating_mul(16).checked_div(wire) {
            let seen = seen.clamp(2 * 16, 16 * 16);
            self.sixteenths = match self.seen {
                true => (3 * self.sixteenths + seen) / 4,
                false => seen,
            };
            self.seen = true;
        }
    }

    /// The JSON bytes a batch is cut to: what gzips to [`KEEPALIVE_BODY_BYTES`].
    pub fn target(&self) -> usize {
        self.plain_for(KEEPALIVE_BODY_BYTES)
    }

    /// The JSON bytes that gzip to `wire` bytes at this ratio, less an eighth, so that a batch
    /// that packs a little worse than the average still fits.
    pub fn plain_for(&self, wire: usize) -> usize {
        wire.saturating_mul(self.sixteenths) / 16 * 7 / 8
    }
}

/// A batch's bodies, packed ahead by the host: its body for the wire, its lines for the
/// stored copy, each asked for when needed (a split batch is packed again).
#[derive(Debug, Default)]
pub(crate) struct Pack {
    wire: Slot<Vec<u8>>,
    copy: Slot<PackedPart>,
}

/// One of a pack's two parts.
#[derive(Debug, Default)]
enum Slot<T> {
    /// Not asked for.
    #[default]
    None,
    /// Asked for, not back yet: this many bytes of text handed out.
    Asked(usize),
    /// Back, if the host managed.
    Ready(Option<T>),
}

impl<T> Slot<T> {
    /// Asked for, or back.
    fn is_set(&self) -> bool {
        !matches!(self, Slot::None)
    }

    fn get(&self) -> Option<&T> {
        match self {
            Slot::Ready(value) => value.as_ref(),
            _ => None,
        }
    }

    fn out(&self) -> usize {
        match self {
            Slot::Asked(bytes) => *bytes,
            _ => 0,
        }
    }

    /// Takes the host's answer, if this was asked for.
    fn answer(&mut self, value: Option<T>) {
        if matches!(self, Slot::Asked(_)) {
            *self = Slot::Ready(value);
        }
    }

    /// `pagehide`: an answer still out is no longer awaited.
    fn give_up(&mut self) {
        if matches!(self, Slot::Asked(_)) {
            *self = Slot::None;
        }
    }
}

impl Pack {
    /// Whether its body is back (what a hidden page's batch waits for).
    pub fn is_ready(&self) -> bool {
        matches!(self.wire, Slot::Ready(_))
    }

    /// Bytes of text handed out for it and not back.
    fn text_out(&self) -> usize {
        self.wire.out() + self.copy.out()
    }

    /// The body gzipped, if it is back.
    pub fn wire(&self) -> Option<&[u8]> {
        self.wire.get().map(Vec::as_slice)
    }

    /// The copy's lines deflated, if they are back, as the copy stores them.
    pub fn copy(&self) -> Option<&PackedPart> {
        self.copy.get()
    }

    /// Its copy part, deflated in the engine: an answer still out for it is not awaited.
    fn set_copy(&mut self, part: PackedPart) {
        self.copy = Slot::Ready(Some(part));
    }
}

/// Packing, as the host allows it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Packing {
    /// The host compresses asynchronously.
    pub on: bool,
    /// The stored copy's lines are packed too (the host keeps copies and inflates them).
    pub copy: bool,
}

impl Outbox {
    /// After every change: cuts and asks packs for what is ready to wait (see the module
    /// docs). `copy`: the stored copy's lines are packed too; `hold_until`: the endpoint's
    /// `Retry-After` hold.
    pub fn pack_ahead<F: WireFormat>(
        &mut self,
        env: &mut Env<F>,
        page: &Page,
        copy: bool,
        hold_until: u64,
        now_ms: u64,
    ) {
        self.packing.copy = copy;
        let wire = env.config.compression == Compression::Gzip;
        if !self.packing.on || page.state >= PageState::Leaving || !(wire || copy) {
            return;
        }
        let hidden = page.hidden();
        let timeout = env.config.request_timeout_ms;
        // Hidden, everything held is cut to be packed. (Not with `batchMode: "off"`: one event
        // per request, and no pack for each.)
        let cuts = env.config.batch_mode != BatchMode::Off;
        if cuts && hidden {
            self.cut_held(env, true, now_ms);
        }
        let mut out: usize = self.batches.iter().map(|b| b.pack.text_out()).sum();
        let mut free = match hold_until > now_ms {
            true => 0,
            false => env
                .config
                .max_in_flight
                .saturating_sub(self.ledger.ordinary_in_flight()),
        };
        let wants = Wants { wire, copy };
        for b in &mut self.batches {
            if out >= PACK_TEXT_AT_ONCE {
                break;
            }
            if on_its_way(b) {
                continue;
            }
            let ready_to_wait = hidden
                || match b.state {
                    // Sent, unanswered a second: a slow collector.
                    BatchState::InFlight { .. } => slow_from(b, timeout) <= now_ms,
                    // About to go, in a free slot: not packed.
                    BatchState::Waiting { not_before } if not_before <= now_ms && free > 0 => {
                        free -= 1;
                        false
                    }
                    // Behind a backoff, a hold, or the requests in flight.
                    BatchState::Waiting { .. } => true,
                };
            if ready_to_wait {
                out += ask(env, b, wants);
            }
        }
        // Full batches in the queue are cut as they can be packed, after those the free
        // request slots take now: cut later, a batch is sized by the ratio the first packs
        // showed (`PackRatio`).
        while cuts && out < PACK_TEXT_AT_ONCE {
            let before = self.batches.len();
            self.cut_one(env, false, u64::MAX);
            match self.batches.get_mut(before) {
                Some(_) if free > 0 => free -= 1,
                Some(b) => out += ask(env, b, wants),
                None => break,
            }
        }
    }

    /// A copy is to be written with the host's inflate, and no pack can be awaited (the page
    /// goes: `beforeunload` on, see `Persistence::deflate_copies`): the queue is cut into
    /// batches, and each batch whose copy part is not back (and that holds none of the events
    /// another load took, below `from`) has its lines deflated here, at once, kept as that
    /// part. A copy written again (at `pagehide` after `beforeunload`, or as answers come)
    /// deflates nothing again.
    pub fn deflate_copies<F: WireFormat>(&mut self, env: &Env<F>, from: u64) {
        self.cut_held(env, true, u64::MAX);
        for b in &mut self.batches {
            if b.carried || b.pack.copy().is_some() || b.items.iter().any(|i| i.seq < from) {
                continue;
            }
            let lines = persist::lines(b.items.iter());
            let deflated = gzip::deflate(lines.as_bytes(), persist::REST_LEVEL);
            b.pack.set_copy(PackedPart::new(&deflated));
        }
    }

    /// Cuts the queue into batches held out of it: every full batch whose first event was
    /// captured by `full_by`, or all of it if `all`.
    pub fn cut_held<F: WireFormat>(&mut self, env: &Env<F>, all: bool, full_by: u64) {
        while self.cut_one(env, all, full_by) {}
    }

    /// Cuts one batch from the queue's front as [`cut_held`](Self::cut_held) does; whether
    /// it did.
    fn cut_one<F: WireFormat>(&mut self, env: &Env<F>, all: bool, full_by: u64) -> bool {
        let limit = env.batch_limit();
        let Some(since) = self.queue.front().map(|i| i.enqueued_ms) else {
            return false;
        };
        let due = all || self.queue.has_full_batch(&env.format, limit) && since <= full_by;
        let items = match due {
            true => self.queue.take_batch(&env.format, limit),
            false => return false,
        };
        if items.is_empty() {
            return false;
        }
        let id = self.new_batch_id();
        self.batches.push(Batch::new(id, items, since));
        true
    }

    /// When the next batch is due to be packed, if packing is on: the earliest a request in
    /// flight for a batch not packed has been unanswered [`DEFERRED_AFTER_MS`]. None while
    /// [`PACK_TEXT_AT_ONCE`] is out: a pack coming back asks for the next.
    pub fn pack_at<F>(&self, env: &Env<F>, page: &Page) -> Option<u64> {
        let out: usize = self.batches.iter().map(|b| b.pack.text_out()).sum();
        if !self.packing.on || page.state >= PageState::Leaving || out >= PACK_TEXT_AT_ONCE {
            return None;
        }
        let timeout = env.config.request_timeout_ms;
        let copy = self.packing.copy;
        self.batches
            .iter()
            .filter(|b| !on_its_way(b))
            .filter(|b| !b.pack.wire.is_set() || copy && !b.pack.copy.is_set())
            .filter(|b| matches!(b.state, BatchState::InFlight { .. }))
            .map(|b| slow_from(b, timeout))
            .min()
    }

    /// Transmit `t` just went: a retry (behind a refusing collector) is packed as it goes.
    pub fn pack_retry<F: WireFormat>(&mut self, env: &mut Env<F>, t: &Transmit) {
        if !self.packing.on || t.attempt < 2 || t.path != Path::Ordinary {
            return;
        }
        let wants = Wants {
            wire: env.config.compression == Compression::Gzip,
            copy: self.packing.copy,
        };
        if let Some(b) = self.batches.iter_mut().find(|b| b.id == t.batch) {
            ask(env, b, wants);
        }
    }

    /// Batch `id`'s pack is back: kept, unless the batch settled or was split meanwhile; how
    /// well its body gzipped goes into the page's [`PackRatio`].
    pub fn packed<F>(
        &mut self,
        env: &mut Env<F>,
        id: BatchId,
        wire: Option<Vec<u8>>,
        copy: Option<Vec<u8>>,
    ) {
        if let (Some(ratio), Some(bytes)) = (&mut env.pack_ratio, &wire) {
            if let Some(Slot::Asked(plain)) = self
                .batches
                .iter()
                .find(|b| b.id == id)
                .map(|b| &b.pack.wire)
            {
                ratio.observe(*plain, bytes.len());
            }
        }
        if let Some(b) = self.batches.iter_mut().find(|b| b.id == id) {
            b.pack.wire.answer(wire);
            b.pack.copy.answer(copy.as_deref().map(PackedPart::new));
        }
    }

    /// `pagehide`: no pack is awaited any more; what has none is gzipped as it goes.
    pub fn give_up_packs(&mut self) {
        for b in &mut self.batches {
            b.pack.wire.give_up();
            b.pack.copy.give_up();
        }
    }
}

/// What a batch ready to wait is packed for: its body (`compression: "gzip"`), and its lines
/// (the host keeps copies).
#[derive(Clone, Copy)]
struct Wants {
    wire: bool,
    copy: bool,
}

/// Asks the host to pack what batch `b` wants and has not asked for. Returns the bytes of
/// text handed out.
fn ask<F: WireFormat>(env: &mut Env<F>, b: &mut Batch, wants: Wants) -> usize {
    let wire = wants.wire && matches!(b.pack.wire, Slot::None);
    let copy = wants.copy && matches!(b.pack.copy, Slot::None);
    let body = wire.then(|| body_of(&env.format, &b.items, None));
    let lines = copy.then(|| persist::lines(b.items.iter()));
    if let Some(body) = &body {
        b.pack.wire = Slot::Asked(body.len());
    }
    if let Some(lines) = &lines {
        b.pack.copy = Slot::Asked(lines.len());
    }
    let bytes = b.pack.text_out();
    if body.is_some() || lines.is_some() {
        env.notices.push_back(Notice::Pack {
            batch: b.id,
            body,
            lines,
        });
    }
    bytes
}

/// When batch `b`'s request in flight has been unanswered [`DEFERRED_AFTER_MS`] (its
/// deadline is `timeout_ms` after it left); never if it is not in flight.
fn slow_from(b: &Batch, timeout_ms: u64) -> u64 {
    match b.state {
        BatchState::InFlight { deadline, .. } => deadline
            .saturating_sub(timeout_ms)
            .saturating_add(DEFERRED_AFTER_MS),
        BatchState::Waiting { .. } => u64::MAX,
    }
}

/// Whether batch `b` is on its way by keepalive or beacon (nothing more to pack for it).
pub(crate) fn on_its_way(b: &Batch) -> bool {
    matches!(
        b.state,
        BatchState::InFlight {
            keepalive: true,
            ..
        } | BatchState::InFlight { beacon: true, .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_learns_how_bodies_gzip_within_bounds() {
        let mut r = PackRatio::new();
        assert_eq!(r.target(), KEEPALIVE_BODY_BYTES * 6 * 7 / 8);
        for _ in 0..20 {
            r.observe(160_000, 10_000);
        }
        // Sixteen times, less an eighth: about 14 KiB of gzip per body.
        assert!((15 * 7 / 8..=16 * 7 / 8).contains(&(r.target() / KEEPALIVE_BODY_BYTES)));
        assert!(r.target() > KEEPALIVE_BODY_BYTES * 13);
        // Noise that does not compress: never under two bytes of JSON per gzip byte.
        for _ in 0..20 {
            r.observe(10_000, 10_050);
        }
        assert_eq!(r.plain_for(1000), 2 * 1000 * 7 / 8);
        r.observe(1000, 0);
        assert_eq!(
            r.plain_for(1000),
            2 * 1000 * 7 / 8,
            "an empty answer teaches nothing"
        );
    }
}
