//! The `Exporter` class, as JavaScript sees it: `new Exporter(config)`, `capture`, `flush`,
//! `stats`, `shutdown`. A thin layer over the Rust [`Client`]: it reads JavaScript arguments
//! and turns the client's results into JavaScript values, promises and errors.

use super::capture::Capture;
use super::client::{Client, Error};
use super::{config, error, report};
use crate::engine::{BatchMode, CaptureError};
use js_sys::Promise;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use wasm_bindgen::prelude::*;

/// `shutdown()`'s `timeoutMs` when none is given.
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 2000;

/// Buffers events and delivers them in batches to a PostHog-compatible batch endpoint.
///
/// ```js
/// const exporter = new Exporter({ endpoint: "https://collector.example/batch/", apiKey: "phc_..." });
/// const uuid = exporter.capture("signup", { plan: "pro" });
/// const { delivered, dropped } = await exporter.flush();
/// await exporter.shutdown({ timeoutMs: 2000 });
/// ```
///
/// Keep a reference to it for as long as it should run, and call `shutdown()` to stop it: an
/// exporter that is garbage-collected (or `free()`d) stops its timer and page listeners.
#[wasm_bindgen]
#[derive(Debug)]
#[must_use = "an Exporter stops its timer and page listeners when dropped; keep it while it should deliver, and call `shutdown` first"]
pub struct Exporter {
    client: Client,
    /// The client's, which never changes, as a JS string: made once.
    distinct_id: JsValue,
}

#[wasm_bindgen]
impl Exporter {
    /// Creates an exporter, seeded from `crypto`, sharing the `Retry-After` hold of its
    /// endpoint with the others. Throws an `Error` named `SpoolConfigError`, whose `field`
    /// names the offending key, if the config is invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "ExporterConfig")] config: JsValue,
    ) -> Result<Exporter, JsValue> {
        let (config, options) = config::read(&config).map_err(|e| error::config(&e))?;
        let client = Client::with_options(config, options).map_err(|e| error::config(&e))?;
        Ok(Exporter {
            distinct_id: client.distinct_id().into(),
            client,
        })
    }

    /// Checks `config` as `new Exporter(config)` does, throwing the same `SpoolConfigError`,
    /// but creates nothing: no timer, no random numbers, so it may run where those are not
    /// allowed, such as a Worker's module scope. Returns how long a captured event may wait
    /// for its batch: `flushIntervalMs` in `linger` mode, 0 in `auto` and `off`.
    #[wasm_bindgen(js_name = checkConfig)]
    pub fn check_config(
        #[wasm_bindgen(unchecked_param_type = "ExporterConfig")] config: JsValue,
    ) -> Result<f64, JsValue> {
        let (config, _) = config::read(&config).map_err(|e| error::config(&e))?;
        config.validate().map_err(|e| error::config(&e))?;
        Ok(match config.batch_mode {
            BatchMode::Linger => config.flush_interval_ms as f64,
            _ => 0.0,
        })
    }

    /// Captures an event now; returns its uuid.
    ///
    /// `properties` are serialized with `JSON.stringify` here, so changing the object later
    /// changes nothing. Throws (an `Error` whose `name` says why: `SpoolInvalidEvent`,
    /// `SpoolEventTooLarge`, `SpoolShutDown`) on bad input, an event larger than
    /// `maxBatchBytes` (counted as dropped `tooLarge`), or after `shutdown()`. When the queue
    /// is full the event is dropped (counted as `queueFull`, one `console.warn` per episode)
    /// and `undefined` is returned instead of a uuid: telemetry never breaks the page.
    #[wasm_bindgen(unchecked_return_type = "string | undefined")]
    pub fn capture(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "Properties | null")] properties: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "CaptureOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        // Reads (and runs any toJSON or getter) before the state is borrowed.
        let capture = Capture::read(&name, &properties, &options)?;
        match self.client.capture_json(capture.input()) {
            Ok(uuid) => Ok(super::host::uuid_text(
                (uuid.0 >> 96) as u32,
                (uuid.0 >> 64) as u32,
                (uuid.0 >> 32) as u32,
                uuid.0 as u32,
            )),
            Err(Error::Capture(CaptureError::QueueFull)) => Ok(JsValue::UNDEFINED),
            Err(e) => Err(to_error(e)),
        }
    }

    /// Sends everything captured so far without lingering. Resolves to `{ delivered,
    /// dropped }` once every event captured before the call has settled; later captures and
    /// other flushes do not delay it. Rejects only if the exporter is freed first (an error
    /// named `SpoolFreed`) or is called from inside one of its own calls (`SpoolBusy`).
    #[wasm_bindgen(unchecked_return_type = "Promise<FlushReport>")]
    pub fn flush(&self) -> Promise {
        promise(self.client.flush())
    }

    /// Stops taking events, sends what is held, and resolves to `{ delivered, dropped,
    /// abandoned }` for the events held at the call once they are all settled, or at
    /// `timeoutMs` (default 2000) when what is left is abandoned (counted as dropped
    /// `shutdown`) and requests in flight are aborted. Then the timer is cancelled and the
    /// page listeners are removed. Calling it again returns the same report. Rejects with a
    /// `SpoolConfigError` if `timeoutMs` is not a whole number of 0 or more.
    #[wasm_bindgen(unchecked_return_type = "Promise<ShutdownReport>")]
    pub fn shutdown(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ShutdownOptions")] options: JsValue,
    ) -> Promise {
        match config::timeout_ms(&options, DEFAULT_SHUTDOWN_TIMEOUT_MS) {
            Ok(ms) => promise(self.client.shutdown_ms(ms)),
            Err(e) => Promise::reject(&error::config(&e)),
        }
    }

    /// A snapshot of the counters: `{ queued, inFlight, inFlightRequests, requests,
    /// delivered, retried, restored, storageErrors, dropped: { total, queueFull, tooLarge,
    /// rejected, attemptsExhausted, shutdown, persistCap }, lastError }` (`lastError` is
    /// `null` when nothing failed).
    #[wasm_bindgen(unchecked_return_type = "ExporterStats")]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        Ok(report::stats(&self.client.stats().map_err(to_error)?))
    }

    /// The distinct id events get when a capture names none (a string).
    #[wasm_bindgen(getter, js_name = distinctId, unchecked_return_type = "string")]
    pub fn distinct_id(&self) -> JsValue {
        self.distinct_id.clone()
    }
}

/// A promise settled by `report`: its value as a plain object, or the error.
fn promise<T: Serialize>(report: impl Future<Output = Result<T, Error>> + 'static) -> Promise {
    settle(Box::pin(async move {
        report.await.map(|r| report::to_js(&r)).map_err(to_error)
    }))
}

/// `future_to_promise` for every report: one copy of its code in the wasm, not one per report
/// type (about 1 KB).
fn settle(report: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>) -> Promise {
    wasm_bindgen_futures::future_to_promise(report)
}

/// The JavaScript error for a client's error.
fn to_error(e: Error) -> JsValue {
    match e {
        Error::Capture(e) => error::capture(&e),
        Error::Properties(m) => error::error(error::INVALID_EVENT, &m),
        Error::Busy => error::busy(),
        Error::Stopped => error::error(
            error::FREED,
            "the exporter was freed before its flush or shutdown finished",
        ),
    }
}
