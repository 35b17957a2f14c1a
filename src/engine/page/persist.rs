//! Persistence across page loads: the events a page still holds when it goes away, as text the
//! shell writes synchronously to `localStorage`, and that text read back by the next exporter
//! of the same endpoint.
//!
//! The engine owns the policy: which events are stored (everything held that the collector has
//! not acknowledged, requests in flight included: at-least-once), in which order, within which
//! caps, and how what does not fit is counted. The shell only moves the text.
//!
//! The text is one header line, `spool3 <cut> <kept until>`, where `cut` counts events left
//! out by the cap (the next load counts them as dropped `persistCap`) and `kept until` says
//! until when the writing page may still be running (0 once it went away at `pagehide`; see
//! [`claimable`]). Then the events, one line each, oldest first: `<capture ms> <uuid>
//! <fragment>`. A batch packed ahead (`page/pack`) is stored as its lines raw-deflated by the
//! host while the page lived: a `d<bytes>` line, then the bytes one per character (U+0000 to
//! U+00FF: browsers store such text at a byte per character, and Chromium and Firefox read
//! every one of the 256 back unchanged); the next load inflates each
//! (`DecompressionStream("deflate-raw")` in a browser). The events not packed, the unfinished
//! tail, follow a `p` line as plain lines. Nothing is compressed as the page goes away.
//!
//! A fragment is the event as the wire format encoded it at capture, so a restored event keeps
//! its uuid and its capture timestamp, and its next body gets a fresh `sent_at`. JSON text
//! never holds a raw newline, so lines split cleanly. The API key is in the body's envelope,
//! never in a fragment: it is never stored (which is why the copy packs lines, not bodies).
//!
//! Deflate makes the cap hold about eight times the events: 10,000 events of 300 bytes of JSON
//! fit in about 0.5 MiB, where plain they took 3 MiB.

use crate::engine::delivery::event::Uuid;
use crate::engine::delivery::queue::Item;
use crate::engine::wire::gzip;
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
    pub stored: Option<(usize, usize)>,
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

/// What a copy held: the events held, the next capture sequence, the first sequence not
/// taken by another load, and the packs back. Equal, the same events in the same parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyOf {
    pub held: usize,
    pub next_seq: u64,
    pub from: u64,
    /// Batches whose lines are packed: one more back, and the copy is made again with it.
    pub packed: usize,
    /// Events left out, carried on by the browser (`Batch::carried`).
    pub left_out: usize,
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

    /// Whether batches' lines are packed for the copy: the host keeps copies and inflates.
    pub fn packs_copies(&self) -> bool {
        self.on && self.deflate
    }

    /// The copy written with `mark` (its `written_below`) was taken in by another load.
    pub fn taken(&mut self, mark: u64) {
        self.stored_from = self.stored_from.max(mark);
        self.stored = None;
        self.last = None;
    }
}

/// The header's first word; a text with another is not ours (or an older layout) and is
/// counted as corrupt.
const MAGIC: &str = "spool3";

/// Events held, as the copy stores them: a batch's lines packed ahead (raw deflate), or lines
/// as they are.
pub(crate) enum Part<'a> {
    /// A batch's lines raw-deflated by the host, as the copy stores them ([`PackedPart`]),
    /// and how many events they hold.
    Packed(&'a PackedPart, usize),
    /// Events not packed.
    Plain(&'a Item),
}

impl Part<'_> {
    /// Events in it.
    fn events(&self) -> usize {
        match self {
            Part::Packed(_, n) => *n,
            Part::Plain(_) => 1,
        }
    }

    /// Stored characters it takes (a character per deflated byte; a line's length bounds its
    /// characters).
    fn chars(&self) -> usize {
        match self {
            Part::Packed(part, _) => part.chars,
            Part::Plain(item) => line_len(item),
        }
    }
}

/// A batch's deflated lines as the copy stores them, made once when its pack comes back (not
/// as the page goes away): `d<bytes>`, a newline, then the bytes a character each.
#[derive(Debug)]
pub(crate) struct PackedPart {
    text: String,
    /// Its characters (what `persistMaxBytes` caps).
    chars: usize,
}

impl PackedPart {
    pub fn new(bytes: &[u8]) -> PackedPart {
        // Exactly sized: it is kept as long as its batch is held.
        let high = bytes.iter().filter(|&&b| b >= 0x80).count();
        let mut text = String::with_capacity(22 + bytes.len() + high);
        text.push('d');
        json::write_u64(&mut text, bytes.len() as u64);
        text.push('\n');
        let chars = text.len() + bytes.len();
        text.extend(bytes.iter().map(|&b| char::from(b)));
        PackedPart { text, chars }
    }
}

/// The lines of `items` as the copy stores them: `<capture ms> <uuid> <fragment>` each.
pub(crate) fn lines<'a>(items: impl Iterator<Item = &'a Item>) -> String {
    let mut lines = String::new();
    for item in items {
        json::write_u64(&mut lines, item.enqueued_ms);
        lines.push(' ');
        item.uuid.write(&mut lines);
        lines.push(' ');
        lines.push_str(&item.fragment);
        lines.push('\n');
    }
    lines
}

/// The text to store for `parts` (oldest first), within `max_chars` characters, the newest
/// kept; with the number of events it holds. `carried` is added to the header's cut count
/// (events an earlier load already left out and this one never held). `kept_until` is until
/// when the writing page may still run (0: it is gone).
///
/// Packed parts go first, each as `d<bytes>` and a newline, then its bytes a character each;
/// the plain lines follow a `p` line.
pub(crate) fn encode(
    parts: &[Part<'_>],
    carried: u64,
    kept_until: u64,
    max_chars: usize,
) -> (String, usize) {
    let room = max_chars.saturating_sub(MAGIC.len() + 45);
    let (mut used, mut first) = (0, parts.len());
    while first > 0 && used + parts[first - 1].chars() <= room {
        used += parts[first - 1].chars();
        first -= 1;
    }
    let kept = &parts[first..];
    let left_out: usize = parts[..first].iter().map(Part::events).sum();
    let mut text = String::with_capacity(MAGIC.len() + 45 + used);
    text.push_str(MAGIC);
    write_header_rest(&mut text, left_out as u64 + carried, kept_until);
    let mut plain = Vec::new();
    for part in kept {
        match part {
            Part::Packed(part, _) => text.push_str(&part.text),
            Part::Plain(item) => plain.push(*item),
        }
    }
    if !plain.is_empty() {
        text.push_str("p\n");
        text.push_str(&lines(plain.into_iter()));
    }
    (text, kept.iter().map(Part::events).sum())
}

/// [`encode`], with the events not packed ahead deflated there and then into one part of
/// their own (for a host that can inflate): the copy made as the page goes away holds as many
/// events as when everything was packed ahead, at the cost of a deflate then (level 1). The
/// newest are kept: if they alone pass the cap, the oldest of them are left out (by the ratio
/// seen) and counted.
pub(crate) fn encode_deflating_rest(
    parts: &[Part<'_>],
    carried: u64,
    kept_until: u64,
    max_chars: usize,
) -> (String, usize) {
    let plain: Vec<&Item> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Plain(item) => Some(*item),
            Part::Packed(..) => None,
        })
        .collect();
    if plain.is_empty() {
        return encode(parts, carried, kept_until, max_chars);
    }
    let room = max_chars.saturating_sub(MAGIC.len() + 45);
    let mut first = 0;
    loop {
        let text = lines(plain[first..].iter().copied());
        let rest = PackedPart::new(&gzip::deflate(text.as_bytes(), REST_LEVEL));
        let n = plain.len() - first;
        if rest.chars > room && n > 1 {
            let keep = (n as u128 * room as u128 * 9 / (10 * rest.chars as u128)) as usize;
            first = plain.len() - keep.clamp(1, n - 1);
            continue;
        }
        let mut all: Vec<Part<'_>> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Packed(part, events) => Some(Part::Packed(part, *events)),
                Part::Plain(_) => None,
            })
            .collect();
        all.push(Part::Packed(&rest, n));
        return encode(&all, carried + first as u64, kept_until, max_chars);
    }
}

/// deflate level for the events not packed ahead, deflated as the page goes away: speed counts
/// (0.39 ms per 60 KB, where level 6 took 0.68).
pub(crate) const REST_LEVEL: u8 = 1;

/// `text` (made by [`encode`]) kept until `kept_until` instead: its header made again, its
/// events as they are. `None` if `text` is not such a copy.
pub(crate) fn restamp(text: &str, kept_until: u64) -> Option<String> {
    let (first, events) = text.split_once('\n')?;
    let (cut, _) = header(first.strip_prefix(MAGIC)?)?;
    let mut out = String::with_capacity(text.len() + 20);
    out.push_str(MAGIC);
    write_header_rest(&mut out, cut, kept_until);
    out.push_str(events);
    Some(out)
}

/// The header after `spool3`: ` <cut> <kept until>` and its newline.
fn write_header_rest(text: &mut String, cut: u64, kept_until: u64) {
    text.push(' ');
    json::write_u64(text, cut);
    text.push(' ');
    json::write_u64(text, kept_until);
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

/// A stored text's parts, in order: each packed one's bytes, or its plain lines.
enum Segment<'a> {
    Packed(Vec<u8>),
    Plain(&'a str),
    /// Not readable: counted as corrupt.
    Damaged,
}

/// Walks the parts after the header.
fn segments(mut rest: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(lines) = rest.strip_prefix("p\n") {
            out.push(Segment::Plain(lines));
            break;
        }
        let parsed = rest.strip_prefix('d').and_then(|r| r.split_once('\n'));
        let Some((n, body)) = parsed.and_then(|(n, b)| Some((n.parse::<usize>().ok()?, b))) else {
            out.push(Segment::Damaged);
            break;
        };
        let mut bytes = Vec::with_capacity(n);
        let mut chars = body.char_indices();
        let mut end = body.len();
        while bytes.len() < n {
            match chars.next().map(|(i, c)| (i, u8::try_from(c))) {
                Some((_, Ok(b))) => bytes.push(b),
                // Not a byte, or cut short: damaged.
                _ => {
                    out.push(Segment::Damaged);
                    return out;
                }
            }
        }
        if let Some((i, _)) = chars.next() {
            end = i;
        }
        out.push(Segment::Packed(bytes));
        rest = &body[end..];
    }
    out
}

/// A stored text's packed parts, as the host must inflate them (raw deflate) and hand them
/// back to [`decode`], in order; none if the text is not ours.
pub fn deflated(text: &str) -> Vec<Vec<u8>> {
    let Some((first, rest)) = text.split_once('\n') else {
        return Vec::new();
    };
    if first.strip_prefix(MAGIC).and_then(header).is_none() {
        return Vec::new();
    }
    segments(rest)
        .into_iter()
        .filter_map(|s| match s {
            Segment::Packed(bytes) => Some(bytes),
            _ => None,
        })
        .collect()
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

/// Reads a stored text: its header and plain lines from `text`, its packed parts from
/// `inflated` (what the host made of [`deflated`]'s, in order; `None` for one it could not
/// inflate). A text, a part or a line that is not ours is counted, never fatal.
pub(crate) fn decode(text: &str, inflated: &[Option<String>]) -> Decoded {
    let corrupt = Decoded {
        corrupt: 1,
        ..Decoded::default()
    };
    let Some((first, rest)) = text.split_once('\n') else {
        return corrupt;
    };
    let Some((cut, _)) = first.strip_prefix(MAGIC).and_then(header) else {
        return corrupt;
    };
    let mut out = Decoded {
        cut,
        ..Decoded::default()
    };
    let mut packed = inflated.iter();
    for segment in segments(rest) {
        let lines = match segment {
            Segment::Plain(lines) => lines,
            Segment::Packed(_) => match packed.next() {
                Some(Some(lines)) => lines,
                _ => {
                    out.corrupt += 1;
                    continue;
                }
            },
            Segment::Damaged => {
                out.corrupt += 1;
                continue;
            }
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
    match words.next() {
        None => Some((cut, kept_until)),
        Some(_) => None,
    }
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
    use std::io::{Read, Write};

    /// What the next load reads of `text`: each packed part inflated as a browser's
    /// `DecompressionStream` would.
    fn read(text: &str) -> Decoded {
        let inflated: Vec<Option<String>> = deflated(text)
            .iter()
            .map(|bytes| {
                let mut lines = String::new();
                flate2::read::DeflateDecoder::new(&bytes[..])
                    .read_to_string(&mut lines)
                    .ok()
                    .map(|_| lines)
            })
            .collect();
        decode(text, &inflated)
    }

    /// `items`' lines raw-deflated, as a host packs a batch ahead.
    fn pack(items: &[Item]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(lines(items.iter()).as_bytes()).unwrap();
        e.finish().unwrap()
    }

    /// `items` but the last `plain` in batches of `per`, each packed, with its event count.
    fn copy_of(items: &[Item], per: usize, plain: usize) -> (Vec<(PackedPart, usize)>, usize) {
        let packed_events = items.len() - plain;
        let packs = items[..packed_events]
            .chunks(per)
            .map(|c| (PackedPart::new(&pack(c)), c.len()))
            .collect();
        (packs, packed_events)
    }

    /// The parts of `items`: `packs` (from [`copy_of`]) first, the rest plain.
    fn parts<'a>(items: &'a [Item], packs: &'a [(PackedPart, usize)]) -> Vec<Part<'a>> {
        let mut parts: Vec<Part<'a>> = packs.iter().map(|(p, n)| Part::Packed(p, *n)).collect();
        let at: usize = packs.iter().map(|(_, n)| n).sum();
        parts.extend(items[at..].iter().map(Part::Plain));
        parts
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

    #[test]
    fn packed_and_plain_events_read_back_in_order_with_their_uuid_and_capture_time() {
        let items: Vec<Item> = (0..25).map(|s| item(s, 10)).collect();
        let (packs, _) = copy_of(&items, 10, 5);
        let (text, n) = encode(&parts(&items, &packs), 0, 0, PERSIST_MAX_BYTES);
        assert_eq!(n, 25);
        assert_eq!(deflated(&text).len(), 2, "two packed batches");
        let d = read(&text);
        assert_eq!((d.cut, d.corrupt, d.events.len()), (0, 0, 25));
        for (s, i) in d.events.iter().zip(&items) {
            assert_eq!(s.uuid, i.uuid);
            assert_eq!(s.captured_ms, i.enqueued_ms);
            assert_eq!(s.fragment, i.fragment);
        }
    }

    #[test]
    fn plain_copies_read_without_inflating_and_a_part_that_could_not_be_inflated_is_counted() {
        let items: Vec<Item> = (0..50).map(event).collect();
        let (plain, n) = encode(&parts(&items, &[]), 2, 0, PERSIST_MAX_BYTES);
        assert_eq!(n, 50);
        assert!(deflated(&plain).is_empty());
        let d = decode(&plain, &[]);
        assert_eq!((d.events.len(), d.cut, d.corrupt), (50, 2, 0));
        assert_eq!(d.events[49].fragment, items[49].fragment);
        // Plain, the cap counts the lines themselves.
        let (small, kept) = encode(&parts(&items, &[]), 0, 0, 4_096);
        assert!(small.len() <= 4_096 && kept < 50 && kept > 0, "{kept}");
        // Two packed parts and a plain tail; the host failed to inflate the first.
        let (packs, _) = copy_of(&items, 20, 10);
        let (text, _) = encode(&parts(&items, &packs), 0, 0, PERSIST_MAX_BYTES);
        let second = read(&text).events[20..40]
            .iter()
            .map(|e| e.uuid)
            .collect::<Vec<_>>();
        let mut lines = String::new();
        let bytes = &deflated(&text)[1];
        flate2::read::DeflateDecoder::new(&bytes[..])
            .read_to_string(&mut lines)
            .unwrap();
        let lost = decode(&text, &[None, Some(lines)]);
        assert_eq!((lost.events.len(), lost.corrupt), (30, 1));
        assert_eq!(
            lost.events[..20].iter().map(|e| e.uuid).collect::<Vec<_>>(),
            second
        );
    }

    #[test]
    fn ten_thousand_page_events_fit_the_default_cap_packed() {
        let items: Vec<Item> = (0..10_000).map(event).collect();
        let plain: usize = items.iter().map(|i| i.fragment.len()).sum();
        assert!(plain > 2 * PERSIST_MAX_BYTES, "{plain}: over twice the cap");
        let (packs, _) = copy_of(&items, 100, 0);
        let (text, n) = encode(&parts(&items, &packs), 0, 0, PERSIST_MAX_BYTES);
        assert_eq!(n, 10_000);
        assert!(stored_chars(&text) <= PERSIST_MAX_BYTES);
        let d = read(&text);
        assert_eq!((d.events.len(), d.cut, d.corrupt), (10_000, 0, 0));
        assert_eq!(d.events[9_999].fragment, items[9_999].fragment);
    }

    #[test]
    fn events_not_packed_ahead_are_deflated_as_the_copy_is_made_and_ten_thousand_fit() {
        let items: Vec<Item> = (0..10_000).map(event).collect();
        // A quarter packed ahead, the rest never was.
        let (packs, _) = copy_of(&items, 100, 7_500);
        let (text, n) = encode_deflating_rest(&parts(&items, &packs), 0, 0, PERSIST_MAX_BYTES);
        assert_eq!(n, 10_000);
        assert!(stored_chars(&text) <= PERSIST_MAX_BYTES);
        assert_eq!(
            deflated(&text).len(),
            26,
            "25 packed ahead and the rest as one"
        );
        let d = read(&text);
        assert_eq!((d.events.len(), d.cut, d.corrupt), (10_000, 0, 0));
        // Plain, the same cap holds about a third of them.
        let (_, plain) = encode(&parts(&items, &packs), 0, 0, PERSIST_MAX_BYTES);
        assert!(plain < 5_000, "{plain}");
        // Past the cap even deflated, the oldest of the rest are left out and counted.
        let (small, kept) = encode_deflating_rest(&parts(&items, &packs), 0, 0, 64 * 1024);
        assert!(
            stored_chars(&small) <= 64 * 1024 && kept < 10_000 && kept > 500,
            "{kept}"
        );
        assert_eq!(read(&small).cut, 10_000 - kept as u64);
        assert_eq!(read(&small).events.last().unwrap().uuid, items[9_999].uuid);
    }

    #[test]
    fn over_the_cap_the_oldest_are_left_out_and_counted() {
        let items: Vec<Item> = (0..2_000).map(event).collect();
        let (packs, _) = copy_of(&items, 100, 100);
        let cap = 64 * 1024;
        let (text, n) = encode(&parts(&items, &packs), 5, 0, cap);
        assert!(stored_chars(&text) <= cap, "{}", stored_chars(&text));
        assert!(n < 2_000 && n > 100, "{n}");
        let d = read(&text);
        assert_eq!(d.cut, 2_000 - n as u64 + 5);
        assert_eq!((d.events.len(), d.corrupt), (n, 0));
        // The newest are the ones kept: the plain tail and whole packed batches before it.
        assert_eq!(d.events.last().unwrap().uuid, items[1_999].uuid);
        assert_eq!(d.events[0].uuid, items[2_000 - n].uuid);
        assert_eq!((n - 100) % 100, 0, "whole batches");
    }

    #[test]
    fn a_cap_too_small_for_one_event_stores_none_and_counts_them() {
        let items = [item(1, 5_000)];
        let (text, n) = encode(&[Part::Plain(&items[0])], 0, 0, 1024);
        assert_eq!(n, 0);
        assert!(stored_chars(&text) <= 1024);
        assert_eq!(read(&text).cut, 1);
    }

    #[test]
    fn a_live_pages_copy_is_claimable_only_after_its_hold_and_a_gone_pages_at_once() {
        let items = [item(1, 3)];
        let one = [Part::Plain(&items[0])];
        let (live, _) = encode(&one, 0, 5_000 + PERSIST_LIVE_MS, PERSIST_MAX_BYTES);
        assert!(!claimable(&live, 5_000));
        assert!(!claimable(&live, 5_000 + PERSIST_LIVE_MS - 1));
        assert!(claimable(&live, 5_000 + PERSIST_LIVE_MS));
        let (gone, _) = encode(&one, 0, 0, PERSIST_MAX_BYTES);
        assert!(claimable(&gone, 5_000));
        assert!(
            claimable("not ours", 5_000),
            "taken, then counted as corrupt"
        );
    }

    #[test]
    fn a_copy_restamped_keeps_its_events_and_cut_with_a_new_kept_until() {
        let items: Vec<Item> = (0..50).map(event).collect();
        let (packs, _) = copy_of(&items, 20, 10);
        let parts = parts(&items, &packs);
        let (live, n) = encode(&parts, 3, 1_700_000_010_000, PERSIST_MAX_BYTES);
        let gone = restamp(&live, 0).expect("a copy");
        assert_eq!(gone, encode(&parts, 3, 0, PERSIST_MAX_BYTES).0);
        assert_eq!(read(&gone).events.len(), n);
        assert_eq!(read(&gone).cut, 3);
        assert_eq!(restamp("not a copy", 0), None);
    }

    #[test]
    fn corrupt_text_is_counted_and_never_panics() {
        assert_eq!(read("").corrupt, 1);
        assert_eq!(read("garbage").corrupt, 1);
        assert_eq!(read("spool3 0 0\nd1\n\u{100}").corrupt, 1, "not a byte");
        assert_eq!(read("spool3 0 0\nd9\nab").corrupt, 1, "cut short");
        assert_eq!(read("spool3 0 0\nx\n").corrupt, 1, "no such part");
        assert_eq!(read("spool2 0 0 d\n").corrupt, 1, "an older layout");
        let items: Vec<Item> = (0..20).map(event).collect();
        let (packs, _) = copy_of(&items, 10, 0);
        let (text, _) = encode(&parts(&items, &packs), 0, 0, PERSIST_MAX_BYTES);
        // Every prefix of a valid text reads without panicking; one cut inside a part is
        // corrupt, one cut between parts holds whole batches.
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let d = read(&text[..end]);
                assert!(d.corrupt > 0 || d.events.len() % 10 == 0, "{end}");
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
