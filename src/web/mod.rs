//! The browser shell: the `Exporter` JavaScript class and the Rust [`Client`] it is a thin
//! layer over, around the [`engine`](crate::engine).
//!
//! Every input (a capture, a flush, a shutdown, the timer firing, a response arriving, the page
//! being hidden) goes to the engine; then the shell sends what the engine wants sent, acts on
//! its notices and arms its one timer. It decides nothing about *when* or *whether* to send:
//! that is the engine's. It is built on wasm-bindgen, js-sys, web-sys (`fetch`, `Headers`,
//! `AbortController`, `sendBeacon`, page listeners), gloo-timers (the one timer) and
//! serde-wasm-bindgen (the config in, the reports and stats out). It reaches its host only
//! through the global scope, so it runs in a page, a Web Worker and an edge runtime alike;
//! page lifecycle listeners are added only where a `document` exists.
//!
//! ```js
//! import init, { Exporter } from "spool";
//! await init();
//! const exporter = new Exporter({ endpoint: "https://collector.example/batch/", apiKey: "phc_..." });
//! exporter.capture("signup", { plan: "pro" });
//! await exporter.flush();
//! ```

#[cfg(all(feature = "allocator", not(target_feature = "atomics")))]
mod allocator;
// The JavaScript class, the reading of its config, its TypeScript types and host.js: a Rust app
// that turns the feature `js` off ships none of them in its bindings. What only they call in
// the modules shared with the Rust `Client` is then unused, and left unused.
#[cfg_attr(not(feature = "js"), allow(dead_code))]
mod capture;
#[cfg_attr(not(feature = "js"), allow(dead_code))]
mod client;
#[cfg(feature = "js")]
mod config;
mod copy;
#[cfg(feature = "edge")]
mod edge;
#[cfg_attr(not(feature = "js"), allow(dead_code))]
mod error;
#[cfg(feature = "js")]
mod exporter;
#[cfg_attr(not(feature = "js"), allow(dead_code))]
mod host;
mod lifecycle;
#[cfg_attr(not(feature = "js"), allow(dead_code))]
mod report;
mod shell;
mod storage;
mod transport;
#[cfg(feature = "js")]
mod typescript;

pub use crate::schema::ShellOptions;
pub use client::{Client, Error};
#[cfg(feature = "edge")]
pub use edge::EdgeCoalescer;
#[cfg(feature = "js")]
pub use exporter::Exporter;
pub use report::{FlushReport, ShutdownReport};
