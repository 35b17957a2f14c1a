//! Wire formats: how events become request bodies.
//!
//! An event is encoded once, at capture, into a JSON fragment; a body is those fragments joined
//! inside an envelope that carries `sent_at`. Re-stamping `sent_at` for a retry is therefore a
//! concatenation, never a re-serialization. A body the browser sends later, at a time nobody
//! knows (a deferred request), carries no `sent_at`: the collector takes the events' own
//! timestamps rather than shift them by a stamp made too early.

use crate::engine::delivery::event::Uuid;
use crate::engine::delivery::retry::{Outcome, Verdict};
use crate::engine::wire::json;
use crate::engine::wire::otlp::OtlpLogs;
use crate::engine::wire::sanitize::SERDE_JSON_MAX_NESTING;
use crate::engine::wire::time::{write_iso8601, ISO8601_LEN};
use crate::engine::{Config, Format};

/// How deep properties may nest in a PostHog body (the properties object is level 1): the
/// whole request must stay within serde_json's limit, and the envelope (the body, `batch`, the
/// event) takes 3 of its 127 levels.
pub const POSTHOG_MAX_PROPERTIES_DEPTH: usize = SERDE_JSON_MAX_NESTING - 3;

/// One event's fields, ready to encode.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    /// Event name.
    pub name: &'a str,
    /// Distinct id.
    pub distinct_id: &'a str,
    /// Properties as JSON object text (already validated).
    pub properties: &'a str,
    /// Capture time, ms since the epoch.
    pub timestamp_ms: u64,
    /// The event's uuid.
    pub uuid: Uuid,
}

/// A request body format. Implement it to speak to a collector other than PostHog's batch API.
pub trait WireFormat {
    /// Appends the JSON fragment of one event to `out`.
    fn write_event(&self, event: &EventRecord<'_>, out: &mut String);
    /// The exact length of a body holding `count` events whose fragments total
    /// `fragment_bytes`, stamped (a body without a stamp is at most this long).
    fn body_len(&self, count: usize, fragment_bytes: usize) -> usize;
    /// Appends a body of `fragments` to `out`, stamped with `sent_at_ms` where the format
    /// carries a send time (`None`: the send time is not known).
    fn write_body(
        &self,
        fragments: &mut dyn Iterator<Item = &str>,
        sent_at_ms: Option<u64>,
        out: &mut String,
    );
    /// The body's `Content-Type`. `text/plain` keeps a cross-origin request CORS-simple (no
    /// preflight), which a request sent while the page unloads cannot wait for.
    fn content_type(&self) -> &'static str {
        "text/plain;charset=UTF-8"
    }
    /// How deep an event's properties may nest (the object itself is level 1) before the
    /// collector's parser refuses the body; deeper properties are refused at capture.
    fn max_properties_depth(&self) -> usize {
        POSTHOG_MAX_PROPERTIES_DEPTH
    }
    /// What an outcome means for the batch: the format's collector decides which statuses are
    /// worth retrying. PostHog's rules ([`Verdict::posthog`]) by default.
    fn verdict(&self, outcome: &Outcome) -> Verdict {
        Verdict::posthog(outcome)
    }
    /// Whether a gzip body must say so with `Content-Encoding: gzip`. PostHog's capture
    /// recognises gzip by its magic bytes (false, the default), so a gzip body needs no
    /// header and may go by `sendBeacon`, which sets none; an OTLP collector needs the header,
    /// so its beacons go plain.
    fn gzip_needs_header(&self) -> bool {
        false
    }
    /// The URL query parameter that carries a request's send time (ms since the epoch) when
    /// its body, packed ahead, has none: PostHog's capture reads `sent_at` from `_` then (as
    /// posthog-js sends it). `None`: the format has no send time (OTLP).
    fn sent_at_param(&self) -> Option<&'static str> {
        None
    }
    /// Whether a 2xx answer's body says something the [`verdict`](Self::verdict) reads (an
    /// OTLP `partialSuccess`): the shell reads it only then.
    fn reads_answer(&self) -> bool {
        false
    }
}

/// Appends `fragments` separated by commas: the events of a body's JSON array, as every
/// format writes them.
pub(crate) fn write_joined(fragments: &mut dyn Iterator<Item = &str>, out: &mut String) {
    for (i, f) in fragments.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(f);
    }
}

/// The format a [`Config`] names: what [`Engine::new`](crate::engine::Engine::new) speaks.
#[derive(Debug, Clone)]
pub enum ConfiguredFormat {
    /// `format: "posthog"`.
    PostHog(PostHogBatch),
    /// `format: "otlp"`.
    Otlp(OtlpLogs),
}

impl ConfiguredFormat {
    /// The format `config` names, with its key or service name.
    pub fn of(config: &Config) -> ConfiguredFormat {
        match config.format {
            Format::PostHog => ConfiguredFormat::PostHog(PostHogBatch::new(&config.api_key)),
            Format::Otlp => ConfiguredFormat::Otlp(OtlpLogs::new(&config.service_name)),
        }
    }

    fn inner(&self) -> &dyn WireFormat {
        match self {
            ConfiguredFormat::PostHog(f) => f,
            ConfiguredFormat::Otlp(f) => f,
        }
    }
}

impl WireFormat for ConfiguredFormat {
    fn write_event(&self, event: &EventRecord<'_>, out: &mut String) {
        self.inner().write_event(event, out)
    }
    fn body_len(&self, count: usize, fragment_bytes: usize) -> usize {
        self.inner().body_len(count, fragment_bytes)
    }
    fn write_body(
        &self,
        fragments: &mut dyn Iterator<Item = &str>,
        sent_at_ms: Option<u64>,
        out: &mut String,
    ) {
        self.inner().write_body(fragments, sent_at_ms, out)
    }
    fn content_type(&self) -> &'static str {
        self.inner().content_type()
    }
    fn max_properties_depth(&self) -> usize {
        self.inner().max_properties_depth()
    }
    fn verdict(&self, outcome: &Outcome) -> Verdict {
        self.inner().verdict(outcome)
    }
    fn gzip_needs_header(&self) -> bool {
        self.inner().gzip_needs_header()
    }
    fn sent_at_param(&self) -> Option<&'static str> {
        self.inner().sent_at_param()
    }
    fn reads_answer(&self) -> bool {
        self.inner().reads_answer()
    }
}

/// The PostHog batch API body:
/// `{"api_key":…,"batch":[{"event","distinct_id","properties","timestamp","uuid"},…],"sent_at":…}`.
#[derive(Debug, Clone)]
pub struct PostHogBatch {
    /// `{"api_key":"…","batch":[`, built once.
    head: String,
}

/// What follows the last event: `],"sent_at":"` + timestamp + `"}`.
const TAIL_BEFORE_SENT_AT: &str = "],\"sent_at\":\"";
const TAIL_AFTER_SENT_AT: &str = "\"}";

impl PostHogBatch {
    /// The format for a project key.
    pub fn new(api_key: &str) -> PostHogBatch {
        let mut head = String::from("{\"api_key\":");
        json::write_str(&mut head, api_key);
        head.push_str(",\"batch\":[");
        PostHogBatch { head }
    }
}

impl WireFormat for PostHogBatch {
    fn sent_at_param(&self) -> Option<&'static str> {
        Some("_")
    }
    fn write_event(&self, e: &EventRecord<'_>, out: &mut String) {
        out.push_str("{\"event\":");
        json::write_str(out, e.name);
        out.push_str(",\"distinct_id\":");
        json::write_str(out, e.distinct_id);
        out.push_str(",\"properties\":");
        out.push_str(e.properties.trim_ascii());
        out.push_str(",\"timestamp\":\"");
        write_iso8601(out, e.timestamp_ms);
        out.push_str("\",\"uuid\":\"");
        e.uuid.write(out);
        out.push_str("\"}");
    }

    fn body_len(&self, count: usize, fragment_bytes: usize) -> usize {
        self.head.len()
            + fragment_bytes
            + count.saturating_sub(1)
            + TAIL_BEFORE_SENT_AT.len()
            + ISO8601_LEN
            + TAIL_AFTER_SENT_AT.len()
    }

    fn write_body(
        &self,
        fragments: &mut dyn Iterator<Item = &str>,
        sent_at_ms: Option<u64>,
        out: &mut String,
    ) {
        out.push_str(&self.head);
        write_joined(fragments, out);
        match sent_at_ms {
            Some(ms) => {
                out.push_str(TAIL_BEFORE_SENT_AT);
                write_iso8601(out, ms);
                out.push_str(TAIL_AFTER_SENT_AT);
            }
            None => out.push_str("]}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_the_posthog_batch_shape_with_sent_at_last() {
        let f = PostHogBatch::new("phc_\"key");
        let mut frag = String::new();
        f.write_event(
            &EventRecord {
                name: "sign\"up",
                distinct_id: "user-7",
                properties: r#"{"plan":"pro"}"#,
                timestamp_ms: 1_700_000_000_123,
                uuid: Uuid(0x0189_0a5d_ac96_774b_bcce_b302_099a_8057),
            },
            &mut frag,
        );
        let mut body = String::new();
        f.write_body(
            &mut [frag.as_str(), frag.as_str()].into_iter(),
            Some(1_700_000_001_000),
            &mut body,
        );
        let one = r#"{"event":"sign\"up","distinct_id":"user-7","properties":{"plan":"pro"},"timestamp":"2023-11-14T22:13:20.123Z","uuid":"01890a5d-ac96-774b-bcce-b302099a8057"}"#;
        assert_eq!(
            body,
            format!(
                r#"{{"api_key":"phc_\"key","batch":[{one},{one}],"sent_at":"2023-11-14T22:13:21.000Z"}}"#
            )
        );
        assert_eq!(f.body_len(2, 2 * frag.len()), body.len());
        assert_eq!(crate::engine::json::validate_object(&body), Ok(()));
        // Unstamped (a deferred request): no sent_at, so PostHog keeps the timestamps as sent.
        let mut unstamped = String::new();
        f.write_body(&mut [frag.as_str()].into_iter(), None, &mut unstamped);
        assert_eq!(
            unstamped,
            format!(r#"{{"api_key":"phc_\"key","batch":[{one}]}}"#)
        );
        assert_eq!(crate::engine::json::validate_object(&unstamped), Ok(()));
        assert!(unstamped.len() <= f.body_len(1, frag.len()));
    }

    #[test]
    fn properties_at_the_depth_limit_make_a_body_serde_json_parses_and_one_more_it_refuses() {
        let f = PostHogBatch::new("phc_k");
        let body = |depth: usize| {
            // The properties object is level 1; each "a" nests one more.
            let props = format!(
                "{}{}",
                r#"{"a":"#.repeat(depth - 1) + "{}",
                "}".repeat(depth - 1)
            );
            let mut frag = String::new();
            f.write_event(
                &EventRecord {
                    name: "e",
                    distinct_id: "d",
                    properties: &props,
                    timestamp_ms: 0,
                    uuid: Uuid(1),
                },
                &mut frag,
            );
            let mut body = String::new();
            f.write_body(&mut [frag.as_str()].into_iter(), Some(0), &mut body);
            body
        };
        let max = f.max_properties_depth();
        let ok = body(max);
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        let deep = body(max + 1);
        let err = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn body_len_is_exact_for_an_empty_batch() {
        let f = PostHogBatch::new("k");
        let mut body = String::new();
        f.write_body(&mut core::iter::empty(), Some(0), &mut body);
        assert_eq!(f.body_len(0, 0), body.len());
    }
}
