//! Deterministic pseudo-random images for this crate's unit tests.

/// `len` bytes of xorshift output from `seed`: incompressible, and the
/// same for the same arguments.
pub(crate) fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
