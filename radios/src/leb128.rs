//! Unsigned LEB128 varints: seven bits per byte, least significant first,
//! high bit set on every byte but the last. Counts radio payloads carry
//! (bitmap runs, symbols still needed, a bundle's manifest length) take at
//! most three bytes (values below 2^21: [`push`], [`read`]); a security
//! version takes up to ten ([`push_u64`], [`read_u64`], which also refuses
//! any encoding but the shortest, so each value has one byte form).

use alloc::vec::Vec;

/// The largest value a three-byte varint holds.
pub const MAX: u32 = (1 << 21) - 1;

/// Appends `v` (values above [`MAX`] take more than three bytes, and
/// [`read`] refuses them).
pub fn push(out: &mut Vec<u8>, v: u32) {
    push_u64(out, u64::from(v));
}

/// Appends `v` in one to ten bytes.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
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

/// The `u64` at the start of `bytes` and the bytes it used; `None` when it
/// is cut short, longer than ten bytes, over 64 bits, or not the shortest
/// encoding of its value (a last byte of 0 after the first).
#[must_use]
pub fn read_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return (b != 0 || i == 0).then_some((v, i + 1));
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

    #[test]
    fn u64_values_round_trip_in_their_one_shortest_form() {
        for v in [0, 1, 127, 128, u64::from(u32::MAX) + 1, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert!(out.len() <= 10);
            assert_eq!(read_u64(&out), Some((v, out.len())));
        }
        assert_eq!(read_u64(&[0x81, 0x00]), None, "not the shortest form");
        assert_eq!(read_u64(&[0x80; 10]), None, "cut short");
        let mut over = [0xFF; 10];
        over[9] = 0x02;
        assert_eq!(read_u64(&over), None, "over 64 bits");
    }
}
