//! The exporter for Rust code compiled to wasm (a Leptos or Yew app, a workers-rs Worker):
//! a typed [`Config`], `capture(name, &impl Serialize)`, `flush().await` and
//! `shutdown(timeout).await`. The JavaScript `Exporter` class is a thin layer over it.

use super::capture;
use super::host::{self, now_ms};
use super::report::{FlushReport, ShutdownReport};
use super::shell::{drive, drive_soon, Hold, Shared, Shell};
use crate::engine::{CaptureError, Config, ConfigError, Engine, EventInput, Stats, Uuid};
use crate::schema::ShellOptions;
use futures_channel::oneshot;
use serde::Serialize;
use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

/// Why a call of [`Client`] did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The event was refused; `TooLarge` and `QueueFull` are also counted as dropped.
    Capture(CaptureError),
    /// The properties did not serialize to a JSON object (the message says why).
    Properties(String),
    /// The client was called from inside one of its own calls (a `Serialize` impl that
    /// captures again, say); the inner call did nothing.
    Busy,
    /// The client was dropped before the flush or shutdown finished.
    Stopped,
}

impl From<CaptureError> for Error {
    fn from(e: CaptureError) -> Error {
        Error::Capture(e)
    }
}

/// Buffers events and delivers them in batches, in the page, Web Worker or Worker it runs in.
///
/// ```no_run
/// # async fn run() -> Result<(), spool::web::Error> {
/// use spool::engine::Config;
/// use spool::web::Client;
///
/// #[derive(serde::Serialize)]
/// struct Signup { plan: &'static str }
///
/// let mut config = Config::new("https://collector.example/batch/");
/// config.api_key = "phc_...".into();
/// let client = Client::new(config).expect("a valid config");
/// client.capture("signup", &Signup { plan: "pro" })?;
/// let report = client.flush().await?;
/// client.shutdown(std::time::Duration::from_secs(2)).await?;
/// # Ok(()) }
/// ```
///
/// Dropping it (its last clone) stops its timer and page listeners; call
/// [`shutdown`](Client::shutdown) first to send what it holds.
#[derive(Clone)]
#[must_use = "a Client stops its timer and page listeners when its last clone is dropped; keep it while it should deliver, and call `shutdown` first"]
pub struct Client {
    shell: Shared,
    distinct_id: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Client");
        d.field("distinct_id", &self.distinct_id);
        // Not while one of its own calls holds the state (a `Serialize` impl printing it).
        if let Ok(shell) = self.shell.try_borrow() {
            d.field("endpoint", &shell.engine.config().endpoint)
                .field("stats", &shell.engine.stats());
        }
        d.finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the browser defaults (flush on page hide, no extra headers, no debug
    /// logging), seeded from `crypto`, sharing the `Retry-After` hold of its endpoint with the
    /// others. Fails with the first invalid field.
    pub fn new(config: Config) -> Result<Client, ConfigError> {
        Client::with_options(config, ShellOptions::default())
    }

    /// A client with the shell's own settings too.
    pub fn with_options(config: Config, options: ShellOptions) -> Result<Client, ConfigError> {
        let hold = hold_for(&config.endpoint);
        let engine = Engine::new(config, host::seed())?;
        Ok(Client {
            distinct_id: engine.distinct_id().into(),
            shell: Shell::new(engine, options, hold),
        })
    }

    /// Captures an event now, with `properties` (anything that serializes to a map, e.g. a
    /// struct or `serde_json::json!({...})`); returns its uuid. The properties are serialized
    /// at once, so later changes to the value change nothing.
    pub fn capture<P: Serialize + ?Sized>(
        &self,
        name: &str,
        properties: &P,
    ) -> Result<Uuid, Error> {
        let json = capture::properties_json(properties)?;
        self.capture_event(EventInput::new(name).properties(&json))
    }

    /// Captures `event` (with its own distinct id, timestamp or uuid, if it names them).
    /// Properties given as JSON text are checked to be one JSON object.
    pub fn capture_event(&self, event: EventInput<'_>) -> Result<Uuid, Error> {
        let result = self
            .shell
            .try_borrow_mut()
            .map_err(|_| Error::Busy)?
            .engine
            .capture(event, now_ms());
        drive_soon(&self.shell);
        Ok(result?)
    }

    /// [`capture_event`](Client::capture_event) for properties known to be one JSON object,
    /// such as what `JSON.stringify` made of an object: they are not parsed again.
    pub(crate) fn capture_json(&self, event: EventInput<'_>) -> Result<Uuid, Error> {
        let result = self
            .shell
            .try_borrow_mut()
            .map_err(|_| Error::Busy)?
            .engine
            .capture_json(event, now_ms());
        drive_soon(&self.shell);
        Ok(result?)
    }

    /// Sends everything captured so far without lingering. The future completes once every
    /// event captured before this call has settled (later captures and other flushes do not
    /// delay it), with how many were delivered and dropped.
    pub fn flush(&self) -> impl Future<Output = Result<FlushReport, Error>> + 'static {
        self.wait(|shell, done| {
            let id = shell.engine.flush(now_ms());
            shell.wait_flush(id, done);
        })
    }

    /// Stops taking events and sends what is held; the future completes once the events
    /// held at the call are all settled, or at `timeout`, when what is left is abandoned
    /// (counted as dropped `shutdown`) and requests in flight are aborted. Then the timer is
    /// cancelled and the page listeners are removed. Calling it again gives the same report.
    pub fn shutdown(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<ShutdownReport, Error>> + 'static {
        self.shutdown_ms(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
    }

    /// [`shutdown`](Client::shutdown) with the timeout in ms.
    pub(crate) fn shutdown_ms(
        &self,
        timeout_ms: u64,
    ) -> impl Future<Output = Result<ShutdownReport, Error>> + 'static {
        self.wait(move |shell, done| shell.shutdown(timeout_ms, done))
    }

    /// Hands the shell the sender of a report with `register`, drives it, and returns the
    /// future of that report: [`Error::Busy`] if the state was borrowed (nothing registered),
    /// [`Error::Stopped`] if the exporter went away before the report came.
    fn wait<T: 'static>(
        &self,
        register: impl FnOnce(&mut Shell, oneshot::Sender<T>),
    ) -> impl Future<Output = Result<T, Error>> + 'static {
        let (done, report) = oneshot::channel();
        let started = match self.shell.try_borrow_mut() {
            Ok(mut shell) => {
                register(&mut shell, done);
                true
            }
            Err(_) => false,
        };
        if started {
            drive(&self.shell);
        }
        async move {
            if !started {
                return Err(Error::Busy);
            }
            report.await.map_err(|_| Error::Stopped)
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Result<Stats, Error> {
        Ok(self
            .shell
            .try_borrow()
            .map_err(|_| Error::Busy)?
            .engine
            .stats())
    }

    /// The distinct id events get when a capture names none.
    pub fn distinct_id(&self) -> &str {
        &self.distinct_id
    }
}

thread_local! {
    /// The `Retry-After` hold of each endpoint a client was created for: a `Retry-After` is
    /// about the collector, not about one client, so every client of this module instance
    /// that sends to the same endpoint honours it (in a Worker, every request's).
    static HOLDS: RefCell<Vec<(String, Hold)>> = const { RefCell::new(Vec::new()) };
}

/// The shared hold of `endpoint`.
fn hold_for(endpoint: &str) -> Hold {
    HOLDS.with_borrow_mut(|holds| {
        if let Some((_, hold)) = holds.iter().find(|(e, _)| e == endpoint) {
            return hold.clone();
        }
        let hold = Hold::default();
        holds.push((endpoint.to_string(), hold.clone()));
        hold
    })
}
