//! Deterministic pseudo-random images for testnets and the demo: a base
//! image from a seed, and a "next version" that differs from it only in a
//! few regions (so chunk dedupe makes the second a small delta). Any byte
//! can be computed from its offset, so images are streamed, never held.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::failure::{AtPath, CmdResult};

/// Bytes written per block when streaming an image.
const BLOCK: usize = 1 << 20;

/// What an image holds: bytes from `seed`, except in `changes`, whose bytes
/// come from their own seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// The seed of the base bytes.
    seed: u64,
    /// Changed regions: `(offset, length, seed)`, sorted, not overlapping.
    changes: Vec<(u64, u64, u64)>,
}

/// SplitMix64: a counter-based mixer, so word `i` needs no state.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte `off` of the stream of `seed`.
fn byte(seed: u64, off: u64) -> u8 {
    mix(seed, off / 8).to_le_bytes()[(off % 8) as usize]
}

impl Pattern {
    /// Pseudo-random bytes from `seed`.
    pub(crate) fn base(seed: u64) -> Self {
        Self {
            seed,
            changes: Vec::new(),
        }
    }

    /// This pattern with `regions` regions of `percent_each` % of `size`
    /// replaced by other pseudo-random bytes, spread evenly over the image
    /// (`version` seeds the new bytes, so each version differs).
    pub(crate) fn changed(&self, size: u64, regions: u64, percent_each: u64, version: u64) -> Self {
        let len = (size.saturating_mul(percent_each) / 100).max(1);
        let mut changes = self.changes.clone();
        for r in 0..regions {
            // Region r is centred in the r-th of `regions` equal slices.
            let slice = size / regions.max(1);
            let start = (slice.saturating_mul(r) + slice / 2).saturating_sub(len / 2);
            let len = len.min(size.saturating_sub(start));
            if len > 0 {
                changes.push((start, len, mix(self.seed ^ version, r)));
            }
        }
        changes.sort_unstable();
        Self {
            seed: self.seed,
            changes,
        }
    }

    /// Bytes of the changed regions that lie inside an image of `size`.
    pub(crate) fn changed_bytes(&self) -> u64 {
        self.changes.iter().map(|&(_, l, _)| l).sum()
    }

    /// Fills `buf` with the bytes at `off..off + buf.len()`.
    fn fill(&self, off: u64, buf: &mut [u8]) {
        for (k, b) in buf.iter_mut().enumerate() {
            let at = off + k as u64;
            // Later changes win (regions of one call never overlap).
            let seed = self
                .changes
                .iter()
                .rev()
                .find(|&&(s, l, _)| at >= s && at < s + l)
                .map_or(self.seed, |&(_, _, seed)| seed);
            *b = byte(seed, at);
        }
    }
}

/// Writes `size` bytes of `pattern` to `path`.
///
/// # Errors
/// The file cannot be written.
pub(crate) fn write(path: &Path, size: u64, pattern: &Pattern) -> CmdResult {
    let f = File::create(path).at(path)?;
    let mut w = BufWriter::with_capacity(BLOCK, f);
    let mut buf = vec![0u8; BLOCK];
    let mut off = 0u64;
    while off < size {
        let n = usize::try_from((size - off).min(BLOCK as u64)).unwrap_or(BLOCK);
        let chunk = &mut buf[..n];
        pattern.fill(off, chunk);
        w.write_all(chunk).at(path)?;
        off += n as u64;
    }
    w.flush().at(path)?;
    w.get_ref().sync_all().at(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_same_pattern_always_gives_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = Pattern::base(42);
        write(&d.path().join("a"), 100_000, &p).unwrap();
        write(&d.path().join("b"), 100_000, &p).unwrap();
        let a = std::fs::read(d.path().join("a")).unwrap();
        assert_eq!(a.len(), 100_000);
        assert_eq!(a, std::fs::read(d.path().join("b")).unwrap());
        assert_ne!(a, {
            write(&d.path().join("c"), 100_000, &Pattern::base(43)).unwrap();
            std::fs::read(d.path().join("c")).unwrap()
        });
    }

    #[test]
    fn a_changed_version_differs_only_in_its_regions() {
        let d = tempfile::tempdir().unwrap();
        let size = 1_000_000;
        let v1 = Pattern::base(7);
        let v2 = v1.changed(size, 4, 2, 2);
        assert_eq!(v2.changed_bytes(), 4 * 20_000);
        write(&d.path().join("1"), size, &v1).unwrap();
        write(&d.path().join("2"), size, &v2).unwrap();
        let a = std::fs::read(d.path().join("1")).unwrap();
        let b = std::fs::read(d.path().join("2")).unwrap();
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count() as u64;
        // Random bytes collide with probability 1/256.
        assert!(differ <= v2.changed_bytes() && differ > v2.changed_bytes() * 9 / 10);
        assert_eq!(a[..100_000], b[..100_000]);
    }
}
