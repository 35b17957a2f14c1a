//! What the tests share: the simulated collector's weighted choice of how it answers, and the
//! next load's reading of a stored copy.

use spool::engine::{stored_copy_deflated, Engine, Rng};
use std::io::Read;

/// One of `table`'s values, each as likely as its weight.
#[allow(dead_code)] // not every test crate that includes this module simulates a collector
pub fn pick_weighted<T: Copy>(table: &[(T, u64)], rng: &mut Rng) -> T {
    let total: u64 = table.iter().map(|(_, w)| w).sum();
    let mut r = rng.up_to(total - 1);
    for &(value, w) in table {
        if r < w {
            return value;
        }
        r -= w;
    }
    table[0].0
}

/// Takes a stored copy into `engine` as the browser shell does: its packed parts inflated
/// first (by flate2 here, by `DecompressionStream("deflate-raw")` there).
#[allow(dead_code)] // not every test crate that includes this module restores copies
pub fn restore(engine: &mut Engine, text: &str, now: u64) -> usize {
    let inflated: Vec<Option<String>> = stored_copy_deflated(text)
        .iter()
        .map(|bytes| {
            let mut lines = String::new();
            flate2::read::DeflateDecoder::new(&bytes[..])
                .read_to_string(&mut lines)
                .ok()
                .map(|_| lines)
        })
        .collect();
    engine.handle_restore(text, &inflated, now)
}

/// A [`Notice::Pack`](spool::engine::Notice::Pack) done as a host's `CompressionStream` does
/// it: `body` gzipped, `lines` raw-deflated.
#[allow(dead_code)] // not every test crate that includes this module packs batches
pub fn pack(body: Option<String>, lines: Option<String>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use flate2::write::{DeflateEncoder, GzEncoder};
    use std::io::Write;
    let level = flate2::Compression::new(6);
    let wire = body.map(|b| {
        let mut e = GzEncoder::new(Vec::new(), level);
        e.write_all(b.as_bytes()).unwrap();
        e.finish().unwrap()
    });
    let copy = lines.map(|l| {
        let mut e = DeflateEncoder::new(Vec::new(), level);
        e.write_all(l.as_bytes()).unwrap();
        e.finish().unwrap()
    });
    (wire, copy)
}

/// A host's turn: every [`Notice::Pack`](spool::engine::Notice::Pack) done at once (see
/// [`pack`]); the other notices are dropped.
#[allow(dead_code)] // not every test crate that includes this module packs batches
pub fn answer_packs(engine: &mut Engine, now: u64) {
    while let Some(n) = engine.poll_notice() {
        if let spool::engine::Notice::Pack { batch, body, lines } = n {
            let (wire, copy) = pack(body, lines);
            engine.handle_packed(batch, wire, copy, now);
        }
    }
}

/// What `t` carries, as text: its packed bytes gunzipped (by flate2, independently of the
/// host that packed them), else its body.
#[allow(dead_code)] // not every test crate that includes this module reads bodies
pub fn wire_text(t: &spool::engine::Transmit) -> String {
    let Some(gz) = &t.gzipped else {
        return t.body.clone();
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("a whole gzip member");
    text
}

/// `ms` since the epoch as the bodies write it, `2023-11-14T22:13:20.123Z`: the civil date
/// by Howard Hinnant's `civil_from_days`, apart from the engine's own formatter.
#[allow(dead_code)] // not every test crate that includes this module reads timestamps
pub fn write_iso8601(out: &mut String, ms: u64) {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    out.push_str(&format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    ));
}
