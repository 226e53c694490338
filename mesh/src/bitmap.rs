//! Chunk availability bitmaps: bit i = chunk i of an index, LSB first.

use alloc::vec::Vec;

/// A fixed-length set of chunk ordinals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitmap {
    bits: Vec<u8>,
    len: usize,
    ones: usize,
}

impl Bitmap {
    /// All clear, for `len` chunks.
    #[must_use]
    pub fn new(len: usize) -> Self {
        Self {
            bits: alloc::vec![0; len.div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// From wire bytes; `None` when the byte length does not fit `len`
    /// or bits past `len` are set.
    #[must_use]
    pub fn from_bytes(bytes: &[u8], len: usize) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        if len % 8 != 0 {
            if let Some(last) = bytes.last() {
                if last >> (len % 8) != 0 {
                    return None;
                }
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Some(Self {
            bits: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// The wire bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of chunks covered.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when it covers no chunk.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of set bits.
    #[must_use]
    pub const fn count(&self) -> usize {
        self.ones
    }

    /// True when every chunk is set.
    #[must_use]
    pub const fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Whether chunk `i` is set (false when out of range).
    #[must_use]
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    /// Sets chunk `i`; returns true when it was clear. Out of range: no-op.
    pub fn set(&mut self, i: usize) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bits[i / 8] |= 1 << (i % 8);
        self.ones += 1;
        true
    }

    /// Clears chunk `i`; returns true when it was set.
    pub fn clear(&mut self, i: usize) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bits[i / 8] &= !(1 << (i % 8));
        self.ones -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wire_bitmap_with_bits_past_the_end() {
        assert!(Bitmap::from_bytes(&[0b0000_0111], 3).is_some());
        assert!(Bitmap::from_bytes(&[0b0000_1111], 3).is_none());
        assert!(Bitmap::from_bytes(&[0, 0], 3).is_none());
    }

    #[test]
    fn counts_follow_set_and_clear() {
        let mut b = Bitmap::new(10);
        assert!(b.set(9));
        assert!(!b.set(9));
        assert!(!b.set(10));
        assert_eq!(b.count(), 1);
        assert!(b.clear(9));
        assert_eq!(b.count(), 0);
    }
}
