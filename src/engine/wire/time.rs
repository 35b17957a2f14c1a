//! Calendar arithmetic for the wire: ISO 8601 timestamps out, HTTP-dates in.
//!
//! The engine never reads a clock; these functions only convert milliseconds since the Unix
//! epoch (as `Date.now()` gives them) to and from text. `std::time::SystemTime` is avoided on
//! purpose: it panics on `wasm32-unknown-unknown`.

/// The latest instant an ISO 8601 timestamp with a four-digit year can name:
/// 9999-12-31T23:59:59.999Z, in ms since the epoch.
pub const MAX_TIMESTAMP_MS: u64 = 253_402_300_799_999;

/// Length of the text [`write_iso8601`] produces: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub const ISO8601_LEN: usize = 24;

/// Appends `ms` (since the epoch, at most [`MAX_TIMESTAMP_MS`]) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn write_iso8601(out: &mut String, ms: u64) {
    let ms = ms.min(MAX_TIMESTAMP_MS);
    let days = ms / 86_400_000;
    let rem = ms % 86_400_000;
    let (y, m, d) = civil_from_days(days as i64);
    let mut buf = [0u8; ISO8601_LEN];
    put(&mut buf[0..4], y as u64);
    buf[4] = b'-';
    put(&mut buf[5..7], m as u64);
    buf[7] = b'-';
    put(&mut buf[8..10], d as u64);
    buf[10] = b'T';
    put(&mut buf[11..13], rem / 3_600_000);
    buf[13] = b':';
    put(&mut buf[14..16], rem / 60_000 % 60);
    buf[16] = b':';
    put(&mut buf[17..19], rem / 1000 % 60);
    buf[19] = b'.';
    put(&mut buf[20..23], rem % 1000);
    buf[23] = b'Z';
    // Every byte written above is ASCII: pushed as characters, with no UTF-8 validation to pay
    // for in the wasm.
    for &b in &buf {
        out.push(char::from(b));
    }
}

/// Writes `n` as zero-padded decimal filling `dst`.
fn put(dst: &mut [u8], mut n: u64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Parses an HTTP-date (RFC 9110 §5.6.7) into ms since the epoch.
///
/// Accepts the preferred IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete
/// forms recipients must still accept: RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`).
///
/// Works on bytes (every valid date is ASCII): core's string splitting, searching and number
/// parsing would add about a kilobyte to the wasm for this one function.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let t = text.trim_ascii().as_bytes();
    // The day name ends at the first ',' or ' '; the rest is split at spaces and dashes.
    let start = t.iter().position(|&b| b == b',' || b == b' ')? + 1;
    let mut parts: [&[u8]; 5] = [&[]; 5];
    let mut count = 0;
    for part in t[start..].split(|&b| b == b' ' || b == b'-') {
        if part.is_empty() {
            continue;
        }
        *parts.get_mut(count)? = part;
        count += 1;
    }
    let (day, month, year, clock) = match (count, parts) {
        // IMF-fixdate and RFC 850: day month year time GMT
        (5, [d, mo, y, c, b"GMT"]) => (d, mo, y, c),
        // asctime: month day time year
        (4, [mo, d, c, y, _]) if !t.contains(&b',') => (d, mo, y, c),
        _ => return None,
    };
    let day = number(day, 1, 2)?;
    let month = MONTHS.iter().position(|m| m.as_bytes() == month)? as u64 + 1;
    let mut year = number(year, 2, 4)?;
    if year < 100 {
        // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
        year += if year < 70 { 2000 } else { 1900 };
    }
    // hh:mm:ss, two digits each.
    let [h1, h2, b':', m1, m2, b':', s1, s2] = *clock else {
        return None;
    };
    let h = number(&[h1, h2], 2, 2)?;
    let mi = number(&[m1, m2], 2, 2)?;
    let s = number(&[s1, s2], 2, 2)?;
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    Some((days as u64 * 86_400 + h * 3600 + mi * 60 + s) * 1000)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses between `min` and `max` ASCII digits.
fn number(s: &[u8], min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max {
        return None;
    }
    s.iter().try_fold(0, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: u64) -> String {
        let mut s = String::new();
        write_iso8601(&mut s, ms);
        s
    }

    #[test]
    fn timestamps_render_as_iso8601_with_milliseconds_and_z() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(MAX_TIMESTAMP_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso(MAX_TIMESTAMP_MS).len(), ISO8601_LEN);
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        for days in (0..2_932_896).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn http_dates_in_all_three_forms_parse_to_the_same_instant() {
        let expect = Some(784_111_777_000);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), expect);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), expect);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), expect);
    }

    #[test]
    fn malformed_http_dates_are_refused() {
        for bad in [
            "",
            "tomorrow",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1960 08:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
