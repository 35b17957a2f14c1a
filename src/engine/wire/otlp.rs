//! OTLP/HTTP JSON logs: events as the `LogRecord`s of an `ExportLogsServiceRequest`
//! (opentelemetry-proto `opentelemetry/proto/collector/logs/v1/logs_service.proto`, in the
//! protobuf JSON mapping), for an OpenTelemetry Collector's `/v1/logs` or any backend that
//! takes OTLP.
//!
//! One body is one resource (`service.name`, `telemetry.sdk.name` `spool`,
//! `telemetry.sdk.version`) with one scope (`spool`) holding one `LogRecord` per event:
//! `timeUnixNano` and `observedTimeUnixNano` (the capture time, as decimal strings, as the
//! mapping writes 64-bit integers), `eventName`, and the properties as attributes, plus
//! `user.id` (the distinct id) and `log.record.uid` (the uuid).

use crate::engine::delivery::retry::{Outcome, Verdict};
use crate::engine::wire::format::{write_joined, EventRecord, WireFormat};
use crate::engine::wire::json;

/// How deep properties may nest in an OTLP body (the properties object is level 1). Each level
/// of an object is three protobuf messages deep (`AnyValue`, `KeyValueList`, `KeyValue`), and
/// the official protobuf JSON parser refuses messages nested past 100 (Python's
/// `json_format.Parse`, `max_recursion_depth=100`): measured with it, objects nested 33 deep
/// parse and 34 do not (`tests/otlp_parser.rs` checks both).
pub const OTLP_MAX_PROPERTIES_DEPTH: usize = 33;

/// Attribute keys spool sets itself; a property of the same name is left out, since an
/// OpenTelemetry attribute key must be unique within its record.
const OWN_KEYS: [&str; 2] = ["\"user.id\"", "\"log.record.uid\""];

/// The OTLP/HTTP JSON logs body. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct OtlpLogs {
    /// Everything before the first `LogRecord`, built once.
    head: String,
}

/// What follows the last `LogRecord`.
const TAIL: &str = "]}]}]}";

impl OtlpLogs {
    /// The format for a service named `service_name`.
    pub fn new(service_name: &str) -> OtlpLogs {
        let version = env!("CARGO_PKG_VERSION");
        let mut head = String::from("{\"resourceLogs\":[{\"resource\":{\"attributes\":[");
        string_attribute(&mut head, "service.name", service_name);
        head.push(',');
        string_attribute(&mut head, "telemetry.sdk.name", "spool");
        head.push(',');
        string_attribute(&mut head, "telemetry.sdk.version", version);
        head.push_str("]},\"scopeLogs\":[{\"scope\":{\"name\":\"spool\",\"version\":");
        json::write_str(&mut head, version);
        head.push_str("},\"logRecords\":[");
        OtlpLogs { head }
    }
}

impl WireFormat for OtlpLogs {
    fn write_event(&self, e: &EventRecord<'_>, out: &mut String) {
        out.push_str("{\"timeUnixNano\":\"");
        write_nanos(out, e.timestamp_ms);
        out.push_str("\",\"observedTimeUnixNano\":\"");
        write_nanos(out, e.timestamp_ms);
        out.push_str("\",\"eventName\":");
        json::write_str(out, e.name);
        out.push_str(",\"attributes\":[");
        string_attribute(out, "user.id", e.distinct_id);
        out.push_str(",{\"key\":\"log.record.uid\",\"value\":{\"stringValue\":\"");
        e.uuid.write(out);
        out.push_str("\"}}");
        let mut r = Reader {
            s: e.properties,
            i: 0,
        };
        r.ws();
        if r.peek() == Some(b'{') {
            r.i += 1;
            r.members(out, true, true);
        }
        out.push_str("]}");
    }

    fn body_len(&self, count: usize, fragment_bytes: usize) -> usize {
        self.head.len() + fragment_bytes + count.saturating_sub(1) + TAIL.len()
    }

    /// OTLP has no `sent_at`: `sent_at_ms` is not written.
    fn write_body(
        &self,
        fragments: &mut dyn Iterator<Item = &str>,
        _sent_at_ms: Option<u64>,
        out: &mut String,
    ) {
        out.push_str(&self.head);
        write_joined(fragments, out);
        out.push_str(TAIL);
    }

    /// OTLP/HTTP requires `application/json` for JSON bodies; a cross-origin request then
    /// needs a CORS preflight (see the README for what that costs at page-hide).
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    /// OTLP/HTTP: "the client MAY gzip the body … and MUST set `Content-Encoding: gzip`".
    fn gzip_needs_header(&self) -> bool {
        true
    }
    fn reads_answer(&self) -> bool {
        true
    }

    fn max_properties_depth(&self) -> usize {
        OTLP_MAX_PROPERTIES_DEPTH
    }

    /// The OTLP/HTTP specification's rules ("Failures", "Retryable Response Codes"): 429, 502,
    /// 503 and 504 are retried (honouring `Retry-After`), as are network errors and timeouts;
    /// 400 and 413 are split so that what the collector refuses is isolated; any other status
    /// is final. A 2xx with `partialSuccess.rejectedLogRecords` drops that many.
    fn verdict(&self, outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Response { status, body, .. } => match status {
                200..=299 => match body.as_deref().and_then(rejected_log_records) {
                    Some(n) if n > 0 => Verdict::Partial {
                        status: *status,
                        rejected: n,
                    },
                    _ => Verdict::Delivered,
                },
                429 | 502 | 503 | 504 => Verdict::Retry,
                400 | 413 => Verdict::Split(*status),
                s => Verdict::Reject(*s),
            },
            Outcome::NetworkError(_) | Outcome::Timeout => Verdict::Retry,
            // Never asked: the engine settles these itself.
            Outcome::Accepted | Outcome::Refused => Verdict::Delivered,
        }
    }
}

/// `partialSuccess.rejectedLogRecords` of an `ExportLogsServiceResponse` in JSON: an int64,
/// which the mapping writes as a string but a parser must also take as a number.
pub fn rejected_log_records(body: &str) -> Option<u64> {
    const KEY: &[u8] = b"\"rejectedLogRecords\"";
    // A byte search: core's string search would add its own code to the wasm.
    let b = body.as_bytes();
    let mut i = b.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    skip_ws(&mut i);
    if b.get(i) == Some(&b'"') {
        i += 1;
    }
    let digits = b.get(i..)?.iter().copied().take_while(u8::is_ascii_digit);
    let mut n: u64 = 0;
    let mut any = false;
    for d in digits {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        any = true;
    }
    any.then_some(n)
}

/// `ms` as decimal nanoseconds.
fn write_nanos(out: &mut String, ms: u64) {
    json::write_u64(out, ms);
    if ms != 0 {
        out.push_str("000000");
    }
}

/// `{"key":key,"value":{"stringValue":value}}`.
fn string_attribute(out: &mut String, key: &str, value: &str) {
    out.push_str("{\"key\":");
    json::write_str(out, key);
    out.push_str(",\"value\":{\"stringValue\":");
    json::write_str(out, value);
    out.push_str("}}");
}

/// A cursor over JSON text that rewrites values as `AnyValue`s. The text is the properties,
/// valid JSON already (checked at capture or made by `JSON.stringify`); on anything else it
/// stops early and never panics, and the collector's refusal isolates the event.
struct Reader<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// A string literal, quotes and escapes as they are.
    fn string(&mut self) -> &'a str {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => break,
                _ => {}
            }
        }
        self.s.get(start..self.i).unwrap_or("\"\"")
    }

    /// After an object's `{`: its members as `KeyValue`s, separated by commas, up to and past
    /// its `}`. `after_one` says whether a `KeyValue` precedes them in `out`; `top` leaves
    /// out the keys spool sets itself.
    fn members(&mut self, out: &mut String, mut after_one: bool, top: bool) {
        loop {
            self.ws();
            match self.peek() {
                Some(b'"') => {}
                Some(b',') => {
                    self.i += 1;
                    continue;
                }
                Some(b'}') => {
                    self.i += 1;
                    return;
                }
                _ => return,
            }
            let key = self.string();
            let own = top && OWN_KEYS.contains(&key);
            let mut kv = String::new();
            let target = if own { &mut kv } else { &mut *out };
            if after_one && !own {
                target.push(',');
            }
            target.push_str("{\"key\":");
            target.push_str(key);
            target.push_str(",\"value\":");
            self.ws();
            if self.peek() == Some(b':') {
                self.i += 1;
            }
            self.value(target);
            target.push('}');
            after_one |= !own;
        }
    }

    /// One value as an `AnyValue`.
    fn value(&mut self, out: &mut String) {
        self.ws();
        match self.peek() {
            Some(b'"') => {
                out.push_str("{\"stringValue\":");
                let s = self.string();
                out.push_str(s);
                out.push('}');
            }
            Some(b't') => {
                self.i += 4;
                out.push_str("{\"boolValue\":true}");
            }
            Some(b'f') => {
                self.i += 5;
                out.push_str("{\"boolValue\":false}");
            }
            Some(b'n') => {
                // An AnyValue with nothing set: the protobuf way of saying null.
                self.i += 4;
                out.push_str("{}");
            }
            Some(b'{') => {
                self.i += 1;
                out.push_str("{\"kvlistValue\":{\"values\":[");
                self.members(out, false, false);
                out.push_str("]}}");
            }
            Some(b'[') => {
                self.i += 1;
                out.push_str("{\"arrayValue\":{\"values\":[");
                let mut first = true;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            break;
                        }
                        Some(b',') => self.i += 1,
                        None => break,
                        Some(_) => {
                            if !first {
                                out.push(',');
                            }
                            first = false;
                            let before = self.i;
                            self.value(out);
                            if self.i == before {
                                break;
                            }
                        }
                    }
                }
                out.push_str("]}}");
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
                let text = self.s.get(start..self.i).unwrap_or("0");
                if is_int64(text) {
                    out.push_str("{\"intValue\":\"");
                    out.push_str(text);
                    out.push_str("\"}");
                } else {
                    out.push_str("{\"doubleValue\":");
                    out.push_str(text);
                    out.push('}');
                }
            }
            _ => out.push_str("{}"),
        }
    }
}

/// Whether a JSON number's text is an integer within int64 (what `intValue` holds); any other
/// number goes as `doubleValue`.
fn is_int64(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    // i64::MAX has 19 digits; anything shorter fits, and 19 digits compare as text.
    digits.len() < 19 || (digits.len() == 19 && digits <= "9223372036854775807")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delivery::event::Uuid;

    fn record(properties: &str) -> String {
        let mut out = String::new();
        OtlpLogs::new("shop").write_event(
            &EventRecord {
                name: "checkout",
                distinct_id: "user-7",
                properties,
                timestamp_ms: 1_700_000_000_123,
                uuid: Uuid(0x0189_0a5d_ac96_774b_bcce_b302_099a_8057),
            },
            &mut out,
        );
        out
    }

    #[test]
    fn an_event_is_a_log_record_with_its_time_name_user_and_uid() {
        assert_eq!(
            record("{}"),
            r#"{"timeUnixNano":"1700000000123000000","observedTimeUnixNano":"1700000000123000000","eventName":"checkout","attributes":[{"key":"user.id","value":{"stringValue":"user-7"}},{"key":"log.record.uid","value":{"stringValue":"01890a5d-ac96-774b-bcce-b302099a8057"}}]}"#
        );
    }

    #[test]
    fn properties_become_any_values_of_their_own_kind() {
        let r = record(
            r#"{ "s":"a\"b", "t":true, "f":false, "n":null, "i":-42, "big":12345678901234567890,
                 "d":1.5, "e":1e+21, "a":[1,"x",[]], "o":{"p":{"q":[{}]}} }"#,
        );
        let attrs = r.split_once(r#"8057"}}"#).unwrap().1;
        assert_eq!(
            attrs,
            concat!(
                r#",{"key":"s","value":{"stringValue":"a\"b"}}"#,
                r#",{"key":"t","value":{"boolValue":true}}"#,
                r#",{"key":"f","value":{"boolValue":false}}"#,
                r#",{"key":"n","value":{}}"#,
                r#",{"key":"i","value":{"intValue":"-42"}}"#,
                r#",{"key":"big","value":{"doubleValue":12345678901234567890}}"#,
                r#",{"key":"d","value":{"doubleValue":1.5}}"#,
                r#",{"key":"e","value":{"doubleValue":1e+21}}"#,
                r#",{"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"x"},{"arrayValue":{"values":[]}}]}}}"#,
                r#",{"key":"o","value":{"kvlistValue":{"values":[{"key":"p","value":{"kvlistValue":{"values":[{"key":"q","value":{"arrayValue":{"values":[{"kvlistValue":{"values":[]}}]}}}]}}}]}}}"#,
                "]}"
            )
        );
    }

    #[test]
    fn a_property_named_like_spools_own_attributes_is_left_out() {
        let r = record(r#"{"user.id":"spoof","a":1,"log.record.uid":"x","b":2}"#);
        assert_eq!(r.matches("\"user.id\"").count(), 1);
        assert!(r.ends_with(
            r#"{"key":"a","value":{"intValue":"1"}},{"key":"b","value":{"intValue":"2"}}]}"#
        ));
        assert!(!r.contains("spoof"));
    }

    #[test]
    fn a_body_is_one_resource_and_scope_and_its_length_is_exact() {
        let f = OtlpLogs::new("shop");
        let one = record(r#"{"k":"v"}"#);
        let mut body = String::new();
        f.write_body(
            &mut [one.as_str(), one.as_str()].into_iter(),
            Some(5),
            &mut body,
        );
        assert_eq!(f.body_len(2, 2 * one.len()), body.len());
        assert!(body.starts_with(r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}},{"key":"telemetry.sdk.name","value":{"stringValue":"spool"}},{"key":"telemetry.sdk.version","value":{"stringValue":""#));
        assert!(body.contains(r#""scopeLogs":[{"scope":{"name":"spool","#));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let records = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
        assert_eq!(records.as_array().unwrap().len(), 2);
        let mut empty = String::new();
        f.write_body(&mut core::iter::empty(), Some(0), &mut empty);
        assert_eq!(f.body_len(0, 0), empty.len());
    }

    #[test]
    fn retries_follow_the_otlp_specification() {
        let f = OtlpLogs::new("s");
        let v = |s| f.verdict(&Outcome::status(s));
        for s in [429, 502, 503, 504] {
            assert_eq!(v(s), Verdict::Retry, "{s}");
        }
        for s in [401, 403, 404, 408, 500, 501] {
            assert_eq!(v(s), Verdict::Reject(s), "{s}");
        }
        assert_eq!(v(400), Verdict::Split(400));
        assert_eq!(v(200), Verdict::Delivered);
        assert_eq!(f.verdict(&Outcome::Timeout), Verdict::Retry);
    }

    #[test]
    fn a_partial_success_counts_its_rejected_records() {
        let f = OtlpLogs::new("s");
        let answer = |body: &str| {
            f.verdict(&Outcome::Response {
                status: 200,
                retry_after: None,
                body: Some(body.into()),
            })
        };
        assert_eq!(
            answer(r#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"bad"}}"#),
            Verdict::Partial {
                status: 200,
                rejected: 3
            }
        );
        assert_eq!(
            answer(r#"{"partialSuccess":{"rejectedLogRecords": 2}}"#),
            Verdict::Partial {
                status: 200,
                rejected: 2
            }
        );
        assert_eq!(answer(r#"{"partialSuccess":{}}"#), Verdict::Delivered);
        assert_eq!(answer("{}"), Verdict::Delivered);
        assert_eq!(
            answer(r#"{"partialSuccess":{"rejectedLogRecords":"0"}}"#),
            Verdict::Delivered
        );
    }
}
