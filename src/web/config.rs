//! Reads the JavaScript config object into the engine's [`Config`] and the shell's own
//! [`Options`], refusing wrong types with an error that names the field.
//!
//! Ranges are the engine's to check ([`Config::validate`]); here a number must be a finite,
//! non-negative whole number and a string a string, so `"100"`, `NaN`, `Infinity` and `-1`
//! never reach it. Unknown keys are not fatal: they get one `console.warn`, which catches a
//! typo such as `flushInterval` without breaking a page.

use super::host;
use crate::engine::{BatchMode, Config, ConfigError, Format};
use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The shell's settings that the engine has no use for.
pub struct Options {
    /// `flushOnPageHide` (default true): send what is queued with `keepalive` when the page is
    /// hidden or closed.
    pub flush_on_page_hide: bool,
    /// `headers`: a plain object sent with every ordinary (non-keepalive) request, or
    /// `undefined`.
    pub headers: JsValue,
    /// `debug`: log each request and outcome with `console.debug`.
    pub debug: bool,
}

/// Every key the config object may have (the numeric ones are also in [`NUMBERS`]), separated
/// by spaces: any other gets a warning.
const KNOWN_KEYS: &str = "endpoint allowInsecure format apiKey serviceName distinctId batchMode \
    flushOnPageHide \
    headers debug flushIntervalMs maxBatchEvents maxBatchBytes maxQueueEvents maxQueueBytes \
    maxAttempts initialBackoffMs maxBackoffMs maxInFlight requestTimeoutMs";

/// The numeric keys, in the order [`read`] assigns them.
const NUMBERS: [&str; 10] = [
    "flushIntervalMs",
    "maxBatchEvents",
    "maxBatchBytes",
    "maxQueueEvents",
    "maxQueueBytes",
    "maxAttempts",
    "initialBackoffMs",
    "maxBackoffMs",
    "maxInFlight",
    "requestTimeoutMs",
];

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Reads `value` (the argument of `new Exporter(config)`). The engine validates ranges and the
/// endpoint when it is built from the result.
pub fn read(value: &JsValue) -> Result<(Config, Options), ConfigError> {
    let endpoint = match value.is_object() {
        true => string(value.unchecked_ref(), "endpoint")?,
        false => None,
    };
    let Some(endpoint) = endpoint else {
        return Err(ConfigError::new(
            "endpoint",
            "is required: the collector's batch URL, as in \
             { endpoint: \"https://collector.example/batch/\" }"
                .into(),
        ));
    };
    let obj: &Object = value.unchecked_ref();
    host::warn_unknown_keys(obj, KNOWN_KEYS);
    let mut c = Config::new(endpoint);
    c.allow_insecure = boolean(obj, "allowInsecure")?.unwrap_or(false);
    if let Some(v) = string(obj, "format")? {
        c.format = Format::parse(&v)?;
    }
    if let Some(v) = string(obj, "apiKey")? {
        c.api_key = v;
    }
    if let Some(v) = string(obj, "serviceName")? {
        c.service_name = v;
    }
    c.distinct_id = string(obj, "distinctId")?;
    if let Some(v) = string(obj, "batchMode")? {
        c.batch_mode = BatchMode::parse(&v)?;
    }
    // One loop over the numeric fields rather than ten inlined reads: smaller wasm.
    for (i, key) in NUMBERS.iter().enumerate() {
        let Some(n) = number(obj, key)? else { continue };
        // usize is 32 bits in wasm32; the engine's ranges are far below that.
        let size = usize::try_from(n).map_err(|_| ConfigError::new(key, "is far too large".into()));
        match i {
            0 => c.flush_interval_ms = n,
            1 => c.max_batch_events = size?,
            2 => c.max_batch_bytes = size?,
            3 => c.max_queue_events = size?,
            4 => c.max_queue_bytes = size?,
            5 => c.max_attempts = u32::try_from(n).unwrap_or(u32::MAX),
            6 => c.initial_backoff_ms = n,
            7 => c.max_backoff_ms = n,
            8 => c.max_in_flight = size?,
            _ => c.request_timeout_ms = n,
        }
    }
    let options = Options {
        flush_on_page_hide: boolean(obj, "flushOnPageHide")?.unwrap_or(true),
        headers: headers(obj)?,
        debug: boolean(obj, "debug")?.unwrap_or(false),
    };
    Ok((c, options))
}

/// Reads `timeoutMs` from the options of `shutdown(options)`; `default` when absent.
pub fn timeout_ms(options: &JsValue, default: u64) -> Result<u64, ConfigError> {
    if options.is_undefined() || options.is_null() {
        return Ok(default);
    }
    if !options.is_object() {
        return Err(ConfigError::new(
            "timeoutMs",
            "must be given in an options object, e.g. { timeoutMs: 2000 }".into(),
        ));
    }
    Ok(number(options.unchecked_ref(), "timeoutMs")?.unwrap_or(default))
}

/// `obj[key]`, with `undefined` and `null` meaning "not set".
fn get(obj: &Object, key: &'static str) -> Result<Option<JsValue>, ConfigError> {
    match Reflect::get(obj, &JsValue::from_str(key)) {
        Ok(v) if v.is_undefined() || v.is_null() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(ConfigError::new(
            key,
            "could not be read (its getter threw)".into(),
        )),
    }
}

fn string(obj: &Object, key: &'static str) -> Result<Option<String>, ConfigError> {
    match get(obj, key)? {
        None => Ok(None),
        Some(v) => v
            .as_string()
            .map(Some)
            .ok_or_else(|| wrong_type(key, "a string", &v)),
    }
}

fn boolean(obj: &Object, key: &'static str) -> Result<Option<bool>, ConfigError> {
    match get(obj, key)? {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type(key, "true or false", &v)),
    }
}

/// A finite, non-negative whole number.
fn number(obj: &Object, key: &'static str) -> Result<Option<u64>, ConfigError> {
    let Some(v) = get(obj, key)? else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(n) if (0.0..=MAX_SAFE_INTEGER).contains(&n) && n.fract() == 0.0 => Ok(Some(n as u64)),
        Some(n) => {
            let mut m = String::from("must be a whole number, 0 or more (got ");
            m.push_str(&host::number_text(n));
            m.push(')');
            Err(ConfigError::new(key, m))
        }
        None => Err(wrong_type(key, "a number", &v)),
    }
}

/// `headers`: an object of strings, each a valid header name and value (checked now by the
/// browser's own `Headers`, so a bad one fails here rather than on every request); kept as a
/// plain copy, or `undefined` when absent.
fn headers(obj: &Object) -> Result<JsValue, ConfigError> {
    let Some(v) = get(obj, "headers")? else {
        return Ok(JsValue::UNDEFINED);
    };
    if !v.is_object() {
        return Err(wrong_type("headers", "an object of strings", &v));
    }
    host::copy_headers(&v).map_err(|thrown| ConfigError::new("headers", host::message(&thrown)))
}

/// "must be {want} (got type {typeof})": names the type only, never the value, which could be a
/// secret put in the wrong field.
fn wrong_type(key: &'static str, want: &str, got: &JsValue) -> ConfigError {
    let mut m = String::from("must be ");
    m.push_str(want);
    m.push_str(" (got type ");
    m.push_str(&got.js_typeof().as_string().unwrap_or_default());
    m.push(')');
    ConfigError::new(key, m)
}
