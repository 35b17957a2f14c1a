//! Every failure reaches JavaScript as an `Error` whose `name` says what kind it is, and whose
//! message starts with `spool:`. Nothing here ever includes the API key.

use super::host;
use crate::engine::{CaptureError, ConfigError};
use wasm_bindgen::prelude::*;

/// The `name` of every config error; the offending field is in the error's `field` property.
pub const CONFIG_ERROR: &str = "SpoolConfigError";

/// The `name` of an error about the arguments of `capture`, as the engine names its own
/// (see [`CaptureError::kind`]).
pub const INVALID_EVENT: &str = "SpoolInvalidEvent";

/// The `name` of the error thrown if a call arrives while the exporter's state is borrowed.
/// By design it never is when the page's code can run (arguments are read before, `fetch`,
/// `console` and promises are called after), so this replaces a panic that cannot happen.
pub const BUSY: &str = "SpoolBusy";

/// An `Error` with `name` and the message `spool: {message}`.
pub fn error(name: &str, message: &str) -> JsValue {
    host::error(false, name, message, None)
}

/// A `TypeError` (so `instanceof TypeError` holds) with `name` and a message, for arguments
/// of the wrong type.
pub fn type_error(name: &str, message: &str) -> JsValue {
    host::error(true, name, message, None)
}

/// A config error: `name` is `SpoolConfigError`, `field` the camelCase key.
pub fn config(e: &ConfigError) -> JsValue {
    host::error(false, CONFIG_ERROR, &e.full_message(), Some(e.field))
}

/// A refused capture, named by [`CaptureError::kind`].
pub fn capture(e: &CaptureError) -> JsValue {
    error(e.kind(), &e.message())
}

/// The error for a call made from inside another call of the same exporter.
pub fn busy() -> JsValue {
    error(
        BUSY,
        "the exporter was called from inside one of its own calls; the inner call did nothing",
    )
}
