//! Radio frames: a small header, a payload, and a truncated MAC with the
//! mesh key. A frame with a bad MAC is dropped before any field is parsed.
//!
//! # Format (byte by byte)
//! ```text
//! 0       version (high nibble, 1) | kind (low nibble)
//! 1..3    source short id, u16 little-endian
//! 3..5    destination short id, u16 little-endian (0xFFFF broadcast)
//! 5       message id (per source, wraps)
//! 6       fragment index, 0-based
//! 7       fragment count, 1..=255 (1: not fragmented)
//! 8..n-4  payload
//! n-4..n  MAC: first 4 bytes of keyed BLAKE3 over bytes 0..n-4
//! ```
//! The MAC key is BLAKE3 derive-key (context `"meshota radios frame MAC
//! v1"`) of the 32-byte mesh key, so it is used for nothing else. The
//! whole frame is at most the configured limit (51 bytes at EU868
//! DR0–DR2: 12 bytes of overhead, 39 of payload).
//!
//! # Why 4 bytes of MAC
//! A forger must guess: one chance in 2^32 per frame sent. Duty cycles hold
//! a node to at most a few thousand frames an hour, so a forgery takes on
//! the order of 10^5 hours of airtime; and a forged frame still has to pass
//! the checks above the link (hashes, signatures). Replays are not stopped
//! here: the mesh layer drops what it already has.

use alloc::vec::Vec;

use crate::Error;
use crate::shortid::ShortId;

/// The frame format version this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Header bytes before the payload.
pub const HEADER_LEN: usize = 8;
/// MAC bytes after the payload.
pub const MAC_LEN: usize = 4;
/// Header and MAC together.
pub const OVERHEAD: usize = HEADER_LEN + MAC_LEN;

/// What a frame carries; the low nibble of byte 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Release announcements by hash and version (Trickle).
    Announce = 1,
    /// Requests for missing pieces (selective repeat).
    Request = 2,
    /// A fragment of a mesh message (e.g. a signed manifest).
    Message = 3,
    /// A coded symbol of an object ([`crate::coding`]).
    Symbol = 4,
    /// A receiver's progress bitmap ([`crate::progress`]).
    Progress = 5,
    /// A coded repair fragment of a fragmented message
    /// ([`crate::repair`]).
    Repair = 6,
    /// A notice to the frame's receiver about its link (e.g. that its
    /// short id seems to be used by two nodes).
    Notice = 7,
}

impl FrameKind {
    const fn from_nibble(kind: u8) -> Result<Self, Error> {
        Ok(match kind {
            1 => Self::Announce,
            2 => Self::Request,
            3 => Self::Message,
            4 => Self::Symbol,
            5 => Self::Progress,
            6 => Self::Repair,
            7 => Self::Notice,
            _ => return Err(Error::UnknownFrameKind { kind }),
        })
    }
}

/// A frame's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the payload is.
    pub kind: FrameKind,
    /// Sender.
    pub src: ShortId,
    /// Receiver, or [`ShortId::BROADCAST`].
    pub dst: ShortId,
    /// Which message of the sender this frame belongs to.
    pub msg_id: u8,
    /// This fragment's index, `< frag_count`.
    pub frag_index: u8,
    /// Fragments in the message, `>= 1`.
    pub frag_count: u8,
}

/// An authenticated frame, borrowing its payload from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: Header,
    /// The payload.
    pub payload: &'a [u8],
}

/// Encodes and authenticates frames for one mesh key and frame limit.
/// Invariant: every frame it encodes is at most `max_len` bytes, and
/// [`FrameCodec::decode`] returns only frames whose MAC verified.
#[derive(Clone)]
pub struct FrameCodec {
    key: [u8; 32],
    max_len: usize,
}

impl core::fmt::Debug for FrameCodec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the key.
        f.debug_struct("FrameCodec")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl FrameCodec {
    /// A codec for `mesh_key` whose frames are at most `max_len` bytes
    /// (e.g. [`crate::Region::frame_limit`]).
    ///
    /// # Errors
    /// [`Error::PayloadTooLong`] when `max_len` is over 255 (the LoRa PHY
    /// limit); [`Error::FrameTooShort`] when it leaves no payload byte.
    pub fn new(mesh_key: &[u8; 32], max_len: usize) -> Result<Self, Error> {
        if max_len > crate::lora::PAYLOAD_BYTES_MAX {
            return Err(Error::PayloadTooLong {
                len: max_len,
                max: crate::lora::PAYLOAD_BYTES_MAX,
            });
        }
        if max_len <= OVERHEAD {
            return Err(Error::FrameTooShort {
                len: max_len,
                min: OVERHEAD + 1,
            });
        }
        Ok(Self {
            key: blake3::derive_key("meshota radios frame MAC v1", mesh_key),
            max_len,
        })
    }

    /// The largest frame.
    #[must_use]
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// The largest payload of one frame.
    #[must_use]
    pub const fn max_payload(&self) -> usize {
        self.max_len - OVERHEAD
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let full = blake3::keyed_hash(&self.key, bytes);
        let mut out = [0; MAC_LEN];
        out.copy_from_slice(&full.as_bytes()[..MAC_LEN]);
        out
    }

    /// The frame's bytes.
    ///
    /// # Errors
    /// [`Error::FrameTooLong`] when the payload does not fit;
    /// [`Error::BadFragment`] for an index not below a non-zero count.
    pub fn encode(&self, header: &Header, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let len = OVERHEAD + payload.len();
        if len > self.max_len {
            return Err(Error::FrameTooLong {
                len,
                max: self.max_len,
            });
        }
        if header.frag_count == 0 || header.frag_index >= header.frag_count {
            return Err(Error::BadFragment {
                index: header.frag_index,
                count: header.frag_count,
            });
        }
        let mut out = Vec::with_capacity(len);
        out.push((FRAME_VERSION << 4) | header.kind as u8);
        out.extend_from_slice(&header.src.0.to_le_bytes());
        out.extend_from_slice(&header.dst.0.to_le_bytes());
        out.push(header.msg_id);
        out.push(header.frag_index);
        out.push(header.frag_count);
        out.extend_from_slice(payload);
        let mac = self.mac(&out);
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// Authenticates, then parses, received bytes.
    ///
    /// # Errors
    /// [`Error::FrameTooShort`] / [`Error::FrameTooLong`] on length (checked
    /// first); [`Error::BadMac`] when the MAC fails (nothing else is read);
    /// then [`Error::UnsupportedFrameVersion`], [`Error::UnknownFrameKind`],
    /// [`Error::BadFragment`].
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Frame<'a>, Error> {
        if bytes.len() < OVERHEAD {
            return Err(Error::FrameTooShort {
                len: bytes.len(),
                min: OVERHEAD,
            });
        }
        if bytes.len() > self.max_len {
            return Err(Error::FrameTooLong {
                len: bytes.len(),
                max: self.max_len,
            });
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let expected = self.mac(body);
        // Constant time: no early exit on the first differing byte.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(Error::BadMac);
        }
        let version = body[0] >> 4;
        if version != FRAME_VERSION {
            return Err(Error::UnsupportedFrameVersion {
                found: version,
                supported: FRAME_VERSION,
            });
        }
        let kind = FrameKind::from_nibble(body[0] & 0x0F)?;
        let (frag_index, frag_count) = (body[6], body[7]);
        if frag_count == 0 || frag_index >= frag_count {
            return Err(Error::BadFragment {
                index: frag_index,
                count: frag_count,
            });
        }
        Ok(Frame {
            header: Header {
                kind,
                src: ShortId(u16::from_le_bytes([body[1], body[2]])),
                dst: ShortId(u16::from_le_bytes([body[3], body[4]])),
                msg_id: body[5],
                frag_index,
                frag_count,
            },
            payload: &body[HEADER_LEN..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7; 32];

    fn header() -> Header {
        Header {
            kind: FrameKind::Announce,
            src: ShortId(0x1234),
            dst: ShortId::BROADCAST,
            msg_id: 9,
            frag_index: 0,
            frag_count: 1,
        }
    }

    #[test]
    fn frame_layout_matches_the_documented_bytes() {
        let c = FrameCodec::new(&KEY, 51).unwrap();
        let f = c.encode(&header(), b"abc").unwrap();
        assert_eq!(&f[..8], &[0x11, 0x34, 0x12, 0xFF, 0xFF, 9, 0, 1]);
        assert_eq!(&f[8..11], b"abc");
        let key = blake3::derive_key("meshota radios frame MAC v1", &KEY);
        assert_eq!(
            &f[11..],
            &blake3::keyed_hash(&key, &f[..11]).as_bytes()[..4]
        );
        assert_eq!(c.max_payload(), 39);
    }

    #[test]
    fn a_frame_under_another_mesh_key_is_dropped_with_bad_mac() {
        let ours = FrameCodec::new(&KEY, 51).unwrap();
        let theirs = FrameCodec::new(&[8; 32], 51).unwrap();
        let f = theirs.encode(&header(), b"hello").unwrap();
        assert_eq!(ours.decode(&f), Err(Error::BadMac));
        assert!(theirs.decode(&f).is_ok());
    }

    #[test]
    fn mac_is_checked_before_any_field_is_parsed() {
        let c = FrameCodec::new(&KEY, 51).unwrap();
        // Version 15, kind 0, count 0: every field is wrong, but the MAC
        // (all zeros, wrong) is what is reported.
        let junk = [0xF0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0];
        assert_eq!(c.decode(&junk), Err(Error::BadMac));
    }

    #[test]
    fn authentic_frames_with_bad_fields_are_typed_errors() {
        let c = FrameCodec::new(&KEY, 51).unwrap();
        let key = blake3::derive_key("meshota radios frame MAC v1", &KEY);
        let sign = |body: &[u8]| {
            let mut v = body.to_vec();
            v.extend_from_slice(&blake3::keyed_hash(&key, body).as_bytes()[..4]);
            v
        };
        assert_eq!(
            c.decode(&sign(&[0x21, 0, 0, 0, 0, 0, 0, 1])),
            Err(Error::UnsupportedFrameVersion {
                found: 2,
                supported: 1
            })
        );
        assert_eq!(
            c.decode(&sign(&[0x1F, 0, 0, 0, 0, 0, 0, 1])),
            Err(Error::UnknownFrameKind { kind: 15 })
        );
        assert_eq!(
            c.decode(&sign(&[0x13, 0, 0, 0, 0, 0, 3, 3])),
            Err(Error::BadFragment { index: 3, count: 3 })
        );
    }

    #[test]
    fn oversize_payloads_and_limits_are_refused() {
        let c = FrameCodec::new(&KEY, 51).unwrap();
        assert_eq!(
            c.encode(&header(), &[0; 40]),
            Err(Error::FrameTooLong { len: 52, max: 51 })
        );
        assert_eq!(
            c.decode(&[0; 52]),
            Err(Error::FrameTooLong { len: 52, max: 51 })
        );
        assert!(FrameCodec::new(&KEY, 12).is_err());
        assert!(FrameCodec::new(&KEY, 256).is_err());
    }

    fn arb_header() -> impl Strategy<Value = Header> {
        let kinds = prop_oneof![
            Just(FrameKind::Announce),
            Just(FrameKind::Request),
            Just(FrameKind::Message),
            Just(FrameKind::Symbol),
            Just(FrameKind::Progress),
            Just(FrameKind::Repair),
            Just(FrameKind::Notice),
        ];
        (
            kinds,
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            1u8..=255,
            any::<u8>(),
        )
            .prop_map(|(kind, src, dst, msg_id, count, index)| Header {
                kind,
                src: ShortId(src),
                dst: ShortId(dst),
                msg_id,
                frag_index: index % count,
                frag_count: count,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let c = FrameCodec::new(&KEY, 255).unwrap();
            let _ = c.decode(&bytes);
        }

        #[test]
        fn arbitrary_bodies_with_a_valid_mac_never_panic_the_parser(body in prop::collection::vec(any::<u8>(), 8..240)) {
            let c = FrameCodec::new(&KEY, 255).unwrap();
            let key = blake3::derive_key("meshota radios frame MAC v1", &KEY);
            let mut f = body.clone();
            f.extend_from_slice(&blake3::keyed_hash(&key, &body).as_bytes()[..4]);
            match c.decode(&f) {
                Ok(frame) => prop_assert_eq!(frame.payload, &body[8..]),
                Err(e) => prop_assert!(!matches!(e, Error::BadMac)),
            }
        }

        #[test]
        fn frames_round_trip(h in arb_header(), payload in prop::collection::vec(any::<u8>(), 0..=39)) {
            let c = FrameCodec::new(&KEY, 51).unwrap();
            let bytes = c.encode(&h, &payload).unwrap();
            prop_assert!(bytes.len() <= 51);
            let f = c.decode(&bytes).unwrap();
            prop_assert_eq!(f.header, h);
            prop_assert_eq!(f.payload, &payload[..]);
        }

        #[test]
        fn a_flipped_bit_fails_the_mac(h in arb_header(), payload in prop::collection::vec(any::<u8>(), 0..=39), bit in any::<usize>()) {
            let c = FrameCodec::new(&KEY, 51).unwrap();
            let mut bytes = c.encode(&h, &payload).unwrap();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(c.decode(&bytes), Err(Error::BadMac));
        }
    }
}
