//! The one description of spool's configuration keys.
//!
//! The config is read through serde: [`engine::Config`](crate::engine::Config) (the engine's
//! keys) and [`ShellOptions`] (the browser shell's) are both `#[derive(Deserialize)]` under
//! their camelCase names, and that derive is what the JavaScript constructor and Rust callers
//! go through. [`KEYS`] adds what serde cannot carry: each key's TypeScript type, its
//! documentation and the README's default and range columns. From it come the unknown-key
//! warning, the message of a wrongly typed value, the `ExporterConfig` interface of
//! `pkg/spool.d.ts`, `EdgeOptions` in `edge.d.ts`, the edge middleware's own option names and
//! the README's tables. `tests/schema.rs` fails when any of them drifts from this table or the
//! table from the serde structs (names, defaults, ranges); `SPOOL_BLESS=1 cargo test --test
//! schema` rewrites the generated text in place.
//!
//! Adding a key: a field on the serde struct that owns it (with its default), then one entry
//! here, then `SPOOL_BLESS=1 cargo test --test schema`.

/// Who reads a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The engine: a field of [`engine::Config`](crate::engine::Config).
    Engine,
    /// The browser shell: a field of [`ShellOptions`].
    Shell,
    /// The edge middleware (`edge.js`), an option of `withTelemetry` besides the exporter's.
    Edge,
}

/// What kind of value a key takes; it words the error for a value of the wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// `true` or `false`.
    Flag,
    /// A finite whole number, 0 or more.
    Whole,
    /// One of the strings in the key's TypeScript type (a serde enum: its error names them).
    OneOf,
    /// An object of strings.
    Strings,
    /// `false` or an array of strings.
    Names,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The camelCase name, as JavaScript and serde spell it.
    pub name: &'static str,
    /// Who reads it.
    pub owner: Owner,
    /// Its kind of value.
    pub kind: Kind,
    /// Its TypeScript type (kept out of the wasm, like the other text below).
    #[cfg(not(target_arch = "wasm32"))]
    pub ts: &'static str,
    /// Whether it must be given (only `endpoint`).
    pub required: bool,
    /// Its default as JSON, as the serde struct serializes it (`""` for an edge key).
    #[cfg(not(target_arch = "wasm32"))]
    pub default_json: &'static str,
    /// Its default as the README says it.
    #[cfg(not(target_arch = "wasm32"))]
    pub default: &'static str,
    /// The README's third column: the allowed range, or what the key does.
    #[cfg(not(target_arch = "wasm32"))]
    pub range: &'static str,
    /// The smallest and largest value the engine accepts, checked against
    /// [`Config::validate`](crate::engine::Config::validate) by `tests/schema.rs`.
    #[cfg(not(target_arch = "wasm32"))]
    pub bounds: Option<(u64, u64)>,
    /// The TypeScript doc comment.
    #[cfg(not(target_arch = "wasm32"))]
    pub doc: &'static str,
}

#[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
const fn key(name: &'static str, owner: Owner, kind: Kind, ts: &'static str) -> Key {
    Key {
        name,
        owner,
        kind,
        #[cfg(not(target_arch = "wasm32"))]
        ts,
        required: false,
        #[cfg(not(target_arch = "wasm32"))]
        default_json: "",
        #[cfg(not(target_arch = "wasm32"))]
        default: "",
        #[cfg(not(target_arch = "wasm32"))]
        range: "",
        #[cfg(not(target_arch = "wasm32"))]
        bounds: None,
        #[cfg(not(target_arch = "wasm32"))]
        doc: "",
    }
}

// On wasm32 the text is dropped as the table is built, so none of it reaches the binary.
#[cfg_attr(target_arch = "wasm32", allow(unused_variables, unused_mut))]
impl Key {
    const fn defaults(mut self, json: &'static str, readme: &'static str) -> Key {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.default_json = json;
            self.default = readme;
        }
        self
    }
    const fn range(mut self, readme: &'static str) -> Key {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.range = readme;
        }
        self
    }
    const fn bounds(mut self, min: u64, max: u64) -> Key {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.bounds = Some((min, max));
        }
        self
    }
    const fn doc(mut self, doc: &'static str) -> Key {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.doc = doc;
        }
        self
    }
    const fn required(mut self) -> Key {
        self.required = true;
        self
    }

    /// "must be ..." for a value of the wrong type; never quotes the value, which could be a
    /// secret put in the wrong field.
    pub fn expected(&self) -> &'static str {
        match self.kind {
            Kind::Text => "must be a string",
            Kind::Flag => "must be true or false",
            Kind::Whole => "must be a number",
            Kind::OneOf => "must be a string",
            Kind::Strings => "must be an object of strings",
            Kind::Names => "must be false or an array of header names",
        }
    }
}

use Kind::*;
use Owner::*;

/// Every key, in the order the types and the README list them. One entry per key.
pub const KEYS: &[Key] = &[
    key("endpoint", Engine, Text, "string").required().defaults("\"\"", "required")
        .range("`https://` URL; `http://` only to `localhost`, `127.x.x.x` or `[::1]`")
        .doc("Where batches are POSTed: PostHog's batch API, e.g. \"https://us.i.posthog.com/batch/\", or with format \"otlp\" an OpenTelemetry Collector's \"https://collector.example:4318/v1/logs\"."),
    key("allowInsecure", Engine, Flag, "boolean").defaults("false", "`false`")
        .range("`true` accepts `http://` to any host (events and the key in clear text)")
        .doc("Accept an http:// endpoint on a host other than localhost, 127.0.0.1 or [::1] (events and the API key then cross the network in clear text). Default false."),
    key("format", Engine, OneOf, "\"posthog\" | \"otlp\"").defaults("\"posthog\"", "`\"posthog\"`")
        .range("`\"posthog\"` (PostHog's batch API), `\"otlp\"` (OTLP/HTTP JSON logs)")
        .doc("\"posthog\" (PostHog's batch API) or \"otlp\" (OTLP/HTTP JSON logs). Default \"posthog\"."),
    key("apiKey", Engine, Text, "string").defaults("\"\"", "required with `\"posthog\"`")
        .range("1 to 64 ASCII characters, not a personal `phx_` key")
        .doc("The PostHog project key (phc_...) written into every batch body; required with the PostHog format (1 to 64 ASCII characters, not a personal phx_ key). Never logged."),
    key("serviceName", Engine, Text, "string").defaults("\"unknown_service\"", "`\"unknown_service\"`")
        .range("non-blank; the OTLP resource's `service.name`")
        .doc("The OTLP resource's service.name. Default \"unknown_service\"."),
    key("distinctId", Engine, Text, "string").defaults("null", "a uuid per exporter")
        .range("non-empty")
        .doc("Who events belong to unless a capture says otherwise. Default: a uuid per exporter."),
    key("batchMode", Engine, OneOf, "\"linger\" | \"auto\" | \"off\"").defaults("\"linger\"", "`\"linger\"`")
        .range("`\"linger\"`, `\"auto\"`, `\"off\"`")
        .doc("\"linger\" (wait up to flushIntervalMs or a full batch), \"auto\" (send at once when idle, accumulate while a request is in flight) or \"off\" (one event per request). Default \"linger\"."),
    key("flushIntervalMs", Engine, Whole, "number").defaults("1000", "1000")
        .range("0 to 3,600,000").bounds(0, 3_600_000)
        .doc("Longest an event waits before its batch is sent (\"linger\" mode). Default 1000, 0 to 3,600,000."),
    key("maxBatchEvents", Engine, Whole, "number").defaults("500", "500")
        .range("1 to 10,000").bounds(1, 10_000)
        .doc("Events per request. Default 500, 1 to 10,000."),
    key("maxBatchBytes", Engine, Whole, "number").defaults("1000000", "1,000,000")
        .range("512 to 16 MiB").bounds(512, 16 << 20)
        .doc("Body bytes per request. Default 1,000,000, 512 to 16 MiB. In a browser that packs batches ahead (gzip), a batch of several events is also cut to what fills one 16 KiB keepalive body once gzipped (learned from the packs), so the page-close path sends a few full bodies."),
    key("maxQueueEvents", Engine, Whole, "number").defaults("10000", "10,000")
        .range("1 to 10,000,000").bounds(1, 10_000_000)
        .doc("Events held at once; more are dropped (counted as queueFull). Default 10,000, 1 to 10,000,000."),
    key("maxQueueBytes", Engine, Whole, "number").defaults("5242880", "5 MiB")
        .range("1 KiB to 1 GiB").bounds(1024, 1 << 30)
        .doc("Bytes of events held at once. Default 5 MiB, 1 KiB to 1 GiB."),
    key("maxAttempts", Engine, Whole, "number").defaults("10", "10")
        .range("1 to 100").bounds(1, 100)
        .doc("Sends of one batch before it is dropped. Default 10, 1 to 100."),
    key("initialBackoffMs", Engine, Whole, "number").defaults("1000", "1000")
        .range("1 to 3,600,000").bounds(1, 3_600_000)
        .doc("Ceiling of the first retry's random delay. Default 1000, 1 to 3,600,000."),
    key("maxBackoffMs", Engine, Whole, "number").defaults("30000", "30,000")
        .range("`initialBackoffMs` to 3,600,000")
        .doc("Ceiling of any retry's random delay. Default 30,000, initialBackoffMs to 3,600,000."),
    key("maxInFlight", Engine, Whole, "number").defaults("4", "4")
        .range("1 to 64").bounds(1, 64)
        .doc("Ordinary requests in flight at once. Default 4, 1 to 64."),
    key("requestTimeoutMs", Engine, Whole, "number").defaults("10000", "10,000")
        .range("100 to 600,000").bounds(100, 600_000)
        .doc("A request unanswered by then is aborted and retried. Default 10,000, 100 to 600,000."),
    key("persistMaxBytes", Engine, Whole, "number").defaults("1048576", "1 MiB")
        .range("1 KiB to 4 MiB").bounds(1024, 4 << 20)
        .doc("The most characters one exporter keeps in localStorage for the next page load (persist): the events raw-deflated (batches packed ahead by the host, the rest in the wasm as the copy is written), a character per byte, about 50 per 300-byte event; the oldest beyond it are left out, counted as dropped persistCap. Default 1 MiB, 1 KiB to 4 MiB."),
    key("compression", Engine, OneOf, "\"gzip\" | \"none\"").defaults("\"gzip\"", "`\"gzip\"`")
        .range("`\"gzip\"`: a batch that waits (full with no free request slot, behind a slow or refusing collector, restored from an earlier load, or the page hidden) is gzipped ahead of time by the host's `CompressionStream`, and those bytes go on every attempt and path; other ordinary bodies are gzipped by `CompressionStream` as they go (plain where there is none); at page hide, what has no pack yet (events captured just before the page goes) is gzipped in the wasm, synchronously, so about ten times the events get through the browser's 64 KiB keepalive budget. PostHog bodies stay `text/plain`, and a gzipped beacon goes as bytes with no `Content-Type` (PostHog recognises gzip by its magic bytes); OTLP bodies say `Content-Encoding: gzip`, so OTLP beacons, which cannot, go plain. `\"none\"`: every body plain.")
        .doc("\"gzip\" (bodies gzipped by the host's CompressionStream, ahead of time for a batch that waits; at page hide what has no pack yet is gzipped in the wasm) or \"none\". Default \"gzip\"."),
    key("flushOnPageHide", Shell, Flag, "boolean").defaults("true", "`true`")
        .range("Ordinary requests go with `keepalive: true` where they fit the browser's 64 KiB keepalive budget (not with `headers`), so one in flight when the page goes is carried on by the browser rather than sent again; one still unanswered when the page is gone is stored for the next load, unless the collector's last answer was a success. Where the page has `fetchLater` (Chromium 135+, secure contexts), what has been held a second stays armed as deferred requests while the collector answers (within its 64 KiB quota), so a navigation, a tab close or a crash delivers it with nothing to run at unload. When a navigation starts (`beforeunload`, listened to only while events are held), on `visibilitychange` to hidden and on `pagehide`, send the rest at once: keepalive requests within the browser's 64 KiB budget (bodies of at most 16 KiB on the wire, gzipped with `compression: \"gzip\"`), then ordinary requests as `maxInFlight` allows; at `pagehide` the ordinary requests without `keepalive` are given up and `sendBeacon` bodies go, one at a time, until the browser refuses one, but only while the collector's last answer was a success (none while it fails, a `Retry-After` holds or the page is offline: a browser accepts a beacon whatever the collector does with it); what is left is stored for the next load (`persist`), and nothing more is sent after `pagehide`. Back to normal batching when visible again (`pageshow` included). Also listens to `online`/`offline`.")
        .doc("Keep what is held armed with fetchLater where the page has it, send the rest with keepalive and sendBeacon when a navigation starts, the page is hidden or it goes away, and follow online/offline. Default true."),
    key("persist", Shell, Flag, "boolean").defaults("true", "`true`")
        .range("In a page, what is still held when the page is hidden or goes away is written to `localStorage`, deflated: batches packed ahead as their lines deflated by the host's `CompressionStream` while they waited, the rest deflated in the wasm (as the page goes, once per batch; while merely hidden, as one part) (at most `persistMaxBytes`, 1 MiB: about 20,000 events of 300 bytes deflated; newest kept; older than 7 days is not sent), and the next exporter of the same endpoint sends it first, with its uuid and capture time (at-least-once: what went as the page left before the collector had ever answered is kept too, and may arrive twice). Events only, never the API key. In a Web Worker nothing is persisted. `false` keeps nothing: no event goes twice, and what the collector refused as the page left is lost (BENCHMARKS.md's figure 7 runs both).")
        .doc("Keep what is held when the page goes away in localStorage, for the next exporter of the same endpoint to send first (deflated, at most persistMaxBytes, 7 days; never the API key). Pages only: a Web Worker persists nothing. Default true."),
    key("headers", Shell, Strings, "Record<string, string>").defaults("{}", "none")
        .range("Extra headers (an object of strings) for ordinary requests. Not sent on keepalive requests: a custom header forces a CORS preflight, which cannot finish while a page unloads; with headers set, ordinary requests do not go keepalive either (so none outlives the page). `Content-Type` is always the body's own (`text/plain;charset=UTF-8`).")
        .doc("Extra headers for ordinary requests (not keepalive ones: they would force a CORS preflight, which cannot finish while a page unloads). Never logged."),
    key("debug", Shell, Flag, "boolean").defaults("false", "`false`")
        .range("Log each request (id, events, bytes, attempt, keepalive) and outcome with `console.debug`; never the body.")
        .doc("Log each request and outcome with console.debug (never the body or the key). Default false."),
    key("endpoint", Edge, Text, "string")
        .doc("The collector's batch URL. Default: the `SPOOL_ENDPOINT` env binding, read per request."),
    key("apiKey", Edge, Text, "string")
        .doc("The project key. Default: the `SPOOL_API_KEY` env binding (or \"\"). Never logged."),
    key("eventName", Edge, Text, "string")
        .doc("The event's name. Default \"http_request\"."),
    key("captureQuery", Edge, Flag, "boolean")
        .doc("Record the query string (as the `query` property). Default false: query strings carry tokens and personal data."),
    key("captureHeaders", Edge, Names, "false | string[]")
        .doc("Request headers to record (as the `headers` property), e.g. [\"user-agent\"]. Default false: none (headers carry cookies and credentials)."),
    key("deadlineMs", Edge, Whole, "number")
        .doc("How long a batch's delivery may run after its batching window before what is left is abandoned (counted and logged). Default 25,000, 100 to 30,000; with the window, at most 30,000 (Cloudflare's limit for `waitUntil` work)."),
    key("subrequestLimit", Edge, Whole, "number")
        .doc("Requests (batches and retries) one window's delivery may make: they are subrequests of the request leading the window, which Cloudflare limits (50 per request on the free plan, 1,000 on paid plans; the handler's own subrequests in that request count too). Events a window cannot send within it go to the next window. Default 50, 1 to 1,000."),
];

/// The key of the exporter's config (engine or shell) named `name`.
pub fn exporter_key(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.owner != Owner::Edge && k.name == name)
}

/// The browser shell's settings, which the engine has no use for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShellOptions {
    /// `flushOnPageHide` (default true): send what is queued with `keepalive` when the page is
    /// hidden or closed.
    pub flush_on_page_hide: bool,
    /// `persist` (default true): in a page, store what is held when the page goes away, for
    /// the next exporter of the endpoint to send.
    pub persist: bool,
    /// `headers`: name and value of each header sent with every ordinary (non-keepalive)
    /// request, given as an object of strings. Default none.
    #[serde(with = "pairs")]
    pub headers: Vec<(String, String)>,
    /// `debug`: log each request and outcome with `console.debug`. Default false.
    pub debug: bool,
}

impl Default for ShellOptions {
    fn default() -> ShellOptions {
        ShellOptions {
            flush_on_page_hide: true,
            persist: true,
            headers: Vec::new(),
            debug: false,
        }
    }
}

/// The `ExporterConfig` TypeScript interface, from [`KEYS`].
#[cfg(not(target_arch = "wasm32"))]
pub fn exporter_config_ts() -> String {
    let mut out =
        String::from("/** Settings for `new Exporter(config)`. Every field but `endpoint` is optional. */\nexport interface ExporterConfig {\n");
    for k in KEYS.iter().filter(|k| k.owner != Owner::Edge) {
        ts_field(&mut out, k);
    }
    out.push('}');
    out
}

/// The `EdgeOptions` TypeScript interface (of `edge.d.ts`), from [`KEYS`].
#[cfg(not(target_arch = "wasm32"))]
pub fn edge_options_ts() -> String {
    let mut out = String::from("export interface EdgeOptions extends Partial<ExporterConfig> {\n");
    for k in KEYS.iter().filter(|k| k.owner == Owner::Edge) {
        ts_field(&mut out, k);
    }
    out.push('}');
    out
}

#[cfg(not(target_arch = "wasm32"))]
fn ts_field(out: &mut String, k: &Key) {
    out.push_str("  /** ");
    out.push_str(k.doc);
    out.push_str(" */\n  ");
    out.push_str(k.name);
    if !k.required {
        out.push('?');
    }
    out.push_str(": ");
    out.push_str(k.ts);
    out.push_str(";\n");
}

/// The README's table of the keys `owner` reads (a header row, then one row per key).
#[cfg(not(target_arch = "wasm32"))]
pub fn readme_table(owner: Owner) -> String {
    let mut out = String::from(if owner == Owner::Engine {
        "| key | default | range |\n|---|---|---|\n"
    } else {
        "| key | default | |\n|---|---|---|\n"
    });
    for k in KEYS.iter().filter(|k| k.owner == owner) {
        out.push_str("| `");
        out.push_str(k.name);
        out.push_str("` | ");
        out.push_str(k.default);
        out.push_str(" | ");
        out.push_str(k.range);
        if !k.range.is_empty() {
            out.push(' ');
        }
        out.push_str("|\n");
    }
    out
}

/// `(name, value)` pairs as serde's map: an object of strings in JavaScript and JSON. A `Vec`
/// rather than a `BTreeMap`, whose code the wasm would carry for a handful of headers.
mod pairs {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (name, value) in pairs {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(pairs)
            }
        }
        d.deserialize_map(Pairs)
    }
}
