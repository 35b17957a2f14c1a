//! Shutdown: after [`Engine::shutdown`] the engine takes no more events, sends what it holds,
//! and at the deadline abandons the rest, counted as dropped `shutdown`.

use crate::engine::delivery::batch::BatchState;
use crate::engine::delivery::stats::DropReason;
use crate::engine::wire::format::WireFormat;
use crate::engine::{Engine, Notice, Settlement};

/// A shutdown asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shutdown {
    /// When what is left is abandoned.
    pub deadline: u64,
    /// [`Notice::ShutdownComplete`] was sent: nothing is held, nothing more goes.
    pub done: bool,
}

impl<F: WireFormat> Engine<F> {
    /// Completes a shutdown that has nothing left, or nothing it could still send before its
    /// deadline.
    pub(crate) fn finish_idle_shutdown(&mut self) {
        let Some(s) = self.shutdown else { return };
        if s.done {
            return;
        }
        let idle = self.ledger.in_flight_events() == 0 && self.ready.is_empty();
        if self.ledger.held_events() == 0 {
            self.abandon_all();
        } else if idle && self.plan().is_none_or(|p| p.at > s.deadline) {
            // Backoff or Retry-After reaches past the deadline: waiting changes nothing.
            self.abandon_all();
        }
    }

    /// Drops everything held as `shutdown`, aborting requests in flight, and completes the
    /// shutdown.
    pub(crate) fn abandon_all(&mut self) {
        let before = self.ledger.stats.dropped.shutdown;
        self.ready.clear();
        while let Some(batch) = self.batches.last() {
            if let BatchState::InFlight { transmit, .. } = batch.state {
                self.notices.push_back(Notice::Abort(transmit));
            }
            let idx = self.batches.len() - 1;
            self.release(idx);
            self.settle(idx, Settlement::Dropped(DropReason::Shutdown));
        }
        let items = self.queue.drain_all();
        self.settle_items(items, Settlement::Dropped(DropReason::Shutdown));
        if let Some(s) = &mut self.shutdown {
            if !s.done {
                s.done = true;
                let abandoned = self.ledger.stats.dropped.shutdown - before;
                self.notices
                    .push_back(Notice::ShutdownComplete { abandoned });
            }
        }
    }
}
