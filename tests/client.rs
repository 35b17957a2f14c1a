//! The Rust API (`spool::web::Client`) called from Rust, as a Leptos, Yew or workers-rs app
//! would, in headless Chrome (`wasm-pack test --headless --chrome`). `fetch` is replaced by a
//! fake collector that records each request and answers 200. Every test uses its own endpoint
//! path: the tests of this file share one wasm instance and one page.

#![cfg(target_arch = "wasm32")]

use serde::Serialize;
use spool::engine::{CaptureError, Config};
use spool::web::{Client, Error, FlushReport, ShellOptions, ShutdownReport};
use std::collections::BTreeMap;
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export function installFakeFetch() {
  if (globalThis.__spoolClientRequests) return;
  globalThis.__spoolClientRequests = [];
  globalThis.fetch = async (url, init) => {
    const headers = Object.fromEntries(new Headers(init.headers));
    // A gzipped body (compression "gzip", the default) is recorded as its text.
    const body = init.body instanceof Uint8Array
      ? await new Response(new Blob([init.body]).stream().pipeThrough(new DecompressionStream("gzip"))).text()
      : init.body;
    globalThis.__spoolClientRequests.push({ url: String(url), headers, body, gzip: init.body instanceof Uint8Array });
    return new Response("{}", { status: 200 });
  };
}
export function bodiesTo(url) {
  return globalThis.__spoolClientRequests.filter((r) => r.url === url).map((r) => r.body);
}
export function headerTo(url, name) {
  return globalThis.__spoolClientRequests.find((r) => r.url === url)?.headers[name];
}
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = installFakeFetch)]
    fn install_fake_fetch();
    #[wasm_bindgen(js_name = bodiesTo)]
    fn bodies_to(url: &str) -> Vec<String>;
    #[wasm_bindgen(js_name = headerTo)]
    fn header_to(url: &str, name: &str) -> Option<String>;
    fn sleep(ms: u32) -> js_sys::Promise;
}

fn endpoint(path: &str) -> String {
    format!("https://collector.test/{path}/")
}

fn client(path: &str, configure: impl FnOnce(&mut Config)) -> Client {
    install_fake_fetch();
    let mut config = Config::new(endpoint(path));
    config.api_key = "phc_rust".into();
    configure(&mut config);
    Client::new(config).expect("a valid config")
}

async fn pause(ms: u32) {
    wasm_bindgen_futures::JsFuture::from(sleep(ms))
        .await
        .unwrap();
}

#[derive(Serialize)]
struct Signup {
    plan: &'static str,
    seats: u32,
    trial: Option<bool>,
}

#[wasm_bindgen_test]
async fn a_struct_captured_from_rust_is_delivered_with_its_properties() {
    let path = "rust-struct";
    let c = client(path, |_| {});
    let props = Signup {
        plan: "pro",
        seats: 3,
        trial: None,
    };
    let uuid = c.capture("signup", &props).expect("captured");
    let report = c.flush().await.expect("flushed");
    assert_eq!(
        report,
        FlushReport {
            delivered: 1,
            dropped: 0
        }
    );
    let bodies = bodies_to(&endpoint(path));
    assert_eq!(bodies.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let event = &body["batch"][0];
    assert_eq!(event["event"], "signup");
    assert_eq!(event["properties"]["plan"], "pro");
    assert_eq!(event["properties"]["seats"], 3);
    assert!(event["properties"]["trial"].is_null());
    let mut text = String::new();
    uuid.write(&mut text);
    assert_eq!(event["uuid"], text.as_str());
    assert_eq!(body["api_key"], "phc_rust");
    assert_eq!(c.stats().unwrap().delivered, 1);
}

#[wasm_bindgen_test]
async fn properties_that_are_not_a_map_are_refused_and_the_client_keeps_working() {
    let path = "rust-not-a-map";
    let c = client(path, |_| {});
    assert!(matches!(c.capture("e", &42), Err(Error::Properties(_))));
    assert!(matches!(
        c.capture("e", &vec![1, 2]),
        Err(Error::Properties(_))
    ));
    assert!(matches!(
        c.capture("", &BTreeMap::<String, u8>::new()),
        Err(Error::Capture(CaptureError::EmptyName))
    ));
    c.capture("e", &BTreeMap::from([("k", "v")])).unwrap();
    assert_eq!(c.flush().await.unwrap().delivered, 1);
}

#[wasm_bindgen_test]
async fn the_timer_sends_a_lingering_event_without_a_flush() {
    let path = "rust-linger";
    let c = client(path, |config| config.flush_interval_ms = 200);
    c.capture("e", &BTreeMap::<String, u8>::new()).unwrap();
    pause(5).await;
    assert_eq!(bodies_to(&endpoint(path)).len(), 0, "still lingering");
    // The body is gzipped and recorded asynchronously: on a busy machine that takes a while,
    // so wait for it (up to 5 s) instead of guessing how long.
    let mut waited = 0;
    while bodies_to(&endpoint(path)).is_empty() && waited < 5_000 {
        pause(20).await;
        waited += 20;
    }
    assert_eq!(bodies_to(&endpoint(path)).len(), 1, "sent by the timer");
}

#[wasm_bindgen_test]
async fn shutdown_reports_what_it_settled_and_later_captures_are_refused() {
    let path = "rust-shutdown";
    let c = client(path, |config| config.flush_interval_ms = 3_600_000);
    for _ in 0..3 {
        c.capture("e", &BTreeMap::<String, u8>::new()).unwrap();
    }
    let report = c.shutdown(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        report,
        ShutdownReport {
            delivered: 3,
            dropped: 0,
            abandoned: 0
        }
    );
    assert!(matches!(
        c.capture("late", &BTreeMap::<String, u8>::new()),
        Err(Error::Capture(CaptureError::ShutDown))
    ));
    // Again: the same report.
    assert_eq!(c.shutdown(Duration::ZERO).await.unwrap(), report);
}

#[wasm_bindgen_test]
fn a_bad_config_names_the_field() {
    let mut config = Config::new("https://collector.test/rust-bad/");
    config.max_batch_events = 0;
    let e = Client::new(config).expect_err("refused");
    assert_eq!(e.field, "maxBatchEvents");
    let e = Client::new(Config::new("ftp://x/")).expect_err("refused");
    assert_eq!(e.field, "endpoint");
}

#[wasm_bindgen_test]
async fn shell_options_set_headers_for_ordinary_requests() {
    let path = "rust-headers";
    install_fake_fetch();
    let options = ShellOptions {
        headers: vec![("X-Team".to_string(), "rust".to_string())],
        ..ShellOptions::default()
    };
    let mut config = Config::new(endpoint(path));
    config.api_key = "phc_rust".into();
    let c = Client::with_options(config, options).unwrap();
    c.capture("e", &BTreeMap::<String, u8>::new()).unwrap();
    c.flush().await.unwrap();
    assert_eq!(
        header_to(&endpoint(path), "x-team").as_deref(),
        Some("rust")
    );
}
