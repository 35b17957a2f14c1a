//! What the shell calls in its JavaScript host beyond web-sys: the global scope (`fetch`,
//! `navigator`, `document`, found the same way in a page, a Web Worker and workerd), the
//! `keepalive` setter web-sys lacks, `crypto.getRandomValues`, and `host.js`'s one helper.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

// Only the JavaScript `Exporter` calls it: without the feature `js`, wasm-bindgen writes no
// host.js snippet into a Rust app's bindings.
#[cfg(feature = "js")]
#[wasm_bindgen(module = "/src/web/host.js")]
extern "C" {
    /// A uuid's canonical text from its four 32-bit words, most significant first.
    #[wasm_bindgen(js_name = uuidText)]
    pub fn uuid_text(a: u32, b: u32, c: u32, d: u32) -> JsValue;
}

#[wasm_bindgen]
extern "C" {
    /// `globalThis`: a `Window`, a `WorkerGlobalScope` or workerd's global, each of which has
    /// `fetch`.
    pub type Global;

    /// `globalThis.fetch(url, init)`: looked up on the global at the call, so a page that
    /// wraps `fetch` is honoured.
    #[wasm_bindgen(method, catch, js_name = fetch)]
    pub fn fetch(
        this: &Global,
        url: &str,
        init: &web_sys::RequestInit,
    ) -> Result<js_sys::Promise, JsValue>;

    /// `globalThis.fetchLater(url, init)` (deferred fetching, Chromium 135+ in secure
    /// contexts): the request goes when the page goes away. Throws if the quota is spent or a
    /// policy forbids it.
    #[wasm_bindgen(method, catch, js_name = fetchLater)]
    pub fn fetch_later(
        this: &Global,
        url: &str,
        init: &web_sys::RequestInit,
    ) -> Result<FetchLaterResult, JsValue>;

    /// What `fetchLater` returns.
    pub type FetchLaterResult;

    /// Whether the browser has sent the deferred request.
    #[wasm_bindgen(method, getter)]
    pub fn activated(this: &FetchLaterResult) -> bool;

    /// `globalThis.navigator`, if any.
    #[wasm_bindgen(method, getter)]
    pub fn navigator(this: &Global) -> Option<web_sys::Navigator>;

    /// `globalThis.document`: a page's, absent in a Worker and at the edge.
    #[wasm_bindgen(method, getter)]
    pub fn document(this: &Global) -> Option<web_sys::Document>;

    /// A `RequestInit` seen as having `keepalive`, which web-sys 0.3's lacks a setter for.
    pub type KeepaliveInit;

    /// `init.keepalive = value`.
    #[wasm_bindgen(method, setter = keepalive)]
    pub fn set_keepalive(this: &KeepaliveInit, value: bool);

    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;

    /// `console.warn`.
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    pub fn warn(message: &str);

    /// `console.debug(label, value)`.
    #[wasm_bindgen(js_namespace = console, js_name = debug)]
    pub fn debug(label: &str, value: &JsValue);
}

/// The global scope.
pub fn global() -> Global {
    js_sys::global().unchecked_into()
}

/// Whether `fetch` here takes `keepalive` (Firefox before 133 does not): `Request.prototype`
/// has it.
pub fn keepalive_fetch() -> bool {
    let request = js_sys::Reflect::get(&js_sys::global(), &"Request".into());
    match request.and_then(|r| js_sys::Reflect::get(&r, &"prototype".into())) {
        Ok(proto) if proto.is_object() => {
            js_sys::Reflect::has(&proto, &"keepalive".into()).unwrap_or(false)
        }
        _ => false,
    }
}

/// The page's `location.origin`; `None` outside a page.
pub fn page_origin() -> Option<String> {
    let location = js_sys::Reflect::get(&js_sys::global(), &"location".into()).ok()?;
    js_sys::Reflect::get(&location, &"origin".into())
        .ok()?
        .as_string()
}

/// Whether this global can arm deferred requests: a page's `fetchLater` (exposed in secure
/// contexts only).
pub fn deferred_fetch() -> bool {
    global().document().is_some()
        && js_sys::Reflect::has(&js_sys::global(), &"fetchLater".into()).unwrap_or(false)
}

/// The `message` of a thrown value (its `String()` if it has none); never throws.
pub fn message(thrown: &JsValue) -> String {
    if let Some(e) = thrown.dyn_ref::<js_sys::Error>() {
        return e.message().into();
    }
    thrown
        .as_string()
        .unwrap_or_else(|| String::from("unknown error"))
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

/// JavaScript's own text for a number (`NaN`, `-3`, `1.5`, `Infinity`), without carrying
/// Rust's float formatting into the wasm.
pub fn number_text(n: f64) -> String {
    js_sys::Number::from(n)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}
