//! Every failure reaches JavaScript as an `Error` whose `name` says what kind it is, and whose
//! message starts with `spool:`. Nothing here ever includes the API key. The names are the
//! shell's: the engine's errors are plain Rust values, named here. Rust callers get
//! [`Error`](super::Error), which prints the same messages and is a `std::error::Error`, so `?`
//! carries it into a `Box<dyn Error>` or an `anyhow::Error`.

use super::client::Error as ClientError;
use crate::engine::{CaptureError, ConfigError};
use core::fmt;
use wasm_bindgen::prelude::*;

/// The `name` of every config error; the offending field is in the error's `field` property.
pub const CONFIG_ERROR: &str = "SpoolConfigError";

/// The `name` of an error about the arguments of `capture`.
pub const INVALID_EVENT: &str = "SpoolInvalidEvent";

/// The `name` of the error for an event larger than `maxBatchBytes` on its own.
pub const EVENT_TOO_LARGE: &str = "SpoolEventTooLarge";

/// The `name` of the error for a capture after `shutdown()`.
pub const SHUT_DOWN: &str = "SpoolShutDown";

/// The `name` of the error for a full queue (only Rust callers see it: JavaScript gets
/// `undefined` from `capture`).
pub const QUEUE_FULL: &str = "SpoolQueueFull";

/// The `name` of the rejection of a `flush()` or `shutdown()` whose exporter was freed before
/// it finished.
pub const FREED: &str = "SpoolFreed";

/// The `name` of the error thrown if a call arrives while the exporter's state is borrowed.
/// By design it never is when the page's code can run (arguments are read before, `fetch`,
/// `console` and promises are called after), so this replaces a panic that cannot happen.
pub const BUSY: &str = "SpoolBusy";

impl fmt::Display for ClientError {
    /// A sentence for a person, as the JavaScript errors' messages are, without their
    /// `spool:` prefix (a Rust caller's own context comes first there).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Capture(e) => fmt::Display::fmt(e, f),
            ClientError::Properties(why) => {
                write!(f, "properties did not serialize to a JSON object: {why}")
            }
            ClientError::Busy => f.write_str(BUSY_MESSAGE),
            ClientError::Stopped => {
                f.write_str("the client was dropped before the flush or shutdown finished")
            }
        }
    }
}

// `Capture` prints its `CaptureError` in full, so it names no `source` (an error report would
// print the message twice).
impl std::error::Error for ClientError {}

/// The JavaScript `name` of a refused capture.
pub fn capture_name(e: &CaptureError) -> &'static str {
    match e {
        CaptureError::TooLarge { .. } => EVENT_TOO_LARGE,
        CaptureError::QueueFull => QUEUE_FULL,
        CaptureError::ShutDown => SHUT_DOWN,
        _ => INVALID_EVENT,
    }
}

/// An `Error` (a `TypeError` if `type_error`, so `instanceof TypeError` holds) named `name`
/// with the message `spool: {message}`.
fn make(type_error: bool, name: &str, message: &str) -> js_sys::Error {
    let mut m = String::from("spool: ");
    m.push_str(message);
    let e: js_sys::Error = if type_error {
        js_sys::TypeError::new(&m).into()
    } else {
        js_sys::Error::new(&m)
    };
    e.set_name(name);
    e
}

/// An `Error` with `name` and the message `spool: {message}`.
pub fn error(name: &str, message: &str) -> JsValue {
    make(false, name, message).into()
}

/// A `TypeError` with `name` and a message, for arguments of the wrong type.
pub fn type_error(name: &str, message: &str) -> JsValue {
    make(true, name, message).into()
}

/// A config error: `name` is `SpoolConfigError`, `field` the camelCase key.
pub fn config(e: &ConfigError) -> JsValue {
    let error = make(false, CONFIG_ERROR, &e.full_message());
    let _ = js_sys::Reflect::set(&error, &"field".into(), &e.field.into());
    error.into()
}

/// A refused capture, named by [`capture_name`].
pub fn capture(e: &CaptureError) -> JsValue {
    error(capture_name(e), &e.message())
}

/// The error for a call made from inside another call of the same exporter.
pub fn busy() -> JsValue {
    error(BUSY, BUSY_MESSAGE)
}

const BUSY_MESSAGE: &str =
    "the exporter was called from inside one of its own calls; the inner call did nothing";
