//! Persistence across page loads: the events a page still holds when it goes away, as text the
//! shell writes synchronously to `localStorage`, and that text read back by the next exporter
//! of the same endpoint.
//!
//! The engine owns the policy: which events are stored (everything held that the collector has
//! not acknowledged, requests in flight included: at-least-once), in which order, within which
//! caps, and how what does not fit is counted. The shell only moves the text.
//!
//! The text is one header line, `spool2 <cut> <kept until>`, where `cut` counts events left out
//! by the cap (the next load counts them as dropped `persistCap`) and `kept until` says until
//! when the writing page may still be running (0 once it went away at `pagehide`; see
//! [`claimable`]). Then the events, raw deflate, one byte per character (U+0000 to U+00FF:
//! browsers store such text at a byte per character, and Chromium and Firefox read every one
//! of the 256 back unchanged). Deflated, they are one line per event, oldest first:
//! `<capture ms> <uuid> <fragment>`. A fragment is the event as the wire format encoded it at
//! capture, so a restored event keeps its uuid and its capture timestamp, and its next body
//! gets a fresh `sent_at`. JSON text never holds a raw newline, so lines split cleanly.
//! The API key is in the body's envelope, never in a fragment: it is never stored.
//!
//! Deflate makes the cap hold about eight times the events: 10,000 events of 300 bytes of JSON
//! fit in about 0.5 MiB, where plain they took 3 MiB.

use super::event::Uuid;
use super::gzip::{self, STORE_LEVEL};
use super::json;
use super::queue::Item;

/// Stored characters per exporter at most by default (1 MiB, `persistMaxBytes`; one character
/// per deflated byte); the oldest events beyond it are left out, and counted as dropped
/// `persistCap` by the next load. Both Chromium and Firefox hold 4.5 Mi characters per origin
/// (bench/PAGEHIDE.md), so a few exporters and tabs fit, and writing 1 MiB synchronously took
/// 2–5 ms there.
pub const PERSIST_MAX_BYTES: usize = 1 << 20;

/// Stored events older than this (7 days) when read back are dropped as `persistCap`: a page
/// opened again after a long time does not send week-old telemetry.
pub const PERSIST_MAX_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// The next load reads storage again this long after it starts: in Firefox a write made at
/// `pagehide` was sometimes not yet visible to the next page's first read (bench/PAGEHIDE.md,
/// finding 6).
pub const RESTORE_AGAIN_MS: u64 = 1000;

/// How long a copy written by a page that still runs (hidden, or about to unload) stays that
/// page's own: another load takes it only once this has passed since it was written, or at
/// once if the page marked it gone at `pagehide`. A live page sends its events itself; taking
/// its copy early would send them twice. A page killed without `pagehide` (a mobile browser
/// discarding a hidden tab) leaves a copy the next load takes after this long.
pub const PERSIST_LIVE_MS: u64 = 10_000;

/// The header's first word; a text with another is not ours (or an older layout) and is
/// counted as corrupt.
const MAGIC: &str = "spool2";

/// The most event text a stored copy may inflate to: a copy past it is counted as corrupt
/// rather than allocated (64 MiB, 16 times the largest `persistMaxBytes`).
const MAX_INFLATED: usize = 64 << 20;

/// How much event text is tried first per stored character: deflate level 1 packs spool's
/// JSON events about 7 to 1; a copy that packs worse is cut again by its own ratio.
const FIRST_TRY_RATIO: usize = 16;

/// The text to store for `items` (oldest first), within `max_chars` characters; with the
/// number of events it holds. `carried` is added to the header's cut count (events an earlier
/// load already left out and this one never held).
///
/// `kept_until` is until when the writing page may still run (0: it is gone).
pub(crate) fn encode(
    items: &[&Item],
    carried: u64,
    kept_until: u64,
    max_chars: usize,
) -> (String, usize) {
    let mut head = String::from(MAGIC);
    head.push(' ');
    let room = max_chars.saturating_sub(MAGIC.len() + 43);
    let mut plain_cap = room.saturating_mul(FIRST_TRY_RATIO);
    loop {
        // Newest events are kept: walk back from the end until the cap.
        let mut plain = 0;
        let mut first = items.len();
        while first > 0 {
            let line = line_len(items[first - 1]);
            if plain + line > plain_cap {
                break;
            }
            plain += line;
            first -= 1;
        }
        let mut lines = String::with_capacity(plain);
        for item in &items[first..] {
            json::write_u64(&mut lines, item.enqueued_ms);
            lines.push(' ');
            item.uuid.write(&mut lines);
            lines.push(' ');
            lines.push_str(&item.fragment);
            lines.push('\n');
        }
        let packed = gzip::deflate(lines.as_bytes(), STORE_LEVEL);
        if packed.len() > room && first < items.len() {
            // Packed worse than hoped: cut the event text by the ratio seen, with a margin,
            // and always by something, so this ends (with nothing stored at worst).
            let fits =
                (lines.len() as u128 * room as u128 * 9 / (10 * packed.len() as u128)) as usize;
            plain_cap = fits.min(lines.len().saturating_sub(1));
            continue;
        }
        let cut = first as u64 + carried;
        let mut text = head;
        text.reserve(43 + packed.len() * 2);
        json::write_u64(&mut text, cut);
        text.push(' ');
        json::write_u64(&mut text, kept_until);
        text.push('\n');
        text.extend(packed.iter().map(|&b| char::from(b)));
        return (text, items.len() - first);
    }
}

/// Stored characters in `text` (what `max_chars` caps; a char per deflated byte).
#[cfg(test)]
fn stored_chars(text: &str) -> usize {
    text.chars().count()
}

fn line_len(item: &Item) -> usize {
    // ms (at most 20 digits), two spaces, a uuid of 36, the fragment, a newline.
    20 + 2 + 36 + item.fragment.len() + 1
}

/// The event lines a stored text holds, inflated: `None` if the text is not ours or is
/// damaged (counted as corrupt).
pub(crate) fn unpack(text: &str) -> Option<(u64, String)> {
    let (first, rest) = text.split_once('\n')?;
    let (cut, _) = header(first.strip_prefix(MAGIC)?)?;
    let mut packed = Vec::with_capacity(rest.len());
    for c in rest.chars() {
        packed.push(u8::try_from(c).ok()?);
    }
    let lines = gzip::inflate(&packed, MAX_INFLATED)?;
    Some((cut, String::from_utf8(lines).ok()?))
}

/// One stored event read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub captured_ms: u64,
    pub uuid: Uuid,
    pub fragment: Box<str>,
}

/// What a stored text holds: its events, the events an earlier write left out, and how many
/// lines (the header included) could not be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub events: Vec<Stored>,
    pub cut: u64,
    pub corrupt: u64,
}

/// Reads a stored text; a text or a line that is not ours is counted, never fatal.
pub(crate) fn decode(text: &str) -> Decoded {
    let Some((cut, lines)) = unpack(text) else {
        return Decoded {
            corrupt: 1,
            ..Decoded::default()
        };
    };
    let mut out = Decoded {
        cut,
        ..Decoded::default()
    };
    for line in lines.split('\n') {
        if line.is_empty() {
            continue;
        }
        match read_line(line) {
            Some(s) => out.events.push(s),
            None => out.corrupt += 1,
        }
    }
    out
}

/// Whether another load may take `text` at `now_ms`: its page went away, or its live hold
/// ([`PERSIST_LIVE_MS`]) has passed. A text that is not ours is taken (and counted as corrupt).
pub fn claimable(text: &str, now_ms: u64) -> bool {
    let first = text.split('\n').next().unwrap_or("");
    match first.strip_prefix(MAGIC).and_then(header) {
        Some((_, kept_until)) => kept_until <= now_ms,
        None => true,
    }
}

/// The header after its magic word: ` <cut> <kept until>`.
fn header(rest: &str) -> Option<(u64, u64)> {
    let mut words = rest.split_ascii_whitespace();
    let cut = words.next()?.parse().ok()?;
    let kept_until = words.next()?.parse().ok()?;
    Some((cut, kept_until))
}

fn read_line(line: &str) -> Option<Stored> {
    let (ms, rest) = line.split_once(' ')?;
    let (uuid, fragment) = rest.split_once(' ')?;
    if !(fragment.starts_with('{') && fragment.ends_with('}')) {
        return None;
    }
    Some(Stored {
        captured_ms: ms.parse().ok()?,
        uuid: Uuid::parse(uuid)?,
        fragment: Box::from(fragment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, len: usize) -> Item {
        Item {
            fragment: format!("{{\"e\":\"{}\"}}", "x".repeat(len)).into(),
            uuid: Uuid(0x0190_0000_0000_7000_8000_0000_0000_0000 + seq as u128),
            seq,
            enqueued_ms: 1_700_000_000_000 + seq,
        }
    }

    /// An event of about 300 bytes, as pages capture them: alike in shape, unlike in values.
    fn event(seq: u64) -> Item {
        let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut noise = String::new();
        for _ in 0..4 {
            x ^= x >> 29;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            noise.push_str(&format!("{x:016x}"));
        }
        Item {
            fragment: format!(
                "{{\"event\":\"$pageview\",\"distinct_id\":\"user-{}\",\"properties\":{{\"$current_url\":\"https://example.com/shop/item/{seq}\",\"$screen_width\":1280,\"ref\":\"{noise}\",\"n\":{seq}}},\"timestamp\":\"2026-11-30T16:{:02}:{:02}.{:03}Z\"}}",
                seq % 7,
                seq / 60_000 % 60,
                seq / 1000 % 60,
                seq % 1000
            )
            .into(),
            uuid: Uuid(0x0190_0000_0000_7000_8000_0000_0000_0000 + (x as u128)),
            seq,
            enqueued_ms: 1_700_000_000_000 + seq,
        }
    }

    /// An event whose `len` characters of text hardly deflate.
    fn noisy(seq: u64, len: usize) -> Item {
        let mut i = event(seq);
        let noise: String = (0..len as u64)
            .map(|k| char::from(b'a' + (event(seq * 7919 + k).uuid.0 % 26) as u8))
            .collect();
        i.fragment = format!("{{\"r\":\"{noise}\"}}").into();
        i
    }

    #[test]
    fn stored_events_read_back_with_their_uuid_and_capture_time() {
        let items: Vec<Item> = (0..3).map(|s| item(s, 10)).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let (text, n) = encode(&refs, 0, 0, PERSIST_MAX_BYTES);
        assert_eq!(n, 3);
        let d = decode(&text);
        assert_eq!(d.cut, 0);
        assert_eq!(d.corrupt, 0);
        assert_eq!(d.events.len(), 3);
        for (s, i) in d.events.iter().zip(&items) {
            assert_eq!(s.uuid, i.uuid);
            assert_eq!(s.captured_ms, i.enqueued_ms);
            assert_eq!(s.fragment, i.fragment);
        }
    }

    #[test]
    fn ten_thousand_page_events_fit_the_default_cap_deflated() {
        let items: Vec<Item> = (0..10_000).map(event).collect();
        let plain: usize = items.iter().map(|i| i.fragment.len()).sum();
        assert!(plain > 2 * PERSIST_MAX_BYTES, "{plain}: over twice the cap");
        let refs: Vec<&Item> = items.iter().collect();
        let (text, n) = encode(&refs, 0, 0, PERSIST_MAX_BYTES);
        assert_eq!(n, 10_000);
        assert!(stored_chars(&text) <= PERSIST_MAX_BYTES);
        let d = decode(&text);
        assert_eq!((d.events.len(), d.cut, d.corrupt), (10_000, 0, 0));
        assert_eq!(d.events[9_999].fragment, items[9_999].fragment);
    }

    #[test]
    fn over_the_cap_the_oldest_are_left_out_and_counted() {
        // Fragments that do not deflate: the cap binds on what is stored, not on the JSON.
        let items: Vec<Item> = (0..2_000).map(|s| noisy(s, 200)).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let cap = 64 * 1024;
        let (text, n) = encode(&refs, 5, 0, cap);
        assert!(stored_chars(&text) <= cap, "{}", stored_chars(&text));
        assert!(n < 2_000 && n > 100, "{n}");
        let d = decode(&text);
        assert_eq!(d.cut, 2_000 - n as u64 + 5);
        assert_eq!(d.events.len(), n);
        // The newest are the ones kept.
        assert_eq!(d.events.last().unwrap().uuid, items[1_999].uuid);
        assert_eq!(d.events[0].uuid, items[2_000 - n].uuid);
    }

    #[test]
    fn a_cap_too_small_for_one_event_stores_none_and_counts_them() {
        let items = [noisy(1, 5_000)];
        let (text, n) = encode(&[&items[0]], 0, 0, 1024);
        assert_eq!(n, 0);
        assert!(stored_chars(&text) <= 1024);
        assert_eq!(decode(&text).cut, 1);
    }

    #[test]
    fn a_live_pages_copy_is_claimable_only_after_its_hold_and_a_gone_pages_at_once() {
        let items = [item(1, 3)];
        let (live, _) = encode(&[&items[0]], 0, 5_000 + PERSIST_LIVE_MS, PERSIST_MAX_BYTES);
        assert!(!claimable(&live, 5_000));
        assert!(!claimable(&live, 5_000 + PERSIST_LIVE_MS - 1));
        assert!(claimable(&live, 5_000 + PERSIST_LIVE_MS));
        let (gone, _) = encode(&[&items[0]], 0, 0, PERSIST_MAX_BYTES);
        assert!(claimable(&gone, 5_000));
        assert!(
            claimable("not ours", 5_000),
            "taken, then counted as corrupt"
        );
    }

    #[test]
    fn corrupt_text_is_counted_and_never_panics() {
        assert_eq!(decode("").corrupt, 1);
        assert_eq!(decode("garbage").corrupt, 1);
        assert_eq!(decode("spool2 0 0\n\u{100}").corrupt, 1, "not a byte");
        let items: Vec<Item> = (0..20).map(event).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let (text, _) = encode(&refs, 0, 0, PERSIST_MAX_BYTES);
        // Every prefix of a valid text reads without panicking; a cut one is corrupt.
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let d = decode(&text[..end]);
                assert!(d.corrupt > 0 || d.events.len() == 20, "{end}");
            }
        }
        // A flipped byte is caught by inflate or by the line parser, never a panic.
        let chars: Vec<char> = text.chars().collect();
        for at in (12..chars.len()).step_by(7) {
            let mut bad = chars.clone();
            bad[at] = char::from((bad[at] as u8) ^ 0x55);
            let _ = decode(&bad.iter().collect::<String>());
        }
    }
}
