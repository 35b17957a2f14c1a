//! The `Exporter` class, as JavaScript sees it: `new Exporter(config)`, `capture`, `flush`,
//! `stats`, `shutdown`.

use super::capture::Capture;
use super::shell::{drive, drive_soon, Hold, Shared, Shell};
use super::{config, error, host, report};
use crate::engine::{BatchMode, CaptureError, Engine};
use js_sys::{Function, Promise};
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

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
pub struct Exporter {
    shell: Shared,
    /// The engine's, which never changes, as a JS string: read without borrowing the state.
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
        let hold = hold_for(&config.endpoint);
        let engine = Engine::new(config, host::seed()).map_err(|e| error::config(&e))?;
        Ok(Exporter {
            distinct_id: engine.distinct_id().into(),
            shell: Shell::new(engine, options, hold),
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
        let result = {
            let mut shell = self.shell.try_borrow_mut().map_err(|_| error::busy())?;
            shell.engine.capture_json(capture.input(), host::now_ms())
        };
        drive_soon(&self.shell);
        match result {
            Ok(uuid) => Ok(host::uuid_text(
                (uuid.0 >> 96) as u32,
                (uuid.0 >> 64) as u32,
                (uuid.0 >> 32) as u32,
                uuid.0 as u32,
            )),
            Err(CaptureError::QueueFull) => Ok(JsValue::UNDEFINED),
            Err(e) => Err(error::capture(&e)),
        }
    }

    /// Sends everything captured so far without lingering. Resolves to `{ delivered,
    /// dropped }` once every event captured before the call has settled; later captures and
    /// other flushes do not delay it. Never rejects.
    #[wasm_bindgen(unchecked_return_type = "Promise<FlushReport>")]
    pub fn flush(&self) -> Promise {
        let (promise, resolve) = pending();
        {
            let Ok(mut shell) = self.shell.try_borrow_mut() else {
                return Promise::reject(&error::busy());
            };
            let id = shell.engine.flush(host::now_ms());
            shell.wait_flush(id, resolve);
        }
        drive(&self.shell);
        promise
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
        let timeout_ms = match config::timeout_ms(&options, DEFAULT_SHUTDOWN_TIMEOUT_MS) {
            Ok(ms) => ms,
            Err(e) => return Promise::reject(&error::config(&e)),
        };
        let (promise, resolve) = pending();
        let done = {
            let Ok(mut shell) = self.shell.try_borrow_mut() else {
                return Promise::reject(&error::busy());
            };
            shell.shutdown(timeout_ms, resolve)
        };
        if let Some((resolve, report)) = done {
            let _ = resolve.call1(&JsValue::UNDEFINED, &report.to_js());
        }
        drive(&self.shell);
        promise
    }

    /// A snapshot of the counters: `{ queued, inFlight, inFlightRequests, requests,
    /// delivered, retried, dropped: { total, queueFull, tooLarge, rejected,
    /// attemptsExhausted, shutdown }, lastError }` (`lastError` is `null` when nothing failed).
    #[wasm_bindgen(unchecked_return_type = "ExporterStats")]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let stats = self
            .shell
            .try_borrow()
            .map_err(|_| error::busy())?
            .engine
            .stats();
        Ok(report::stats(stats))
    }

    /// The distinct id events get when a capture names none (a string).
    #[wasm_bindgen(getter, js_name = distinctId, unchecked_return_type = "string")]
    pub fn distinct_id(&self) -> JsValue {
        self.distinct_id.clone()
    }
}

thread_local! {
    /// The `Retry-After` hold of each endpoint an exporter was created for: a `Retry-After`
    /// is about the collector, not about one exporter, so every exporter of this module
    /// instance that sends to the same endpoint honours it (in a Worker, every request's).
    static HOLDS: RefCell<Vec<(String, Hold)>> = const { RefCell::new(Vec::new()) };
}

/// The shared hold of `endpoint`.
fn hold_for(endpoint: &str) -> Hold {
    HOLDS.with_borrow_mut(|holds| {
        if let Some((_, hold)) = holds.iter().find(|(e, _)| e == endpoint) {
            return hold.clone();
        }
        let hold = Hold::default();
        holds.push((endpoint.to_string(), hold.clone()));
        hold
    })
}

/// A new promise and its `resolve`.
fn pending() -> (Promise, Function) {
    let pair = host::deferred();
    (pair.get(0).unchecked_into(), pair.get(1).unchecked_into())
}
