//! The endpoint's hold: the time a `Retry-After` names, before which no request of any batch
//! goes to the endpoint. One per engine, shared by the edge's exporters of an isolate through
//! [`Engine::handle_hold`](crate::engine::Engine::handle_hold).

use crate::engine::delivery::retry::MAX_RETRY_AFTER_MS;

/// Until when the endpoint asked not to be sent to (ms since the epoch; 0: no hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hold {
    until: u64,
}

impl Hold {
    /// Holds until `until_ms`, capped at [`MAX_RETRY_AFTER_MS`] from `now_ms`. An earlier
    /// time than the hold in force changes nothing. Returns whether the hold moved.
    pub fn extend(&mut self, until_ms: u64, now_ms: u64) -> bool {
        let capped = until_ms.min(now_ms.saturating_add(MAX_RETRY_AFTER_MS));
        let moved = capped > self.until;
        if moved {
            self.until = capped;
        }
        moved
    }

    /// When the hold ends.
    pub fn until(&self) -> u64 {
        self.until
    }

    /// Whether the hold still runs at `now_ms`.
    pub fn holds(&self, now_ms: u64) -> bool {
        self.until > now_ms
    }
}
