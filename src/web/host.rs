//! What the shell calls in its JavaScript host: a few globals (`crypto`, `console`, `String`)
//! and the small JavaScript module beside this file (`host.js`), which sends requests, arms
//! the timer, listens to the page and builds plain objects. Sending from JavaScript keeps the
//! wasm small: one `fetch` call there replaces a future, a response binding and a dozen
//! property writes here.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/web/host.js")]
extern "C" {
    /// POSTs `body`; `input(ANSWER, id, status, retryAfter, error, body)` is called once,
    /// asynchronously (`body`, the response's, only for a 2xx to an `application/json` request). Returns the request's `AbortController`, or `undefined`.
    pub fn post(
        url: &JsValue,
        body: &str,
        content_type: &str,
        headers: &JsValue,
        keepalive: bool,
        id: f64,
        input: &js_sys::Function,
    ) -> JsValue;

    /// `setTimeout`: calls `input(WAKE)` in `delay` ms. Returns the timer, for [`disarm`].
    pub fn arm(input: &js_sys::Function, delay: i32) -> JsValue;

    /// `clearTimeout` of a timer [`arm`] started.
    pub fn disarm(timer: &JsValue);

    /// `queueMicrotask`: calls `input(SOON)` once the current task's code returns, before
    /// anything else (a timer, an event, page teardown) can run.
    pub fn soon(input: &js_sys::Function);

    /// Listens to the page lifecycle, calling `input(HIDDEN)` or `input(VISIBLE)`. Returns
    /// the function that stops listening, or `undefined` where there is no page.
    pub fn listen(input: &js_sys::Function) -> JsValue;

    /// A uuid's canonical text from its four 32-bit words, most significant first.
    #[wasm_bindgen(js_name = uuidText)]
    pub fn uuid_text(a: u32, b: u32, c: u32, d: u32) -> JsValue;

    /// Aborts a request `post` started.
    pub fn abort(controller: &JsValue);

    /// The `message` of a thrown value; never throws.
    pub fn message(thrown: &JsValue) -> String;

    /// One `console.warn` naming the keys of `config` that are not in `known` (names separated
    /// by spaces), if there are any.
    #[wasm_bindgen(js_name = warnUnknownKeys)]
    pub fn warn_unknown_keys(config: &JsValue, known: &str);

    /// A checked plain copy of the `headers` config; throws an `Error` saying what is wrong.
    #[wasm_bindgen(catch, js_name = copyHeaders)]
    pub fn copy_headers(headers: &JsValue) -> Result<JsValue, JsValue>;

    /// An `Error` (a `TypeError` if `type_error`) named `name` with the message
    /// `spool: {message}`, and a `field` property if one is given.
    pub fn error(type_error: bool, name: &str, message: &str, field: Option<&str>) -> JsValue;

    /// `[promise, resolve]`.
    pub fn deferred() -> js_sys::Array;

    /// `{ delivered, dropped }`, plus `abandoned` when given.
    pub fn report(delivered: f64, dropped: f64, abandoned: Option<f64>) -> JsValue;

    /// The `stats()` object.
    #[allow(clippy::too_many_arguments)]
    pub fn stats(
        queued: f64,
        in_flight: f64,
        in_flight_requests: f64,
        requests: f64,
        delivered: f64,
        retried: f64,
        queue_full: f64,
        too_large: f64,
        rejected: f64,
        attempts_exhausted: f64,
        shutdown: f64,
        last_error: Option<String>,
    ) -> JsValue;

    /// `debug: true`: logs a request.
    #[wasm_bindgen(js_name = logRequest)]
    pub fn log_request(id: f64, events: f64, bytes: f64, attempt: f64, keepalive: bool);

    /// `debug: true`: logs an outcome.
    #[wasm_bindgen(js_name = logOutcome)]
    pub fn log_outcome(id: f64, status: u16, retry_after: &JsValue, error: &JsValue);
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;

    /// `console.warn`.
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    pub fn warn(message: &str);

    /// `String(n)`: JavaScript's own text for a number (`NaN`, `-3`, `1.5`, `Infinity`),
    /// without carrying Rust's float formatting into the wasm.
    #[wasm_bindgen(js_name = String)]
    pub fn number_text(n: f64) -> String;
}

/// Milliseconds since the Unix epoch, from `Date.now()`: the only clock fed to the engine.
pub fn now_ms() -> u64 {
    // Date.now() is a non-negative integer below 2^53; `as` saturates anything odd to 0.
    js_sys::Date::now() as u64
}

/// A seed for the engine's generator (uuids, jitter) from `crypto.getRandomValues`, which
/// every context has (unlike `crypto.randomUUID`, absent outside secure contexts).
/// Falls back to `Math.random` and the clock in the rare host without `crypto`.
pub fn seed() -> u64 {
    let mut buf = [0u8; 8];
    if get_random_values(&mut buf).is_ok() {
        return u64::from_le_bytes(buf);
    }
    let r = (js_sys::Math::random() * (1u64 << 53) as f64) as u64;
    r ^ now_ms().rotate_left(32)
}
