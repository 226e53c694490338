//! Coded repair fragments for a message sent as fixed-size fragments (the
//! signed bundle a release crosses a hop with).
//!
//! The fragments are the systematic symbols of one RaptorQ source block
//! (RFC 6330, crate `raptorq`; the last fragment padded with zeros), so a
//! receiver that lost any k fragments completes from any k repair
//! fragments (rarely one or two more), whichever fragments it lost.
//! Selective repeat needs the very fragments each receiver lost: a sender
//! with several receivers sends the union of their losses, a coded sender
//! only the largest loss.
//!
//! Repair fragment `r` (0..=255) of a message of `n` fragments is encoding
//! symbol `n + r` of the block. Nothing here trusts the bytes: a receiver
//! checks the decoded message the way it checks one assembled from
//! fragments (the bundle's signature and id).

use alloc::vec::Vec;

use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};

use crate::Error;

/// Most fragments a message may have (one byte counts them).
pub const FRAGMENTS_MAX: usize = 255;
/// Largest fragment (bytes): one frame payload at most.
pub const PIECE_MAX: usize = 255;

fn oti(count: usize, piece: usize) -> ObjectTransmissionInformation {
    // Both bounded by the callers (count <= 255, piece <= 255): the casts
    // cannot truncate, and RaptorQ's own limits are far above them.
    ObjectTransmissionInformation::new((count * piece) as u64, piece as u16, 1, 1, 1)
}

fn check(len: usize, piece: usize) -> Result<usize, Error> {
    if piece == 0 || piece > PIECE_MAX {
        return Err(Error::SymbolSize {
            size: piece,
            max: PIECE_MAX,
        });
    }
    let count = len.div_ceil(piece);
    if len == 0 || count > FRAGMENTS_MAX {
        return Err(Error::ObjectSize {
            len,
            max: FRAGMENTS_MAX * piece,
        });
    }
    Ok(count)
}

/// Makes the repair fragments of one message. Invariant: every repair
/// fragment is exactly `piece` bytes.
#[derive(Debug)]
pub struct RepairEncoder {
    encoder: SourceBlockEncoder,
    count: usize,
}

impl RepairEncoder {
    /// An encoder for `message` cut into fragments of `piece` bytes.
    ///
    /// # Errors
    /// [`Error::SymbolSize`] for a piece of 0 or over [`PIECE_MAX`];
    /// [`Error::ObjectSize`] for an empty message or one of more than
    /// [`FRAGMENTS_MAX`] fragments.
    pub fn new(message: &[u8], piece: usize) -> Result<Self, Error> {
        let count = check(message.len(), piece)?;
        let mut padded = message.to_vec();
        padded.resize(count * piece, 0);
        Ok(Self {
            encoder: SourceBlockEncoder::new(0, &oti(count, piece), &padded),
            count,
        })
    }

    /// Fragments of the message.
    #[must_use]
    pub const fn count(&self) -> usize {
        self.count
    }

    /// Repair fragment `r`.
    #[must_use]
    pub fn repair(&self, r: u8) -> Vec<u8> {
        self.encoder
            .repair_packets(u32::from(r), 1)
            .pop()
            .map(|p| p.data().to_vec())
            .unwrap_or_default()
    }
}

/// The message of `len` bytes, cut into fragments of `piece` bytes, from
/// the fragments held (`fragments[i]`, the last possibly short) and repair
/// fragments `(r, bytes)`; `None` while they are not enough, or when a
/// fragment's length is not the one its position implies (nothing is
/// decoded from inconsistent input).
#[must_use]
pub fn decode(
    len: usize,
    piece: usize,
    fragments: &[Option<Vec<u8>>],
    repairs: &[(u8, Vec<u8>)],
) -> Option<Vec<u8>> {
    let count = check(len, piece).ok()?;
    if fragments.len() != count {
        return None;
    }
    let last = len - (count - 1) * piece;
    let mut packets = Vec::with_capacity(count + repairs.len());
    for (i, f) in fragments.iter().enumerate() {
        let Some(bytes) = f else {
            continue;
        };
        let want = if i + 1 == count { last } else { piece };
        if bytes.len() != want {
            return None;
        }
        let mut data = bytes.clone();
        data.resize(piece, 0);
        // i < 255: the cast cannot truncate.
        packets.push(EncodingPacket::new(PayloadId::new(0, i as u32), data));
    }
    let held = packets.len();
    for (r, bytes) in repairs {
        if bytes.len() != piece {
            return None;
        }
        packets.push(EncodingPacket::new(
            PayloadId::new(0, count as u32 + u32::from(*r)),
            bytes.clone(),
        ));
    }
    if held + repairs.len() < count {
        return None;
    }
    let mut decoder = SourceBlockDecoder::new(0, &oti(count, piece), (count * piece) as u64);
    let mut out = decoder.decode(packets)?;
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use proptest::prelude::*;

    fn message(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = SeededRng::new(seed);
        (0..len).map(|_| rng.next_u64() as u8).collect()
    }

    fn cut(m: &[u8], piece: usize) -> Vec<Option<Vec<u8>>> {
        m.chunks(piece).map(|c| Some(c.to_vec())).collect()
    }

    #[test]
    fn any_lost_fragments_are_replaced_by_as_many_repair_fragments() {
        let m = message(3_574, 1);
        let piece = 202;
        let enc = RepairEncoder::new(&m, piece).unwrap();
        assert_eq!(enc.count(), 18);
        // Three receivers lose different fragments (the union is 9); each
        // completes from the same repair fragments, as many as the
        // largest loss (plus one or two on a rare unlucky draw).
        for lost in [[0usize, 5, 17], [1, 2, 3], [9, 12, 16]] {
            let mut f = cut(&m, piece);
            for &i in &lost {
                f[i] = None;
            }
            let mut repairs = Vec::new();
            let mut out = None;
            for r in 40..60u8 {
                repairs.push((r, enc.repair(r)));
                out = decode(m.len(), piece, &f, &repairs);
                if out.is_some() {
                    break;
                }
            }
            assert_eq!(out.as_deref(), Some(&m[..]), "lost {lost:?}");
            assert!(repairs.len() <= lost.len() + 2, "{}", repairs.len());
        }
    }

    #[test]
    fn all_fragments_need_no_repair_and_too_few_decode_nothing() {
        let m = message(1_000, 2);
        let f = cut(&m, 202);
        assert_eq!(decode(m.len(), 202, &f, &[]).as_deref(), Some(&m[..]));
        let mut short = f.clone();
        short[0] = None;
        short[1] = None;
        let enc = RepairEncoder::new(&m, 202).unwrap();
        assert_eq!(decode(m.len(), 202, &short, &[(0, enc.repair(0))]), None);
    }

    #[test]
    fn inconsistent_lengths_and_limits_are_refused() {
        let m = message(1_000, 3);
        let mut f = cut(&m, 202);
        f[4] = Some(alloc::vec![0; 10]);
        assert_eq!(
            decode(m.len(), 202, &f, &[]),
            None,
            "short last of wrong length"
        );
        let f = cut(&m, 202);
        assert_eq!(decode(m.len(), 202, &f[..4], &[]), None, "wrong count");
        assert_eq!(decode(m.len(), 202, &f, &[(0, alloc::vec![1; 7])]), None);
        assert!(RepairEncoder::new(&[], 202).is_err());
        assert!(RepairEncoder::new(&m, 0).is_err());
        assert!(RepairEncoder::new(&m, 256).is_err());
        assert!(RepairEncoder::new(&message(256 * 10, 4), 10).is_err());
        assert_eq!(decode(0, 202, &[], &[]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary fragments and repairs never panic the decoder.
        #[test]
        fn arbitrary_input_never_panics_the_decoder(
            len in 0usize..2_000,
            piece in 0usize..300,
            frags in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..260)), 0..12),
            repairs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..260)), 0..12),
        ) {
            let _ = decode(len, piece, &frags, &repairs);
        }
    }
}
