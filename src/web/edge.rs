//! `EdgeCoalescer`: the edge shell. It drives the engine's [`Coalescer`] for the edge
//! middleware (`edge.js`), which calls it once per Worker request: [`EdgeCoalescer::record`]
//! hands it the request's event and, when that request leads a batching window, returns the
//! window's delivery as a `Promise` for the request's `ctx.waitUntil`.
//!
//! A delivery is one driver loop, the shape of quinn's `ConnectionDriver::poll` and of the
//! page shell's `drive`: each time it wakes, the answers that came and the time go in, the
//! requests the coalescer wants sent go out through the one [transport](super::transport)
//! (gzip, `Retry-After`, the body drained, the debug log lines), the requests it gave up on
//! are aborted, and one timer is armed at its `poll_timeout`. Every `fetch`, timer and answer
//! of the window is made from the loop, so it belongs to the leading request, as workerd
//! requires ("Cannot perform I/O on behalf of a different request"); other requests hand
//! over their events as plain data and do no I/O for telemetry.
//!
//! The options are read and checked here and in [`EdgeConfig::validate`], the one place of
//! their defaults and bounds; `edge.js` keeps the Workers glue (the env, the request's facts,
//! `waitUntil`).

use super::transport::{self, Request};
use super::{config, error, host};
use crate::engine::{
    Coalescer, Compression, ConfigError, EdgeConfig, Outcome, RequestId, Start, Stats, Transmit,
    TransmitId, WindowId,
};
use crate::schema::ShellOptions;
use gloo_timers::callback::Timeout;
use js_sys::{Object, Reflect};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use wasm_bindgen::prelude::*;

/// Stands in for an endpoint and a key read from the env per request while the rest of the
/// options is checked at module scope. Never sent to.
const ENDPOINT_STAND_IN: &str = "https://endpoint-from-env.invalid/";
const API_KEY_STAND_IN: &str = "phc_stand_in";

/// One isolate's batching windows and their deliveries. Made inside a request (it draws random
/// numbers, which a Worker's module scope forbids).
#[wasm_bindgen]
#[derive(Debug)]
pub struct EdgeCoalescer {
    edge: Rc<RefCell<Edge>>,
}

/// What the deliveries share with the requests that hand over events.
struct Edge {
    coalescer: Coalescer,
    /// How requests go out: the endpoint, the user's headers, gzip, the debug lines.
    transport: Request,
    debug: bool,
    /// Requests numbered so far.
    requests: u64,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("coalescer", &self.coalescer)
            .field("requests", &self.requests)
            .finish()
    }
}

#[wasm_bindgen]
impl EdgeCoalescer {
    /// Checks the options of `withTelemetry` as the Worker module loads, throwing a
    /// `SpoolConfigError` naming the field: `config`, the exporter's keys, as
    /// `new Exporter(config)` does, and `own`, the middleware's (`eventName`, `deadlineMs`,
    /// `subrequestLimit`; `edge.js` reads the others). An `endpoint` or `apiKey` not given
    /// comes from the env per request and is checked then.
    pub fn check(
        #[wasm_bindgen(unchecked_param_type = "ExporterConfig")] config: JsValue,
        #[wasm_bindgen(
            unchecked_param_type = "{ eventName?: string; deadlineMs?: number; subrequestLimit?: number }"
        )]
        own: JsValue,
    ) -> Result<(), JsValue> {
        read(&config, &own, true)
            .map(|_| ())
            .map_err(|e| error::config(&e))
    }

    /// The isolate's coalescer for the options of `withTelemetry` as [`check`](Self::check)
    /// takes them, with the endpoint and key read from the env filled in. Throws a
    /// `SpoolConfigError` as `check` does.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "ExporterConfig")] config: JsValue,
        #[wasm_bindgen(
            unchecked_param_type = "{ eventName?: string; deadlineMs?: number; subrequestLimit?: number }"
        )]
        own: JsValue,
    ) -> Result<EdgeCoalescer, JsValue> {
        let (edge, shell) = read(&config, &own, false).map_err(|e| error::config(&e))?;
        let transport = Request::new(
            &edge.exporter.endpoint,
            &shell.headers,
            edge.exporter.compression == Compression::Gzip,
            shell.debug,
        );
        let coalescer = Coalescer::new(edge, host::seed()).map_err(|e| error::config(&e))?;
        Ok(EdgeCoalescer {
            edge: Rc::new(RefCell::new(Edge {
                coalescer,
                transport,
                debug: shell.debug,
                requests: 0,
            })),
        })
    }

    /// A Worker request's event is ready: `properties` (the JSON text of an object), captured
    /// at `timestamp`, the time now `now`. Returns the delivery of the window this request
    /// now leads, for its `ctx.waitUntil`; `undefined` if it joined a window forming, or its
    /// event was refused (the waiting list is full: counted, and said with `console.warn`).
    pub fn record(&self, properties: String, timestamp: f64, now: f64) -> Option<js_sys::Promise> {
        let (now, timestamp) = (now as u64, timestamp as u64);
        let Ok(mut edge) = self.edge.try_borrow_mut() else {
            return None;
        };
        edge.requests += 1;
        let request = RequestId(edge.requests);
        // It arrived when it started: leaders past their grace are replaced as of then.
        edge.coalescer.arrive(request, timestamp);
        let ready = edge
            .coalescer
            .event_ready(request, properties, timestamp, now);
        let window = match ready {
            Ok(Some(window)) => window,
            Ok(None) => return None,
            Err(_) => {
                let name = edge.coalescer.config().event_name.clone();
                drop(edge);
                host::warn(&undelivered(&name, 1, "queueFull"));
                return None;
            }
        };
        drop(edge);
        let delivery = deliver(self.edge.clone(), window, request, now);
        Some(wasm_bindgen_futures::future_to_promise(async move {
            delivery.await;
            Ok(JsValue::UNDEFINED)
        }))
    }
}

/// Carries out window `window`, which request `leader` leads, in the leader's `waitUntil`
/// from `now` on: the driver loop, until the coalescer says the window is finished; then its
/// losses are logged and the leader's `waitUntil` is over.
async fn deliver(edge: Rc<RefCell<Edge>>, window: WindowId, leader: RequestId, mut now: u64) {
    let inbox = Rc::new(Inbox::default());
    let mut in_flight: Vec<(TransmitId, web_sys::AbortController)> = Vec::new();
    // The one timer, and the time it is armed for.
    let mut armed: Option<(u64, Timeout)> = None;
    loop {
        let answers = inbox.answers.take();
        let (wake, transport) = match edge.try_borrow_mut() {
            Ok(mut state) => (state.poll(window, answers, now), state.transport.clone()),
            Err(_) => break,
        };
        for (id, outcome) in &wake.answered {
            transport::log_outcome(*id, outcome);
        }
        in_flight.retain(|(id, controller)| {
            let aborted = wake.aborts.contains(id);
            if aborted {
                controller.abort();
            }
            !aborted && !wake.answered_ids.contains(id)
        });
        for t in wake.sends {
            let id = t.id;
            let to = inbox.clone();
            let (state, woken) = (edge.clone(), inbox.clone());
            let may_start = move |wire_len| {
                let go = state.try_borrow_mut().map_or(Start::Ordinary, |mut s| {
                    s.coalescer
                        .handle_compressed(window, id, wire_len, host::now_ms())
                });
                if go == Start::No {
                    woken.ring();
                }
                go
            };
            let controller = transport.send(t, move |outcome| to.deliver(id, outcome), may_start);
            if let Some(controller) = controller {
                in_flight.push((id, controller));
            }
        }
        if wake.finished {
            break;
        }
        // Woken by an answer, or by the one timer at the time the coalescer names. A timer
        // still armed for that time is kept; dropping one cancels it.
        if inbox.timer_fired.replace(false) || armed.as_ref().map(|(at, _)| *at) != wake.timeout {
            armed = wake.timeout.map(|at| {
                // setTimeout takes a 32-bit signed delay; a longer one would fire at once.
                let delay = at.saturating_sub(now).min(i32::MAX as u64) as u32;
                let to = inbox.clone();
                let timer = Timeout::new(delay, move || {
                    to.timer_fired.set(true);
                    to.ring();
                });
                (at, timer)
            });
        }
        inbox.rung().await;
        now = host::now_ms();
    }
    drop(armed);
    let report = edge.try_borrow_mut().ok().map(|mut state| {
        let report = state.coalescer.take_report(window);
        state.coalescer.wait_until_ended(leader, host::now_ms());
        (report, state.coalescer.config().event_name.clone())
    });
    if let Some((Some(report), name)) = report {
        warn_undelivered(&name, &report.stats);
    }
}

/// What one wake of a delivery must do once the state is released.
struct Wake {
    /// Answers the coalescer was still waiting for, to log with `debug`.
    answered: Vec<(TransmitId, Outcome)>,
    /// Every answer taken, awaited or not: their requests are no longer in flight.
    answered_ids: Vec<TransmitId>,
    sends: Vec<Transmit>,
    aborts: Vec<TransmitId>,
    timeout: Option<u64>,
    finished: bool,
}

impl Edge {
    /// One wake of window `window` at `now`: the answers in, then the time, then what to send
    /// and abort, then when to wake next.
    fn poll(&mut self, window: WindowId, answers: Vec<(TransmitId, Outcome)>, now: u64) -> Wake {
        let c = &mut self.coalescer;
        let mut answered = Vec::new();
        let mut answered_ids = Vec::new();
        for (id, outcome) in answers {
            answered_ids.push(id);
            let log = self.debug.then(|| outcome.clone());
            if c.handle_outcome(window, id, outcome, now) {
                answered.extend(log.map(|outcome| (id, outcome)));
            }
        }
        c.handle_timeout(window, now);
        let sends = std::iter::from_fn(|| c.poll_transmit(window, now)).collect();
        let aborts = std::iter::from_fn(|| c.poll_abort(window)).collect();
        Wake {
            answered,
            answered_ids,
            sends,
            aborts,
            timeout: c.poll_timeout(window),
            finished: c.is_finished(window),
        }
    }
}

/// Where a delivery's answers and its timer wake it.
#[derive(Default)]
struct Inbox {
    answers: RefCell<Vec<(TransmitId, Outcome)>>,
    rung: Cell<bool>,
    /// The timer fired since the last wake: it must be armed again, even for the same time.
    timer_fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Inbox {
    /// Request `id` was answered.
    fn deliver(&self, id: TransmitId, outcome: Outcome) {
        self.answers.borrow_mut().push((id, outcome));
        self.ring();
    }

    /// Wakes the delivery.
    fn ring(&self) {
        self.rung.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves once rung (at once if it was rung meanwhile).
    async fn rung(&self) {
        poll_fn(|cx| {
            if self.rung.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Reads the options of `withTelemetry`, given as the exporter's `config` and the
/// middleware's `own` keys: the edge's config, and the shell's options (the user's headers,
/// `debug`). With `from_env`, a missing endpoint or key is stood in for.
fn read(
    config: &JsValue,
    own: &JsValue,
    from_env: bool,
) -> Result<(EdgeConfig, ShellOptions), ConfigError> {
    if !(config.is_object() || config.is_undefined() || config.is_null()) {
        return Err(ConfigError::new(
            "options",
            "must be an object, e.g. { eventName: \"http_request\" }".into(),
        ));
    }
    let exporter = Object::new();
    if config.is_object() {
        Object::assign(&exporter, config.unchecked_ref());
    }
    if from_env {
        for (key, stand_in) in [
            ("endpoint", ENDPOINT_STAND_IN),
            ("apiKey", API_KEY_STAND_IN),
        ] {
            if option(&exporter, key).is_none() {
                let _ = Reflect::set(&exporter, &key.into(), &stand_in.into());
            }
        }
    }
    let (config, shell) = config::read(&exporter)?;
    let mut edge = EdgeConfig::new(config);
    if let Some(name) = given(option(own, "eventName"), "eventName", "string")? {
        edge.event_name = name.as_string().unwrap_or_default();
    }
    if let Some(ms) = whole(option(own, "deadlineMs"), "deadlineMs")? {
        edge.deadline_ms = ms;
    }
    if let Some(n) = whole(option(own, "subrequestLimit"), "subrequestLimit")? {
        edge.subrequest_limit = n.min(u32::MAX.into()) as u32;
    }
    edge.validate()?;
    Ok((edge, shell))
}

/// `options[key]`, unless it is unset (`undefined` or `null`).
fn option(options: &JsValue, key: &str) -> Option<JsValue> {
    if !options.is_object() {
        return None;
    }
    let value = Reflect::get(options, &key.into()).ok()?;
    (!value.is_undefined() && !value.is_null()).then_some(value)
}

/// `value` of option `key` if it is of JavaScript type `kind`.
fn given(
    value: Option<JsValue>,
    key: &'static str,
    kind: &str,
) -> Result<Option<JsValue>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let of = value.js_typeof().as_string().unwrap_or_default();
    if of != kind {
        let mut m = String::from("must be a ");
        m.push_str(kind);
        m.push_str(" (got type ");
        m.push_str(&of);
        m.push(')');
        return Err(ConfigError::new(key, m));
    }
    Ok(Some(value))
}

/// Option `key` as a whole number, if set; its bounds are [`EdgeConfig::validate`]'s.
fn whole(value: Option<JsValue>, key: &'static str) -> Result<Option<u64>, ConfigError> {
    let Some(n) = given(value, key, "number")?.and_then(|v| v.as_f64()) else {
        return Ok(None);
    };
    if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 {
        return Ok(Some(n as u64));
    }
    let mut m = String::from("must be a whole number, 0 or more (got ");
    m.push_str(&host::number_text(n));
    m.push(')');
    Err(ConfigError::new(key, m))
}
/// Events of a window ended dropped: say so in the Worker's logs, the only place it shows.
fn warn_undelivered(name: &str, stats: &Stats) {
    let d = &stats.dropped;
    let total = d.total();
    if total == 0 {
        return;
    }
    let mut reasons = String::new();
    for (n, why) in [
        (d.shutdown, "abandoned at deadlineMs"),
        (d.attempts_exhausted, "attemptsExhausted"),
        (d.rejected, "rejected"),
        (d.too_large, "tooLarge"),
        (d.queue_full, "queueFull"),
    ] {
        if n == 0 {
            continue;
        }
        if !reasons.is_empty() {
            reasons.push_str(", ");
        }
        if n != total {
            reasons.push_str(&host::number_text(n as f64));
            reasons.push(' ');
        }
        reasons.push_str(why);
    }
    if let Some(last) = &stats.last_error {
        reasons.push_str("; last error: ");
        reasons.push_str(last);
    }
    host::warn(&undelivered(name, total, &reasons));
}

/// "spool: a {name} event was not delivered ({why})", or "{n} {name} events were".
fn undelivered(name: &str, n: u64, why: &str) -> String {
    let mut m = String::from("spool: ");
    if n == 1 {
        m.push_str("a ");
        m.push_str(name);
        m.push_str(" event was");
    } else {
        m.push_str(&host::number_text(n as f64));
        m.push(' ');
        m.push_str(name);
        m.push_str(" events were");
    }
    m.push_str(" not delivered (");
    m.push_str(why);
    m.push(')');
    m
}
