//! The simulator's only source of randomness.

use meshota_mesh::SeededRng;

/// The mesh core's seeded SplitMix64 ([`SeededRng`]) with the draws the
/// simulator needs. Every random choice of a run comes from one of these,
/// derived from the run's seed, so one seed replays one run. Not for
/// secrets.
#[derive(Debug, Clone)]
pub struct SimRng(SeededRng);

impl SimRng {
    /// A generator for `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(SeededRng::new(seed))
    }

    /// An independent stream for one purpose (`tag`) of a run's `seed`:
    /// topology, links, faults and the network draw from separate streams,
    /// so adding a draw to one does not shift the others.
    #[must_use]
    pub fn stream(seed: u64, tag: u64) -> Self {
        let mut r = Self::new(seed ^ tag.wrapping_mul(0xd6e8_feb8_6659_fd93));
        let s = r.next_u64();
        Self::new(s)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// An index into a slice of length `n` (which must be non-zero to be
    /// meaningful; 0 otherwise).
    pub fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
}
