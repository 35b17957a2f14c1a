//! The properties validator agrees with serde_json on what is one JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spool::engine::json::validate_object;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ours = validate_object(text).is_ok();
    // serde_json stops at 128 levels of nesting; the engine has no such limit.
    let depth = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if depth >= 120 {
        return;
    }
    // IgnoredAny checks the grammar without judging \u escapes, as the engine does: lone
    // surrogates are valid JSON text and JSON.stringify writes them.
    let theirs = text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    assert_eq!(ours, theirs, "disagree on {text:?}");
});
