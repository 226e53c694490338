//! Double-buffered records: the atomic commit point of boot-control and
//! install state on media that can lose power mid-write.
//!
//! A record area is a [`Slot`] split into two erase-aligned halves. Each half
//! holds at most one frame:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic (per record kind) |
//! | 1 | format version ([`RECORD_VERSION`]) |
//! | 4 | sequence number, little endian, wrapping |
//! | 2 | payload length, little endian |
//! | n | payload (postcard) |
//! | 4 | CRC32 (IEEE) of all bytes before it, little endian |
//!
//! A write always goes to the half that does not hold the newest valid frame,
//! so a cut during erase or write leaves the previous record readable.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::slot::Slot;

/// Version byte of the frame format.
pub const RECORD_VERSION: u8 = 1;
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 11;
/// Bytes of frame that are not payload.
pub const OVERHEAD: usize = HEADER_LEN + 4;
/// Largest payload any record kind may have, checked before allocating.
pub const MAX_PAYLOAD: usize = 4096;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Sequence number; the higher (wrapping) of two valid copies wins.
    pub seq: u32,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Encodes a frame.
///
/// # Errors
/// [`Error::RecordTooLarge`] when the payload exceeds [`MAX_PAYLOAD`].
pub fn encode_frame(magic: [u8; 4], seq: u32, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|&l| usize::from(l) <= MAX_PAYLOAD)
        .ok_or(Error::RecordTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD,
        })?;
    let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
    out.extend_from_slice(&magic);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a frame from the start of `bytes`; `None` for anything that is not
/// a complete, CRC-valid frame of this `magic` (blank, torn, foreign, corrupt).
/// Never panics, whatever the bytes.
#[must_use]
pub fn decode_frame(magic: [u8; 4], bytes: &[u8]) -> Option<Frame> {
    let header = bytes.get(..HEADER_LEN)?;
    if header.get(..4)? != magic || header.get(4)? != &RECORD_VERSION {
        return None;
    }
    let seq = u32::from_le_bytes(header.get(5..9)?.try_into().ok()?);
    let len = usize::from(u16::from_le_bytes(header.get(9..11)?.try_into().ok()?));
    if len > MAX_PAYLOAD {
        return None;
    }
    let body_end = HEADER_LEN.checked_add(len)?;
    let crc_bytes = bytes.get(body_end..body_end.checked_add(4)?)?;
    let crc = u32::from_le_bytes(crc_bytes.try_into().ok()?);
    let body = bytes.get(..body_end)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some(Frame {
        seq,
        payload: body.get(HEADER_LEN..)?.to_vec(),
    })
}

/// `a` is newer than `b` in wrapping sequence order.
#[must_use]
pub const fn seq_newer(a: u32, b: u32) -> bool {
    // Reinterpreting the wrapping difference as signed is the point here.
    #[allow(clippy::cast_possible_wrap)]
    let d = a.wrapping_sub(b) as i32;
    d > 0
}

/// Picks the newest valid frame of two copies; returns its index and frame.
#[must_use]
pub fn pick_newest(copies: [Option<Frame>; 2]) -> Option<(usize, Frame)> {
    match copies {
        [Some(a), Some(b)] => {
            if seq_newer(b.seq, a.seq) {
                Some((1, b))
            } else {
                Some((0, a))
            }
        }
        [Some(a), None] => Some((0, a)),
        [None, Some(b)] => Some((1, b)),
        [None, None] => None,
    }
}

/// A record area on a [`Slot`]: two erase-aligned halves, one committed
/// record at a time.
///
/// Invariant: after [`RecordStore::commit`] returns, [`RecordStore::load`]
/// yields the committed payload; if power is cut during a commit, `load`
/// yields either the previous payload or the new one, never garbage.
#[derive(Debug)]
pub struct RecordStore<S: Slot> {
    medium: S,
    magic: [u8; 4],
    what: &'static str,
    half: u64,
}

impl<S: Slot> RecordStore<S> {
    /// Wraps `medium`, whose size must split into two halves that are each
    /// whole erase sectors and hold at least a header.
    ///
    /// # Errors
    /// [`Error::RecordAreaGeometry`] otherwise.
    pub fn new(medium: S, magic: [u8; 4], what: &'static str) -> Result<Self> {
        let size = medium.size();
        let es = medium.erase_size().max(1);
        let half = size / 2;
        if half % es != 0 || half < OVERHEAD as u64 {
            return Err(Error::RecordAreaGeometry {
                size,
                erase_size: es,
            });
        }
        Ok(Self {
            medium,
            magic,
            what,
            half,
        })
    }

    /// The largest payload this area holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        usize::try_from(self.half)
            .unwrap_or(usize::MAX)
            .saturating_sub(OVERHEAD)
            .min(MAX_PAYLOAD)
    }

    /// The underlying medium (for tests and inspection).
    pub fn medium(&mut self) -> &mut S {
        &mut self.medium
    }

    fn read_copy(&mut self, idx: u64) -> Result<Option<Frame>> {
        let len = usize::try_from(self.half)
            .unwrap_or(usize::MAX)
            .min(MAX_PAYLOAD + OVERHEAD);
        let mut buf = vec![0u8; len];
        self.medium.read(idx * self.half, &mut buf)?;
        Ok(decode_frame(self.magic, &buf))
    }

    /// Reads the newest valid record. `Ok(None)` when neither copy is valid
    /// (a blank area, or one never committed to).
    ///
    /// # Errors
    /// Only medium errors; bad bytes are treated as an invalid copy.
    pub fn load(&mut self) -> Result<Option<Frame>> {
        let a = self.read_copy(0)?;
        let b = self.read_copy(1)?;
        Ok(pick_newest([a, b]).map(|(_, f)| f))
    }

    /// Commits `payload` as the new record: erase the copy not holding the
    /// newest valid record, write the frame with the next sequence number,
    /// flush. Returns the sequence number written.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`], medium errors.
    pub fn commit(&mut self, payload: &[u8]) -> Result<u32> {
        if payload.len() > self.capacity() {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max: self.capacity(),
            });
        }
        let a = self.read_copy(0)?;
        let b = self.read_copy(1)?;
        let (target, seq) = match pick_newest([a, b]) {
            Some((idx, f)) => (1 - idx as u64, f.seq.wrapping_add(1)),
            None => (0, 1),
        };
        let frame = encode_frame(self.magic, seq, payload)?;
        let off = target * self.half;
        self.medium.erase(off, self.half)?;
        self.medium.write(off, &frame)?;
        self.medium.flush()?;
        Ok(seq)
    }

    /// Loads and decodes a postcard payload, `None` when no valid record exists.
    ///
    /// # Errors
    /// Medium errors, or [`Error::RecordPayload`] for a CRC-valid record whose
    /// payload does not decode.
    pub fn load_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match self.load()? {
            None => Ok(None),
            Some(f) => {
                postcard::from_bytes(&f.payload)
                    .map(Some)
                    .map_err(|e| Error::RecordPayload {
                        what: self.what,
                        reason: alloc::format!("{e}"),
                    })
            }
        }
    }

    /// Encodes `value` with postcard and commits it.
    ///
    /// # Errors
    /// As [`RecordStore::commit`]; [`Error::RecordPayload`] if encoding fails.
    pub fn commit_value<T: serde::Serialize>(&mut self, value: &T) -> Result<u32> {
        let bytes = postcard::to_allocvec(value).map_err(|e| Error::RecordPayload {
            what: self.what,
            reason: alloc::format!("{e}"),
        })?;
        self.commit(&bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: [u8; 4] = *b"TEST";

    #[test]
    fn frame_round_trips() {
        let f = encode_frame(M, 7, b"hello").unwrap();
        assert_eq!(
            decode_frame(M, &f),
            Some(Frame {
                seq: 7,
                payload: b"hello".to_vec()
            })
        );
    }

    #[test]
    fn frame_with_any_flipped_byte_is_rejected() {
        let f = encode_frame(M, 7, b"hello").unwrap();
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x10;
            assert_eq!(decode_frame(M, &g), None, "byte {i}");
        }
    }

    #[test]
    fn newer_sequence_wins_across_wraparound() {
        assert!(seq_newer(1, u32::MAX));
        assert!(seq_newer(5, 4));
        assert!(!seq_newer(4, 5));
        let a = Frame {
            seq: u32::MAX,
            payload: vec![],
        };
        let b = Frame {
            seq: 0,
            payload: vec![1],
        };
        assert_eq!(pick_newest([Some(a), Some(b)]).map(|x| x.0), Some(1));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_as_a_record_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_frame(M, &bytes);
            let mut with_magic = M.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = decode_frame(M, &with_magic);
        }

        #[test]
        fn frames_round_trip(seq in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let f = encode_frame(M, seq, &payload).unwrap();
            prop_assert_eq!(decode_frame(M, &f), Some(Frame { seq, payload }));
        }
    }
}
