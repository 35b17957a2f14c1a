//! `localStorage` for the events a page still holds when it goes away: the engine decides what
//! the text is ([`Engine::persist`](crate::engine::Engine::persist)); this writes it, reads
//! what earlier loads of the same endpoint stored, and claims it so that one tab alone sends
//! it.
//!
//! Each exporter writes under a key of its own, `spool1:<format>:<endpoint>:<id>`, so tabs of
//! one origin never overwrite each other. A new exporter claims every other key of its
//! endpoint: it reads them, takes them in (inflating deflated events with the host's
//! `DecompressionStream`, which costs the wasm nothing) and only then removes them, all inside
//! a Web Lock (`navigator.locks`) named after the endpoint, so two tabs loading at once never
//! both take the same text, and a page that goes away mid-claim leaves them stored; where Web
//! Locks are missing, a claim key that expires after [`CLAIM_TTL_MS`] keeps other tabs out (a
//! tab that crashed mid-claim holds it no longer than that).
//!
//! Storage that throws (disabled, private modes, quota full) never throws into the page: the
//! shell counts each failure and logs the first.
//!
//! In a Web Worker there is no `localStorage`, and IndexedDB is asynchronous: a write begun as
//! a worker is terminated may never finish. Workers therefore persist nothing.

use super::host;
use crate::engine::stored_copy_claimable;
use gloo_timers::callback::Timeout;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{ReadableWritablePair, Response};

/// How long a claim holds its Web Lock after taking what was stored: time for the removals to
/// reach the other tabs' renderer processes, whose copies of `localStorage` are updated
/// asynchronously (a claim right after another once read what it had already removed).
const CLAIM_SETTLE_MS: u32 = 250;

/// How long a claim key keeps other tabs from claiming stored events (no Web Locks).
pub const CLAIM_TTL_MS: u64 = 10_000;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (web-sys has it only behind its unstable APIs flag).
    type LockManager;

    /// A `Navigator` seen as having `locks`.
    type LockNavigator;

    #[wasm_bindgen(method, getter)]
    fn locks(this: &LockNavigator) -> Option<LockManager>;

    /// `locks.request(name, callback)`: `callback` runs holding the exclusive lock, which is
    /// released when it returns.
    #[wasm_bindgen(method, catch)]
    fn request(
        this: &LockManager,
        name: &str,
        callback: &js_sys::Function,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// One exporter's place in `localStorage`.
#[derive(Clone)]
pub struct Store {
    storage: web_sys::Storage,
    /// `spool1:<format>:<endpoint>:`: every exporter of the endpoint writes under it.
    prefix: String,
    /// This exporter's own key: `prefix` and a random id.
    key: String,
}

/// A storage call threw.
#[derive(Debug)]
pub struct Failed;

impl Store {
    /// The page's `localStorage` for an exporter of `endpoint` speaking `format`, with a
    /// random `id`: `Ok(None)` where there is none (a Worker), `Err` where reading it throws
    /// (storage disabled).
    pub fn open(format: &str, endpoint: &str, id: u64) -> Result<Option<Store>, Failed> {
        let Some(window) = js_sys::global().dyn_into::<web_sys::Window>().ok() else {
            return Ok(None);
        };
        let storage = match window.local_storage() {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(None),
            Err(_) => return Err(Failed),
        };
        let mut prefix = String::from("spool1:");
        prefix.push_str(format);
        prefix.push(':');
        prefix.push_str(endpoint);
        prefix.push(':');
        let mut key = prefix.clone();
        crate::engine::json::write_u64(&mut key, id);
        Ok(Some(Store {
            storage,
            prefix,
            key,
        }))
    }

    /// Stores `text` under this exporter's key.
    pub fn write(&self, text: &str) -> Result<(), Failed> {
        self.storage.set_item(&self.key, text).map_err(|_| Failed)
    }

    /// Whether this exporter's text is still stored (another load's claim removes it). Asked
    /// as `key in localStorage` (Storage's named properties are its keys): `getItem` would
    /// copy the whole text into the wasm to say so (a 150,000-character copy took 9 ms of
    /// WebKit's `pagehide`).
    pub fn holds_own(&self) -> Result<bool, Failed> {
        js_sys::Reflect::has(&self.storage, &JsValue::from_str(&self.key)).map_err(|_| Failed)
    }

    /// Removes this exporter's text.
    pub fn remove(&self) -> Result<(), Failed> {
        self.storage.remove_item(&self.key).map_err(|_| Failed)
    }

    /// Claims what other exporters of the endpoint stored: `take` gets each text and finishes
    /// once it has taken them in (it may wait, to inflate them), saying whether it did; only
    /// then are they removed from storage, so a page that goes away meanwhile (or an exporter
    /// freed meanwhile) leaves them for the next load.
    /// `failed` gets the count of storage calls that failed, each time there are some.
    ///
    /// Inside a Web Lock named after the endpoint (held until the texts are removed, and a
    /// moment longer), so two tabs never take the same text; where Web Locks are missing (or
    /// requesting one throws), under a claim key that expires after [`CLAIM_TTL_MS`].
    pub fn claim<T, F>(&self, take: T, failed: F)
    where
        T: FnOnce(Vec<String>) -> LocalBoxFuture + 'static,
        F: Fn(u64) + 'static,
    {
        let storage = self.storage.clone();
        let prefix = self.prefix.clone();
        let own = self.key.clone();
        if let Some(locks) = host::global()
            .navigator()
            .and_then(|n| n.unchecked_ref::<LockNavigator>().locks())
        {
            // Shared by the lock's callback and the fallback below: whichever runs takes it.
            let once = Rc::new(Cell::new(Some((take, failed))));
            let granted = once.clone();
            let callback = Closure::once_into_js(move || -> JsValue {
                let Some((take, failed)) = granted.take() else {
                    return JsValue::UNDEFINED;
                };
                // The lock is released when this promise settles: once the texts are taken
                // in and removed, and a moment longer, so that the removals reach the other
                // tabs' copies of `localStorage` (each renderer process has its own, updated
                // asynchronously) before the next tab claims.
                let mut work = Some((storage, prefix, own, take, failed));
                js_sys::Promise::new(&mut |resolve, _| {
                    let Some((storage, prefix, own, take, failed)) = work.take() else {
                        return;
                    };
                    spawn_local(async move {
                        take_all(&storage, &prefix, &own, take, &failed).await;
                        Timeout::new(CLAIM_SETTLE_MS, move || {
                            let _ = resolve.call0(&JsValue::UNDEFINED);
                        })
                        .forget();
                    });
                })
                .into()
            });
            if let Ok(held) = locks.request(&self.prefix, callback.unchecked_ref()) {
                // Awaited only to handle its rejection: WebKit rejects a held lock's promise
                // as the page enters the back/forward cache (an unhandled rejection otherwise).
                spawn_local(async move {
                    let _ = wasm_bindgen_futures::JsFuture::from(held).await;
                });
                return;
            }
            let Some((take, failed)) = once.take() else {
                return;
            };
            self.claim_with_key(take, failed);
            return;
        }
        self.claim_with_key(take, failed);
    }

    /// [`claim`](Self::claim) under a claim key that expires, where there are no Web Locks.
    fn claim_with_key<T, F>(&self, take: T, failed: F)
    where
        T: FnOnce(Vec<String>) -> LocalBoxFuture + 'static,
        F: Fn(u64) + 'static,
    {
        let mut claim_key = self.prefix.clone();
        claim_key.push_str("claim");
        let now = host::now_ms();
        let held = self.storage.get_item(&claim_key).ok().flatten();
        if let Some(until) = held.and_then(|v| v.parse::<u64>().ok()) {
            if until > now {
                // Another tab is claiming: what it leaves is read again later.
                return;
            }
        }
        let mut until = String::new();
        crate::engine::json::write_u64(&mut until, now + CLAIM_TTL_MS);
        if self.storage.set_item(&claim_key, &until).is_err() {
            return failed(1);
        }
        let (storage, prefix, own) = (self.storage.clone(), self.prefix.clone(), self.key.clone());
        spawn_local(async move {
            take_all(&storage, &prefix, &own, take, &failed).await;
            let _ = storage.remove_item(&claim_key);
        });
    }
}

/// What a claim waits for: whether the texts were taken in.
pub type LocalBoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>;

/// Reads every text under `prefix` but `own` (and the claim key) that may be taken now, hands
/// them to `take`, and once it has taken them in removes them; storage calls that failed go
/// to `failed`.
async fn take_all(
    storage: &web_sys::Storage,
    prefix: &str,
    own: &str,
    take: impl FnOnce(Vec<String>) -> LocalBoxFuture,
    failed: &impl Fn(u64),
) {
    let mut keys = Vec::new();
    let len = storage.length().unwrap_or(0);
    for i in 0..len {
        if let Ok(Some(k)) = storage.key(i) {
            if k.starts_with(prefix) && k != own && !k.ends_with(":claim") {
                keys.push(k);
            }
        }
    }
    let now = host::now_ms();
    let mut failures = 0;
    let mut texts = Vec::with_capacity(keys.len());
    let mut taken = Vec::with_capacity(keys.len());
    for k in keys {
        match storage.get_item(&k) {
            // A page that still runs keeps its copy for a while: it sends those events itself.
            Ok(Some(text)) if !stored_copy_claimable(&text, now) => continue,
            Ok(Some(text)) => texts.push(text),
            Ok(None) => continue,
            Err(_) => failures += 1,
        }
        taken.push(k);
    }
    if !texts.is_empty() && !take(texts).await {
        return;
    }
    for k in &taken {
        if storage.remove_item(k).is_err() {
            failures += 1;
        }
    }
    if failures > 0 {
        failed(failures);
    }
}

#[wasm_bindgen]
extern "C" {
    /// The host's `DecompressionStream` (web-sys has it only behind its unstable APIs flag).
    type DecompressionStream;

    /// `new DecompressionStream(format)`; throws where there is none, or it does not know
    /// `format`.
    #[wasm_bindgen(constructor, catch)]
    fn new(format: &str) -> Result<DecompressionStream, JsValue>;
}

/// Whether the host can inflate raw deflate (`DecompressionStream("deflate-raw")`: Chromium
/// 103, Firefox 113, Safari 16.4): the engine stores its copies deflated only then.
pub fn can_inflate() -> bool {
    DecompressionStream::new("deflate-raw").is_ok()
}

/// Raw deflate `bytes` inflated by the host's `DecompressionStream`, as UTF-8 text; `None`
/// where there is none or the bytes are damaged.
pub async fn inflate(mut bytes: Vec<u8>) -> Option<String> {
    let inflate = DecompressionStream::new("deflate-raw").ok()?;
    let packed = Response::new_with_opt_u8_array(Some(&mut bytes))
        .ok()?
        .body()?;
    let stream = packed.pipe_through(inflate.unchecked_ref::<ReadableWritablePair>());
    let plain = Response::new_with_opt_readable_stream(Some(&stream)).ok()?;
    JsFuture::from(plain.text().ok()?).await.ok()?.as_string()
}
