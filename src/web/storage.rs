//! `localStorage` for the events a page still holds when it goes away: the engine decides what
//! the text is ([`Engine::persist`](crate::engine::Engine::persist)); this writes it, reads
//! what earlier loads of the same endpoint stored, and claims it so that one tab alone sends
//! it.
//!
//! Each exporter writes under a key of its own, `spool1:<format>:<endpoint>:<id>`, so tabs of
//! one origin never overwrite each other. A new exporter claims every other key of its
//! endpoint: it reads and removes them inside a Web Lock (`navigator.locks`) named after the
//! endpoint, so two tabs loading at once never both take the same text; where Web Locks are
//! missing, a claim key that expires after [`CLAIM_TTL_MS`] keeps other tabs out (a tab that
//! crashed mid-claim holds it no longer than that).
//!
//! Storage that throws (disabled, private modes, quota full) never throws into the page: the
//! shell counts each failure and logs the first.
//!
//! In a Web Worker there is no `localStorage`, and IndexedDB is asynchronous: a write begun as
//! a worker is terminated may never finish. Workers therefore persist nothing.

use super::host;
use crate::engine::stored_copy_claimable;
use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

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

    /// Whether this exporter's text is still stored (another load's claim removes it).
    pub fn holds_own(&self) -> Result<bool, Failed> {
        match self.storage.get_item(&self.key) {
            Ok(text) => Ok(text.is_some()),
            Err(_) => Err(Failed),
        }
    }

    /// Removes this exporter's text.
    pub fn remove(&self) -> Result<(), Failed> {
        self.storage.remove_item(&self.key).map_err(|_| Failed)
    }

    /// Claims what other exporters of the endpoint stored: each text, and the count of
    /// failed storage calls. Inside a Web Lock this is asynchronous: `None` is returned and
    /// `later` gets the result once the lock is granted. Without Web Locks (or if requesting
    /// one throws) it is done at once under a claim key and returned.
    pub fn claim(
        &self,
        later: impl FnOnce(Vec<String>, u64) + 'static,
    ) -> Option<(Vec<String>, u64)> {
        if let Some(locks) = host::global()
            .navigator()
            .and_then(|n| n.unchecked_ref::<LockNavigator>().locks())
        {
            let storage = self.storage.clone();
            let prefix = self.prefix.clone();
            let own = self.key.clone();
            let callback = Closure::once_into_js(move || -> JsValue {
                let (texts, failures) = take_all(&storage, &prefix, &own);
                later(texts, failures);
                // The lock is released when this promise settles: held a moment longer, so
                // that the removals reach the other tabs' copies of `localStorage` (each
                // renderer process has its own, updated asynchronously) before the next tab
                // claims.
                js_sys::Promise::new(&mut |resolve, _| {
                    Timeout::new(CLAIM_SETTLE_MS, move || {
                        let _ = resolve.call0(&JsValue::UNDEFINED);
                    })
                    .forget();
                })
                .into()
            });
            if locks
                .request(&self.prefix, callback.unchecked_ref())
                .is_ok()
            {
                return None;
            }
        }
        let mut claim_key = self.prefix.clone();
        claim_key.push_str("claim");
        let now = host::now_ms();
        let held = self.storage.get_item(&claim_key).ok().flatten();
        if let Some(until) = held.and_then(|v| v.parse::<u64>().ok()) {
            if until > now {
                // Another tab is claiming: what it leaves is read again later.
                return Some((Vec::new(), 0));
            }
        }
        let mut until = String::new();
        crate::engine::json::write_u64(&mut until, now + CLAIM_TTL_MS);
        if self.storage.set_item(&claim_key, &until).is_err() {
            return Some((Vec::new(), 1));
        }
        let claimed = take_all(&self.storage, &self.prefix, &self.key);
        let _ = self.storage.remove_item(&claim_key);
        Some(claimed)
    }
}

/// Reads and removes every text under `prefix` but `own` (and the claim key).
fn take_all(storage: &web_sys::Storage, prefix: &str, own: &str) -> (Vec<String>, u64) {
    let mut keys = Vec::new();
    let mut failures = 0;
    let len = storage.length().unwrap_or(0);
    for i in 0..len {
        if let Ok(Some(k)) = storage.key(i) {
            if k.starts_with(prefix) && k != own && !k.ends_with(":claim") {
                keys.push(k);
            }
        }
    }
    let now = host::now_ms();
    let mut texts = Vec::with_capacity(keys.len());
    for k in keys {
        match storage.get_item(&k) {
            // A page that still runs keeps its copy for a while: it sends those events itself.
            Ok(Some(text)) if !stored_copy_claimable(&text, now) => continue,
            Ok(Some(text)) => texts.push(text),
            Ok(None) => {}
            Err(_) => failures += 1,
        }
        if storage.remove_item(&k).is_err() {
            failures += 1;
        }
    }
    (texts, failures)
}
