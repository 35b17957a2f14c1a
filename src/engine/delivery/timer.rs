//! The engine's timers: one table, so the shell arms exactly one JS timer.

/// Kinds of timeout, one slot each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// When the oldest queued event has lingered `flushIntervalMs` and its batch should go.
    Linger = 0,
    /// When the earliest batch waiting to retry has served its backoff.
    Backoff = 1,
    /// When the endpoint's `Retry-After` ends and held-back requests may go.
    RetryAfter = 2,
    /// When the oldest request in flight has waited `requestTimeoutMs` and is given up.
    RequestTimeout = 3,
    /// When `shutdown` stops waiting and abandons what is left.
    ShutdownDeadline = 4,
    /// When to read storage again for what earlier loads stored.
    ReadStored = 5,
    /// When a held batch is due to be armed as a deferred request (`fetchLater`).
    Defer = 6,
}

const COUNT: usize = 7;

impl Timer {
    /// Every kind, in the order [`Engine::handle_timeout`](crate::engine::Engine::handle_timeout)
    /// handles those that expired: requests time out before the shutdown deadline abandons
    /// what is left.
    pub(crate) const VALUES: [Timer; COUNT] = [
        Timer::Linger,
        Timer::Backoff,
        Timer::RetryAfter,
        Timer::RequestTimeout,
        Timer::ShutdownDeadline,
        Timer::ReadStored,
        Timer::Defer,
    ];
}

/// The armed timers, as absolute times in ms. The engine's own: the shell sees only
/// [`Engine::poll_timeout`](crate::engine::Engine::poll_timeout), the earliest of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    data: [Option<u64>; COUNT],
}

impl TimerTable {
    /// Arms `timer` at `time`, or disarms it with `None`.
    pub fn set(&mut self, timer: Timer, time: Option<u64>) {
        self.data[timer as usize] = time;
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.set(timer, None);
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<u64> {
        self.data[timer as usize]
    }

    /// The earliest armed timer's time.
    pub fn next_timeout(&self) -> Option<u64> {
        // A loop rather than `.min()` on the iterator: less wasm.
        let mut next = None;
        for t in self.data.into_iter().flatten() {
            next = Some(next.map_or(t, |n: u64| n.min(t)));
        }
        next
    }

    /// Whether `timer` is armed at or before `now`; if so, it is disarmed.
    pub fn take_expired(&mut self, timer: Timer, now: u64) -> bool {
        let expired = self.is_expired(timer, now);
        if expired {
            self.stop(timer);
        }
        expired
    }

    /// Whether `timer` is armed at or before `now`.
    pub fn is_expired(&self, timer: Timer, now: u64) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_timeout_is_the_earliest_armed_timer() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Linger, Some(50));
        t.set(Timer::RequestTimeout, Some(20));
        assert_eq!(t.next_timeout(), Some(20));
        t.set(Timer::RequestTimeout, None);
        assert_eq!(t.next_timeout(), Some(50));
        assert!(t.is_expired(Timer::Linger, 50));
        assert!(!t.is_expired(Timer::Linger, 49));
        assert!(!t.is_expired(Timer::Backoff, u64::MAX));
    }
}
