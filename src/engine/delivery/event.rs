//! What the caller captures: the event, its uuid, and why a capture can be refused.

use crate::engine::delivery::rng::Rng;
use crate::engine::wire::json::{write_u64, JsonError};
use crate::engine::wire::time::MAX_TIMESTAMP_MS;

/// One event as the caller hands it to [`Engine::capture`](crate::engine::Engine::capture).
///
/// Properties are JSON text (in the browser, what `JSON.stringify` made of the caller's object
/// at the moment of capture), so later changes to the caller's object change nothing.
///
/// # Example
/// ```
/// use spool::engine::EventInput;
/// let event = EventInput::new("signup")
///     .properties(r#"{"plan":"pro"}"#)
///     .distinct_id("user-7")
///     .timestamp_ms(1_700_000_000_000);
/// assert_eq!(event.name, "signup");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInput<'a> {
    /// The event's name, e.g. `"signup"`. Must not be empty.
    pub name: &'a str,
    /// A JSON object, or `None` for no properties.
    pub properties: Option<&'a str>,
    /// Who did it; `None` uses the exporter's distinct id.
    pub distinct_id: Option<&'a str>,
    /// When it happened, in ms since the epoch; `None` uses the capture time.
    pub timestamp_ms: Option<u64>,
    /// The event's uuid; `None` mints a UUIDv7. A caller-supplied uuid is kept, so an event
    /// captured twice with one uuid is deduplicated by the server.
    pub uuid: Option<&'a str>,
}

impl<'a> EventInput<'a> {
    /// An event with only a name.
    pub fn new(name: &'a str) -> EventInput<'a> {
        EventInput {
            name,
            properties: None,
            distinct_id: None,
            timestamp_ms: None,
            uuid: None,
        }
    }

    /// Sets the properties (a JSON object).
    pub fn properties(mut self, json: &'a str) -> Self {
        self.properties = Some(json);
        self
    }

    /// Sets the distinct id.
    pub fn distinct_id(mut self, id: &'a str) -> Self {
        self.distinct_id = Some(id);
        self
    }

    /// Sets the capture timestamp (ms since the epoch).
    pub fn timestamp_ms(mut self, ms: u64) -> Self {
        self.timestamp_ms = Some(ms);
        self
    }

    /// Sets the uuid (canonical 8-4-4-4-12 hex form).
    pub fn uuid(mut self, uuid: &'a str) -> Self {
        self.uuid = Some(uuid);
        self
    }
}

/// A 128-bit UUID, as minted by the engine (version 7) or supplied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub u128);

impl Uuid {
    /// A UUIDv7 (RFC 9562): 48 bits of `ms` since the epoch, then 74 random bits. Time-ordered,
    /// so a server's index stays append-mostly; random enough that two exporters never clash.
    pub fn new_v7(ms: u64, rng: &mut Rng) -> Uuid {
        let rand = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
        let time = ((ms & 0xffff_ffff_ffff) as u128) << 80;
        let version = 0x7u128 << 76;
        let variant = 0b10u128 << 62;
        let rand_a = rand & (0xfffu128 << 64);
        let rand_b = rand & ((1u128 << 62) - 1);
        Uuid(time | version | rand_a | variant | rand_b)
    }

    /// Parses the canonical text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    pub fn parse(text: &str) -> Option<Uuid> {
        let b = text.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut v: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let d = (c as char).to_digit(16)?;
            v = (v << 4) | d as u128;
        }
        Some(Uuid(v))
    }

    /// Appends the canonical lowercase text form.
    pub fn write(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in 0..32 {
            if matches!(i, 8 | 12 | 16 | 20) {
                out.push('-');
            }
            out.push(HEX[((self.0 >> (124 - 4 * i)) & 0xf) as usize] as char);
        }
    }
}

impl core::fmt::Display for Uuid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = String::with_capacity(36);
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// Why [`Engine::capture`](crate::engine::Engine::capture) refused an event.
///
/// `TooLarge` and `QueueFull` are also counted in the stats as dropped events; the others are
/// caller mistakes that never became events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureError {
    /// The event name was empty.
    EmptyName,
    /// The distinct id was empty or only whitespace, which PostHog's capture refuses.
    BlankDistinctId,
    /// The properties nested deeper than the collector's parser takes.
    TooDeep {
        /// How deep they nest (the properties object is level 1).
        depth: usize,
        /// The most the wire format allows.
        max: usize,
    },
    /// The properties were not one JSON object.
    InvalidProperties(JsonError),
    /// The uuid was not in the canonical 8-4-4-4-12 hex form.
    InvalidUuid,
    /// The timestamp was beyond year 9999.
    InvalidTimestamp(u64),
    /// The event alone would make a body larger than `maxBatchBytes`.
    TooLarge {
        /// The body size this event needs on its own.
        bytes: usize,
        /// The configured `maxBatchBytes`.
        max: usize,
    },
    /// The queue held `maxQueueEvents` events or `maxQueueBytes` bytes.
    QueueFull,
    /// `shutdown` was called; the exporter takes no more events.
    ShutDown,
}

impl CaptureError {
    /// What went wrong, in words for the developer who called `capture`. Built without the
    /// formatting machinery, which would add kilobytes to the wasm.
    pub fn message(&self) -> String {
        let mut m = String::new();
        match self {
            CaptureError::EmptyName => m.push_str("event name must be a non-empty string"),
            CaptureError::BlankDistinctId => {
                m.push_str("distinct id must not be empty or only whitespace")
            }
            CaptureError::TooDeep { depth, max } => {
                m.push_str("event properties nest ");
                write_u64(&mut m, *depth as u64);
                m.push_str(" levels deep; the collector's parser takes at most ");
                write_u64(&mut m, *max as u64);
            }
            CaptureError::InvalidProperties(e) => {
                m.push_str("event properties must be a JSON object: ");
                m.push_str(&e.message());
            }
            CaptureError::InvalidUuid => {
                m.push_str("uuid must look like 01890a5d-ac96-774b-bcce-b302099a8057")
            }
            CaptureError::InvalidTimestamp(ms) => {
                m.push_str("timestamp must be ms since 1970 up to ");
                write_u64(&mut m, MAX_TIMESTAMP_MS);
                m.push_str(" (year 9999), got ");
                write_u64(&mut m, *ms);
            }
            CaptureError::TooLarge { bytes, max } => {
                m.push_str("event is too large: it needs ");
                write_u64(&mut m, *bytes as u64);
                m.push_str(" bytes but maxBatchBytes is ");
                write_u64(&mut m, *max as u64);
                m.push_str("; the event was dropped");
            }
            CaptureError::QueueFull => m.push_str(
                "queue is full (maxQueueEvents or maxQueueBytes reached); the event was dropped",
            ),
            CaptureError::ShutDown => {
                m.push_str("exporter is shut down; the event was not captured")
            }
        }
        m
    }
}

impl core::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for CaptureError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_uuids_are_version_7_with_the_capture_time_in_front() {
        let mut rng = Rng::new(1);
        let ms = 1_700_000_000_123u64;
        let u = Uuid::new_v7(ms, &mut rng);
        let text = u.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7", "version nibble in {text}");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "variant in {text}"
        );
        assert_eq!((u.0 >> 80) as u64, ms);
        assert_ne!(Uuid::new_v7(ms, &mut rng), u);
    }

    #[test]
    fn uuids_round_trip_through_text_in_either_case() {
        let text = "01890a5d-ac96-774b-bcce-b302099a8057";
        let u = Uuid::parse(text).expect("valid");
        assert_eq!(u.to_string(), text);
        assert_eq!(Uuid::parse(&text.to_uppercase()), Some(u));
    }

    #[test]
    fn malformed_uuids_are_refused() {
        for bad in [
            "",
            "01890a5d-ac96-774b-bcce-b302099a805",
            "01890a5dac96774bbccеb302099a8057000",
            "01890a5d-ac96-774b-bcce-b302099a805g",
            "01890a5d+ac96-774b-bcce-b302099a8057",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }
}
