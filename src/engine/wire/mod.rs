//! Wire formats: the [`WireFormat`](format::WireFormat) trait and its two bodies (PostHog's
//! batch API in `format`, OTLP/HTTP JSON logs in `otlp`), with what they are written with:
//! JSON (`json`), the repairs PostHog's capture needs (`sanitize`) and timestamps (`time`).
//! Compression is the host's (`page/pack`).

pub(crate) mod format;
pub(crate) mod gzip;
// Public only to the fuzz targets, through `engine::json`.
#[cfg(fuzzing)]
pub mod json;
#[cfg(not(fuzzing))]
pub(crate) mod json;
pub(crate) mod otlp;
pub(crate) mod sanitize;
pub(crate) mod time;
