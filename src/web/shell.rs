//! The exporter's state, and [`drive`]: what runs after every input. It sends what the engine
//! wants sent, acts on the engine's notices and arms the one timer.
//!
//! The state sits in an `Rc<RefCell<..>>`. A borrow lasts only while the engine is fed or
//! drained; every call that could run the page's own code (`fetch`, `console`, resolving a
//! promise) happens after the borrow is released, so a wrapped `fetch` or a `console.warn`
//! hook that calls the exporter again finds it free.

use super::config::Options;
use super::host::{self, now_ms};
use super::lifecycle::{Lifecycle, PageState};
use super::report::{Settled, ShutdownReport};
use crate::engine::{Engine, FlushId, Notice, Outcome, RetryAfter, Stats, Transmit, TransmitId};
use js_sys::Function;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;

/// The shared handle the `Exporter`, the listeners and the answer callback hold.
pub type Shared = Rc<RefCell<Shell>>;

/// A `Retry-After` hold (ms since the epoch) shared by the exporters of one endpoint (see
/// `Exporter::new`). Plain data, so sharing it across Worker requests shares no I/O.
pub type Hold = Rc<Cell<u64>>;

/// Everything the exporter owns besides the JS object itself.
pub struct Shell {
    /// The policy.
    pub engine: Engine,
    /// Taken into the engine before every send, raised to the engine's after every input.
    hold: Hold,
    /// The collector's URL, as a JS string: made once, not passed from the wasm per request.
    endpoint: JsValue,
    /// The user's `headers` (a plain object), or `undefined`.
    headers: JsValue,
    debug: bool,
    /// `input(what, id, status, retryAfter, error)`: the one callback through which every
    /// answer, the timer, the microtask of [`drive_soon`] and the page listener reach the
    /// shell, `what` saying which (see [`ANSWER`]). One closure for the exporter's life, not
    /// one per request or per kind of input.
    input: Function,
    /// Whether the microtask of [`drive_soon`] is queued.
    soon_queued: bool,
    /// Requests in flight that can be aborted, with their `AbortController`.
    requests: Vec<(TransmitId, JsValue)>,
    /// `flush()` promises waiting for their `FlushComplete`.
    flushes: Vec<(FlushId, Function)>,
    shutdown: Option<ShutdownWait>,
    /// The one timer, armed at `engine.poll_timeout()`; dropping it cancels it.
    wake: Option<Timer>,
    lifecycle: Option<Lifecycle>,
}

/// What `input`'s first argument says has happened; `host.js` has the same constants. A request
/// was answered: `input(ANSWER, id, status, retryAfter, error)`.
const ANSWER: u32 = 0;
/// The timer fired.
const WAKE: u32 = 1;
/// The microtask of [`drive_soon`] runs.
const SOON: u32 = 2;
/// The page was hidden or is being closed.
const HIDDEN: u32 = 3;
/// The page is visible again.
const VISIBLE: u32 = 4;

/// The armed JavaScript timer, due at `at`; dropping it cancels it.
struct Timer {
    at: u64,
    id: JsValue,
}

impl Drop for Timer {
    fn drop(&mut self) {
        host::disarm(&self.id);
    }
}

/// A `shutdown()` under way or done.
struct ShutdownWait {
    /// Stats when it was called: the report counts what settled since.
    before: Stats,
    waiters: Vec<Function>,
    report: Option<ShutdownReport>,
}

/// What one pass of [`drive`] must do once the state is released.
#[derive(Default)]
struct Work {
    sends: Vec<Transmit>,
    aborts: Vec<JsValue>,
    resolves: Vec<(Function, Settled)>,
    overflow: Option<(usize, usize)>,
    /// Listeners to remove (dropped) after the state is released.
    lifecycle: Option<Lifecycle>,
}

impl Shell {
    /// A shell around `engine`, listening to the page lifecycle if `options` say so and there
    /// is a page, sharing `hold` with other exporters of the endpoint.
    pub fn new(engine: Engine, options: Options, hold: Hold) -> Shared {
        let endpoint = JsValue::from_str(&engine.config().endpoint);
        let shared = Rc::new_cyclic(|this: &Weak<RefCell<Shell>>| {
            let weak = this.clone();
            // The answer's strings come as JS values, read only where needed: a closure of
            // plain values has the smaller shims.
            let input = Closure::<dyn FnMut(u32, f64, u16, JsValue, JsValue, JsValue)>::new(
                move |what, id: f64, status, retry_after, error, body| {
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    match what {
                        ANSWER => {
                            let answer = (status, retry_after, error, body);
                            answered(&shared, TransmitId(id as u64), answer)
                        }
                        WAKE => on_wake(&shared),
                        SOON => {
                            if let Ok(mut shell) = shared.try_borrow_mut() {
                                shell.soon_queued = false;
                            }
                            drive(&shared);
                        }
                        HIDDEN => on_page(&shared, PageState::Hidden),
                        VISIBLE => on_page(&shared, PageState::Visible),
                        _ => {}
                    }
                },
            );
            RefCell::new(Shell {
                engine,
                hold,
                endpoint,
                headers: options.headers,
                debug: options.debug,
                // Owned by JavaScript from here on; it holds only a weak reference back.
                input: input.into_js_value().into(),
                soon_queued: false,
                requests: Vec::new(),
                flushes: Vec::new(),
                shutdown: None,
                wake: None,
                lifecycle: None,
            })
        });
        if options.flush_on_page_hide {
            let input = shared.borrow().input.clone();
            let lifecycle = Lifecycle::listen(&input);
            if let Ok(mut shell) = shared.try_borrow_mut() {
                shell.lifecycle = lifecycle;
            }
        }
        shared
    }

    /// Registers a `flush()` promise's `resolve` for flush `id`.
    pub fn wait_flush(&mut self, id: FlushId, resolve: Function) {
        self.flushes.push((id, resolve));
    }

    /// Starts `shutdown` with `timeout_ms`, or joins the one under way; `resolve` gets the
    /// report. Returns the report at once if an earlier shutdown has already finished.
    pub fn shutdown(&mut self, timeout_ms: u64, resolve: Function) -> Option<(Function, Settled)> {
        if let Some(wait) = &mut self.shutdown {
            return match wait.report {
                Some(report) => Some((resolve, Settled::Shutdown(report))),
                None => {
                    wait.waiters.push(resolve);
                    None
                }
            };
        }
        let now = now_ms();
        self.shutdown = Some(ShutdownWait {
            before: self.engine.stats(),
            waiters: vec![resolve],
            report: None,
        });
        self.engine.shutdown(now, now.saturating_add(timeout_ms));
        None
    }

    /// Drains the engine into `work` and re-arms the timer. First the shared hold: a
    /// `Retry-After` another exporter learned holds this one too, and one this exporter
    /// learned (its last outcome) holds the others.
    fn collect(&mut self, work: &mut Work) {
        let now = now_ms();
        self.engine.hold_until(self.hold.get(), now);
        self.hold
            .set(self.hold.get().max(self.engine.retry_after_until()));
        while let Some(t) = self.engine.poll_transmit(now) {
            work.sends.push(t);
        }
        while let Some(notice) = self.engine.poll_notice() {
            match notice {
                Notice::FlushComplete(report) => {
                    if let Some(i) = self.flushes.iter().position(|(id, _)| *id == report.id) {
                        let (_, resolve) = self.flushes.swap_remove(i);
                        work.resolves.push((resolve, Settled::Flush(report)));
                    }
                }
                Notice::ShutdownComplete { abandoned } => {
                    let after = self.engine.stats();
                    if let Some(wait) = &mut self.shutdown {
                        let report = ShutdownReport {
                            delivered: after.delivered - wait.before.delivered,
                            dropped: after.dropped.total() - wait.before.dropped.total(),
                            abandoned,
                        };
                        wait.report = Some(report);
                        for resolve in wait.waiters.drain(..) {
                            work.resolves.push((resolve, Settled::Shutdown(report)));
                        }
                    }
                    work.lifecycle = self.lifecycle.take();
                }
                Notice::Abort(id) => {
                    if let Some(i) = self.requests.iter().position(|(r, _)| *r == id) {
                        work.aborts.push(self.requests.swap_remove(i).1);
                    }
                }
                Notice::QueueOverflow {
                    max_events,
                    max_bytes,
                } => work.overflow = Some((max_events, max_bytes)),
                Notice::Settled { .. } => {}
            }
        }
        self.rearm(now);
    }

    /// Arms the one timer at `engine.poll_timeout()`, keeping it if it is already armed there.
    fn rearm(&mut self, now: u64) {
        let Some(at) = self.engine.poll_timeout() else {
            self.wake = None;
            return;
        };
        if self.wake.as_ref().is_some_and(|timer| timer.at == at) {
            return;
        }
        // setTimeout takes the delay as a 32-bit signed integer; a longer one would overflow
        // and fire at once.
        let delay = at.saturating_sub(now).min(i32::MAX as u64) as i32;
        // Replacing the timer drops (cancels) the one armed before.
        self.wake = Some(Timer {
            at,
            id: host::arm(&self.input, delay),
        });
    }
}

/// Runs [`drive`] once the calling code's task yields (a microtask), however many inputs
/// arrive before that. For `capture`: a loop of captures costs no request each, and a burst
/// captured in one go is cut into full batches, not a first request of one event.
pub fn drive_soon(shared: &Shared) {
    let input = match shared.try_borrow_mut() {
        Ok(mut shell) if !shell.soon_queued => {
            shell.soon_queued = true;
            shell.input.clone()
        }
        _ => return,
    };
    host::soon(&input);
}

/// Sends what the engine wants sent, acts on its notices, and re-arms the timer. Call after
/// every input.
pub fn drive(shared: &Shared) {
    let mut work = Work::default();
    let (endpoint, headers, input, debug) = {
        let Ok(mut shell) = shared.try_borrow_mut() else {
            return;
        };
        shell.collect(&mut work);
        if work.sends.is_empty() {
            (None, JsValue::UNDEFINED, None, false)
        } else {
            let s = &*shell;
            (
                Some(s.endpoint.clone()),
                s.headers.clone(),
                Some(s.input.clone()),
                s.debug,
            )
        }
    };
    // Aborts first: a timed-out request's slot may already be taken by a send below, and the
    // page must never hold more than `maxInFlight` requests open, not even for a moment.
    for controller in &work.aborts {
        host::abort(controller);
    }
    let mut started = Vec::new();
    if let (Some(endpoint), Some(input)) = (endpoint, input) {
        for t in &work.sends {
            if debug {
                host::log_request(
                    t.id.0 as f64,
                    t.events as f64,
                    t.body.len() as f64,
                    t.attempt.into(),
                    t.keepalive,
                );
            }
            // Keepalive requests go without the user's headers: see `host.js`.
            let headers = if t.keepalive {
                &JsValue::UNDEFINED
            } else {
                &headers
            };
            let controller = host::post(
                &endpoint,
                &t.body,
                t.content_type,
                headers,
                t.keepalive,
                t.id.0 as f64,
                &input,
            );
            if !controller.is_undefined() {
                started.push((t.id, controller));
            }
        }
    }
    if !started.is_empty() {
        // Answers always come later (`post` never calls back synchronously), so every
        // controller is registered before its request can be answered or timed out.
        if let Ok(mut shell) = shared.try_borrow_mut() {
            shell.requests.append(&mut started);
        }
    }
    if let Some((events, bytes)) = work.overflow {
        warn_overflow(events, bytes);
    }
    drop(work.lifecycle);
    for (resolve, settled) in work.resolves {
        let _ = resolve.call1(&JsValue::UNDEFINED, &settled.to_js());
    }
}

/// A request ended (called from `host.js`): hand the engine its outcome. An aborted request's
/// rejection lands here too; the engine has already counted it and ignores the stale id.
fn answered(shared: &Shared, id: TransmitId, answer: (u16, JsValue, JsValue, JsValue)) {
    let (status, retry_after, error, body) = answer;
    let (known, debug) = match shared.try_borrow_mut() {
        Ok(mut shell) => {
            if let Some(i) = shell.requests.iter().position(|(r, _)| *r == id) {
                shell.requests.swap_remove(i);
            }
            // Each a string or undefined.
            let outcome = match error.as_string() {
                Some(e) => Outcome::NetworkError(e),
                None => Outcome::Response {
                    status,
                    retry_after: retry_after
                        .as_string()
                        .as_deref()
                        .and_then(RetryAfter::parse),
                    body: body.as_string(),
                },
            };
            let debug = shell.debug;
            (shell.engine.handle_outcome(id, outcome, now_ms()), debug)
        }
        Err(_) => (false, false),
    };
    if debug && known {
        host::log_outcome(id.0 as f64, status, &retry_after, &error);
    }
    drive(shared);
}

/// The timer fired.
fn on_wake(shared: &Shared) {
    let fired = match shared.try_borrow_mut() {
        Ok(mut shell) => {
            // Taken so that `rearm` arms afresh even for the same instant (a timer may fire a
            // millisecond early by Date.now()). Cancelling a timer that has fired does nothing.
            let fired = shell.wake.take();
            shell.engine.handle_timeout(now_ms());
            fired
        }
        Err(_) => None,
    };
    drop(fired);
    drive(shared);
}

/// The page was hidden or shown: the keepalive requests the engine makes go out now, in this
/// task, before the page can go away.
fn on_page(shared: &Shared, state: PageState) {
    if let Ok(mut shell) = shared.try_borrow_mut() {
        let now = now_ms();
        match state {
            PageState::Hidden => {
                shell.engine.page_hidden(now);
            }
            PageState::Visible => shell.engine.page_visible(now),
        }
    }
    drive(shared);
}

fn warn_overflow(max_events: usize, max_bytes: usize) {
    let mut m = String::from("spool: queue full (maxQueueEvents ");
    crate::engine::json::write_u64(&mut m, max_events as u64);
    m.push_str(", maxQueueBytes ");
    crate::engine::json::write_u64(&mut m, max_bytes as u64);
    m.push_str("): new events are dropped, counted in stats().dropped.queueFull, until it drains");
    host::warn(&m);
}
