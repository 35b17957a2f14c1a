//! Page lifecycle: tells the shell when the page is about to go (`beforeunload`, listened to
//! only while events are held), hidden (`visibilitychange` to hidden), going away or into the
//! back/forward cache (`pagehide`), back (`visibilitychange` to visible, `pageshow`), and when
//! the network comes and goes (`online`, `offline`). Never `unload`, which keeps a page out of
//! the back/forward cache.
//!
//! web-sys `EventTarget` listeners, one closure per purpose, on `document` and on the global
//! (the `window`). They live as long as the [`Lifecycle`]: dropping it removes them.

use super::host;
use crate::engine::PageEvent;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{Document, EventTarget, VisibilityState};

/// One listener: where, for which event, and its closure (freed with it).
struct Listener {
    target: EventTarget,
    event: &'static str,
    closure: Closure<dyn FnMut()>,
}

impl Listener {
    fn new(target: EventTarget, event: &'static str, f: impl FnMut() + 'static) -> Listener {
        let closure = Closure::<dyn FnMut()>::new(f);
        let _ = target.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
        Listener {
            target,
            event,
            closure,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.event, self.closure.as_ref().unchecked_ref());
    }
}

/// The page listeners; removed on drop.
#[must_use = "the page listeners are removed when the Lifecycle is dropped; keep it for as long as the page should be watched"]
pub struct Lifecycle {
    /// Held for their `Drop`, which removes them.
    _listeners: Vec<Listener>,
    window: EventTarget,
    on_change: Rc<dyn Fn(PageEvent)>,
    /// The `beforeunload` listener, present only while events are held: some browsers keep a
    /// page with one out of the back/forward cache (web.dev, "Back/forward cache").
    leaving: Option<Listener>,
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
    pub fn listen(on_change: impl Fn(PageEvent) + 'static) -> Option<Lifecycle> {
        let global = host::global();
        let document: Document = global.document()?;
        let window: EventTarget = JsValue::from(global).into();
        let on_change: Rc<dyn Fn(PageEvent)> = Rc::new(on_change);
        let mut listeners = Vec::with_capacity(5);
        let changed = on_change.clone();
        let doc = document.clone();
        listeners.push(Listener::new(
            document.into(),
            "visibilitychange",
            move || {
                changed(match doc.visibility_state() {
                    VisibilityState::Hidden => PageEvent::Hidden,
                    _ => PageEvent::Visible,
                })
            },
        ));
        // Fired when the page is unloaded or put into the back/forward cache; in a navigation
        // before `visibilitychange`, so it alone must count as going away.
        let changed = on_change.clone();
        listeners.push(Listener::new(window.clone(), "pagehide", move || {
            changed(PageEvent::PageHide)
        }));
        let changed = on_change.clone();
        listeners.push(Listener::new(window.clone(), "pageshow", move || {
            changed(PageEvent::PageShow)
        }));
        let changed = on_change.clone();
        listeners.push(Listener::new(window.clone(), "online", move || {
            changed(PageEvent::Online)
        }));
        let changed = on_change.clone();
        listeners.push(Listener::new(window.clone(), "offline", move || {
            changed(PageEvent::Offline)
        }));
        Some(Lifecycle {
            _listeners: listeners,
            window,
            on_change,
            leaving: None,
        })
    }

    /// Listens to `beforeunload` while `held` (events are held), not otherwise.
    pub fn set_holding(&mut self, held: bool) {
        if held == self.leaving.is_some() {
            return;
        }
        self.leaving = held.then(|| {
            let changed = self.on_change.clone();
            Listener::new(self.window.clone(), "beforeunload", move || {
                changed(PageEvent::BeforeUnload)
            })
        });
    }
}
