//! What a flush or a shutdown settled, and the stats: Rust values for Rust callers, and plain
//! objects for JavaScript made by serde-wasm-bindgen's JSON-compatible serializer, so
//! `JSON.stringify` works on every one of them.

use crate::engine::Stats;
use serde::Serialize;
use wasm_bindgen::JsValue;

/// What a `flush()` settled: the events captured before the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// Delivered.
    pub delivered: u64,
    /// Dropped instead, whatever the reason.
    pub dropped: u64,
}

/// What a `shutdown()` settled: the events held when it was called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Delivered after the call.
    pub delivered: u64,
    /// Dropped after the call, whatever the reason (abandoned ones included).
    pub dropped: u64,
    /// Of those dropped, abandoned at the deadline.
    pub abandoned: u64,
}

/// `stats()` as JavaScript sees it: the engine's [`Stats`] with `dropped.total`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsView<'a> {
    queued: u64,
    in_flight: u64,
    in_flight_requests: u64,
    requests: u64,
    delivered: u64,
    retried: u64,
    restored: u64,
    storage_errors: u64,
    dropped: DroppedView,
    last_error: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DroppedView {
    total: u64,
    queue_full: u64,
    too_large: u64,
    rejected: u64,
    attempts_exhausted: u64,
    shutdown: u64,
    persist_cap: u64,
}

/// A plain object (numbers, strings, `null`) for `value`.
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    // Counters stay far below 2^53, where a JS number is exact: the serializer cannot fail.
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::UNDEFINED)
}

/// `{ queued, inFlight, inFlightRequests, requests, delivered, retried, restored,
/// storageErrors, dropped: { total, queueFull, tooLarge, rejected, attemptsExhausted, shutdown,
/// persistCap }, lastError }`.
pub fn stats(s: &Stats) -> JsValue {
    let d = s.dropped;
    to_js(&StatsView {
        queued: s.queued,
        in_flight: s.in_flight,
        in_flight_requests: s.in_flight_requests,
        requests: s.requests,
        delivered: s.delivered,
        retried: s.retried,
        restored: s.restored,
        storage_errors: s.storage_errors,
        dropped: DroppedView {
            total: d.total(),
            queue_full: d.queue_full,
            too_large: d.too_large,
            rejected: d.rejected,
            attempts_exhausted: d.attempts_exhausted,
            shutdown: d.shutdown,
            persist_cap: d.persist_cap,
        },
        last_error: s.last_error.as_deref(),
    })
}
