//! The plain objects handed back to JavaScript: stats, and what a flush or a shutdown settled.
//! Plain data (numbers, strings, `null`), so `JSON.stringify` works on every one of them.

use super::host;
use crate::engine::{FlushReport, Stats};
use wasm_bindgen::JsValue;

/// What a `shutdown()` settled: the events held when it was called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Delivered after the call.
    pub delivered: u64,
    /// Dropped after the call, whatever the reason (abandoned ones included).
    pub dropped: u64,
    /// Of those dropped, abandoned at the deadline.
    pub abandoned: u64,
}

/// What a settled `flush()` or `shutdown()` promise resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Settled {
    /// `{ delivered, dropped }`.
    Flush(FlushReport),
    /// `{ delivered, dropped, abandoned }`.
    Shutdown(ShutdownReport),
}

impl Settled {
    /// The JS object.
    pub fn to_js(self) -> JsValue {
        // Counters stay far below 2^53, where f64 is exact.
        match self {
            Settled::Flush(r) => host::report(r.delivered as f64, r.dropped as f64, None),
            Settled::Shutdown(r) => host::report(
                r.delivered as f64,
                r.dropped as f64,
                Some(r.abandoned as f64),
            ),
        }
    }
}

/// `{ queued, inFlight, inFlightRequests, requests, delivered, retried, dropped: { total,
/// queueFull, tooLarge, rejected, attemptsExhausted, shutdown }, lastError }`.
pub fn stats(s: Stats) -> JsValue {
    let d = s.dropped;
    host::stats(
        s.queued as f64,
        s.in_flight as f64,
        s.in_flight_requests as f64,
        s.requests as f64,
        s.delivered as f64,
        s.retried as f64,
        d.queue_full as f64,
        d.too_large as f64,
        d.rejected as f64,
        d.attempts_exhausted as f64,
        d.shutdown as f64,
        s.last_error,
    )
}
