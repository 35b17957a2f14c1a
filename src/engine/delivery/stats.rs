//! Counters a user reads to see what the exporter did with their events.

/// Why an event was dropped instead of delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue was at `maxQueueEvents` or `maxQueueBytes` when it was captured.
    QueueFull,
    /// On its own it exceeded `maxBatchBytes`.
    TooLarge,
    /// The collector answered a status that retrying cannot fix (e.g. 400, 401); the status
    /// is carried.
    Rejected(u16),
    /// Every one of `maxAttempts` sends failed.
    AttemptsExhausted,
    /// `shutdown`'s deadline passed before it could be delivered.
    Shutdown,
    /// It was stored for the next page load but left out by the storage caps: the oldest
    /// beyond 1 MiB when written, or older than 7 days when read back.
    PersistCap,
}

impl DropReason {
    /// The reason's camelCase name, as in the JS stats object.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queueFull",
            DropReason::TooLarge => "tooLarge",
            DropReason::Rejected(_) => "rejected",
            DropReason::AttemptsExhausted => "attemptsExhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::PersistCap => "persistCap",
        }
    }
}

/// Events dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// See [`DropReason::QueueFull`].
    pub queue_full: u64,
    /// See [`DropReason::TooLarge`].
    pub too_large: u64,
    /// See [`DropReason::Rejected`].
    pub rejected: u64,
    /// See [`DropReason::AttemptsExhausted`].
    pub attempts_exhausted: u64,
    /// See [`DropReason::Shutdown`].
    pub shutdown: u64,
    /// See [`DropReason::PersistCap`].
    pub persist_cap: u64,
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.too_large
            + self.rejected
            + self.attempts_exhausted
            + self.shutdown
            + self.persist_cap
    }

    pub(crate) fn add(&mut self, reason: DropReason, n: u64) {
        let slot = match reason {
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::TooLarge => &mut self.too_large,
            DropReason::Rejected(_) => &mut self.rejected,
            DropReason::AttemptsExhausted => &mut self.attempts_exhausted,
            DropReason::Shutdown => &mut self.shutdown,
            DropReason::PersistCap => &mut self.persist_cap,
        };
        *slot += n;
    }
}

/// A snapshot of the exporter's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events held and not in flight: lingering, or waiting to retry.
    pub queued: u64,
    /// Events in requests not yet answered.
    pub in_flight: u64,
    /// Requests not yet answered.
    pub in_flight_requests: u64,
    /// Events the collector acknowledged (2xx).
    pub delivered: u64,
    /// Requests that were retries of an earlier attempt.
    pub retried: u64,
    /// Requests sent, first attempts and retries.
    pub requests: u64,
    /// Events dropped, by reason.
    pub dropped: Dropped,
    /// Events a page load took in from what an earlier load stored.
    pub restored: u64,
    /// Storage reads and writes that failed (threw, quota full, disabled) and stored lines
    /// that could not be read; each kind is also logged once.
    pub storage_errors: u64,
    /// The most recent failure, e.g. `"HTTP 503"` or `"timeout"`.
    pub last_error: Option<String>,
}
