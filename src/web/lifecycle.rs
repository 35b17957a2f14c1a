//! Page lifecycle: tells the shell when the page is hidden or closed (`visibilitychange` to
//! hidden, `pagehide`) and when it is back (`visibilitychange` to visible, `pageshow` after a
//! back/forward-cache restore), so what is queued leaves with `keepalive` while it still can.
//!
//! The listener is `host.js`'s `listen`; it calls the shell's input callback with
//! [`PageState`]'s code. It lives as long as the [`Lifecycle`]: dropping it removes the
//! listener everywhere.

use super::host;
use js_sys::Function;
use wasm_bindgen::JsCast;

/// Which way the page went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Hidden, or being unloaded.
    Hidden,
    /// Visible again.
    Visible,
}

/// The listener on `document` and `window`; removed on drop.
pub struct Lifecycle {
    /// Removes the listener (what `listen` returned).
    stop: Function,
}

impl Lifecycle {
    /// Listens, calling `input` on every change; `None` where there is no `window` or
    /// `document` (a Web Worker, an edge runtime).
    pub fn listen(input: &Function) -> Option<Lifecycle> {
        let stop = host::listen(input);
        if stop.is_undefined() {
            return None;
        }
        Some(Lifecycle {
            stop: stop.unchecked_into(),
        })
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        let _ = self.stop.call0(&wasm_bindgen::JsValue::UNDEFINED);
    }
}
