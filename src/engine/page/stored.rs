//! When the copy for the next load is written, removed and read back: the policy over
//! [`Persistence`], the bookkeeping of what was stored. The text's layout is in
//! [`persist`](super::persist).

use crate::engine::delivery::config::Config;
use crate::engine::delivery::outbox::Outbox;
use crate::engine::delivery::stats::DropReason;
use crate::engine::delivery::Env;
use crate::engine::page::persist::{
    self, CopyOf, Part, Persistence, PERSIST_LIVE_MS, PERSIST_MAX_AGE_MS,
};
use crate::engine::page::PageState;
use crate::engine::wire::format::WireFormat;
use crate::engine::Notice;

impl Persistence {
    /// Has the copy for the next load written (or removed, once nothing is held), if the
    /// host keeps copies.
    pub fn write<F: WireFormat>(
        &mut self,
        outbox: &mut Outbox,
        env: &mut Env<F>,
        page: PageState,
        now_ms: u64,
    ) {
        if !self.on {
            return;
        }
        self.deflate_copies(outbox, env, page);
        match self.text(outbox, &env.config, page, now_ms) {
            Some((text, events)) => {
                self.stored = Some(copied(outbox));
                let mark = self.written_below;
                env.notify(Notice::WriteStored { text, events, mark });
            }
            None => {
                self.remove(env);
                // All of it carried on by the browser: watched still, so that one that fails
                // is stored after all.
                if left_out(outbox) > 0 {
                    self.stored = Some(copied(outbox));
                }
            }
        }
    }

    /// Has the stored copy removed, if one is: the events are held here again.
    pub fn remove<F>(&mut self, env: &mut Env<F>) {
        self.last = None;
        if self.stored.take().is_some() {
            env.notify(Notice::RemoveStored);
        }
    }

    /// Where the host inflates, once the page goes (`beforeunload` on), each batch's part of
    /// the copy not back from the host is deflated here, once (`Outbox::deflate_copies`): no
    /// pack can be awaited. A page merely hidden still packs ahead (it may live on for long,
    /// capturing: its queue is not cut at each capture).
    pub fn deflate_copies<F: WireFormat>(
        &self,
        outbox: &mut Outbox,
        env: &Env<F>,
        page: PageState,
    ) {
        if self.on && self.deflate && page >= PageState::Unloading {
            outbox.deflate_copies(env, self.stored_from);
        }
    }

    /// After a change: a stored copy is written again if what is held changed, or what is
    /// left out of it (not while the page leaves: it is written once, when the page is gone).
    pub fn keep<F: WireFormat>(
        &mut self,
        outbox: &mut Outbox,
        env: &mut Env<F>,
        page: PageState,
        now_ms: u64,
    ) {
        // Counted only while a copy is stored: the rest of the time this costs nothing.
        if page != PageState::Leaving && self.stored.is_some_and(|was| was != copied(outbox)) {
            self.write(outbox, env, page, now_ms);
        }
    }

    /// Storage is read again if that is due at `now_ms` ([`Notice::ReadStored`]).
    pub fn read_due<F>(&mut self, env: &mut Env<F>, now_ms: u64) {
        let due = self.read_again.iter().filter(|&&t| t <= now_ms).count();
        if due > 0 {
            self.read_again.drain(..due);
            env.notify(Notice::ReadStored);
        }
    }

    /// The text to store at `now_ms`: every held event another load has not taken, batches
    /// (oldest first) before the queue; marked as this live page's for [`PERSIST_LIVE_MS`],
    /// or as gone once the page is.
    pub fn text(
        &mut self,
        outbox: &Outbox,
        config: &Config,
        page: PageState,
        now_ms: u64,
    ) -> Option<(String, usize)> {
        if outbox.ledger.held_events() == 0 {
            return None;
        }
        self.written_below = outbox.next_seq;
        let kept_until = match page == PageState::Gone {
            true => 0,
            false => now_ms.saturating_add(PERSIST_LIVE_MS),
        };
        let of = CopyOf {
            held: outbox.ledger.held_events(),
            next_seq: outbox.next_seq,
            from: self.stored_from,
            packed: outbox
                .batches
                .iter()
                .filter(|b| b.pack.copy().is_some())
                .count(),
            left_out: left_out(outbox),
        };
        if let Some((last, text, events)) = &self.last {
            // Nothing held changed since: the same events, the same text.
            if *last == of {
                return persist::restamp(text, kept_until).map(|text| (text, *events));
            }
        }
        // A batch goes as its packed lines if they are back and it holds none of the events
        // another load took; else, and the queue, as plain lines.
        let from = self.stored_from;
        let mut parts = Vec::new();
        for b in outbox.batches.iter().filter(|b| !b.carried) {
            match b.pack.copy() {
                Some(bytes) if b.items.iter().all(|i| i.seq >= from) => {
                    parts.push(Part::Packed(bytes, b.items.len()));
                }
                _ => parts.extend(b.items.iter().filter(|i| i.seq >= from).map(Part::Plain)),
            }
        }
        parts.extend(
            outbox
                .queue
                .iter()
                .filter(|i| i.seq >= from)
                .map(Part::Plain),
        );
        if parts.is_empty() {
            return None;
        }
        let max = config.persist_max_bytes;
        let (text, events) = match self.deflate {
            true => persist::encode_deflating_rest(&parts, 0, kept_until, max),
            false => persist::encode(&parts, 0, kept_until, max),
        };
        self.last = Some((of, text.clone(), events));
        Some((text, events))
    }
}

/// Events held, and those of them left out of the copy (carried on by the browser).
fn copied(outbox: &Outbox) -> (usize, usize) {
    (outbox.ledger.held_events(), left_out(outbox))
}

fn left_out(outbox: &Outbox) -> usize {
    let carried = outbox.batches.iter().filter(|b| b.carried);
    carried.map(|b| b.items.len()).sum()
}

/// Takes in a stored text's events, within the age cap and the queue's limits, as batches
/// placed before every other: they go first. Returns how many were taken in.
pub(crate) fn restore<F: crate::engine::wire::format::WireFormat>(
    outbox: &mut Outbox,
    env: &Env<F>,
    text: &str,
    inflated: &[Option<String>],
    now_ms: u64,
) -> usize {
    let decoded = persist::decode(text, inflated);
    let stats = &mut outbox.ledger.stats;
    stats.storage_errors += decoded.corrupt;
    stats.dropped.add(DropReason::PersistCap, decoded.cut);
    let mut fresh = Vec::with_capacity(decoded.events.len());
    for e in decoded.events {
        if now_ms.saturating_sub(e.captured_ms) > PERSIST_MAX_AGE_MS {
            stats.dropped.add(DropReason::PersistCap, 1);
        } else {
            fresh.push((e.fragment, e.uuid, e.captured_ms));
        }
    }
    outbox.restore(env, fresh.into_iter(), now_ms)
}
