//! spool: a small telemetry exporter for web pages and edge workers.
//!
//! spool buffers the events an application captures, stamps each with the time it was
//! captured, and delivers them in batches over `fetch`: when a batch is full, when the linger
//! timer fires, when the page is hidden, on `flush()` and on `shutdown()`. Failed requests are
//! retried with exponential backoff and full jitter, honouring `Retry-After`; every attempt is
//! stamped with its own `sent_at` so the server can correct client clock skew. Every event ends
//! delivered or counted as dropped, with a reason.
//!
//! The crate is a pure policy [`engine`] (no clock, no I/O, builds and tests natively) inside
//! thin WebAssembly shells for browsers and edge workers.
//!
//! # Example
//! ```
//! use spool::engine::{Config, Engine, EventInput, Outcome};
//! let mut config = Config::new("https://collector.example/batch/");
//! config.api_key = "phc_project_key".into();
//! let mut engine = Engine::new(config, 7).unwrap();
//! let now = 1_700_000_000_000;
//! engine.capture(EventInput::new("page_view"), now).unwrap();
//! engine.flush(now);
//! let request = engine.poll_transmit(now).expect("a flush sends at once");
//! engine.handle_outcome(request.id, Outcome::status(200), now + 30);
//! assert_eq!(engine.stats().delivered, 1);
//! ```

#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

pub mod engine;
pub mod schema;

#[cfg(target_arch = "wasm32")]
pub mod web;
