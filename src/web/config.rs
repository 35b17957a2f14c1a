//! Reads the JavaScript config object through serde: [`Config`] (the engine's keys) and
//! [`ShellOptions`] (the shell's) are deserialized from it by serde-wasm-bindgen, each reading
//! only its own keys, once. [`crate::schema::KEYS`] names every key: any other gets one
//! `console.warn`, which catches a typo such as `flushInterval` without breaking a page.
//!
//! `undefined` and `null` mean "not set". A value of the wrong type is refused with a
//! `ConfigError` naming the key and its expected type, never
//! the value, which could be a secret put in the wrong field; ranges are the engine's to check
//! ([`Config::validate`]).

use super::host;
use crate::engine::{Config, ConfigError};
use crate::schema::{self, Kind, ShellOptions};
use js_sys::{Object, Reflect};
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Reads `value` (the argument of `new Exporter(config)`). The engine validates ranges and the
/// endpoint when it is built from the result.
pub fn read(value: &JsValue) -> Result<(Config, ShellOptions), ConfigError> {
    let set = known(value)?;
    let config: Config = deserialize(&set)?;
    let options: ShellOptions = deserialize(&set)?;
    if config.endpoint.is_empty() && !Reflect::has(&set, &"endpoint".into()).unwrap_or(false) {
        return Err(ConfigError::new(
            "endpoint",
            "is required: the collector's batch URL, as in \
             { endpoint: \"https://collector.example/batch/\" }"
                .into(),
        ));
    }
    check_headers(&options)?;
    Ok((config, options))
}

/// A copy of `value` with only its known keys whose values are set; one `console.warn` names
/// the unknown ones.
fn known(value: &JsValue) -> Result<Object, ConfigError> {
    let set = Object::new();
    if !value.is_object() {
        return Ok(set);
    }
    let mut unknown = String::new();
    let object: &Object = value.unchecked_ref();
    for key in Object::keys(object).iter() {
        let name = key.as_string().unwrap_or_default();
        let Some(k) = schema::exporter_key(&name) else {
            if !unknown.is_empty() {
                unknown.push_str(", ");
            }
            unknown.push_str(&name);
            continue;
        };
        let v = Reflect::get(value, &key)
            .map_err(|_| ConfigError::new(k.name, "could not be read (its getter threw)".into()))?;
        if !v.is_undefined() && !v.is_null() {
            let _ = Reflect::set(&set, &key, &v);
        }
    }
    if !unknown.is_empty() {
        let mut m = String::from("spool: ignoring unknown config keys: ");
        m.push_str(&unknown);
        m.push_str(" (see ExporterConfig for the known ones)");
        host::warn(&m);
    }
    Ok(set)
}

/// `T` from the known keys of the config. On an error, each key is tried alone to name the
/// one whose value is wrong: the same deserializer again, on the error path only, rather than
/// a path-tracking wrapper around every field of the success path.
fn deserialize<T: DeserializeOwned>(set: &Object) -> Result<T, ConfigError> {
    if let Ok(value) = serde_wasm_bindgen::from_value::<T>(set.into()) {
        return Ok(value);
    }
    for key in Object::keys(set).iter() {
        let value = Reflect::get(set, &key).unwrap_or(JsValue::UNDEFINED);
        let alone = Object::new();
        let _ = Reflect::set(&alone, &key, &value);
        if let Err(e) = serde_wasm_bindgen::from_value::<T>(alone.into()) {
            return Err(wrong(&key.as_string().unwrap_or_default(), &value, e));
        }
    }
    Err(ConfigError::new("config", "could not be read".into()))
}

/// The error for `value`, of the wrong type or out of the type's domain, at key `name`;
/// `e` is serde's, whose words name the allowed values of an enum.
fn wrong(name: &str, value: &JsValue, e: serde_wasm_bindgen::Error) -> ConfigError {
    let Some(key) = schema::exporter_key(name) else {
        return ConfigError::new("config", "must be an object".into());
    };
    let mut m = String::from(key.expected());
    match (key.kind, value.as_f64()) {
        (Kind::Whole, Some(n)) => {
            m = String::from("must be a whole number, 0 or more (got ");
            m.push_str(&host::number_text(n));
        }
        // A string, but not one of the enum's: serde's message names the allowed ones.
        (Kind::OneOf, _) if value.is_string() => {
            m = String::from("must be one of the allowed values (");
            m.push_str(&host::message(&e.into()));
        }
        _ => {
            m.push_str(" (got type ");
            m.push_str(&value.js_typeof().as_string().unwrap_or_default());
        }
    }
    m.push(')');
    ConfigError::new(key.name, m)
}

/// `headers`: each a valid header name and value, checked now by the host's own `Headers`, so
/// a bad one fails here rather than on every request.
fn check_headers(options: &ShellOptions) -> Result<(), ConfigError> {
    let bad = || ConfigError::new("headers", String::new());
    if options.headers.is_empty() {
        return Ok(());
    }
    let check = web_sys::Headers::new().map_err(|_| bad())?;
    for (name, value) in &options.headers {
        if check.append(name, value).is_err() {
            // Not the host's message: some name the value, which may be a secret.
            let mut m = String::from(name);
            m.push_str(" is not a valid header name, or its value is not a valid value");
            return Err(ConfigError::new("headers", m));
        }
    }
    Ok(())
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
    let v = Reflect::get(options, &"timeoutMs".into()).unwrap_or(JsValue::UNDEFINED);
    if v.is_undefined() || v.is_null() {
        return Ok(default);
    }
    match v.as_f64() {
        Some(n) if (0.0..=9_007_199_254_740_991.0).contains(&n) && n.fract() == 0.0 => Ok(n as u64),
        Some(n) => {
            let mut m = String::from("must be a whole number, 0 or more (got ");
            m.push_str(&host::number_text(n));
            m.push(')');
            Err(ConfigError::new("timeoutMs", m))
        }
        None => {
            let mut m = String::from("must be a number (got type ");
            m.push_str(&v.js_typeof().as_string().unwrap_or_default());
            m.push(')');
            Err(ConfigError::new("timeoutMs", m))
        }
    }
}
