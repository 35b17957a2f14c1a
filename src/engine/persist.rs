//! Persistence across page loads: the events a page still holds when it goes away, as text the
//! shell writes synchronously to `localStorage`, and that text read back by the next exporter
//! of the same endpoint.
//!
//! The engine owns the policy: which events are stored (everything held that the collector has
//! not acknowledged, requests in flight included: at-least-once), in which order, within which
//! caps, and how what does not fit is counted. The shell only moves the text.
//!
//! The text is one header line, `spool1 <cut> <kept until>`, where `cut` counts events left out
//! by the byte cap (the next load counts them as dropped `persistCap`) and `kept until` says
//! until when the writing page may still be running (0 once it went away at `pagehide`; see
//! [`claimable`]), then one line per event, oldest
//! first: `<capture ms> <uuid> <fragment>`. A fragment is the event as the wire format encoded
//! it at capture, so a restored event keeps its uuid and its capture timestamp, and its next
//! body gets a fresh `sent_at`. JSON text never holds a raw newline, so lines split cleanly.
//! The API key is in the body's envelope, never in a fragment: it is never stored.

use super::event::Uuid;
use super::json;
use super::queue::Item;

/// Stored bytes per exporter at most by default (1 MiB, `persistMaxBytes`); the oldest events
/// beyond it are left out, and counted as dropped `persistCap` by the next load. Both Chromium and Firefox hold 4.5 Mi
/// characters per origin (bench/PAGEHIDE.md), so a few exporters and tabs fit, and writing
/// 1 MiB synchronously took 2–5 ms there.
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
const MAGIC: &str = "spool1";

/// The text to store for `items` (oldest first), within `max_bytes`; with the number of
/// events it holds. `carried` is added to the header's cut count (events an earlier load
/// already left out and this one never held).
///
/// `kept_until` is until when the writing page may still run (0: it is gone).
pub(crate) fn encode(
    items: &[&Item],
    carried: u64,
    kept_until: u64,
    max_bytes: usize,
) -> (String, usize) {
    // Newest events are kept: walk back from the end until the cap.
    let mut bytes = MAGIC.len() + 43;
    let mut first = items.len();
    while first > 0 {
        let line = line_len(items[first - 1]);
        if bytes + line > max_bytes {
            break;
        }
        bytes += line;
        first -= 1;
    }
    let cut = first as u64 + carried;
    let mut text = String::with_capacity(bytes);
    text.push_str(MAGIC);
    text.push(' ');
    json::write_u64(&mut text, cut);
    text.push(' ');
    json::write_u64(&mut text, kept_until);
    text.push('\n');
    for item in &items[first..] {
        json::write_u64(&mut text, item.enqueued_ms);
        text.push(' ');
        item.uuid.write(&mut text);
        text.push(' ');
        text.push_str(&item.fragment);
        text.push('\n');
    }
    (text, items.len() - first)
}

fn line_len(item: &Item) -> usize {
    // ms (at most 20 digits), two spaces, a uuid of 36, the fragment, a newline.
    20 + 2 + 36 + item.fragment.len() + 1
}

/// One stored event read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stored<'a> {
    pub captured_ms: u64,
    pub uuid: Uuid,
    pub fragment: &'a str,
}

/// What a stored text holds: its events, the events an earlier write left out, and how many
/// lines (the header included) could not be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub events: Vec<Stored<'a>>,
    pub cut: u64,
    pub corrupt: u64,
}

/// Reads a stored text; a line that is not ours is counted, never fatal.
pub(crate) fn decode(text: &str) -> Decoded<'_> {
    let mut out = Decoded::default();
    let mut lines = text.split('\n');
    match lines.next().and_then(|h| h.strip_prefix(MAGIC)) {
        Some(rest) => match header(rest) {
            Some((cut, _)) => out.cut = cut,
            None => out.corrupt += 1,
        },
        None => {
            out.corrupt += 1;
            return out;
        }
    }
    for line in lines {
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

fn read_line(line: &str) -> Option<Stored<'_>> {
    let (ms, rest) = line.split_once(' ')?;
    let (uuid, fragment) = rest.split_once(' ')?;
    if !(fragment.starts_with('{') && fragment.ends_with('}')) {
        return None;
    }
    Some(Stored {
        captured_ms: ms.parse().ok()?,
        uuid: Uuid::parse(uuid)?,
        fragment,
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
            assert_eq!(s.fragment, &*i.fragment);
        }
    }

    #[test]
    fn over_the_byte_cap_the_oldest_are_left_out_and_counted() {
        let items: Vec<Item> = (0..300).map(|s| item(s, 10_000)).collect();
        let refs: Vec<&Item> = items.iter().collect();
        let (text, n) = encode(&refs, 5, 0, PERSIST_MAX_BYTES);
        assert!(text.len() <= PERSIST_MAX_BYTES, "{}", text.len());
        assert!(n < 300 && n > 90, "{n}");
        let d = decode(&text);
        assert_eq!(d.cut, 300 - n as u64 + 5);
        // The newest are the ones kept.
        assert_eq!(d.events.last().unwrap().uuid, items[299].uuid);
        assert_eq!(d.events[0].uuid, items[300 - n].uuid);
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
    fn corrupt_text_is_counted_line_by_line_and_never_panics() {
        assert_eq!(decode("").corrupt, 1);
        assert_eq!(decode("garbage").corrupt, 1);
        let items = [item(1, 3)];
        let (text, _) = encode(&[&items[0]], 0, 0, PERSIST_MAX_BYTES);
        let mixed = format!("{text}12 nonsense {{}}\nnot a line\n\u{fffd}\n");
        let d = decode(&mixed);
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.corrupt, 3);
        // Every prefix of a valid text reads without panicking.
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let _ = decode(&text[..end]);
            }
        }
    }
}
