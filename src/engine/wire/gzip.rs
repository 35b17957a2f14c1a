//! Compression the engine does itself, synchronously: gzip for bodies on the page-hide path
//! (they must leave in the page's last task, before an asynchronous compressor such as
//! `CompressionStream` could answer; gzip carries about ten times the events through the
//! browser's 64 KiB keepalive budget, bench/PAGEHIDE.md finding 3), and raw deflate for the
//! copy stored for the next load (10,000 events of 300 bytes fit the 1 MiB default).
//!
//! miniz_oxide deflates; `crc` computes gzip's CRC-32. Only the gzip member's 10-byte header
//! and 8-byte trailer (RFC 1952) are written here. Nothing here inflates: the stored copy is
//! inflated by the host (`DecompressionStream` in a browser), which costs the wasm nothing
//! (miniz_oxide's inflate measured 6.2 KB gzipped in spool's wasm).
//!
//! A page runs these first as it goes away unless they were warmed up while it lived
//! ([`warm_up_page_close`]).

use crate::engine::page::persist::REST_LEVEL;
use crc::{Crc, Table, CRC_32_ISO_HDLC};

/// gzip's CRC-32 (ISO-HDLC), from one 1 KiB table built at compile time.
const CRC32: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&CRC_32_ISO_HDLC);

/// deflate level for request bodies: under a byte budget the ratio counts more than the time
/// (level 6 carried about 15 % more events per quota than level 1, at 0.68 ms per 60 KB).
pub(crate) const BODY_LEVEL: u8 = 6;

/// gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// `data` as one gzip member, deflated at `level`.
pub(crate) fn gzip(data: &[u8], level: u8) -> Vec<u8> {
    let deflated = deflate(data, level);
    let mut out = Vec::with_capacity(HEADER.len() + deflated.len() + 8);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&CRC32.checksum(data).to_le_bytes());
    // ISIZE: the input's length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// `data` as raw deflate (no header), at `level`.
pub(crate) fn deflate(data: &[u8], level: u8) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, level)
}

/// An event as the page-close path compresses them, [`warm_up_page_close`]'s sample.
const SAMPLE: &str = r#"{"event":"$pageview","properties":{"$current_url":"https://example.com/","i":0},"timestamp":"2026-01-01T00:00:00.000Z","uuid":"0190f1c2-7a3b-7c4d-8e5f-0123456789ab"},"#;

/// The page-close path's compression in the engine, run once on a small sample while the page
/// lives: gzip at the level of keepalive bodies and beacons, raw deflate at the stored copy's.
/// A page otherwise runs this code first as it goes away, cold: a wasm engine (V8) compiles a
/// function the first time it is called, and the deflater's memory (about 300 KB of window and
/// tables) is grown then, in the task the page leaves in. The engine runs it at the
/// collector's first answer while the page is shown, where the host says a page will close
/// ([`HostFeatures::page_close`]); BENCHMARKS.md's figure 7 has the longest lifecycle dispatch
/// of a page leaving with 20 and 300 events. Returns the sample's gzip member and raw deflate.
///
/// [`HostFeatures::page_close`]: crate::engine::HostFeatures::page_close
pub fn warm_up_page_close() -> (Vec<u8>, Vec<u8>) {
    let text = SAMPLE.repeat(8);
    let bytes = text.as_bytes();
    (gzip(bytes, BODY_LEVEL), deflate(bytes, REST_LEVEL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        let mut s = String::new();
        for i in 0..2_000 {
            s.push_str(&format!(
                "{{\"event\":\"click\",\"properties\":{{\"n\":{i},\"path\":\"/a/b\"}}}},"
            ));
        }
        s.into_bytes()
    }

    #[test]
    fn gzip_reads_back_with_an_independent_reader_and_shrinks_json() {
        let data = sample();
        let gz = gzip(&data, BODY_LEVEL);
        assert_eq!(
            &gz[..2],
            &[0x1f, 0x8b],
            "PostHog detects gzip by these bytes"
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("a whole gzip member, CRC and length checked");
        assert_eq!(back, data);
        assert!(gz.len() * 8 < data.len(), "{} of {}", gz.len(), data.len());
    }

    #[test]
    fn the_warm_up_runs_both_compressions_on_real_text() {
        let (gz, raw) = warm_up_page_close();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, SAMPLE.repeat(8).as_bytes());
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, SAMPLE.repeat(8).as_bytes());
        // Matches found, as in a batch of events: the deflater's window and tables in use.
        assert!(gz.len() * 4 < back.len(), "{} of {}", gz.len(), back.len());
    }

    #[test]
    fn empty_input_is_a_valid_gzip_member() {
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzip(b"", BODY_LEVEL)[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn deflate_reads_back_with_an_independent_reader() {
        let data = sample();
        let packed = deflate(&data, 1);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(
            packed.len() * 5 < data.len(),
            "{} of {}",
            packed.len(),
            data.len()
        );
    }
}
