//! OTLP bodies as the engine sends them, parsed by the official protobuf bindings (Python's
//! `opentelemetry-proto` and `protobuf`, `json_format.Parse` with unknown fields refused, run
//! through `tools/otlp_parse.py`; `scripts/setup.sh` installs them).

#![cfg(not(target_arch = "wasm32"))]

use spool::engine::{
    CaptureError, Config, Engine, EventInput, Format, Outcome, OTLP_MAX_PROPERTIES_DEPTH,
};
use std::io::Write;
use std::process::{Command, Stdio};

const T0: u64 = 1_700_000_000_000;

/// Each body's parse by the real parser: `Ok(the request as protobuf writes it back)` or
/// `Err(what the parser said)`.
fn parse(bodies: &[String]) -> Vec<Result<String, String>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/otlp_parse.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup.sh installs opentelemetry-proto)");
    let mut stdin = child.stdin.take().unwrap();
    for b in bodies {
        assert!(!b.contains('\n'));
        writeln!(stdin, "{b}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser script failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["ok"] == true {
                Ok(v["request"].as_str().unwrap().to_string())
            } else {
                Err(v["error"].as_str().unwrap_or_default().to_string())
            }
        })
        .collect()
}

fn otlp_engine() -> Engine {
    let mut c = Config::new("http://127.0.0.1:4318/v1/logs");
    c.format = Format::Otlp;
    c.service_name = "checkout-web".into();
    c.distinct_id = Some("user-7".into());
    Engine::new(c, 3).unwrap()
}

fn bodies(e: &mut Engine, now: u64) -> Vec<String> {
    e.flush(now);
    let mut out = Vec::new();
    while let Some(t) = e.poll_transmit(now) {
        assert_eq!(t.content_type, "application/json");
        out.push(t.body.clone());
        e.handle_outcome(t.id, Outcome::status(200), now);
    }
    out
}

/// The attributes of a parsed record as (key, AnyValue) pairs.
fn attrs(record: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
        .collect()
}

fn attr(record: &serde_json::Value, key: &str) -> serde_json::Value {
    attrs(record)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no attribute {key}"))
        .1
}

#[test]
fn every_record_reaches_the_official_parser_with_its_time_name_uid_and_attributes() {
    let mut e = otlp_engine();
    let props = r#"{"plan":"pro","seats":3,"price":9.5,"trial":false,"none":null,
        "tags":["a",1,true,[2.5]],"cart":{"items":[{"sku":"x1","qty":2}],"coupon":{"code":"Z"}},
        "big":12345678901234567890,"emoji":"😀 \ud83d\ude00","cut":"x\ud83d"}"#;
    let u1 = e
        .capture(EventInput::new("checkout").properties(props), T0 + 5)
        .unwrap();
    let u2 = e
        .capture(
            EventInput::new("sign\"up").distinct_id("other \u{e9}"),
            T0 + 7,
        )
        .unwrap();
    let sent = bodies(&mut e, T0 + 10);
    assert_eq!(sent.len(), 1);
    let parsed = parse(&sent)
        .remove(0)
        .expect("the official parser takes the body");
    let parsed: serde_json::Value = serde_json::from_str(&parsed).unwrap();
    let rl = &parsed["resourceLogs"][0];
    let resource = attrs(&rl["resource"]);
    assert_eq!(
        resource[0],
        (
            "service.name".into(),
            serde_json::json!({"stringValue":"checkout-web"})
        )
    );
    assert_eq!(
        resource[1],
        (
            "telemetry.sdk.name".into(),
            serde_json::json!({"stringValue":"spool"})
        )
    );
    assert_eq!(resource[2].0, "telemetry.sdk.version");
    assert_eq!(rl["scopeLogs"][0]["scope"]["name"], "spool");
    let records = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
    assert_eq!(records.len(), 2);

    let r = &records[0];
    assert_eq!(r["timeUnixNano"], ((T0 + 5) * 1_000_000).to_string());
    assert_eq!(
        r["observedTimeUnixNano"],
        ((T0 + 5) * 1_000_000).to_string()
    );
    assert_eq!(r["eventName"], "checkout");
    assert_eq!(
        attr(r, "user.id"),
        serde_json::json!({"stringValue":"user-7"})
    );
    assert_eq!(
        attr(r, "log.record.uid"),
        serde_json::json!({"stringValue": u1.to_string()})
    );
    assert_eq!(attr(r, "plan"), serde_json::json!({"stringValue":"pro"}));
    assert_eq!(attr(r, "seats"), serde_json::json!({"intValue":"3"}));
    assert_eq!(attr(r, "price"), serde_json::json!({"doubleValue":9.5}));
    assert_eq!(attr(r, "trial"), serde_json::json!({"boolValue":false}));
    assert_eq!(attr(r, "none"), serde_json::json!({}));
    assert_eq!(
        attr(r, "tags"),
        serde_json::json!({"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"1"},{"boolValue":true},{"arrayValue":{"values":[{"doubleValue":2.5}]}}]}})
    );
    assert_eq!(
        attr(r, "cart"),
        serde_json::json!({"kvlistValue":{"values":[
            {"key":"items","value":{"arrayValue":{"values":[{"kvlistValue":{"values":[
                {"key":"sku","value":{"stringValue":"x1"}},{"key":"qty","value":{"intValue":"2"}}]}}]}}},
            {"key":"coupon","value":{"kvlistValue":{"values":[{"key":"code","value":{"stringValue":"Z"}}]}}}]}})
    );
    assert_eq!(
        attr(r, "big"),
        serde_json::json!({"doubleValue":1.2345678901234567e19})
    );
    assert_eq!(attr(r, "emoji"), serde_json::json!({"stringValue":"😀 😀"}));
    assert_eq!(
        attr(r, "cut"),
        serde_json::json!({"stringValue":"x\u{fffd}"})
    );

    let r = &records[1];
    assert_eq!(r["eventName"], "sign\"up");
    assert_eq!(r["timeUnixNano"], ((T0 + 7) * 1_000_000).to_string());
    assert_eq!(
        attr(r, "user.id"),
        serde_json::json!({"stringValue":"other \u{e9}"})
    );
    assert_eq!(
        attr(r, "log.record.uid"),
        serde_json::json!({"stringValue": u2.to_string()})
    );
}

#[test]
fn properties_as_deep_as_allowed_parse_and_one_level_more_is_refused_at_capture() {
    let nested = |depth: usize| {
        format!(
            "{}{}",
            r#"{"a":"#.repeat(depth - 1) + "{}",
            "}".repeat(depth - 1)
        )
    };
    let mut e = otlp_engine();
    e.capture(
        EventInput::new("deep").properties(&nested(OTLP_MAX_PROPERTIES_DEPTH)),
        T0,
    )
    .unwrap();
    let err = e
        .capture(
            EventInput::new("deeper").properties(&nested(OTLP_MAX_PROPERTIES_DEPTH + 1)),
            T0,
        )
        .unwrap_err();
    assert!(matches!(err, CaptureError::TooDeep { .. }), "{err}");
    let sent = bodies(&mut e, T0);
    assert!(
        parse(&sent)[0].is_ok(),
        "the deepest allowed properties parse"
    );

    // What the limit protects against: the same record one level deeper, built by hand, is
    // refused by the parser.
    let refused = sent[0].replacen(
        r#""value":{"kvlistValue":{"values":[]}}"#,
        r#""value":{"kvlistValue":{"values":[{"key":"a","value":{"kvlistValue":{"values":[]}}}]}}"#,
        1,
    );
    assert_ne!(refused, sent[0]);
    let err = parse(&[refused]).remove(0).unwrap_err();
    assert!(err.contains("ParseError"), "{err}");
}

#[test]
fn the_parser_refuses_unknown_fields() {
    // The check that makes the tests above meaningful: a misspelt field is an error.
    let err =
        parse(&[r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"eventname":"x"}]}]}]}"#.into()])
            .remove(0)
            .unwrap_err();
    assert!(err.contains("eventname"), "{err}");
}
