//! The exporter's settings, their defaults in one place, and their validation.

use crate::engine::page::persist::PERSIST_MAX_BYTES;
use crate::engine::wire::json::write_u64;

/// `compression`: how request bodies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (the default): the engine gzips page-hide bodies itself ([`Transmit::gzipped`](crate::engine::Transmit::gzipped)
    /// (crate::engine::Transmit::gzipped)); the shell gzips ordinary bodies with the host's
    /// `CompressionStream` where there is one.
    #[default]
    Gzip,
    /// Every body plain.
    None,
}

/// How events are grouped into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchMode {
    /// Wait up to `flush_interval_ms` after the oldest queued event, or until a batch is full.
    #[default]
    Linger,
    /// Nagle-style: send at once when nothing is in flight; while requests are in flight,
    /// accumulate (up to a full batch).
    Auto,
    /// One event per request, sent at once.
    Off,
}

impl BatchMode {
    /// Parses the JS spelling: `"linger"`, `"auto"` or `"off"`.
    pub fn parse(text: &str) -> Result<BatchMode, ConfigError> {
        match text {
            "linger" => Ok(BatchMode::Linger),
            "auto" => Ok(BatchMode::Auto),
            "off" => Ok(BatchMode::Off),
            other => Err(ConfigError::new(
                "batchMode",
                quoted("must be \"linger\", \"auto\" or \"off\" (got ", other, ")"),
            )),
        }
    }
}

/// Which collector API the bodies speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PostHog's batch API (`POST /batch/`): `{"api_key","batch":[…],"sent_at"}`.
    #[default]
    PostHog,
    /// OTLP/HTTP JSON logs (`POST /v1/logs`): an `ExportLogsServiceRequest`, one `LogRecord`
    /// per event, for any OpenTelemetry backend.
    Otlp,
}

impl Format {
    /// Parses the JS spelling: `"posthog"` or `"otlp"`.
    pub fn parse(text: &str) -> Result<Format, ConfigError> {
        match text {
            "posthog" => Ok(Format::PostHog),
            "otlp" => Ok(Format::Otlp),
            other => Err(ConfigError::new(
                "format",
                quoted("must be \"posthog\" or \"otlp\" (got ", other, ")"),
            )),
        }
    }
}

/// The longest project key PostHog's capture takes (its `token.rs`, `validate_token`): a
/// longer one gets 401 for every batch.
pub const MAX_API_KEY_LEN: usize = 64;

/// `service.name` when `serviceName` is not set: the OpenTelemetry resource semantic
/// conventions' value for an unnamed service.
pub const DEFAULT_SERVICE_NAME: &str = "unknown_service";

/// Everything the engine needs to know, with the defaults of [`Config::new`].
///
/// Field docs give the JS name (camelCase), the default and the allowed range; [`Config::validate`]
/// enforces the ranges. It is serde-derived under those camelCase names, every field but
/// `endpoint` optional: the JavaScript config object is read through it, and
/// [`crate::schema`] describes each key for the TypeScript types and the README.
///
/// # Example
/// ```
/// use spool::engine::{BatchMode, Config};
/// let mut config = Config::new("https://collector.example/batch/");
/// config.api_key = "phc_project_key".into();
/// config.batch_mode = BatchMode::Auto;
/// config.max_in_flight = 0;
/// let error = config.validate().unwrap_err();
/// assert!(error.to_string().contains("maxInFlight"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// `endpoint`: where batches are POSTed. Required. `https://`, or `http://` to a loopback
    /// host (`localhost`, `127.x.x.x`, `[::1]`) unless `allow_insecure` is set.
    pub endpoint: String,
    /// `allowInsecure`: accept an `http://` endpoint on any host. Default false: events and
    /// the API key would cross the network in clear text.
    pub allow_insecure: bool,
    /// `format`: the collector API, [`Format::PostHog`] (JS `"posthog"`, the default) or
    /// [`Format::Otlp`] (JS `"otlp"`).
    pub format: Format,
    /// `apiKey`: the project key written into every PostHog body. Required with the PostHog
    /// format, in the shape PostHog's capture accepts (1 to 64 ASCII characters, not a
    /// personal `phx_` key): any other key gets 401 for every batch. Unused with OTLP.
    pub api_key: String,
    /// `serviceName`: the OTLP resource's `service.name`. Default `"unknown_service"`.
    /// Unused with PostHog.
    pub service_name: String,
    /// `distinctId`: who events belong to unless a capture says otherwise. Default: a uuid
    /// minted per exporter.
    pub distinct_id: Option<String>,
    /// `batchMode`: default [`BatchMode::Linger`].
    pub batch_mode: BatchMode,
    /// `flushIntervalMs`: longest an event lingers before its batch is sent. Default 1000,
    /// 0 to 3,600,000.
    pub flush_interval_ms: u64,
    /// `maxBatchEvents`: events per request. Default 500, 1 to 10,000.
    pub max_batch_events: usize,
    /// `maxBatchBytes`: body bytes per request, and the largest event taken in. Default
    /// 1,000,000, 512 to 16 MiB. On a page that packs batches ahead, a batch of several events
    /// is also cut to fill one keepalive body once gzipped (`Env::batch_limit`).
    pub max_batch_bytes: usize,
    /// `maxQueueEvents`: events held at once (queued, waiting to retry, or in flight).
    /// Default 10,000, 1 to 10,000,000.
    pub max_queue_events: usize,
    /// `maxQueueBytes`: bytes of events held at once. Default 5 MiB, 1 KiB to 1 GiB.
    pub max_queue_bytes: usize,
    /// `maxAttempts`: sends of one batch before it is dropped. Default 10, 1 to 100.
    pub max_attempts: u32,
    /// `initialBackoffMs`: ceiling of the first retry's random delay. Default 1000, 1 to 3,600,000.
    pub initial_backoff_ms: u64,
    /// `maxBackoffMs`: ceiling of any retry's random delay. Default 30,000, at least
    /// `initialBackoffMs`, at most 3,600,000.
    pub max_backoff_ms: u64,
    /// `maxInFlight`: ordinary requests at once. Default 4, 1 to 64.
    pub max_in_flight: usize,
    /// `requestTimeoutMs`: a request not answered by then is abandoned and retried.
    /// Default 10,000, 100 to 600,000.
    pub request_timeout_ms: u64,
    /// `persistMaxBytes`: the most characters one exporter stores for the next page load (the
    /// events deflated, one character per byte); the oldest events beyond it are left out
    /// (counted as dropped `persistCap`). Default 1 MiB, 1 KiB to 4 MiB (browsers hold about
    /// 4.5 Mi characters per origin).
    pub persist_max_bytes: usize,
    /// `compression`: [`Compression::Gzip`] (JS `"gzip"`, the default) or
    /// [`Compression::None`] (`"none"`).
    pub compression: Compression,
}

impl Default for Config {
    /// The defaults with no endpoint yet ([`Config::validate`] refuses an empty one).
    fn default() -> Config {
        Config::new("")
    }
}

impl Config {
    /// The defaults, sending to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Config {
        Config {
            endpoint: endpoint.into(),
            allow_insecure: false,
            format: Format::PostHog,
            api_key: String::new(),
            service_name: String::from(DEFAULT_SERVICE_NAME),
            distinct_id: None,
            batch_mode: BatchMode::Linger,
            flush_interval_ms: 1000,
            max_batch_events: 500,
            max_batch_bytes: 1_000_000,
            max_queue_events: 10_000,
            max_queue_bytes: 5 * 1024 * 1024,
            max_attempts: 10,
            initial_backoff_ms: 1000,
            max_backoff_ms: 30_000,
            max_in_flight: 4,
            request_timeout_ms: 10_000,
            persist_max_bytes: PERSIST_MAX_BYTES,
            compression: Compression::Gzip,
        }
    }

    /// Whether `origin` (a page's `location.origin`: `https://example.com`,
    /// `http://127.0.0.1:8080`) is the endpoint's own: the same scheme, host and port, as
    /// written.
    pub fn same_origin(&self, origin: &str) -> bool {
        // A valid endpoint starts `http://` or `https://`: its origin is what comes before the
        // path, query or fragment.
        let (e, o) = (self.endpoint.as_bytes(), origin.as_bytes());
        !o.is_empty()
            && e.get(..o.len()).is_some_and(|p| p.eq_ignore_ascii_case(o))
            && matches!(e.get(o.len()), None | Some(b'/' | b'?' | b'#'))
    }

    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_endpoint(&self.endpoint, self.allow_insecure)?;
        range("flushIntervalMs", self.flush_interval_ms, 0, 3_600_000)?;
        range("maxBatchEvents", self.max_batch_events as u64, 1, 10_000)?;
        range("maxBatchBytes", self.max_batch_bytes as u64, 512, 16 << 20)?;
        range(
            "maxQueueEvents",
            self.max_queue_events as u64,
            1,
            10_000_000,
        )?;
        range("maxQueueBytes", self.max_queue_bytes as u64, 1024, 1 << 30)?;
        range("maxAttempts", self.max_attempts.into(), 1, 100)?;
        range("initialBackoffMs", self.initial_backoff_ms, 1, 3_600_000)?;
        range(
            "maxBackoffMs",
            self.max_backoff_ms,
            self.initial_backoff_ms,
            3_600_000,
        )?;
        range("maxInFlight", self.max_in_flight as u64, 1, 64)?;
        range("requestTimeoutMs", self.request_timeout_ms, 100, 600_000)?;
        range(
            "persistMaxBytes",
            self.persist_max_bytes as u64,
            1024,
            4 << 20,
        )?;
        if let Some(id) = &self.distinct_id {
            // PostHog's capture refuses a blank distinct id: every event would be refused.
            if id.trim().is_empty() {
                return Err(ConfigError::new(
                    "distinctId",
                    "must not be empty or only whitespace".into(),
                ));
            }
        }
        if self.format == Format::PostHog {
            validate_api_key(&self.api_key)?;
        }
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::new("serviceName", "must not be empty".into()));
        }
        Ok(())
    }
}

/// A setting out of range, naming the field as JS spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The camelCase field name, e.g. `"maxBatchEvents"`.
    pub field: &'static str,
    /// What is allowed and what was given.
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: &'static str, message: String) -> ConfigError {
        ConfigError { field, message }
    }
}

impl ConfigError {
    /// "invalid config: {field} {message}", built without the formatting machinery.
    pub fn full_message(&self) -> String {
        let mut m = String::from("invalid config: ");
        m.push_str(self.field);
        m.push(' ');
        m.push_str(&self.message);
        m
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.full_message())
    }
}

impl std::error::Error for ConfigError {}

/// `before"value"after`.
fn quoted(before: &str, value: &str, after: &str) -> String {
    let mut m = String::with_capacity(before.len() + value.len() + after.len() + 2);
    m.push_str(before);
    m.push('"');
    m.push_str(value);
    m.push('"');
    m.push_str(after);
    m
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(field, {
            let mut m = String::from("must be from ");
            write_u64(&mut m, min);
            m.push_str(" to ");
            write_u64(&mut m, max);
            m.push_str(" (got ");
            write_u64(&mut m, value);
            m.push(')');
            m
        }))
    }
}

/// PostHog capture's token rules (`rust/capture/src/token.rs`): non-empty, at most 64 bytes,
/// ASCII, and not a personal API key (`phx_`).
fn validate_api_key(key: &str) -> Result<(), ConfigError> {
    let why = if key.is_empty() {
        "is required with the PostHog format: the project key (phc_...) from the project's settings"
    } else if key.len() > MAX_API_KEY_LEN {
        "must be at most 64 characters, as PostHog's project keys are"
    } else if !key.is_ascii() {
        "must be ASCII, as PostHog's project keys are"
    } else if key.starts_with("phx_") {
        "is a personal API key (phx_...): use the project key (phc_...), which PostHog's capture takes"
    } else {
        return Ok(());
    };
    Err(ConfigError::new("apiKey", why.into()))
}

/// Accepts `https://host...`, and `http://host...` for a loopback host or with
/// `allow_insecure`; the host non-empty, no whitespace.
fn validate_endpoint(endpoint: &str, allow_insecure: bool) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(ConfigError::new("endpoint", {
            let mut m = String::from("must be an http(s) URL, ");
            m.push_str(why);
            quoted(&m, endpoint, ")")
        }))
    };
    let (rest, secure) = if let Some(r) = endpoint.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        (r, false)
    } else {
        return bad("starting with http:// or https://");
    };
    // Byte searches here and in `is_loopback`: every delimiter is ASCII, and core's string
    // patterns would add their own code to the wasm.
    let host = before(rest, |b| matches!(b, b'/' | b'?' | b'#'));
    if host.is_empty() || host.as_bytes()[0] == b':' || host.bytes().any(|b| b == b'@') {
        return bad("with a host name");
    }
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("without spaces");
    }
    if !secure && !allow_insecure && !is_loopback(host) {
        return Err(ConfigError::new(
            "endpoint",
            "must use https:// (http:// only for localhost, 127.0.0.1 or [::1], \
             or with allowInsecure: true)"
                .into(),
        ));
    }
    Ok(())
}

/// Whether `host` (with an optional `:port`) names this machine.
fn is_loopback(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix("[") {
        return before(v6, |b| b == b']') == "::1";
    }
    let name = before(host, |b| b == b':');
    // 127.x.x.x: four octets, counted rather than collected (less wasm).
    let mut octets = 0;
    let mut ipv4 = true;
    for octet in name.as_bytes().split(|&b| b == b'.') {
        ipv4 &= is_u8(octet) && (octets > 0 || octet == b"127");
        octets += 1;
    }
    name.eq_ignore_ascii_case("localhost") || (octets == 4 && ipv4)
}

/// `text` up to the first byte that is `end`, or all of it.
fn before(text: &str, end: impl Fn(u8) -> bool) -> &str {
    // `end` matches ASCII bytes only, so the cut is at a character boundary.
    let at = text.bytes().position(end).unwrap_or(text.len());
    text.get(..at).unwrap_or(text)
}

/// Whether `text` reads as a `u8` as `str::parse` reads one: decimal digits after an optional
/// `+`, at most 255.
fn is_u8(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    !digits.is_empty()
        && digits
            .iter()
            .try_fold(0u32, |n, &b| {
                let n = n * 10 + u32::from(b.wrapping_sub(b'0'));
                (b.is_ascii_digit() && n <= 255).then_some(n)
            })
            .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Config::new` with a project key, which the PostHog format requires.
    fn keyed(endpoint: &str) -> Config {
        let mut c = Config::new(endpoint);
        c.api_key = "phc_test".into();
        c
    }

    #[test]
    fn defaults_with_a_key_are_valid() {
        assert_eq!(keyed("https://collector.example/batch/").validate(), Ok(()));
    }

    #[test]
    fn a_missing_or_ill_shaped_posthog_key_names_api_key() {
        for bad in ["", &"k".repeat(65), "phc_é", "phx_personal"] {
            let mut c = keyed("https://c.example/");
            c.api_key = bad.into();
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, "apiKey", "{bad:?}");
        }
        let mut c = keyed("https://c.example/");
        c.api_key = "k".repeat(64);
        assert_eq!(c.validate(), Ok(()));
        // OTLP has no key.
        let mut c = Config::new("https://c.example/v1/logs");
        c.format = Format::Otlp;
        assert_eq!(c.validate(), Ok(()));
        c.service_name = " ".into();
        assert_eq!(c.validate().unwrap_err().field, "serviceName");
        let mut c = keyed("https://c.example/");
        c.distinct_id = Some(" \t".into());
        assert_eq!(c.validate().unwrap_err().field, "distinctId");
    }

    #[test]
    fn formats_parse_from_their_js_names() {
        assert_eq!(Format::parse("posthog"), Ok(Format::PostHog));
        assert_eq!(Format::parse("otlp"), Ok(Format::Otlp));
        assert_eq!(Format::parse("OTLP").unwrap_err().field, "format");
    }

    #[test]
    fn an_out_of_range_field_is_named_with_its_range_and_value() {
        let mut c = keyed("https://c.example/");
        c.max_batch_events = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "maxBatchEvents");
        assert_eq!(
            e.to_string(),
            "invalid config: maxBatchEvents must be from 1 to 10000 (got 0)"
        );
        let mut c = keyed("https://c.example/");
        c.max_backoff_ms = 10;
        assert_eq!(c.validate().unwrap_err().field, "maxBackoffMs");
    }

    #[test]
    fn same_origin_is_scheme_host_and_port() {
        let c = Config::new("http://127.0.0.1:8080/batch/?x=1");
        assert!(c.same_origin("http://127.0.0.1:8080"));
        assert!(!c.same_origin("http://127.0.0.1:8081"));
        assert!(!c.same_origin("https://127.0.0.1:8080"));
        assert!(!c.same_origin("http://127.0.0.1"));
        assert!(Config::new("https://Example.com").same_origin("https://example.com"));
        assert!(!Config::new("https://example.com.evil/").same_origin("https://example.com"));
        assert!(!Config::new("").same_origin(""));
    }

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        for ok in [
            "http://127.0.0.1:8080/batch/",
            "https://eu.i.posthog.com/batch/",
            "http://localhost",
        ] {
            assert_eq!(keyed(ok).validate(), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "collector/batch",
            "ftp://x/",
            "https://",
            "https:///path",
            "http://a b/",
            "javascript:alert(1)",
        ] {
            let e = keyed(bad).validate().unwrap_err();
            assert_eq!(e.field, "endpoint", "{bad}");
        }
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback_or_when_allowed() {
        for ok in [
            "http://localhost:8080/b",
            "http://127.0.0.1/",
            "http://127.1.2.3:9/",
            "http://[::1]:80/",
        ] {
            assert_eq!(keyed(ok).validate(), Ok(()), "{ok}");
        }
        for bad in [
            "http://collector.example/batch/",
            "http://127.0.0.1.evil.example/",
            "http://10.0.0.1/",
            "http://localhost.example/",
        ] {
            let e = keyed(bad).validate().unwrap_err();
            assert!(e.message.contains("must use https://"), "{bad}: {e}");
        }
        let mut c = keyed("http://collector.example/batch/");
        c.allow_insecure = true;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn batch_modes_parse_from_their_js_names() {
        assert_eq!(BatchMode::parse("auto"), Ok(BatchMode::Auto));
        assert_eq!(BatchMode::parse("linger"), Ok(BatchMode::Linger));
        assert_eq!(BatchMode::parse("off"), Ok(BatchMode::Off));
        assert_eq!(BatchMode::parse("fast").unwrap_err().field, "batchMode");
    }
}
