//! Reads the arguments of `capture(name, properties, options)`: checks their types and
//! serializes the properties with `JSON.stringify` at once, so later changes to the caller's
//! object change nothing. What `JSON.stringify` makes of an object is a JSON object, so the
//! engine takes it without parsing it again ([`Engine::capture_json`]); anything else
//! `toJSON` may turn it into is refused here.
//!
//! [`Engine::capture_json`]: crate::engine::Engine::capture_json
//!
//! This runs before the exporter's state is borrowed: `JSON.stringify` and getters run the
//! caller's code (`toJSON`), which may call the exporter again.

use super::error::{self, INVALID_EVENT};
use super::host;
use crate::engine::EventInput;
use js_sys::{Object, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// One capture's arguments, owned and checked.
pub struct Capture {
    name: String,
    properties: Option<String>,
    distinct_id: Option<String>,
    timestamp_ms: Option<u64>,
    uuid: Option<String>,
}

impl Capture {
    /// Checks and copies the arguments; the error is the JS `Error` to throw.
    pub fn read(
        name: &JsValue,
        properties: &JsValue,
        options: &JsValue,
    ) -> Result<Capture, JsValue> {
        let Some(name) = name.as_string() else {
            return Err(wrong_type("event name must be a string", name));
        };
        let mut capture = Capture {
            name,
            properties: serialize(properties)?,
            distinct_id: None,
            timestamp_ms: None,
            uuid: None,
        };
        if options.is_undefined() || options.is_null() {
            return Ok(capture);
        }
        if !options.is_object() {
            return Err(wrong_type(
                "capture options must be an object such as { distinctId, timestamp, uuid }",
                options,
            ));
        }
        let options: &Object = options.unchecked_ref();
        if let Some(v) = option(options, "distinctId")? {
            match v.as_string() {
                Some(id) if !id.is_empty() => capture.distinct_id = Some(id),
                _ => return Err(wrong_type("distinctId must be a non-empty string", &v)),
            }
        }
        if let Some(v) = option(options, "timestamp")? {
            capture.timestamp_ms = Some(timestamp(&v)?);
        }
        if let Some(v) = option(options, "uuid")? {
            let Some(uuid) = v.as_string() else {
                return Err(wrong_type("uuid must be a string", &v));
            };
            capture.uuid = Some(uuid);
        }
        Ok(capture)
    }

    /// The event as the engine takes it.
    pub fn input(&self) -> EventInput<'_> {
        EventInput {
            name: &self.name,
            properties: self.properties.as_deref(),
            distinct_id: self.distinct_id.as_deref(),
            timestamp_ms: self.timestamp_ms,
            uuid: self.uuid.as_deref(),
        }
    }
}

/// The JSON text of Rust `properties`: made a plain JS value by serde-wasm-bindgen (maps as
/// objects), then `JSON.stringify`-ed as a JavaScript caller's would be, so both take the
/// same path into the engine.
pub fn properties_json<P: serde::Serialize + ?Sized>(
    properties: &P,
) -> Result<String, super::client::Error> {
    use super::client::Error;
    let value = properties
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| Error::Properties(host::message(&e.into())))?;
    match serialize(&value) {
        Ok(Some(json)) => Ok(json),
        Ok(None) => Ok(String::from("{}")),
        Err(e) => Err(Error::Properties(host::message(&e))),
    }
}

/// `JSON.stringify(properties)`, which must give a JSON object; `None` for no properties.
fn serialize(properties: &JsValue) -> Result<Option<String>, JsValue> {
    if properties.is_undefined() || properties.is_null() {
        return Ok(None);
    }
    if !properties.is_object() {
        return Err(wrong_type("properties must be an object", properties));
    }
    if js_sys::Array::is_array(properties) {
        return Err(invalid("properties must be an object, not an array"));
    }
    let json = match JSON::stringify(properties) {
        Ok(json) => json,
        Err(thrown) => {
            // A cycle or a BigInt: JSON.stringify's own message names which.
            let mut m = String::from("properties cannot be serialized with JSON.stringify: ");
            m.push_str(&host::message(&thrown));
            return Err(invalid(&m));
        }
    };
    match json.as_string() {
        Some(text) if text.starts_with('{') => Ok(Some(text)),
        _ => Err(invalid(
            "properties must serialize to a JSON object (a toJSON method returned something else)",
        )),
    }
}

/// `timestamp`: ms since the epoch as a number (fractions dropped), or a `Date`.
fn timestamp(v: &JsValue) -> Result<u64, JsValue> {
    let ms = match v.dyn_ref::<js_sys::Date>() {
        Some(date) => date.get_time(),
        None => match v.as_f64() {
            Some(ms) => ms,
            None => {
                return Err(wrong_type(
                    "timestamp must be ms since 1970 (a number) or a Date",
                    v,
                ))
            }
        },
    };
    // The engine refuses times past year 9999; below zero and NaN are refused here.
    if ms >= 0.0 && ms.is_finite() {
        Ok(ms as u64)
    } else {
        Err(invalid(
            "timestamp must be a valid time: ms since 1970, 0 or more, or a valid Date",
        ))
    }
}

fn option(options: &Object, key: &str) -> Result<Option<JsValue>, JsValue> {
    match Reflect::get(options, &JsValue::from_str(key)) {
        Ok(v) if v.is_undefined() || v.is_null() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(thrown) => Err(invalid(&host::message(&thrown))),
    }
}

fn invalid(message: &str) -> JsValue {
    error::error(INVALID_EVENT, message)
}

/// A `TypeError` named `SpoolInvalidEvent`: "{what} (got type {typeof})".
fn wrong_type(what: &str, got: &JsValue) -> JsValue {
    let mut m = String::from(what);
    m.push_str(" (got type ");
    m.push_str(&got.js_typeof().as_string().unwrap_or_default());
    m.push(')');
    error::type_error(INVALID_EVENT, &m)
}
