//! Page lifecycle: tells the shell when the page is hidden or closed (`visibilitychange` to
//! hidden, `pagehide`) and when it is back (`visibilitychange` to visible, `pageshow` after a
//! back/forward-cache restore), so what is queued leaves with `keepalive` while it still can.
//!
//! web-sys `EventTarget` listeners, one closure per purpose, on `document` and on the global
//! (the `window`). They live as long as the [`Lifecycle`]: dropping it removes them.

use super::host;
use wasm_bindgen::prelude::*;
use web_sys::{Document, EventTarget, VisibilityState};

/// Which way the page went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Hidden, or being unloaded.
    Hidden,
    /// Visible again.
    Visible,
}

/// One listener: where, for which event, and its closure (freed with it).
struct Listener {
    target: EventTarget,
    event: &'static str,
    closure: Closure<dyn FnMut()>,
}

/// The page listeners; removed on drop.
#[must_use = "the page listeners are removed when the Lifecycle is dropped; keep it for as long as the page should be watched"]
pub struct Lifecycle {
    listeners: Vec<Listener>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The listeners' closures have nothing to show.
        f.debug_struct("Lifecycle").finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// Listens, calling `on_change` on every change; `None` where there is no `document` (a
    /// Web Worker, an edge runtime).
    pub fn listen(on_change: impl Fn(PageState) + Clone + 'static) -> Option<Lifecycle> {
        let global = host::global();
        let document: Document = global.document()?;
        let window: EventTarget = JsValue::from(global).into();
        let mut lifecycle = Lifecycle {
            listeners: Vec::with_capacity(3),
        };
        let changed = on_change.clone();
        let doc = document.clone();
        lifecycle.add(document.into(), "visibilitychange", move || {
            changed(match doc.visibility_state() {
                VisibilityState::Hidden => PageState::Hidden,
                _ => PageState::Visible,
            })
        });
        // Fired when the page is unloaded or put into the back/forward cache; in some
        // navigations before `visibilitychange`, so it alone must count as hidden.
        let changed = on_change.clone();
        lifecycle.add(window.clone(), "pagehide", move || {
            changed(PageState::Hidden)
        });
        lifecycle.add(window, "pageshow", move || on_change(PageState::Visible));
        Some(lifecycle)
    }

    fn add(&mut self, target: EventTarget, event: &'static str, f: impl FnMut() + 'static) {
        let closure = Closure::<dyn FnMut()>::new(f);
        let _ = target.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
        self.listeners.push(Listener {
            target,
            event,
            closure,
        });
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        for l in &self.listeners {
            let _ = l
                .target
                .remove_event_listener_with_callback(l.event, l.closure.as_ref().unchecked_ref());
        }
    }
}
