//! Receivers' progress: which objects (chunks) of a release they hold, as
//! a compact bitmap sent instead of per-frame acknowledgements.
//!
//! # Wire format
//! ```text
//! 0      encoding: 0 = raw bits, 1 = runs
//! raw:   ceil(len / 8) bytes, bit i = object i, LSB first; bits past len are 0
//! runs:  LEB128 run lengths, alternating, starting with a run of clear bits
//!        (possibly 0); they sum to exactly len
//! ```
//! The length `len` is known to both sides (the release's chunk count) and
//! is not sent. [`Progress::to_bytes`] picks whichever encoding is shorter:
//! a receiver that has nothing, everything, or long stretches costs a few
//! bytes whatever the release size.

use alloc::vec::Vec;

use crate::Error;

/// Most objects one bitmap covers.
pub const PROGRESS_OBJECTS_MAX: usize = 1 << 16;

const RAW: u8 = 0;
const RUNS: u8 = 1;

/// A set of object ordinals `0..len`. Invariant: no bit past `len` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    bits: Vec<u8>,
    len: usize,
}

impl Progress {
    /// All clear, for `len` objects.
    ///
    /// # Errors
    /// [`Error::MalformedProgress`] over [`PROGRESS_OBJECTS_MAX`].
    pub fn new(len: usize) -> Result<Self, Error> {
        if len > PROGRESS_OBJECTS_MAX {
            return Err(Error::MalformedProgress {
                reason: "more objects than a bitmap covers",
            });
        }
        Ok(Self {
            bits: alloc::vec![0; len.div_ceil(8)],
            len,
        })
    }

    /// Objects covered.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether it covers no object.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether object `i` is held (false out of range).
    #[must_use]
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    /// Marks object `i` held (no-op out of range).
    pub fn set(&mut self, i: usize) {
        if i < self.len {
            self.bits[i / 8] |= 1 << (i % 8);
        }
    }

    /// Number of objects held.
    #[must_use]
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Objects not held, in order.
    pub fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| !self.get(i))
    }

    fn runs(&self) -> Vec<u8> {
        let mut out = alloc::vec![RUNS];
        let mut current = false;
        let mut run = 0usize;
        for i in 0..self.len {
            if self.get(i) == current {
                run += 1;
            } else {
                crate::leb128::push(&mut out, u32::try_from(run).unwrap_or(u32::MAX));
                current = !current;
                run = 1;
            }
        }
        if run > 0 || self.len == 0 {
            crate::leb128::push(&mut out, u32::try_from(run).unwrap_or(u32::MAX));
        }
        out
    }

    /// The wire bytes, in the shorter encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let runs = self.runs();
        if runs.len() <= 1 + self.bits.len() {
            runs
        } else {
            let mut out = Vec::with_capacity(1 + self.bits.len());
            out.push(RAW);
            out.extend_from_slice(&self.bits);
            out
        }
    }

    /// Parses wire bytes for `len` objects.
    ///
    /// # Errors
    /// [`Error::MalformedProgress`] naming what is wrong.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Result<Self, Error> {
        let bad = |reason| Error::MalformedProgress { reason };
        let mut p = Self::new(len)?;
        let (&format, body) = bytes.split_first().ok_or(bad("empty"))?;
        match format {
            RAW => {
                if body.len() != p.bits.len() {
                    return Err(bad("raw length does not match the object count"));
                }
                if len % 8 != 0 && body.last().is_some_and(|b| b >> (len % 8) != 0) {
                    return Err(bad("bits set past the object count"));
                }
                p.bits.copy_from_slice(body);
            }
            RUNS => {
                let mut at = 0usize;
                let mut set = false;
                let mut rest = body;
                while !rest.is_empty() {
                    let (run, used) = crate::leb128::read(rest).ok_or(bad("bad run length"))?;
                    let run = run as usize;
                    rest = &rest[used..];
                    let end = at
                        .checked_add(run)
                        .filter(|&e| e <= len)
                        .ok_or(bad("runs exceed the object count"))?;
                    if set {
                        for i in at..end {
                            p.set(i);
                        }
                    }
                    at = end;
                    set = !set;
                }
                if at != len {
                    return Err(bad("runs do not cover the object count"));
                }
            }
            _ => return Err(bad("unknown encoding")),
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_full_and_striped_bitmaps_pick_the_shorter_encoding() {
        let mut p = Progress::new(2_000).unwrap();
        assert_eq!(p.to_bytes(), vec![RUNS, 0xD0, 0x0F]); // one run of 2 000 clear
        for i in 0..2_000 {
            p.set(i);
        }
        assert_eq!(p.to_bytes(), vec![RUNS, 0, 0xD0, 0x0F]);
        let mut striped = Progress::new(64).unwrap();
        for i in (0..64).step_by(2) {
            striped.set(i);
        }
        assert_eq!(striped.to_bytes().len(), 9); // raw: 1 + 8
        assert_eq!(striped.missing().count(), 32);
    }

    #[test]
    fn malformed_bitmaps_are_typed_errors() {
        let bad = |b: &[u8], len| {
            matches!(
                Progress::from_bytes(b, len),
                Err(Error::MalformedProgress { .. })
            )
        };
        assert!(bad(&[], 8));
        assert!(bad(&[RAW, 0, 0], 8));
        assert!(bad(&[RAW, 0b1111_1000], 3));
        assert!(bad(&[RUNS, 5], 8));
        assert!(bad(&[RUNS, 5, 5], 8));
        assert!(bad(&[RUNS, 0x80, 0x80, 0x80, 0x01], 8));
        assert!(bad(&[7], 8));
        assert!(Progress::new(PROGRESS_OBJECTS_MAX + 1).is_err());
    }

    proptest! {
        #[test]
        fn progress_round_trips(len in 0usize..3_000, set in prop::collection::vec(any::<prop::sample::Index>(), 0..200)) {
            let mut p = Progress::new(len).unwrap();
            if len > 0 {
                for i in &set {
                    p.set(i.index(len));
                }
            }
            let bytes = p.to_bytes();
            prop_assert!(bytes.len() <= 1 + len.div_ceil(8).max(1) + 2);
            prop_assert_eq!(Progress::from_bytes(&bytes, len).unwrap(), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_progress_parser(bytes in prop::collection::vec(any::<u8>(), 0..64), len in 0usize..600) {
            let _ = Progress::from_bytes(&bytes, len);
        }
    }
}
