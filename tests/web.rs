//! The browser shell's own behaviour, in a real browser: `wasm-pack test --headless --chrome`.
//!
//! No collector is needed: a fake `fetch` (installed once, in `FAKE`) records each request and
//! answers 200. Every test uses its own endpoint path, because all tests of this file share
//! one wasm instance and one page.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Function, Promise, Reflect, JSON};
use spool::web::Exporter;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export function installFakeFetch() {
  if (globalThis.__spoolRequests) return;
  globalThis.__spoolRequests = [];
  globalThis.fetch = async (url, init) => {
    // The shell hands fetch its headers as a `Headers` (names lower-cased): recorded as a
    // plain object. A gzipped body (compression "gzip", the default) is recorded as what it
    // holds, with `gzip: true`; a plain one is recorded at once, in the call.
    const headers = Object.fromEntries(new Headers(init.headers));
    const gzip = init.body instanceof Uint8Array;
    const text = gzip
      ? await new Response(new Blob([init.body]).stream().pipeThrough(new DecompressionStream("gzip"))).text()
      : init.body;
    globalThis.__spoolRequests.push({ url: String(url), init: { ...init, headers }, body: JSON.parse(text), gzip });
    // A collector that asks for a minute's pause.
    if (String(url).includes("/answers-429/")) {
      return new Response("{}", { status: 429, headers: { "Retry-After": "60" } });
    }
    return new Response("{}", { status: 200 });
  };
}
export function requestsTo(url) {
  return globalThis.__spoolRequests.filter((r) => r.url === url);
}
export function js(source) {
  return new Function(source)();
}
export function captureConsole(method) {
  const seen = [];
  const original = console[method];
  console[method] = (...args) => { seen.push(args.map((a) => typeof a == "string" ? a : JSON.stringify(a)).join(" ")); };
  return { seen, restore: () => { console[method] = original; } };
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = installFakeFetch)]
    fn install_fake_fetch();
    #[wasm_bindgen(js_name = requestsTo)]
    fn requests_to(url: &str) -> Array;
    /// Runs a function body and returns its result (for values JSON cannot express).
    fn js(source: &str) -> JsValue;
    #[wasm_bindgen(js_name = captureConsole)]
    fn capture_console(method: &str) -> JsValue;
}

/// A JSON literal as a JS value.
fn json(text: &str) -> JsValue {
    JSON::parse(text).expect("test JSON is valid")
}

/// A config for `path` on the fake collector, plus `extra` fields (a JSON object body).
fn config(path: &str, extra: &str) -> JsValue {
    let sep = if extra.is_empty() { "" } else { "," };
    json(&format!(
        r#"{{"endpoint":"https://collector.test/{path}/","apiKey":"phc_test"{sep}{extra}}}"#
    ))
}

fn endpoint(path: &str) -> String {
    format!("https://collector.test/{path}/")
}

fn exporter(path: &str, extra: &str) -> Exporter {
    install_fake_fetch();
    Exporter::new(config(path, extra)).expect("a valid config")
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).expect("readable")
}

fn string_of(value: &JsValue, key: &str) -> String {
    get(value, key).as_string().unwrap_or_default()
}

fn number_of(value: &JsValue, key: &str) -> f64 {
    get(value, key).as_f64().expect("a number")
}

/// Puts back the console method `capture_console` replaced; returns the lines it saw.
fn restore_console(console: &JsValue) -> Array {
    get(console, "restore")
        .unchecked_into::<Function>()
        .call0(&JsValue::UNDEFINED)
        .unwrap();
    get(console, "seen").unchecked_into()
}

async fn settle(promise: Promise) -> JsValue {
    JsFuture::from(promise).await.expect("resolves")
}

/// Asserts `result` is an `Err` holding a JS `Error` named `name`; returns the error.
fn expect_error<T>(result: Result<T, JsValue>, name: &str) -> JsValue {
    let Err(e) = result else {
        panic!("expected an error named {name}, got success");
    };
    assert!(
        e.is_instance_of::<js_sys::Error>(),
        "thrown value is an Error"
    );
    assert_eq!(string_of(&e, "name"), name, "{}", string_of(&e, "message"));
    assert!(string_of(&e, "message").starts_with("spool: "));
    e
}

#[wasm_bindgen_test]
fn config_errors_are_errors_that_name_the_field() {
    let cases = [
        (r#"{"endpoint":"ftp://collector.test/"}"#, "endpoint"),
        (r#"{"endpoint":"http://collector.test/"}"#, "endpoint"),
        (
            r#"{"endpoint":"http://collector.test/","allowInsecure":"yes"}"#,
            "allowInsecure",
        ),
        (r#"{}"#, "endpoint"),
        (r#"{"endpoint":42}"#, "endpoint"),
        (
            r#"{"endpoint":"https://c.test/","maxBatchEvents":"100"}"#,
            "maxBatchEvents",
        ),
        (
            r#"{"endpoint":"https://c.test/","maxBatchEvents":0}"#,
            "maxBatchEvents",
        ),
        (
            r#"{"endpoint":"https://c.test/","flushIntervalMs":-1}"#,
            "flushIntervalMs",
        ),
        (
            r#"{"endpoint":"https://c.test/","maxAttempts":1.5}"#,
            "maxAttempts",
        ),
        (
            r#"{"endpoint":"https://c.test/","requestTimeoutMs":1e300}"#,
            "requestTimeoutMs",
        ),
        (
            r#"{"endpoint":"https://c.test/","batchMode":"fast"}"#,
            "batchMode",
        ),
        (r#"{"endpoint":"https://c.test/","debug":"yes"}"#, "debug"),
        (
            r#"{"endpoint":"https://c.test/","headers":{"X-Team":7}}"#,
            "headers",
        ),
        (
            r#"{"endpoint":"https://c.test/","headers":{"bad name":"x"}}"#,
            "headers",
        ),
        (
            r#"{"endpoint":"https://c.test/","distinctId":""}"#,
            "distinctId",
        ),
        (r#"{"endpoint":"https://c.test/"}"#, "apiKey"),
        (r#"{"endpoint":"https://c.test/","apiKey":""}"#, "apiKey"),
        (
            r#"{"endpoint":"https://c.test/","apiKey":"phx_personal"}"#,
            "apiKey",
        ),
        (
            r#"{"endpoint":"https://c.test/","apiKey":"phc_é"}"#,
            "apiKey",
        ),
        (
            r#"{"endpoint":"https://c.test/","format":"zipkin"}"#,
            "format",
        ),
    ];
    for (text, field) in cases {
        let e = expect_error(Exporter::new(json(text)), "SpoolConfigError");
        assert_eq!(string_of(&e, "field"), field, "{text}");
        assert!(string_of(&e, "message").contains(field), "{text}");
    }
    // What JSON cannot say: NaN, Infinity, and no object at all.
    for (source, field) in [
        (
            "return { endpoint: 'https://c.test/', maxInFlight: NaN }",
            "maxInFlight",
        ),
        (
            "return { endpoint: 'https://c.test/', maxBackoffMs: Infinity }",
            "maxBackoffMs",
        ),
        ("return 'https://c.test/'", "endpoint"),
        ("return undefined", "endpoint"),
    ] {
        let e = expect_error(Exporter::new(js(source)), "SpoolConfigError");
        assert_eq!(string_of(&e, "field"), field, "{source}");
    }
}

#[wasm_bindgen_test]
fn a_bad_batch_mode_is_refused_naming_the_allowed_ones() {
    let e = expect_error(
        Exporter::new(json(r#"{"endpoint":"https://c.test/","batchMode":"fast"}"#)),
        "SpoolConfigError",
    );
    let message = string_of(&e, "message");
    for mode in ["linger", "auto", "off"] {
        assert!(message.contains(mode), "{message}");
    }
}

#[wasm_bindgen_test]
fn plain_http_needs_allow_insecure_except_to_loopback() {
    for text in [
        r#"{"endpoint":"http://127.0.0.1:9/batch/","apiKey":"phc_test"}"#,
        r#"{"endpoint":"http://localhost:9/batch/","apiKey":"phc_test"}"#,
        r#"{"endpoint":"http://collector.test/batch/","allowInsecure":true,"apiKey":"phc_test"}"#,
    ] {
        let exporter = Exporter::new(json(text)).expect(text);
        drop(exporter);
    }
}

#[wasm_bindgen_test]
fn the_api_key_never_appears_in_a_config_error() {
    let e = expect_error(
        Exporter::new(json(
            r#"{"endpoint":"https://c.test/","apiKey":"phc_secret_key","maxQueueBytes":"phc_secret_key"}"#,
        )),
        "SpoolConfigError",
    );
    assert!(!string_of(&e, "message").contains("phc_secret_key"));
}

#[wasm_bindgen_test]
fn unknown_config_keys_warn_once_and_are_not_fatal() {
    let console = capture_console("warn");
    let made = Exporter::new(config("unknown-keys", r#""flushInterval":5,"retries":3"#));
    let seen = restore_console(&console);
    assert!(made.is_ok());
    assert_eq!(seen.length(), 1);
    let line = seen.get(0).as_string().unwrap();
    assert!(
        line.contains("flushInterval") && line.contains("retries"),
        "{line}"
    );
    // Every documented key is known: none of them warns.
    let console = capture_console("warn");
    let every = r#""allowInsecure":false,"distinctId":"d","batchMode":"linger","flushOnPageHide":true,
        "headers":{},"debug":false,"flushIntervalMs":1000,"maxBatchEvents":100,"maxBatchBytes":60000,
        "maxQueueEvents":10000,"maxQueueBytes":5242880,"maxAttempts":10,"initialBackoffMs":1000,
        "maxBackoffMs":30000,"maxInFlight":4,"requestTimeoutMs":10000"#;
    let made = Exporter::new(config("known-keys", every));
    let seen = restore_console(&console);
    assert!(made.is_ok());
    assert_eq!(seen.length(), 0, "{:?}", seen.get(0).as_string());
}

#[wasm_bindgen_test]
fn bad_captures_throw_named_errors_and_the_exporter_keeps_working() {
    let ex = exporter("bad-captures", "");
    let none = JsValue::UNDEFINED;
    let cases: [(JsValue, JsValue, JsValue, &str, &str); 12] = [
        (
            JsValue::from(5),
            none.clone(),
            none.clone(),
            "SpoolInvalidEvent",
            "string",
        ),
        (
            "".into(),
            none.clone(),
            none.clone(),
            "SpoolInvalidEvent",
            "non-empty",
        ),
        (
            "e".into(),
            js("const a = {}; a.self = a; return a"),
            none.clone(),
            "SpoolInvalidEvent",
            "circular",
        ),
        (
            "e".into(),
            js("return { n: 10n }"),
            none.clone(),
            "SpoolInvalidEvent",
            "BigInt",
        ),
        (
            "e".into(),
            js("return () => 1"),
            none.clone(),
            "SpoolInvalidEvent",
            "function",
        ),
        (
            "e".into(),
            json("[1, 2]"),
            none.clone(),
            "SpoolInvalidEvent",
            "array",
        ),
        (
            "e".into(),
            JsValue::from(3),
            none.clone(),
            "SpoolInvalidEvent",
            "number",
        ),
        (
            "e".into(),
            js("return { toJSON: () => 7 }"),
            none.clone(),
            "SpoolInvalidEvent",
            "JSON object",
        ),
        (
            "e".into(),
            none.clone(),
            json(r#"{"uuid":"not-a-uuid"}"#),
            "SpoolInvalidEvent",
            "uuid",
        ),
        (
            "e".into(),
            none.clone(),
            js("return { timestamp: NaN }"),
            "SpoolInvalidEvent",
            "timestamp",
        ),
        (
            "e".into(),
            none.clone(),
            js("return { timestamp: new Date('nope') }"),
            "SpoolInvalidEvent",
            "timestamp",
        ),
        (
            "e".into(),
            none.clone(),
            json(r#"{"distinctId":7}"#),
            "SpoolInvalidEvent",
            "distinctId",
        ),
    ];
    for (name, properties, options, error, mentions) in cases {
        let e = expect_error(ex.capture(name, properties, options), error);
        let message = string_of(&e, "message");
        assert!(
            message.contains(mentions),
            "{message:?} should mention {mentions:?}"
        );
        let uuid = ex
            .capture("still works".into(), json(r#"{"ok":true}"#), none.clone())
            .expect("a good capture after a bad one");
        assert_eq!(uuid.as_string().map(|u| u.len()), Some(36));
    }
    let stats = ex.stats().unwrap();
    assert_eq!(number_of(&stats, "queued"), 12.0);
    assert_eq!(number_of(&get(&stats, "dropped"), "total"), 0.0);
}

#[wasm_bindgen_test]
fn a_non_string_name_is_a_type_error() {
    let ex = exporter("type-error", "");
    let e = expect_error(
        ex.capture(JsValue::NULL, JsValue::UNDEFINED, JsValue::UNDEFINED),
        "SpoolInvalidEvent",
    );
    assert!(e.is_instance_of::<js_sys::TypeError>());
}

#[wasm_bindgen_test]
async fn properties_are_captured_at_capture_time() {
    let path = "capture-time";
    let ex = exporter(path, "");
    let props = json(r#"{"plan":"pro","nested":{"seats":3}}"#);
    let uuid = ex
        .capture("signup".into(), props.clone(), JsValue::UNDEFINED)
        .unwrap()
        .as_string()
        .unwrap();
    Reflect::set(&props, &"plan".into(), &"free".into()).unwrap();
    Reflect::set(&get(&props, "nested"), &"seats".into(), &JsValue::from(99)).unwrap();
    let report = settle(ex.flush()).await;
    assert_eq!(number_of(&report, "delivered"), 1.0);
    let sent = requests_to(&endpoint(path));
    assert_eq!(sent.length(), 1);
    let event = get(&get(&sent.get(0), "body"), "batch")
        .unchecked_into::<Array>()
        .get(0);
    assert_eq!(string_of(&event, "uuid"), uuid);
    let properties = get(&event, "properties");
    assert_eq!(string_of(&properties, "plan"), "pro");
    assert_eq!(number_of(&get(&properties, "nested"), "seats"), 3.0);
}

#[wasm_bindgen_test]
async fn capture_options_set_distinct_id_timestamp_and_uuid() {
    let path = "capture-options";
    let ex = exporter(path, r#""distinctId":"default-user""#);
    let uuid = "01890a5d-ac96-774b-bcce-b302099a8057";
    let options = js(&format!(
        "return {{ distinctId: 'user-7', timestamp: new Date(1700000000123), uuid: '{uuid}' }}"
    ));
    let got = ex
        .capture("click".into(), JsValue::UNDEFINED, options)
        .unwrap();
    assert_eq!(got.as_string().as_deref(), Some(uuid));
    ex.capture(
        "plain".into(),
        JsValue::UNDEFINED,
        json(r#"{"timestamp":1700000000456.7}"#),
    )
    .unwrap();
    settle(ex.flush()).await;
    let body = get(&requests_to(&endpoint(path)).get(0), "body");
    let batch: Array = get(&body, "batch").unchecked_into();
    let (first, second) = (batch.get(0), batch.get(1));
    assert_eq!(string_of(&first, "distinct_id"), "user-7");
    assert_eq!(string_of(&first, "timestamp"), "2023-11-14T22:13:20.123Z");
    assert_eq!(string_of(&first, "uuid"), uuid);
    assert_eq!(string_of(&second, "distinct_id"), "default-user");
    assert_eq!(string_of(&second, "timestamp"), "2023-11-14T22:13:20.456Z");
    assert_eq!(string_of(&body, "api_key"), "phc_test");
}

#[wasm_bindgen_test]
fn stats_have_the_documented_shape() {
    let ex = exporter("stats-shape", "");
    let stats = ex.stats().unwrap();
    for key in [
        "queued",
        "inFlight",
        "inFlightRequests",
        "requests",
        "delivered",
        "retried",
    ] {
        assert_eq!(number_of(&stats, key), 0.0, "{key}");
    }
    let dropped = get(&stats, "dropped");
    for key in [
        "total",
        "queueFull",
        "tooLarge",
        "rejected",
        "attemptsExhausted",
        "shutdown",
    ] {
        assert_eq!(number_of(&dropped, key), 0.0, "dropped.{key}");
    }
    assert!(get(&stats, "lastError").is_null());
    let text = JSON::stringify(&stats).unwrap().as_string().unwrap();
    assert!(text.contains(r#""lastError":null"#), "{text}");
}

#[wasm_bindgen_test]
async fn flush_with_nothing_queued_resolves_to_zero_delivered_zero_dropped() {
    let ex = exporter("empty-flush", "");
    let report = settle(ex.flush()).await;
    assert_eq!(number_of(&report, "delivered"), 0.0);
    assert_eq!(number_of(&report, "dropped"), 0.0);
    assert_eq!(requests_to(&endpoint("empty-flush")).length(), 0);
}

#[wasm_bindgen_test]
async fn flush_resolves_once_the_events_before_it_are_delivered() {
    let path = "flush-delivers";
    let ex = exporter(path, r#""flushIntervalMs":3600000"#);
    for i in 0..3 {
        ex.capture(
            format!("e{i}").into(),
            JsValue::UNDEFINED,
            JsValue::UNDEFINED,
        )
        .unwrap();
    }
    let report = settle(ex.flush()).await;
    assert_eq!(number_of(&report, "delivered"), 3.0);
    assert_eq!(number_of(&report, "dropped"), 0.0);
    let sent = requests_to(&endpoint(path));
    assert_eq!(sent.length(), 1);
    let init = get(&sent.get(0), "init");
    assert_eq!(string_of(&init, "method"), "POST");
    assert_eq!(
        string_of(&get(&init, "headers"), "content-type"),
        "text/plain;charset=UTF-8"
    );
    // It outlives the page: the browser carries it on if the page goes while it is in flight.
    assert_eq!(get(&init, "keepalive").as_bool(), Some(true));
    let stats = ex.stats().unwrap();
    assert_eq!(number_of(&stats, "delivered"), 3.0);
    assert_eq!(number_of(&stats, "requests"), 1.0);
}

#[wasm_bindgen_test]
async fn user_headers_go_on_ordinary_requests() {
    let path = "user-headers";
    let ex = exporter(
        path,
        r#""headers":{"X-Team":"web","content-type":"application/json"}"#,
    );
    ex.capture("e".into(), JsValue::UNDEFINED, JsValue::UNDEFINED)
        .unwrap();
    settle(ex.flush()).await;
    let init = get(&requests_to(&endpoint(path)).get(0), "init");
    // A custom header would force a preflight, which a request outliving the page cannot
    // finish: with the user's headers an ordinary request goes without keepalive.
    assert!(get(&init, "keepalive").is_undefined());
    let headers = get(&init, "headers");
    assert_eq!(string_of(&headers, "x-team"), "web");
    // The body's own Content-Type, and only it: the user's was left out.
    assert_eq!(
        string_of(&headers, "content-type"),
        "text/plain;charset=UTF-8"
    );
}

#[wasm_bindgen_test]
async fn a_full_queue_drops_without_throwing_and_counts_it() {
    let ex = exporter(
        "queue-full",
        r#""maxQueueEvents":2,"flushIntervalMs":3600000"#,
    );
    let console = capture_console("warn");
    let results: Vec<JsValue> = (0..5)
        .map(|_| {
            ex.capture("e".into(), JsValue::UNDEFINED, JsValue::UNDEFINED)
                .expect("a full queue does not throw")
        })
        .collect();
    // The warning comes with the exporter's next step, a microtask after the captures.
    JsFuture::from(Promise::resolve(&JsValue::UNDEFINED))
        .await
        .unwrap();
    let seen = restore_console(&console);
    assert!(results[..2].iter().all(|r| r.is_string()));
    assert!(results[2..].iter().all(JsValue::is_undefined));
    assert_eq!(seen.length(), 1, "one warning per overflow episode");
    let dropped = get(&ex.stats().unwrap(), "dropped");
    assert_eq!(number_of(&dropped, "queueFull"), 3.0);
}

#[wasm_bindgen_test]
fn an_event_larger_than_a_batch_throws_and_is_counted() {
    let ex = exporter("too-large", r#""maxBatchBytes":512"#);
    let big = json(&format!(r#"{{"blob":"{}"}}"#, "x".repeat(1000)));
    expect_error(
        ex.capture("big".into(), big, JsValue::UNDEFINED),
        "SpoolEventTooLarge",
    );
    let dropped = get(&ex.stats().unwrap(), "dropped");
    assert_eq!(number_of(&dropped, "tooLarge"), 1.0);
    assert!(ex
        .capture("small".into(), JsValue::UNDEFINED, JsValue::UNDEFINED)
        .is_ok());
}

#[wasm_bindgen_test]
async fn shutdown_delivers_then_refuses_captures() {
    let path = "shutdown";
    let ex = exporter(path, r#""flushIntervalMs":3600000"#);
    ex.capture("last".into(), JsValue::UNDEFINED, JsValue::UNDEFINED)
        .unwrap();
    let report = settle(ex.shutdown(json(r#"{"timeoutMs":2000}"#))).await;
    assert_eq!(number_of(&report, "delivered"), 1.0);
    assert_eq!(number_of(&report, "dropped"), 0.0);
    assert_eq!(number_of(&report, "abandoned"), 0.0);
    assert_eq!(requests_to(&endpoint(path)).length(), 1);
    expect_error(
        ex.capture("late".into(), JsValue::UNDEFINED, JsValue::UNDEFINED),
        "SpoolShutDown",
    );
    // A second shutdown resolves to the same report.
    let again = settle(ex.shutdown(JsValue::UNDEFINED)).await;
    assert_eq!(number_of(&again, "delivered"), 1.0);
}

#[wasm_bindgen_test]
async fn shutdown_with_nothing_held_resolves_at_once() {
    let ex = exporter("shutdown-empty", "");
    let report = settle(ex.shutdown(JsValue::UNDEFINED)).await;
    assert_eq!(number_of(&report, "delivered"), 0.0);
    assert_eq!(number_of(&report, "abandoned"), 0.0);
    expect_error(
        ex.capture("late".into(), JsValue::UNDEFINED, JsValue::UNDEFINED),
        "SpoolShutDown",
    );
}

#[wasm_bindgen_test]
async fn a_bad_shutdown_timeout_rejects_with_a_config_error() {
    let ex = exporter("shutdown-bad-timeout", "");
    let rejected = JsFuture::from(ex.shutdown(json(r#"{"timeoutMs":-5}"#))).await;
    let e = expect_error(rejected, "SpoolConfigError");
    assert_eq!(string_of(&e, "field"), "timeoutMs");
    // The exporter was not shut down by the bad call.
    assert!(ex
        .capture("e".into(), JsValue::UNDEFINED, JsValue::UNDEFINED)
        .is_ok());
}

#[wasm_bindgen_test]
async fn debug_logs_requests_but_never_the_api_key() {
    let path = "debug-log";
    install_fake_fetch();
    let ex = Exporter::new(json(&format!(
        r#"{{"endpoint":"{}","apiKey":"phc_very_secret","debug":true}}"#,
        endpoint(path)
    )))
    .unwrap();
    let console = capture_console("debug");
    ex.capture("e".into(), json(r#"{"a":1}"#), JsValue::UNDEFINED)
        .unwrap();
    settle(ex.flush()).await;
    let seen = restore_console(&console);
    let lines: Vec<String> = seen.iter().filter_map(|l| l.as_string()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("spool: POST")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("spool: outcome")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("phc_very_secret")),
        "{lines:?}"
    );
}

#[wasm_bindgen_test]
async fn a_to_json_that_captures_again_does_not_break_the_exporter() {
    let path = "reentrant";
    let ex = std::rc::Rc::new(exporter(path, ""));
    let inner = ex.clone();
    let to_json = Closure::<dyn FnMut() -> JsValue>::new(move || {
        let _ = inner.capture("inner".into(), JsValue::UNDEFINED, JsValue::UNDEFINED);
        json(r#"{"outer":true}"#)
    });
    let props = js_sys::Object::new();
    Reflect::set(&props, &"toJSON".into(), to_json.as_ref()).unwrap();
    ex.capture("outer".into(), props.into(), JsValue::UNDEFINED)
        .expect("outer capture");
    let report = settle(ex.flush()).await;
    assert_eq!(number_of(&report, "delivered"), 2.0);
}

#[wasm_bindgen_test]
fn every_exporter_gets_its_own_distinct_id_unless_configured() {
    let a = exporter("distinct-a", "");
    let b = exporter("distinct-b", "");
    assert_eq!(a.distinct_id().as_string().unwrap().len(), 36);
    assert_ne!(a.distinct_id(), b.distinct_id());
    let c = exporter("distinct-c", r#""distinctId":"user-1""#);
    assert_eq!(c.distinct_id().as_string().unwrap(), "user-1");
}

#[wasm_bindgen_test]
fn hostile_properties_get_a_clear_error_or_are_kept_and_memory_stays_flat() {
    let ex = exporter("hostile", r#""maxQueueEvents":100000"#);
    let none = JsValue::UNDEFINED;
    // Each either throws a named spool error or is captured; none breaks the exporter.
    let cases = [
        ("a Symbol", "return Symbol('s')", Some("SpoolInvalidEvent")),
        ("a Symbol value", "return { s: Symbol('s'), ok: 1 }", None),
        (
            "a throwing toJSON",
            "return { toJSON() { throw new Error('nope') } }",
            Some("SpoolInvalidEvent"),
        ),
        (
            "a Proxy that throws on get",
            "return new Proxy({}, { get() { throw new Error('trap') }, ownKeys() { throw new Error('trap') } })",
            Some("SpoolInvalidEvent"),
        ),
        ("lone surrogates", "return { s: '\\ud800x\\udfff' }", None),
        (
            "a 10 MB string",
            "return { s: 'x'.repeat(10 * 1024 * 1024) }",
            Some("SpoolEventTooLarge"),
        ),
    ];
    for (what, source, error) in cases {
        let result = ex.capture("e".into(), js(source), none.clone());
        match error {
            Some(name) => {
                expect_error(result, name);
            }
            None => assert!(result.is_ok(), "{what} should be captured"),
        }
        ex.capture("still works".into(), json("{}"), none.clone())
            .unwrap_or_else(|_| panic!("a capture after {what}"));
    }
    // 10,000 nested levels: JSON.stringify may refuse (RangeError) or succeed; either way a
    // clear outcome and a working exporter.
    let deep = js("let v = 1; for (let i = 0; i < 10000; i++) v = [v]; return { v }");
    match ex.capture("deep".into(), deep, none.clone()) {
        Ok(uuid) => assert_eq!(uuid.as_string().map(|u| u.len()), Some(36)),
        Err(e) => assert!(string_of(&e, "name").starts_with("Spool"), "{e:?}"),
    }
    assert!(ex
        .capture("after deep".into(), json("{}"), none.clone())
        .is_ok());
    // Refused huge events leave nothing behind: memory grows at most once, then stays.
    let memory = || {
        let buffer = get(&wasm_bindgen::memory(), "buffer");
        number_of(&buffer, "byteLength")
    };
    let huge = js("return { s: 'x'.repeat(10 * 1024 * 1024) }");
    let _ = ex.capture("huge".into(), huge.clone(), none.clone());
    let after_one = memory();
    for _ in 0..5 {
        let _ = ex.capture("huge".into(), huge.clone(), none.clone());
    }
    assert_eq!(memory(), after_one, "memory grew with each refused event");
    let dropped = get(&ex.stats().unwrap(), "dropped");
    assert_eq!(number_of(&dropped, "tooLarge"), 7.0);
}

#[wasm_bindgen_test]
async fn a_burst_sends_nothing_inside_capture_and_auto_mode_cuts_it_into_full_batches() {
    let path = "burst-auto";
    let ex = exporter(path, r#""batchMode":"auto","maxBatchEvents":100"#);
    for i in 0..250 {
        ex.capture(
            "e".into(),
            json(&format!(r#"{{"i":{i}}}"#)),
            JsValue::UNDEFINED,
        )
        .unwrap();
    }
    assert_eq!(
        requests_to(&endpoint(path)).length(),
        0,
        "no request is started inside capture"
    );
    // The exporter's step runs in a microtask once the captures' task yields.
    JsFuture::from(Promise::resolve(&JsValue::UNDEFINED))
        .await
        .unwrap();
    JsFuture::from(ex.flush()).await.unwrap();
    assert_eq!(number_of(&ex.stats().unwrap(), "delivered"), 250.0);
    let sizes: Vec<f64> = requests_to(&endpoint(path))
        .iter()
        .map(|r| {
            get(&get(&r, "body"), "batch")
                .unchecked_into::<Array>()
                .length() as f64
        })
        .collect();
    assert_eq!(
        sizes,
        [100.0, 100.0, 50.0],
        "full batches, not a first event alone"
    );
}

#[wasm_bindgen_test]
fn check_config_throws_what_the_constructor_throws_and_returns_the_window() {
    let e = expect_error(
        Exporter::check_config(config("check", r#""maxAttempts":0"#)),
        "SpoolConfigError",
    );
    assert_eq!(string_of(&e, "field"), "maxAttempts");
    let e = expect_error(Exporter::check_config(json("{}")), "SpoolConfigError");
    assert_eq!(string_of(&e, "field"), "endpoint");
    assert_eq!(Exporter::check_config(config("check", "")).unwrap(), 1000.0);
    let window = Exporter::check_config(config("check", r#""flushIntervalMs":250"#));
    assert_eq!(window.unwrap(), 250.0);
    let auto = Exporter::check_config(config("check", r#""batchMode":"auto""#));
    assert_eq!(auto.unwrap(), 0.0);
}

/// Resolves after `ms` of the page's time.
async fn sleep(ms: u32) {
    let promise: Promise = js(&format!(
        "return new Promise((resolve) => setTimeout(resolve, {ms}))"
    ))
    .unchecked_into();
    settle(promise).await;
}

/// Waits (up to 5 s of the page's time) until `url` has had `n` requests: bodies are gzipped
/// asynchronously, which takes a while on a busy machine.
async fn until_requests(url: &str, n: u32) {
    let mut waited = 0;
    while requests_to(url).length() < n && waited < 5_000 {
        sleep(20).await;
        waited += 20;
    }
}

/// Captures one event and flushes at once, without waiting for the flush.
fn capture_and_flush(ex: &Exporter) {
    ex.capture("e".into(), json("{}"), JsValue::UNDEFINED)
        .unwrap();
    let _ = ex.flush();
}

#[wasm_bindgen_test]
async fn a_retry_after_holds_every_exporter_of_the_endpoint_and_no_other() {
    let held = "answers-429";
    let a = exporter(held, "");
    capture_and_flush(&a);
    until_requests(&endpoint(held), 1).await;
    assert_eq!(
        requests_to(&endpoint(held)).length(),
        1,
        "a's batch, answered 429"
    );
    // A new exporter of the same endpoint has never been answered, but holds too.
    let b = exporter(held, "");
    capture_and_flush(&b);
    // Another endpoint is not held.
    let c = exporter("not-held", "");
    capture_and_flush(&c);
    until_requests(&endpoint("not-held"), 1).await;
    sleep(50).await;
    assert_eq!(
        requests_to(&endpoint(held)).length(),
        1,
        "b sent during a's Retry-After"
    );
    assert_eq!(requests_to(&endpoint("not-held")).length(), 1);
    let none = json(r#"{"timeoutMs":0}"#);
    for ex in [&a, &b] {
        let report = settle(ex.shutdown(none.clone())).await;
        assert_eq!(number_of(&report, "abandoned"), 1.0);
    }
}

#[wasm_bindgen_test]
async fn lone_surrogates_in_the_name_properties_and_id_reach_the_collector_as_replacement_characters(
) {
    let path = "lone-surrogates";
    let ex = exporter(path, "");
    // '😀'.slice(0, 1): what cutting a string by code units leaves.
    let cut = js("return 'x' + '\\ud83d\\ude00'.slice(0, 1)");
    let props = js("return { s: 'x' + '\\ud83d', ['k\\ude00']: 1, ok: '\\ud83d\\ude00' }");
    let options = js("return { distinctId: 'user' + '\\udc00' }");
    ex.capture(cut, props, options).unwrap();
    settle(ex.flush()).await;
    let body = get(&requests_to(&endpoint(path)).get(0), "body");
    let event = Array::from(&get(&body, "batch")).get(0);
    assert_eq!(string_of(&event, "event"), "x\u{fffd}");
    assert_eq!(string_of(&event, "distinct_id"), "user\u{fffd}");
    let properties = get(&event, "properties");
    assert_eq!(string_of(&properties, "s"), "x\u{fffd}");
    assert_eq!(string_of(&properties, "ok"), "\u{1f600}");
    assert_eq!(number_of(&properties, "k\u{fffd}"), 1.0);
}
