//! Just enough JSON for the wire: string escaping and a validator for caller-supplied objects.
//!
//! Events are stored as ready JSON fragments, so the engine writes JSON by hand instead of
//! carrying a general serializer into the wasm (serde_json alone would cost more bytes than the
//! whole engine). Properties arrive already serialized (by `JSON.stringify` in the browser) and
//! are checked here once, at capture, so a batch body is always valid JSON.

/// Appends `s` to `out` as a JSON string literal, quotes included.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        // `get`, not indexing: `i` is at an ASCII byte, so this never fails, and no panic path
        // (with its formatting code) is compiled in.
        out.push_str(s.get(start..i).unwrap_or_default());
        match escape {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Appends `n` in decimal: what `to_string` does, without the formatting machinery.
pub fn write_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

/// Why a properties text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset of the first offending character.
    pub offset: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl JsonError {
    /// "expected X at byte N".
    pub fn message(&self) -> String {
        let mut m = String::from("expected ");
        m.push_str(self.expected);
        m.push_str(" at byte ");
        write_u64(&mut m, self.offset as u64);
        m
    }
}

impl core::fmt::Display for JsonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

/// Checks that `text` is exactly one JSON object (surrounding whitespace allowed).
///
/// Iterative, so a deeply nested value cannot overflow the stack; linear in the input.
pub fn validate_object(text: &str) -> Result<(), JsonError> {
    let b = text.as_bytes();
    let mut p = Parser { b, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.err("an object"));
    }
    p.value()?;
    p.ws();
    if p.i != b.len() {
        return Err(p.err("the end of the object"));
    }
    Ok(())
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

/// What the validator is inside of.
#[derive(Clone, Copy)]
enum Frame {
    Object,
    Array,
}

impl Parser<'_> {
    fn err(&self, expected: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8, expected: &'static str) -> Result<(), JsonError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(expected))
        }
    }

    /// Validates one value, using an explicit stack for containers.
    fn value(&mut self) -> Result<(), JsonError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Parse one value start.
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        self.key()?;
                        stack.push(Frame::Object);
                        continue;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        stack.push(Frame::Array);
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(self.err("a value")),
            }
            // A value is complete: close containers or move to the next element.
            loop {
                let Some(&frame) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match (frame, self.peek()) {
                    (_, Some(b',')) => {
                        self.i += 1;
                        if let Frame::Object = frame {
                            self.key()?;
                        }
                        break;
                    }
                    (Frame::Object, Some(b'}')) | (Frame::Array, Some(b']')) => {
                        self.i += 1;
                        stack.pop();
                    }
                    (Frame::Object, _) => return Err(self.err("',' or '}'")),
                    (Frame::Array, _) => return Err(self.err("',' or ']'")),
                }
            }
        }
    }

    /// A key and its colon.
    fn key(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("a string key"));
        }
        self.string()?;
        self.eat(b':', "':'")
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err(word))
        }
    }

    fn string(&mut self) -> Result<(), JsonError> {
        self.i += 1; // opening quote
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(self.err("four hex digits"));
                                }
                                self.i += 1;
                            }
                        }
                        _ => return Err(self.err("an escape")),
                    }
                }
                Some(0x00..=0x1f) | None => return Err(self.err("a closing '\"'")),
                Some(_) => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.err("a digit"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.err("a digit"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, s);
        out
    }

    #[test]
    fn strings_with_quotes_and_control_characters_stay_valid_json() {
        assert_eq!(escaped("plain"), r#""plain""#);
        assert_eq!(escaped("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(escaped("\u{1}x"), r#""\u0001x""#);
        assert_eq!(escaped("é✓"), "\"é✓\"");
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut s = String::new();
            write_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn objects_as_json_stringify_writes_them_are_accepted() {
        for ok in [
            "{}",
            " { } ",
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e\u00e9\n"},"n":-0.5e+3}"#,
            r#"{"nested":[[[]],{}],"s":"\ud83d\ude00"}"#,
        ] {
            assert_eq!(validate_object(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_but_one_object_is_refused_with_its_position() {
        for bad in [
            "",
            "[]",
            "1",
            "\"s\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1}x",
            "{a:1}",
            "{\"a\":tru}",
            "{\"a\":\"\n\"}",
            "{\"a\":[1 2]}",
            "{} {}",
        ] {
            assert!(validate_object(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            validate_object("{\"a\":1,}"),
            Err(JsonError {
                offset: 7,
                expected: "a string key"
            })
        );
    }

    #[test]
    fn ten_thousand_nested_levels_do_not_overflow_the_stack() {
        let depth = 10_000;
        let text = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(validate_object(&text), Ok(()));
        let unclosed = format!("{{\"a\":{}}}", "[".repeat(depth));
        assert!(validate_object(&unclosed).is_err());
    }
}
