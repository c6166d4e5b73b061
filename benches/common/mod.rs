//! What several benchmarks share.

/// `n` pseudo-random `u32`s from a fixed xorshift64 stream: the same
/// values every run for the same `seed`.
pub(crate) fn values(n: usize, seed: u64) -> Vec<u32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        })
        .collect()
}
