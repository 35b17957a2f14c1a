//! `EdgeCoalescer`: the engine's [`Coalescer`] as the edge middleware (`edge.js`) sees it.
//! Wiring only: it turns JS numbers and strings into the coalescer's inputs and its outputs
//! into plain values; every decision (who leads, when a window's batch goes, retries, the
//! subrequest limit) is the coalescer's.

use super::{config, error, host, report};
use crate::engine::{Coalescer, EdgeConfig, Outcome, RequestId, RetryAfter, TransmitId, WindowId};
use gloo_timers::callback::Timeout;
use js_sys::Array;
use wasm_bindgen::prelude::*;

/// One isolate's batching windows. Made inside a request (it draws random numbers, which a
/// Worker's module scope forbids); each window is then carried out from its leader's
/// `ctx.waitUntil`, so that no I/O crosses requests.
#[wasm_bindgen]
#[derive(Debug)]
pub struct EdgeCoalescer {
    inner: Coalescer,
    /// The user's `headers` (a checked plain object), or `undefined`.
    headers: JsValue,
    debug: bool,
    /// Each window's armed wake-up; dropping one cancels it.
    wakes: Vec<(u64, Timeout)>,
}

#[wasm_bindgen]
impl EdgeCoalescer {
    /// Checks `config` as `new Exporter(config)` does (throwing the same `SpoolConfigError`),
    /// with the events' name, the deadline of each window's delivery and the subrequests it
    /// may make.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "ExporterConfig")] config: JsValue,
        event_name: String,
        deadline_ms: f64,
        subrequest_limit: f64,
    ) -> Result<EdgeCoalescer, JsValue> {
        let (exporter, options) = config::read(&config).map_err(|e| error::config(&e))?;
        let mut edge = EdgeConfig::new(exporter);
        edge.event_name = event_name;
        edge.deadline_ms = deadline_ms as u64;
        edge.subrequest_limit = subrequest_limit as u32;
        let inner = Coalescer::new(edge, host::seed()).map_err(|e| error::config(&e))?;
        Ok(EdgeCoalescer {
            inner,
            headers: headers_object(&options.headers),
            debug: options.debug,
            wakes: Vec::new(),
        })
    }

    /// The `headers` option, checked: a plain object, or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn headers(&self) -> JsValue {
        self.headers.clone()
    }

    /// The `debug` option.
    #[wasm_bindgen(getter)]
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Request `request` arrived at `now`.
    pub fn arrive(&mut self, request: f64, now: f64) {
        self.inner.arrive(RequestId(request as u64), now as u64);
    }

    /// Request `request`'s event is ready: `properties` (JSON text of an object), captured at
    /// `timestamp`. Returns the window this request now leads (its `waitUntil` carries it
    /// out), 0 if it joined one, -1 if it was refused (the waiting list is full).
    pub fn ready(&mut self, request: f64, properties: String, timestamp: f64, now: f64) -> f64 {
        let request = RequestId(request as u64);
        match self
            .inner
            .event_ready(request, properties, timestamp as u64, now as u64)
        {
            Ok(Some(window)) => window.0 as f64,
            Ok(None) => 0.0,
            Err(_) => -1.0,
        }
    }

    /// The time is `now` in window `window`'s leader.
    pub fn wake(&mut self, window: f64, now: f64) {
        self.inner
            .handle_timeout(WindowId(window as u64), now as u64);
    }

    /// The next request window `window` must send now, as `[id, body, contentType, events,
    /// attempt]`, or `undefined`.
    pub fn transmit(&mut self, window: f64, now: f64) -> JsValue {
        let Some(t) = self
            .inner
            .poll_transmit(WindowId(window as u64), now as u64)
        else {
            return JsValue::UNDEFINED;
        };
        let out = Array::new();
        out.push(&JsValue::from(t.id.0 as f64));
        out.push(&JsValue::from(t.body));
        out.push(&JsValue::from(t.content_type));
        out.push(&JsValue::from(t.events as f64));
        out.push(&JsValue::from(t.attempt));
        out.into()
    }

    /// Request `id` of window `window` ended at `now`: `status` and its `Retry-After` (and
    /// the body of an OTLP 2xx answer, for its `partialSuccess`), or `error` for a network
    /// error. Returns whether it was still awaited.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &mut self,
        window: f64,
        id: f64,
        status: u16,
        retry_after: Option<String>,
        error: Option<String>,
        body: Option<String>,
        now: f64,
    ) -> bool {
        let outcome = match error {
            Some(e) => Outcome::NetworkError(e),
            None => Outcome::Response {
                status,
                retry_after: retry_after.as_deref().and_then(RetryAfter::parse),
                body,
            },
        };
        self.inner.handle_outcome(
            WindowId(window as u64),
            TransmitId(id as u64),
            outcome,
            now as u64,
        )
    }

    /// The next request of window `window` to abort, or -1.
    pub fn abort(&mut self, window: f64) -> f64 {
        self.inner
            .poll_abort(WindowId(window as u64))
            .map_or(-1.0, |id| id.0 as f64)
    }

    /// Calls `wake` when window `window`'s leader should wake next (the coalescer's
    /// `poll_timeout`), unless it waits only for an answer. Replaces the window's earlier
    /// timer, which is cancelled. Called from the leader's `waitUntil`, so the timer belongs
    /// to that request.
    pub fn arm(&mut self, window: f64, now: f64, wake: js_sys::Function) {
        let window = window as u64;
        self.disarm_window(window);
        let Some(at) = self.inner.poll_timeout(WindowId(window)) else {
            return;
        };
        // setTimeout takes a 32-bit signed delay; a longer one would fire at once.
        let delay = at.saturating_sub(now as u64).min(i32::MAX as u64) as u32;
        let timer = Timeout::new(delay, move || {
            let _ = wake.call0(&JsValue::UNDEFINED);
        });
        self.wakes.push((window, timer));
    }

    /// Cancels window `window`'s timer: an answer woke its leader first, or it is done.
    pub fn disarm(&mut self, window: f64) {
        self.disarm_window(window as u64);
    }

    /// Whether window `window` has nothing left to do.
    pub fn finished(&self, window: f64) -> bool {
        self.inner.is_finished(WindowId(window as u64))
    }

    /// The finished window's counters, as `Exporter.stats()` gives them, once; `undefined`
    /// if it is not finished.
    #[wasm_bindgen(unchecked_return_type = "ExporterStats | undefined")]
    pub fn report(&mut self, window: f64) -> JsValue {
        self.inner
            .take_report(WindowId(window as u64))
            .map_or(JsValue::UNDEFINED, |r| report::stats(&r.stats))
    }

    /// Request `request`'s `waitUntil` ended at `now`.
    pub fn ended(&mut self, request: f64, now: f64) {
        self.inner
            .wait_until_ended(RequestId(request as u64), now as u64);
    }
}

impl EdgeCoalescer {
    /// Drops (cancels) window `window`'s timer, if one is armed.
    fn disarm_window(&mut self, window: u64) {
        self.wakes.retain(|(w, _)| *w != window);
    }
}

/// The checked `headers` option as the plain object `edge.js` spreads into each request's.
fn headers_object(headers: &[(String, String)]) -> JsValue {
    if headers.is_empty() {
        return JsValue::UNDEFINED;
    }
    let object = js_sys::Object::new();
    for (name, value) in headers {
        let _ = js_sys::Reflect::set(&object, &name.into(), &value.into());
    }
    object.into()
}
