//! The edge middleware: `withTelemetry(handler, options)` wraps a Cloudflare Worker's `fetch`
//! so that every request becomes an event, delivered after the response inside
//! `ctx.waitUntil`.
//!
//! Each request gets an [`Exporter`] of its own, holding only that request's event, and shuts
//! it down at once with the `deadlineMs` budget: the engine sends now, retries with backoff
//! honouring `Retry-After`, and at the deadline (or early, when a `Retry-After` reaches past
//! it) abandons what is left, counted and logged. Every request it makes, every retry timer
//! and every answer therefore belongs to the request whose event it carries, and that
//! request's `waitUntil` awaits them: workerd refuses I/O shared between requests ("Cannot
//! perform I/O on behalf of a different request"), and nothing is left on a timer once
//! `waitUntil` settles, after which the isolate may be evicted. Nothing runs when the module is
//! loaded: workerd forbids timers, I/O and random numbers at module scope. One thing is shared:
//! the isolate's `Retry-After` hold, a number every exporter takes before it sends and raises
//! when an answer names a later time, so a `Retry-After` answered to one request holds back
//! every request's event.
//!
//! The options are read and checked here, once; the per-request work that touches the
//! request, `env` and `ctx` is in `edge.js`, which drives each exporter through its public
//! methods (`capture`, `shutdown`, `stats`, `free`), so the edge adds little to the wasm.
//!
//! ```js
//! import wasm from "spool/spool_bg.wasm";
//! import { initSync, withTelemetry } from "spool";
//! initSync({ module: wasm });
//! export default withTelemetry({ fetch: (request) => new Response("hello") });
//! ```

use super::config::{self, Options};
use super::exporter::Exporter;
use super::shell::Hold;
use super::{error, host};
use crate::engine::{Config, ConfigError};
use js_sys::{Array, Object};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The event name when `eventName` is not given.
pub const DEFAULT_EVENT_NAME: &str = "http_request";

/// The budget within `waitUntil` when `deadlineMs` is not given. Cloudflare keeps `waitUntil`
/// work alive for about 30 s after the response; the last 5 s are a margin for aborting what
/// is abandoned and logging it.
pub const DEFAULT_DEADLINE_MS: u64 = 25_000;

/// The shortest `deadlineMs`: the shortest `requestTimeoutMs`.
const MIN_DEADLINE_MS: u64 = 100;

/// The longest `deadlineMs`: past `waitUntil`'s 30 s the runtime cancels the work, and events
/// not yet delivered would be lost without being counted or logged.
const MAX_DEADLINE_MS: u64 = 30_000;

/// Stands in for the endpoint while the rest of the config is checked, when the endpoint comes
/// from `env` (known only per request). Never sent to.
const ENDPOINT_STAND_IN: &str = "https://endpoint-from-env.invalid/";

#[wasm_bindgen(module = "/src/web/edge.js")]
extern "C" {
    #[wasm_bindgen(js_name = exporterConfig)]
    fn exporter_config(options: &JsValue, stand_in: &str) -> JsValue;

    #[wasm_bindgen(catch, js_name = headerNames)]
    fn header_names(value: &JsValue) -> Result<Array, JsValue>;

    #[wasm_bindgen(catch)]
    fn wrap(
        handler: &JsValue,
        create: &JsValue,
        event_name: &str,
        capture_query: bool,
        header_names: &Array,
        deadline_ms: f64,
    ) -> Result<JsValue, JsValue>;
}

/// Wraps a Worker's `fetch` handler (its default export) so that every request is recorded as
/// an event and delivered after the response, inside `ctx.waitUntil`. Returns the object to
/// export as default: `handler`'s properties with `fetch` replaced.
///
/// Each request yields one event (`eventName`, default `"http_request"`) with `method`,
/// `host`, `path` (no query string), `status`, `duration_ms`, and `country` and `colo` from
/// `request.cf` where present. When the handler throws, the event has status 500 and the
/// error's message, and the error is rethrown unchanged. The query string (`captureQuery:
/// true`) and headers (`captureHeaders: ["user-agent", ...]`) are recorded only when asked.
///
/// The endpoint and key default to the `SPOOL_ENDPOINT` and `SPOOL_API_KEY` env bindings;
/// `options` may set them instead, and any other exporter config key (`maxAttempts`,
/// `initialBackoffMs`, `requestTimeoutMs`, `distinctId`, `headers`, `debug`, ...), and
/// `deadlineMs` (default 25,000, 100 to 30,000): how long a request's delivery may run within
/// `waitUntil` before what is left is abandoned. Throws a `SpoolConfigError` naming the field
/// if an option is invalid, and a `TypeError` if `handler` has no `fetch` method. An endpoint
/// from env that is missing or invalid is reported once with `console.error`; requests are
/// served regardless.
#[wasm_bindgen(js_name = withTelemetry, skip_typescript)]
pub fn with_telemetry(handler: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
    read(&handler, &options).map_err(|e| error::config(&e))?
}

/// Checks `options` and wraps `handler`; the outer error is a config error, the inner one what
/// `wrap` threw.
fn read(handler: &JsValue, options: &JsValue) -> Result<Result<JsValue, JsValue>, ConfigError> {
    let options = if options.is_undefined() || options.is_null() {
        Object::new().into()
    } else if options.is_object() {
        options.clone()
    } else {
        return Err(ConfigError::new(
            "options",
            "must be an object, e.g. { eventName: \"http_request\" }".into(),
        ));
    };
    let obj: &Object = options.unchecked_ref();
    let event_name = config::string(obj, "eventName")?;
    if event_name.as_deref() == Some("") {
        return Err(ConfigError::new("eventName", "must not be empty".into()));
    }
    let deadline_ms = config::number(obj, "deadlineMs")?.unwrap_or(DEFAULT_DEADLINE_MS);
    if !(MIN_DEADLINE_MS..=MAX_DEADLINE_MS).contains(&deadline_ms) {
        let mut m = String::from("must be from 100 to 30000 (got ");
        m.push_str(&host::number_text(deadline_ms as f64));
        m.push(')');
        return Err(ConfigError::new("deadlineMs", m));
    }
    let names = header_names(&config::get(obj, "captureHeaders")?.unwrap_or_default())
        .map_err(|thrown| ConfigError::new("captureHeaders", host::message(&thrown)))?;
    let capture_query = config::boolean(obj, "captureQuery")?.unwrap_or(false);
    let (config, options) = config::read(&exporter_config(&options, ENDPOINT_STAND_IN))?;
    config.validate()?;
    let template = Template {
        endpoint_from_env: config.endpoint == ENDPOINT_STAND_IN,
        api_key_from_env: config::get(obj, "apiKey")?.is_none(),
        hold: Hold::default(),
        config,
        options,
    };
    // `[endpoint, apiKey, distinctId]` in one array: a closure of three arguments shares its
    // call signature with unused closure shims of wasm-bindgen's, which wasm-opt then cannot
    // remove (1.9 KB more wasm, measured).
    let create = Closure::<dyn FnMut(Array) -> _>::new(move |env: Array| {
        template.exporter(
            env.get(0).as_string(),
            env.get(1).as_string(),
            env.get(2).as_string(),
        )
    });
    // Owned by the wrapper from here on: it lives as long as the Worker's export.
    Ok(wrap(
        handler,
        &create.into_js_value(),
        event_name.as_deref().unwrap_or(DEFAULT_EVENT_NAME),
        capture_query,
        &names,
        deadline_ms as f64,
    ))
}

/// What every request's exporter is made from.
struct Template {
    config: Config,
    options: Options,
    /// The endpoint and the key come from `env`, per request.
    endpoint_from_env: bool,
    api_key_from_env: bool,
    /// The isolate's `Retry-After` hold, shared by every request's exporter.
    hold: Hold,
}

impl Template {
    /// A new exporter for one request: the checked config, with the endpoint and key from
    /// `env` unless the options named them, and `distinct_id` unless the config names one.
    /// Throws a `SpoolConfigError` if the endpoint from `env` is missing or invalid.
    fn exporter(
        &self,
        endpoint: Option<String>,
        api_key: Option<String>,
        distinct_id: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let mut config = self.config.clone();
        if self.endpoint_from_env {
            config.endpoint = endpoint.ok_or_else(|| {
                error::config(&ConfigError::new(
                    "endpoint",
                    "is required: set the SPOOL_ENDPOINT env binding (or the endpoint option)"
                        .into(),
                ))
            })?;
        }
        if self.api_key_from_env {
            config.api_key = api_key.unwrap_or_default();
        }
        config.distinct_id = config.distinct_id.or(distinct_id);
        let options = Options {
            flush_on_page_hide: false,
            headers: self.options.headers.clone(),
            debug: self.options.debug,
        };
        Exporter::build(config, options, self.hold.clone()).map(JsValue::from)
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `withTelemetry`. Every field is optional; any `ExporterConfig` key may be given
 *  (batching keys have no effect: each request's event is sent at once). */
export interface EdgeOptions extends Partial<ExporterConfig> {
  /** The collector's batch URL. Default: the `SPOOL_ENDPOINT` env binding, read per request. */
  endpoint?: string;
  /** The project key. Default: the `SPOOL_API_KEY` env binding (or ""). Never logged. */
  apiKey?: string;
  /** The event's name. Default "http_request". */
  eventName?: string;
  /** Record the query string (as the `query` property). Default false: query strings carry
   *  tokens and personal data. */
  captureQuery?: boolean;
  /** Request headers to record (as the `headers` property), e.g. ["user-agent"]. Default
   *  false: none (headers carry cookies and credentials). */
  captureHeaders?: false | string[];
  /** How long a request's delivery may run within `waitUntil` before what is left is
   *  abandoned (counted and logged). Default 25,000, 100 to 30,000. */
  deadlineMs?: number;
}

/** What `ctx` must offer: Cloudflare's `ExecutionContext`. */
export interface WaitUntilContext {
  waitUntil(promise: Promise<unknown>): void;
}

/** A Worker's default export, as far as `withTelemetry` needs it. */
export interface FetchHandler<Env = any> {
  fetch(request: Request, env: Env, ctx: WaitUntilContext): Response | Promise<Response>;
}

/**
 * Wraps a Worker's default export so that every request is recorded as an event (method, host,
 * path, status, duration_ms, country, colo; status 500 and error when the handler throws) and
 * delivered after the response inside `ctx.waitUntil`. Returns the object to export.
 * Throws a `SpoolConfigError` (with `field`) for an invalid option.
 *
 * ```js
 * export default withTelemetry({ fetch: (request, env, ctx) => new Response("hello") });
 * ```
 */
export function withTelemetry<H extends FetchHandler>(handler: H, options?: EdgeOptions): H;
"#;
