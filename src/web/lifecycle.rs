//! Page lifecycle: tells the shell when the page is hidden or closed (`visibilitychange` to
//! hidden, `pagehide`) and when it is back (`visibilitychange` to visible, `pageshow` after a
//! back/forward-cache restore), so what is queued leaves with `keepalive` while it still can.
//!
//! One listener serves all three events. It lives as long as the [`Lifecycle`]: dropping it
//! removes the listener everywhere.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Event, EventTarget, VisibilityState, Window};

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
    document: Document,
    window: Window,
    listener: Closure<dyn FnMut(Event)>,
}

const VISIBILITY_CHANGE: &str = "visibilitychange";
/// Fired on `window` when the page is unloaded or put into the back/forward cache; in some
/// navigations before `visibilitychange`, so it alone must count as hidden.
const PAGE_HIDE: &str = "pagehide";
const PAGE_SHOW: &str = "pageshow";

impl Lifecycle {
    /// Listens, calling `on_change` on every change; `None` where there is no `window` or
    /// `document` (a Web Worker, an edge runtime).
    pub fn listen(on_change: impl Fn(PageState) + 'static) -> Option<Lifecycle> {
        let window = web_sys::window()?;
        let document = window.document()?;
        let doc = document.clone();
        let listener = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            let hidden = doc.visibility_state() == VisibilityState::Hidden;
            if event.type_() == PAGE_HIDE || hidden {
                on_change(PageState::Hidden)
            } else {
                on_change(PageState::Visible)
            }
        });
        let lifecycle = Lifecycle {
            document,
            window,
            listener,
        };
        lifecycle.each(|target, event, f| {
            let _ = target.add_event_listener_with_callback(event, f);
        });
        Some(lifecycle)
    }

    fn each(&self, f: impl Fn(&EventTarget, &str, &js_sys::Function)) {
        let listener = self.listener.as_ref().unchecked_ref();
        f(&self.document, VISIBILITY_CHANGE, listener);
        f(&self.window, PAGE_HIDE, listener);
        f(&self.window, PAGE_SHOW, listener);
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        self.each(|target, event, f| {
            let _ = target.remove_event_listener_with_callback(event, f);
        });
    }
}
