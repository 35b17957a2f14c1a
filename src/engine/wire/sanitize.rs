//! What a collector's JSON parser would refuse, repaired or refused at capture, so that one
//! bad event fails alone instead of taking its whole batch down with it.
//!
//! PostHog's capture service parses a request with serde_json, which refuses a lone surrogate
//! escape (`JSON.stringify` writes `'😀'.slice(0, 1)` as `"\ud83d"`) and nesting deeper than
//! its recursion limit; either one gets 400 for the whole request. A lone surrogate is
//! repaired to U+FFFD here, as the Encoding standard does when it encodes such a string to
//! UTF-8; nesting past the limit is refused.

/// serde_json's recursion limit: its deserializer starts with 128 levels and refuses the
/// container that would use the last one (serde_json `de.rs`, `remaining_depth: 128` and
/// `check_recursion!`), so a document nests at most 127 containers deep.
pub const SERDE_JSON_MAX_NESTING: usize = 127;

/// A surrogate escape's value, if `hex` (4 bytes) spells one.
fn surrogate(hex: &[u8]) -> Option<u16> {
    if hex.len() != 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let v = hex.iter().fold(0u16, |n, &c| {
        (n << 4) | (c as char).to_digit(16).unwrap_or(0) as u16
    });
    (0xD800..=0xDFFF).contains(&v).then_some(v)
}

/// Why [`check_properties`] refused a properties text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The deepest nesting found (the properties object itself is level 1).
    pub depth: usize,
    /// The most this wire format allows.
    pub max: usize,
}

/// Checks that the JSON text `properties` (valid JSON) nests at most `max_depth` containers
/// deep (the object itself is level 1), and repairs every lone surrogate escape in it to
/// `\ufffd`. Returns the repaired text, or `None` when nothing needed repair (the common case,
/// which allocates nothing).
pub fn check_properties(properties: &str, max_depth: usize) -> Result<Option<String>, TooDeep> {
    let b = properties.as_bytes();
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    // Byte ranges of lone surrogate escapes (`\uXXXX`, 6 bytes each), in order.
    let mut lone: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'"' => in_string = false,
                b'\\' if b.get(i + 1) == Some(&b'u') => {
                    if let Some(first) = b.get(i + 2..i + 6).and_then(surrogate) {
                        let second = match b.get(i + 6..i + 8) {
                            Some(b"\\u") => b.get(i + 8..i + 12).and_then(surrogate),
                            _ => None,
                        };
                        match second {
                            Some(low)
                                if (0xD800..0xDC00).contains(&first)
                                    && (0xDC00..=0xDFFF).contains(&low) =>
                            {
                                i += 12;
                                continue;
                            }
                            _ => lone.push(i),
                        }
                    }
                    i += 6;
                    continue;
                }
                b'\\' => {
                    i += 2;
                    continue;
                }
                _ => {}
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    if deepest > max_depth {
        return Err(TooDeep {
            depth: deepest,
            max: max_depth,
        });
    }
    if lone.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(properties.len());
    let mut start = 0;
    for at in lone {
        out.push_str(properties.get(start..at).unwrap_or_default());
        out.push_str("\\ufffd");
        start = at + 6;
    }
    out.push_str(properties.get(start..).unwrap_or_default());
    Ok(Some(out))
}

/// Whether a distinct id is blank: empty after trimming whitespace, which PostHog's capture
/// refuses (400 for the whole request).
pub fn is_blank(id: &str) -> bool {
    id.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(text: &str) -> String {
        check_properties(text, 128)
            .unwrap()
            .unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn lone_surrogate_escapes_become_the_replacement_character() {
        assert_eq!(repaired(r#"{"a":"x\ud83d"}"#), r#"{"a":"x\ufffd"}"#);
        assert_eq!(repaired(r#"{"a":"\ude00y"}"#), r#"{"a":"\ufffdy"}"#);
        assert_eq!(
            repaired(r#"{"\ud83d":"\ud83d\ud83d\ude00"}"#),
            r#"{"\ufffd":"\ufffd\ud83d\ude00"}"#
        );
        // Low then high: both lone.
        assert_eq!(
            repaired(r#"{"a":"\ude00\ud83d"}"#),
            r#"{"a":"\ufffd\ufffd"}"#
        );
        assert_eq!(repaired(r#"{"a":"\ud83d\n"}"#), r#"{"a":"\ufffd\n"}"#);
    }

    #[test]
    fn well_formed_text_is_left_alone_without_a_copy() {
        for ok in [
            r#"{"a":"\ud83d\ude00","b":"\\ud83d","c":"\u00e9","d":"😀"}"#,
            r#"{"k":["\\","\"",{"x":"\\\\ud800"}]}"#,
        ] {
            assert_eq!(check_properties(ok, 128), Ok(None), "{ok}");
        }
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let deep = |d: usize| format!("{}{}", "[".repeat(d - 1), "]".repeat(d - 1));
        let text = format!("{{\"a\":{}}}", deep(10));
        assert_eq!(check_properties(&text, 10), Ok(None));
        assert_eq!(
            check_properties(&text, 9),
            Err(TooDeep { depth: 10, max: 9 })
        );
        assert_eq!(check_properties(r#"{"a":"[[[[{{{{"}"#, 1), Ok(None));
    }

    #[test]
    fn serde_json_refuses_what_is_refused_here_and_takes_what_is_repaired() {
        // The real parser: the repaired text parses, the original does not.
        let bad = r#"{"a":"x\ud83d","\udc00":1}"#;
        assert!(serde_json::from_str::<serde_json::Value>(bad).is_err());
        let fixed = repaired(bad);
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["a"], "x\u{fffd}");
        assert_eq!(v["\u{fffd}"], 1);
        // The nesting limit is serde_json's own.
        let nest = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        assert!(serde_json::from_str::<serde_json::Value>(&nest(SERDE_JSON_MAX_NESTING)).is_ok());
        assert!(
            serde_json::from_str::<serde_json::Value>(&nest(SERDE_JSON_MAX_NESTING + 1)).is_err()
        );
    }

    #[test]
    fn blank_ids_are_whitespace_only() {
        assert!(is_blank(""));
        assert!(is_blank(" \t\n"));
        assert!(!is_blank(" a "));
    }
}
