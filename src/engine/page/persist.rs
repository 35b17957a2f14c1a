//! Persistence across page loads: the events a page still holds when it goes away, as text the
//! shell writes synchronously to `localStorage`, and that text read back by the next exporter
//! of the same endpoint.
//!
//! The engine owns the policy: which events are stored (everything held that the collector has
//! not acknowledged, requests in flight included: at-least-once), in which order, within which
//! caps, and how what does not fit is counted. The shell only moves the text.
//!
//! The text is one header line, `spool2 <cut> <kept until> <d|p>`, where `cut` counts events
//! left out by the cap (the next load counts them as dropped `persistCap`), `kept until` says
//! until when the writing page may still be running (0 once it went away at `pagehide`; see
//! [`claimable`]), and `d` says the events that follow are raw deflate, `p` that they are
//! plain. Deflated, they are one byte per character (U+0000 to U+00FF: browsers store such text
//! at a byte per character, and Chromium and Firefox read every one of the 256 back
//! unchanged); the engine deflates, and the host inflates them for the next load
//! (`DecompressionStream("deflate-raw")` in a browser, which costs no wasm), so a host that
//! cannot inflate asks for plain copies ([`Engine::handle_storage_opened`]
//! (crate::engine::Engine::handle_storage_opened)). Inflated or plain, they are one line per event,
//! oldest first: `<capture ms> <uuid> <fragment>`. A fragment is the event as the wire format encoded it at
//! capture, so a restored event keeps its uuid and its capture timestamp, and its next body
//! gets a fresh `sent_at`. JSON text never holds a raw newline, so lines split cleanly.
//! The API key is in the body's envelope, never in a fragment: it is never stored.
//!
//! Deflate makes the cap hold about eight times the events: 10,000 events of 300 bytes of JSON
//! fit in about 0.5 MiB, where plain they took 3 MiB.

use crate::engine::delivery::event::Uuid;
use crate::engine::delivery::queue::Item;
use crate::engine::wire::gzip::{self, STORE_LEVEL};
use crate::engine::wire::json;

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

/// What the engine knows of its copy for the next load.
#[derive(Debug)]
pub(crate) struct Persistence {
    /// The host keeps copies ([`Engine::handle_storage_opened`](crate::engine::Engine::handle_storage_opened)).
    pub on: bool,
    /// The events go deflated (the host can inflate them).
    pub deflate: bool,
    /// Events held when the last copy was written, if one is stored: it is written again
    /// whenever that changes, and removed once nothing is held.
    pub stored: Option<usize>,
    /// Events with a sequence below this were in the last copy.
    pub written_below: u64,
    /// Events with a sequence below this were taken in by another load: never stored again.
    pub stored_from: u64,
    /// When to read storage again (ms since the epoch), earliest first.
    pub read_again: Vec<u64>,
    /// The last copy made, with what it held: made again with a new header (not deflated
    /// again) while nothing held changes, as between `beforeunload` and the end of `pagehide`.
    pub last: Option<(CopyOf, String, usize)>,
}

/// What a copy held: the events held, the next capture sequence, and the first sequence not
/// taken by another load. Equal, the same events in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyOf {
    pub held: usize,
    pub next_seq: u64,
    pub from: u64,
}

impl Default for Persistence {
    fn default() -> Persistence {
        Persistence {
            on: false,
            deflate: true,
            stored: None,
            written_below: 0,
            stored_from: 0,
            read_again: Vec::new(),
            last: None,
        }
    }
}

impl Persistence {
    /// The host keeps copies from `now_ms` on: read them now, [`RESTORE_AGAIN_MS`] later (a
    /// copy written at the last page's `pagehide` may not be visible yet), and after a live
    /// page's hold has passed (a copy left by a page discarded without `pagehide`).
    pub fn open(&mut self, can_inflate: bool, now_ms: u64) {
        self.on = true;
        self.deflate = can_inflate;
        self.read_again = vec![
            now_ms + RESTORE_AGAIN_MS,
            now_ms + PERSIST_LIVE_MS + RESTORE_AGAIN_MS,
        ];
    }

    /// The last copy was taken in by another load.
    pub fn taken(&mut self) {
        self.stored_from = self.written_below;
        self.stored = None;
        self.last = None;
    }
}

/// The header's first word; a text with another is not ours (or an older layout) and is
/// counted as corrupt.
const MAGIC: &str = "spool2";

/// How much event text is tried first per stored character: deflate level 1 packs spool's
/// JSON events about 7 to 1; a copy that packs worse is cut again by its own ratio.
const FIRST_TRY_RATIO: usize = 16;

/// The text to store for `items` (oldest first), within `max_chars` characters; with the
/// number of events it holds. `carried` is added to the header's cut count (events an earlier
/// load already left out and this one never held).
///
/// `kept_until` is until when the writing page may still run (0: it is gone). `deflate`: the
/// events go deflated (else plain).
pub(crate) fn encode(
    items: &[&Item],
    carried: u64,
    kept_until: u64,
    max_chars: usize,
    deflate: bool,
) -> (String, usize) {
    let mut head = String::from(MAGIC);
    head.push(' ');
    let room = max_chars.saturating_sub(MAGIC.len() + 45);
    let mut plain_cap = match deflate {
        true => room.saturating_mul(FIRST_TRY_RATIO),
        false => room,
    };
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
        if !deflate {
            let cut = first as u64 + carried;
            let mut text = head;
            write_header_rest(&mut text, cut, kept_until, 'p');
            text.push_str(&lines);
            return (text, items.len() - first);
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
        text.reserve(45 + packed.len() * 2);
        write_header_rest(&mut text, cut, kept_until, 'd');
        text.extend(packed.iter().map(|&b| char::from(b)));
        return (text, items.len() - first);
    }
}

/// `text` (made by [`encode`]) kept until `kept_until` instead: its header made again, its
/// events as they are. `None` if `text` is not such a copy.
pub(crate) fn restamp(text: &str, kept_until: u64) -> Option<String> {
    let (first, events) = text.split_once('\n')?;
    let (cut, _, layout) = header(first.strip_prefix(MAGIC)?)?;
    let mut out = String::with_capacity(text.len() + 20);
    out.push_str(MAGIC);
    out.push(' ');
    write_header_rest(&mut out, cut, kept_until, layout);
    out.push_str(events);
    Some(out)
}

/// The header after `spool2 `: ` <cut> <kept until> <d|p>` and its newline.
fn write_header_rest(text: &mut String, cut: u64, kept_until: u64, layout: char) {
    json::write_u64(text, cut);
    text.push(' ');
    json::write_u64(text, kept_until);
    text.push(' ');
    text.push(layout);
    text.push('\n');
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

/// A stored text's events as the host must hand them back: `Some(bytes)` to inflate (raw
/// deflate) if they are deflated; `None` if they are plain, or the text is not ours (then
/// `decode` reads or counts it as it is).
pub fn deflated(text: &str) -> Option<Vec<u8>> {
    let (first, rest) = text.split_once('\n')?;
    let (_, _, layout) = header(first.strip_prefix(MAGIC)?)?;
    if layout != 'd' {
        return None;
    }
    let mut packed = Vec::with_capacity(rest.len());
    for c in rest.chars() {
        // Not a byte: damaged. An empty stream fails to inflate, and is counted then.
        let Ok(b) = u8::try_from(c) else {
            return Some(Vec::new());
        };
        packed.push(b);
    }
    Some(packed)
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

/// Reads a stored text: its header from `text`, its events from `text` if plain, else from
/// `inflated` (what the host made of [`deflated`]'s bytes; `None` if it could not). A text or
/// a line that is not ours is counted, never fatal.
pub(crate) fn decode(text: &str, inflated: Option<&str>) -> Decoded {
    let corrupt = Decoded {
        corrupt: 1,
        ..Decoded::default()
    };
    let Some((first, rest)) = text.split_once('\n') else {
        return corrupt;
    };
    let Some((cut, _, layout)) = first.strip_prefix(MAGIC).and_then(header) else {
        return corrupt;
    };
    let lines = match (layout, inflated) {
        ('p', _) => rest,
        (_, Some(lines)) => lines,
        _ => return corrupt,
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
        Some((_, kept_until, _)) => kept_until <= now_ms,
        None => true,
    }
}

/// The header after its magic word: ` <cut> <kept until> <d|p>`.
fn header(rest: &str) -> Option<(u64, u64, char)> {
    let mut words = rest.split_ascii_whitespace();
    let cut = words.next()?.parse().ok()?;
    let kept_until = words.next()?.parse().ok()?;
    let layout = match words.next()? {
        "d" => 'd',
        "p" => 'p',
        _ => return None,
    };
    Some((cut, kept_until, layout))
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
    use std::io::Read;

    /// What the next load reads of `text`: inflated as a browser's `DecompressionStream` would.
    fn read(text: &str) -> Decoded {
        let inflated = deflated(text).map(|bytes| {
            let mut lines = String::new();
            flate2::read::DeflateDecoder::new(&bytes[..])
                .read_to_string(&mut lines)
                .map(|_| lines)
        });
        match inflated {
            Some(Ok(lines)) => decode(text, Some(&lines)),
            _ => decode(text, None),
        }
    }

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
        let (text, n) = encode(&refs, 0, 0, PERSIST_MAX_BYTES, true);
        assert_eq!(n, 3);
        let d = read(&text);
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
    fn a_host_that_cannot_inflate_gets_plain_copies_and_a_deflated_one_it_could_not_is_counted() {
        let items: Vec<Item> = (0..50).map(event).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let (plain, n) = encode(&refs, 2, 0, PERSIST_MAX_BYTES, false);
        assert_eq!(n, 50);
        assert!(deflated(&plain).is_none());
        let d = decode(&plain, None);
        assert_eq!((d.events.len(), d.cut, d.corrupt), (50, 2, 0));
        assert_eq!(d.events[49].fragment, items[49].fragment);
        // Plain, the cap counts the lines themselves.
        let (small, kept) = encode(&refs, 0, 0, 4_096, false);
        assert!(small.len() <= 4_096 && kept < 50 && kept > 0, "{kept}");
        let (packed, _) = encode(&refs, 0, 0, PERSIST_MAX_BYTES, true);
        assert!(deflated(&packed).is_some());
        let lost = decode(&packed, None);
        assert_eq!((lost.events.len(), lost.corrupt), (0, 1));
    }

    #[test]
    fn ten_thousand_page_events_fit_the_default_cap_deflated() {
        let items: Vec<Item> = (0..10_000).map(event).collect();
        let plain: usize = items.iter().map(|i| i.fragment.len()).sum();
        assert!(plain > 2 * PERSIST_MAX_BYTES, "{plain}: over twice the cap");
        let refs: Vec<&Item> = items.iter().collect();
        let (text, n) = encode(&refs, 0, 0, PERSIST_MAX_BYTES, true);
        assert_eq!(n, 10_000);
        assert!(stored_chars(&text) <= PERSIST_MAX_BYTES);
        let d = read(&text);
        assert_eq!((d.events.len(), d.cut, d.corrupt), (10_000, 0, 0));
        assert_eq!(d.events[9_999].fragment, items[9_999].fragment);
    }

    #[test]
    fn over_the_cap_the_oldest_are_left_out_and_counted() {
        // Fragments that do not deflate: the cap binds on what is stored, not on the JSON.
        let items: Vec<Item> = (0..2_000).map(|s| noisy(s, 200)).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let cap = 64 * 1024;
        let (text, n) = encode(&refs, 5, 0, cap, true);
        assert!(stored_chars(&text) <= cap, "{}", stored_chars(&text));
        assert!(n < 2_000 && n > 100, "{n}");
        let d = read(&text);
        assert_eq!(d.cut, 2_000 - n as u64 + 5);
        assert_eq!(d.events.len(), n);
        // The newest are the ones kept.
        assert_eq!(d.events.last().unwrap().uuid, items[1_999].uuid);
        assert_eq!(d.events[0].uuid, items[2_000 - n].uuid);
    }

    #[test]
    fn a_cap_too_small_for_one_event_stores_none_and_counts_them() {
        let items = [noisy(1, 5_000)];
        let (text, n) = encode(&[&items[0]], 0, 0, 1024, true);
        assert_eq!(n, 0);
        assert!(stored_chars(&text) <= 1024);
        assert_eq!(read(&text).cut, 1);
    }

    #[test]
    fn a_live_pages_copy_is_claimable_only_after_its_hold_and_a_gone_pages_at_once() {
        let items = [item(1, 3)];
        let (live, _) = encode(
            &[&items[0]],
            0,
            5_000 + PERSIST_LIVE_MS,
            PERSIST_MAX_BYTES,
            true,
        );
        assert!(!claimable(&live, 5_000));
        assert!(!claimable(&live, 5_000 + PERSIST_LIVE_MS - 1));
        assert!(claimable(&live, 5_000 + PERSIST_LIVE_MS));
        let (gone, _) = encode(&[&items[0]], 0, 0, PERSIST_MAX_BYTES, true);
        assert!(claimable(&gone, 5_000));
        assert!(
            claimable("not ours", 5_000),
            "taken, then counted as corrupt"
        );
    }

    #[test]
    fn a_copy_restamped_keeps_its_events_and_cut_with_a_new_kept_until() {
        let items: Vec<Item> = (0..50).map(event).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let (live, n) = encode(&refs, 3, 1_700_000_010_000, PERSIST_MAX_BYTES, true);
        let gone = restamp(&live, 0).expect("a copy");
        assert_eq!(gone, encode(&refs, 3, 0, PERSIST_MAX_BYTES, true).0);
        assert_eq!(read(&gone).events.len(), n);
        assert_eq!(read(&gone).cut, 3);
        assert_eq!(restamp("not a copy", 0), None);
    }

    #[test]
    fn corrupt_text_is_counted_and_never_panics() {
        assert_eq!(read("").corrupt, 1);
        assert_eq!(read("garbage").corrupt, 1);
        assert_eq!(read("spool2 0 0 d\n\u{100}").corrupt, 1, "not a byte");
        assert_eq!(read("spool2 0 0 x\n").corrupt, 1, "no such layout");
        let items: Vec<Item> = (0..20).map(event).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let (text, _) = encode(&refs, 0, 0, PERSIST_MAX_BYTES, true);
        // Every prefix of a valid text reads without panicking; a cut one is corrupt.
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let d = read(&text[..end]);
                assert!(d.corrupt > 0 || d.events.len() == 20, "{end}");
            }
        }
        // A flipped byte is caught by inflate or by the line parser, never a panic.
        let chars: Vec<char> = text.chars().collect();
        for at in (12..chars.len()).step_by(7) {
            let mut bad = chars.clone();
            bad[at] = char::from((bad[at] as u8) ^ 0x55);
            let _ = read(&bad.iter().collect::<String>());
        }
    }
}
