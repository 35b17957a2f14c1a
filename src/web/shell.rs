//! The exporter's state, and [`drive`]: what runs after every input. It sends what the engine
//! wants sent, acts on the engine's notices and arms the one timer.
//!
//! The state sits in an `Rc<RefCell<..>>`. A borrow lasts only while the engine is fed or
//! drained; every call that could run the page's own code (`fetch`, `console`, a waiting
//! future) happens after the borrow is released, so a wrapped `fetch` or a `console.warn`
//! hook that calls the exporter again finds it free.
//!
//! Each input has its own small closure holding a weak reference to the state: the timer's
//! (a gloo-timers `Timeout`), each request's answer (a future on its `fetch` promise), the
//! microtask of [`drive_soon`] and the page listeners ([`Lifecycle`]).

use super::copy;
use super::host::{self, now_ms};
use super::lifecycle::Lifecycle;
use super::report::{FlushReport, ShutdownReport};
use super::storage::{self, Store};
use super::transport::{self, Request};
use crate::engine::{
    BatchId, Compression, Engine, FlushId, Format, HostFeatures, Notice, Outcome, PageEvent, Path,
    Start, Stats, Transmit, TransmitId,
};
use crate::schema::ShellOptions;
use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

/// The shared handle the exporter, the listeners and the callbacks hold.
pub type Shared = Rc<RefCell<Shell>>;

/// A `Retry-After` hold (ms since the epoch) shared by the exporters of one endpoint (see
/// `Client::new`). Plain data, so sharing it across Worker requests shares no I/O.
pub type Hold = Rc<Cell<u64>>;

/// Everything the exporter owns besides the JS object itself.
pub struct Shell {
    /// The policy.
    pub engine: Engine,
    /// Taken into the engine before every send, raised to the engine's after every input.
    hold: Hold,
    /// How requests go out: the endpoint and the user's headers.
    request: Request,
    debug: bool,
    /// A weak handle on this state, for the callbacks.
    this: Weak<RefCell<Shell>>,
    /// Whether the microtask of [`drive_soon`] is queued.
    soon_queued: bool,
    /// Requests in flight that can be aborted, with their `AbortController`.
    requests: Vec<(TransmitId, web_sys::AbortController)>,
    /// Deferred requests armed (`fetchLater`), to abort or to ask whether they activated.
    deferred: Vec<(TransmitId, host::FetchLaterResult, web_sys::AbortController)>,
    /// `flush()` calls waiting for their `FlushComplete`.
    flushes: Vec<(FlushId, oneshot::Sender<FlushReport>)>,
    shutdown: Option<ShutdownWait>,
    /// The one timer, armed at `engine.poll_timeout()`, with the time it is due; dropping it
    /// cancels it.
    wake: Option<(u64, Timeout)>,
    lifecycle: Option<Lifecycle>,
    /// Where held events are kept for the next load (`persist`, pages only).
    pub(super) store: Option<Store>,
    /// The mark of the copy this exporter wrote last (`Notice::WriteStored`), while it has
    /// not removed it.
    pub(super) written: Option<u64>,
    /// A storage call failed or a stored text was corrupt, and the one warning is due.
    pub(super) storage_warning: Option<bool>,
}

/// A `shutdown()` under way or done.
struct ShutdownWait {
    /// Stats when it was called: the report counts what settled since.
    before: Stats,
    waiters: Vec<oneshot::Sender<ShutdownReport>>,
    report: Option<ShutdownReport>,
}

/// What one pass of [`drive`] must do once the state is released.
#[derive(Default)]
struct Work {
    sends: Vec<Transmit>,
    /// Read what earlier loads stored (the engine asked).
    read_stored: bool,
    aborts: Vec<web_sys::AbortController>,
    /// Outcomes known at once: deferred requests that activated before they were aborted.
    outcomes: Vec<(TransmitId, Outcome)>,
    flushes: Vec<(oneshot::Sender<FlushReport>, FlushReport)>,
    shutdowns: Vec<(oneshot::Sender<ShutdownReport>, ShutdownReport)>,
    overflow: Option<(usize, usize)>,
    /// Listeners to remove (dropped) after the state is released.
    lifecycle: Option<Lifecycle>,
    /// Log the one storage warning.
    storage_warning: bool,
    /// The copy for the next load to write (`Some(Some((text, mark)))`) or remove
    /// (`Some(None)`): the last the engine asked for, done once the state is released and the
    /// requests sent.
    store: Option<Option<(String, u64)>>,
    /// Batches to pack ahead: their bodies to gzip, their lines to deflate.
    packs: Vec<(BatchId, Option<String>, Option<String>)>,
}

impl Shell {
    /// A shell around `engine`, listening to the page lifecycle if `options` say so and there
    /// is a page, sharing `hold` with other exporters of the endpoint.
    pub fn new(engine: Engine, options: ShellOptions, hold: Hold) -> Shared {
        let request = Request::new(
            &engine.config().endpoint,
            &options.headers,
            engine.config().compression == Compression::Gzip,
            options.debug,
        );
        let shared = Rc::new_cyclic(|this: &Weak<RefCell<Shell>>| {
            RefCell::new(Shell {
                engine,
                hold,
                request,
                debug: options.debug,
                this: this.clone(),
                soon_queued: false,
                requests: Vec::new(),
                deferred: Vec::new(),
                flushes: Vec::new(),
                shutdown: None,
                wake: None,
                lifecycle: None,
                store: None,
                written: None,
                storage_warning: None,
            })
        });
        let page = host::global().document().is_some();
        if let Ok(mut shell) = shared.try_borrow_mut() {
            let same_origin =
                page && host::page_origin().is_some_and(|o| shell.engine.config().same_origin(&o));
            // A page's `fetchLater` (its check asks for a document).
            let fetch_later = host::deferred_fetch();
            shell.engine.handle_host_features(HostFeatures {
                deferred: options.flush_on_page_hide && fetch_later,
                compress: transport::can_pack(),
                keepalive: page
                    && options.flush_on_page_hide
                    && options.headers.is_empty()
                    && host::keepalive_fetch(),
                same_origin,
                // fetchLater marks Chromium 135+, whose keepalive requests are its browser
                // process's: failed in the page as it goes, they still arrive.
                keepalive_after_unload: fetch_later,
                page_close: page && options.flush_on_page_hide,
            });
        }
        if options.flush_on_page_hide {
            let weak = Rc::downgrade(&shared);
            let lifecycle = Lifecycle::listen(move |event| {
                if let Some(shared) = weak.upgrade() {
                    on_page(&shared, event);
                }
            });
            if let Ok(mut shell) = shared.try_borrow_mut() {
                shell.lifecycle = lifecycle;
                // Only pages get `online`/`offline` events to say when it ends.
                if page && host::global().navigator().is_some_and(|n| !n.on_line()) {
                    shell.engine.handle_page(PageEvent::Offline, now_ms());
                }
            }
        }
        if options.persist && page {
            if let Ok(mut shell) = shared.try_borrow_mut() {
                let format = match shell.engine.config().format {
                    Format::PostHog => "posthog",
                    Format::Otlp => "otlp",
                };
                match Store::open(format, &shell.engine.config().endpoint, host::seed()) {
                    Ok(Some(store)) => {
                        shell.store = Some(store);
                        // Deflated copies only where the next load can inflate them.
                        shell
                            .engine
                            .handle_storage_opened(storage::can_inflate(), now_ms());
                    }
                    Ok(None) => {}
                    Err(_) => shell.storage_failed(),
                }
            }
            drive(&shared);
        }
        shared
    }

    /// A storage call failed: counted, and the first logged.
    pub(super) fn storage_failed(&mut self) {
        self.engine.handle_storage_failed();
        self.storage_warning.get_or_insert(true);
    }

    /// Registers a `flush()` waiting for flush `id`.
    pub fn wait_flush(&mut self, id: FlushId, done: oneshot::Sender<FlushReport>) {
        self.flushes.push((id, done));
    }

    /// Starts `shutdown` with `timeout_ms`, or joins the one under way; `done` gets the
    /// report (at once if an earlier shutdown has already finished).
    pub fn shutdown(&mut self, timeout_ms: u64, done: oneshot::Sender<ShutdownReport>) {
        if let Some(wait) = &mut self.shutdown {
            match wait.report {
                Some(report) => {
                    let _ = done.send(report);
                }
                None => wait.waiters.push(done),
            }
            return;
        }
        let now = now_ms();
        self.shutdown = Some(ShutdownWait {
            before: self.engine.stats(),
            waiters: vec![done],
            report: None,
        });
        self.engine.shutdown(now, now.saturating_add(timeout_ms));
    }

    /// Drains the engine into `work` and re-arms the timer. First the shared hold: a
    /// `Retry-After` another exporter learned holds this one too, and one this exporter
    /// learned (its last outcome) holds the others.
    fn collect(&mut self, work: &mut Work) {
        let now = now_ms();
        self.engine.handle_hold(self.hold.get(), now);
        self.hold.set(self.hold.get().max(self.engine.hold_until()));
        while let Some(t) = self.engine.poll_transmit(now) {
            work.sends.push(t);
        }
        while let Some(notice) = self.engine.poll_notice() {
            match notice {
                Notice::FlushComplete(report) => {
                    if let Some(i) = self.flushes.iter().position(|(id, _)| *id == report.id) {
                        let (_, done) = self.flushes.swap_remove(i);
                        let report = FlushReport {
                            delivered: report.delivered,
                            dropped: report.dropped,
                        };
                        work.flushes.push((done, report));
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
                        for done in wait.waiters.drain(..) {
                            work.shutdowns.push((done, report));
                        }
                    }
                    work.lifecycle = self.lifecycle.take();
                }
                Notice::Abort(id) => {
                    if let Some(i) = self.requests.iter().position(|(r, _)| *r == id) {
                        work.aborts.push(self.requests.swap_remove(i).1);
                    }
                    if let Some(i) = self.deferred.iter().position(|(r, ..)| *r == id) {
                        let (_, armed, controller) = self.deferred.swap_remove(i);
                        // Once sent, aborting does nothing: the engine hears it went.
                        match armed.activated() {
                            true => work.outcomes.push((id, Outcome::Accepted)),
                            false => work.aborts.push(controller),
                        }
                    }
                }
                Notice::QueueOverflow {
                    max_events,
                    max_bytes,
                } => work.overflow = Some((max_events, max_bytes)),
                Notice::ReadStored => work.read_stored = true,
                Notice::WriteStored { text, mark, .. } => work.store = Some(Some((text, mark))),
                Notice::RemoveStored => work.store = Some(None),
                Notice::Pack { batch, body, lines } => work.packs.push((batch, body, lines)),
                Notice::Settled { .. } => {}
            }
        }
        let holding = self.engine.held_events() > 0;
        if let Some(lifecycle) = &mut self.lifecycle {
            lifecycle.set_holding(holding);
        }
        if self.storage_warning == Some(true) {
            self.storage_warning = Some(false);
            work.storage_warning = true;
        }
        self.rearm(now);
    }

    /// Arms the one timer at `engine.poll_timeout()`, keeping it if it is already armed there.
    fn rearm(&mut self, now: u64) {
        let Some(at) = self.engine.poll_timeout() else {
            self.wake = None;
            return;
        };
        if self.wake.as_ref().is_some_and(|(due, _)| *due == at) {
            return;
        }
        // gloo-timers hands the delay to setTimeout as a 32-bit signed integer; a longer one
        // would wrap and fire at once.
        let delay = at.saturating_sub(now).min(i32::MAX as u64) as u32;
        let weak = self.this.clone();
        // Replacing the timer drops (cancels) the one armed before.
        self.wake = Some((
            at,
            Timeout::new(delay, move || {
                if let Some(shared) = weak.upgrade() {
                    on_wake(&shared);
                }
            }),
        ));
    }
}

/// Runs [`drive`] once the calling code's task yields (a microtask), however many inputs
/// arrive before that. For `capture`: a loop of captures costs no request each, and a burst
/// captured in one go is cut into full batches, not a first request of one event.
pub fn drive_soon(shared: &Shared) {
    match shared.try_borrow_mut() {
        Ok(mut shell) if !shell.soon_queued => shell.soon_queued = true,
        _ => return,
    }
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if let Ok(mut shell) = shared.try_borrow_mut() {
            shell.soon_queued = false;
        }
        drive(&shared);
    });
}

/// Sends what the engine wants sent, acts on its notices, and re-arms the timer. Call after
/// every input.
///
/// A beacon is answered by the browser at once (accepted or refused), as is a deferred request
/// `fetchLater` refuses, and the answer goes back to the engine in the same pass, which may
/// then have more to send: so this repeats until a pass has no answer to give. Everything
/// happens in the caller's task, which at `pagehide` is the page's last.
pub fn drive(shared: &Shared) {
    loop {
        let mut work = Work::default();
        let request = {
            let Ok(mut shell) = shared.try_borrow_mut() else {
                return;
            };
            shell.collect(&mut work);
            (!work.sends.is_empty()).then(|| shell.request.clone())
        };
        let Pass { answers, again } = carry_out(shared, work, request);
        if answers.is_empty() && !again {
            return;
        }
        let Ok(mut shell) = shared.try_borrow_mut() else {
            return;
        };
        let now = now_ms();
        for (id, outcome) in answers {
            shell.engine.handle_outcome(id, outcome, now);
        }
    }
}

/// What one pass of [`drive`] leaves for the next: outcomes known at once, and whether the
/// engine has more to say (a new copy to store).
struct Pass {
    answers: Vec<(TransmitId, Outcome)>,
    again: bool,
}

/// Does one pass's `work` with the state released; returns the outcomes known at once: each
/// beacon's (the browser accepted or refused it), each deferred request `fetchLater` refused,
/// and each that activated before its abort.
fn carry_out(shared: &Shared, mut work: Work, request: Option<Request>) -> Pass {
    // Aborts first: a timed-out request's slot may already be taken by a send below, and the
    // page must never hold more than `maxInFlight` requests open, not even for a moment.
    for controller in &work.aborts {
        controller.abort();
    }
    let copy = work.store.take();
    let mut again = false;
    let mut started = Vec::new();
    let mut armed = Vec::new();
    let mut answers = work.outcomes;
    if let Some(request) = request {
        for t in work.sends {
            let id = t.id;
            match t.path {
                Path::Beacon => {
                    let outcome = match request.beacon(&t) {
                        true => Outcome::Accepted,
                        false => Outcome::Refused,
                    };
                    answers.push((id, outcome));
                    continue;
                }
                Path::Deferred => {
                    match request.arm(&t) {
                        Ok((result, controller)) => armed.push((id, result, controller)),
                        Err(_) => answers.push((id, Outcome::Refused)),
                    }
                    continue;
                }
                Path::Ordinary | Path::Keepalive => {}
            }
            let weak = Rc::downgrade(shared);
            let asks = weak.clone();
            let answer = move |outcome| {
                if let Some(shared) = weak.upgrade() {
                    answered(&shared, id, outcome);
                }
            };
            let controller = request.send(t, answer, move |len| may_start(&asks, id, len));
            if let Some(controller) = controller {
                started.push((id, controller));
            }
        }
    }
    if !started.is_empty() || !armed.is_empty() {
        // Answers always come later (`send` never calls back synchronously), so every
        // controller is registered before its request can be answered or timed out.
        if let Ok(mut shell) = shared.try_borrow_mut() {
            shell.requests.append(&mut started);
            shell.deferred.append(&mut armed);
        }
    }
    if let Some(text) = copy {
        // Last, with the state released: a host that ends the page's script in the middle of
        // a storage call (Firefox closing a tab) finds everything else done and the exporter
        // free.
        again = copy::store(shared, text);
    }
    if work.read_stored {
        copy::claim(shared);
    }
    for (batch, body, lines) in work.packs {
        let weak = Rc::downgrade(shared);
        wasm_bindgen_futures::spawn_local(async move {
            let [wire, copy] = transport::pack(body, lines).await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if let Ok(mut shell) = shared.try_borrow_mut() {
                shell.engine.handle_packed(batch, wire, copy, now_ms());
            }
            drive(&shared);
        });
    }
    if let Some((events, bytes)) = work.overflow {
        warn_overflow(events, bytes);
    }
    if work.storage_warning {
        host::warn(
            "spool: localStorage failed (disabled, full, or it held unreadable text): events held \
             when the page goes away may not be kept for the next load; counted in \
             stats().storageErrors",
        );
    }
    drop(work.lifecycle);
    for (done, report) in work.flushes {
        let _ = done.send(report);
    }
    for (done, report) in work.shutdowns {
        let _ = done.send(report);
    }
    Pass { answers, again }
}

/// A request ended: hand the engine its outcome. An aborted request's rejection lands here
/// too; the engine has already counted it and ignores the stale id.
fn answered(shared: &Shared, id: TransmitId, outcome: Outcome) {
    let logged = match shared.try_borrow_mut() {
        Ok(mut shell) => {
            if let Some(i) = shell.requests.iter().position(|(r, _)| *r == id) {
                shell.requests.swap_remove(i);
            }
            let debug = shell.debug;
            let log = debug.then(|| outcome.clone());
            let known = shell.engine.handle_outcome(id, outcome, now_ms());
            log.filter(|_| known)
        }
        Err(_) => None,
    };
    if let Some(outcome) = logged {
        transport::log_outcome(id, &outcome);
    }
    drive(shared);
}

/// Request `id`'s body is compressed to `wire_len` bytes: whether the engine lets it start,
/// and how. If not, its controller is forgotten and the engine plans anew.
fn may_start(shared: &Weak<RefCell<Shell>>, id: TransmitId, wire_len: usize) -> Start {
    let Some(shared) = shared.upgrade() else {
        return Start::No;
    };
    let go = match shared.try_borrow_mut() {
        Ok(mut shell) => {
            let go = shell.engine.handle_compressed(id, wire_len, now_ms());
            if go == Start::No {
                shell.requests.retain(|(r, _)| *r != id);
            }
            go
        }
        Err(_) => Start::Ordinary,
    };
    if go == Start::No {
        drive(&shared);
    }
    go
}

/// The timer fired.
fn on_wake(shared: &Shared) {
    let fired = match shared.try_borrow_mut() {
        Ok(mut shell) => {
            // Taken so that `rearm` arms afresh even for the same instant (a timer may fire a
            // millisecond early by Date.now()).
            let fired = shell.wake.take();
            shell.engine.handle_timeout(now_ms());
            fired
        }
        Err(_) => None,
    };
    // The fired `Timeout` is dropped (freed) only now, outside the state's borrow; clearing a
    // timer that has fired does nothing.
    drop(fired);
    drive(shared);
}

/// The browser fired `event` at the page: the engine decides what follows, and [`drive`]
/// carries it out in this task (at `pagehide`, the page's last).
fn on_page(shared: &Shared, event: PageEvent) {
    if let Ok(mut shell) = shared.try_borrow_mut() {
        let now = now_ms();
        if event == PageEvent::PageShow {
            // Back from the back/forward cache: the deferred requests went as the page
            // entered it.
            let shell = &mut *shell;
            shell.deferred.retain(|(id, armed, _)| {
                let sent = armed.activated();
                if sent {
                    shell.engine.handle_outcome(*id, Outcome::Accepted, now);
                }
                !sent
            });
        }
        shell.engine.handle_page(event, now);
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
