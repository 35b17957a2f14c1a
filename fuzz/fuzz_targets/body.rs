//! Whatever a caller captures, the body sent is valid JSON carrying it unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spool::engine::{Config, Engine, EventInput};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Fields separated by NUL: name, distinct id, properties, api key.
    let mut parts = text.splitn(4, '\0');
    let name = parts.next().unwrap_or_default();
    let distinct_id = parts.next().unwrap_or_default();
    let properties = parts.next().unwrap_or("{}");
    let api_key = parts.next().unwrap_or_default();
    // serde_json, the oracle, stops at 128 levels of nesting.
    if properties.bytes().filter(|b| matches!(b, b'[' | b'{')).count() >= 120 {
        return;
    }
    let mut config = Config::new("https://collector.example/batch/");
    config.api_key = api_key.to_string();
    config.max_batch_bytes = 16 << 20;
    let Ok(mut engine) = Engine::new(config, 1) else { return };
    let now = 1_700_000_000_000;
    let mut event = EventInput::new(name).properties(properties);
    if !distinct_id.is_empty() {
        event = event.distinct_id(distinct_id);
    }
    if engine.capture(event, now).is_err() {
        return;
    }
    engine.flush(now);
    let t = engine.poll_transmit(now).expect("a flush sends at once");
    let Ok(expected) = serde_json::from_str::<serde_json::Value>(properties) else {
        // Valid JSON that serde_json will not decode (a lone surrogate escape): the grammar
        // check is all that applies.
        serde_json::from_str::<serde::de::IgnoredAny>(&t.body).expect("body is JSON");
        return;
    };
    let body: serde_json::Value = serde_json::from_str(&t.body).expect("body is JSON");
    assert_eq!(body["api_key"], api_key);
    let e = &body["batch"][0];
    assert_eq!(e["event"], name);
    if !distinct_id.is_empty() {
        assert_eq!(e["distinct_id"], distinct_id);
    }
    assert_eq!(e["properties"], expected);
});
