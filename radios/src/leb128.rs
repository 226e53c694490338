//! Unsigned LEB128 varints of at most three bytes (values below 2^21), the
//! counts radio payloads carry (bitmap runs, symbols still needed): seven
//! bits per byte, least significant first, high bit set on every byte but
//! the last.

use alloc::vec::Vec;

/// The largest value a three-byte varint holds.
pub const MAX: u32 = (1 << 21) - 1;

/// Appends `v` (values above [`MAX`] take more than three bytes, and
/// [`read`] refuses them).
pub fn push(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The value at the start of `bytes` and the bytes it used; `None` when
/// it is cut short or longer than three bytes.
#[must_use]
pub fn read(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &b) in bytes.iter().take(3).enumerate() {
        v |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_up_to_max_round_trip_in_at_most_three_bytes() {
        for v in [0, 1, 127, 128, 16_383, 16_384, MAX] {
            let mut out = Vec::new();
            push(&mut out, v);
            assert!(out.len() <= 3);
            assert_eq!(read(&out), Some((v, out.len())));
        }
        let mut long = Vec::new();
        push(&mut long, MAX + 1);
        assert_eq!(read(&long), None, "a fourth byte is refused");
        assert_eq!(read(&[0x80]), None, "cut short");
    }
}
