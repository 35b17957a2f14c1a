//! `Retry-After` headers from a hostile server: never a panic, never a wait past the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spool::engine::{RetryAfter, MAX_RETRY_AFTER_MS};

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let now = 1_700_000_000_000u64;
    if let Some(ra) = RetryAfter::parse(&header) {
        let until = ra.deadline(now);
        assert!(until >= now && until <= now + MAX_RETRY_AFTER_MS, "{header:?} -> {until}");
    }
});
