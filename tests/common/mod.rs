//! What the simulations share: the simulated collector's weighted choice of how it answers.

use spool::engine::Rng;

/// One of `table`'s values, each as likely as its weight.
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
