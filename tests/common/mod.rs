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

/// Takes a stored copy into `engine` as the browser shell does: its events inflated first if
/// they are deflated (by flate2 here, by `DecompressionStream("deflate-raw")` there).
#[allow(dead_code)] // not every test crate that includes this module restores copies
pub fn restore(engine: &mut Engine, text: &str, now: u64) -> usize {
    let inflated = stored_copy_deflated(text).and_then(|bytes| {
        let mut lines = String::new();
        flate2::read::DeflateDecoder::new(&bytes[..])
            .read_to_string(&mut lines)
            .ok()
            .map(|_| lines)
    });
    engine.handle_restore(text, inflated.as_deref(), now)
}
