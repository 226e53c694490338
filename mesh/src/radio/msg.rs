//! The payloads of radio frames, byte by byte. The frame header
//! (`meshota_radios::frame`) already carries the kind, the short ids of
//! sender and receiver and the fragment index and count; these are what
//! follows it. Every decoder checks lengths before it reads and refuses
//! trailing bytes.
//!
//! ```text
//! Announce (broadcast, Trickle; 11 to 20 bytes):
//!   0..8    release key: the first 8 bytes of the release id (BLAKE3 of
//!           the manifest body); the bundle fetched for it is checked
//!           against it, and its signature is what is trusted
//!   8       flags: bit 0 = holds every chunk (a source); bit 1 = holds the
//!           patch index and every piece of a patch the release lists (a
//!           patch source); bit 2 = fetching: the sender knows of this
//!           release but holds no verified bundle of it yet (it cannot
//!           serve anything); bit 3 = leaf: the sender never serves
//!           (`RadioConfig::relay` false), so it is never asked nor counted
//!           as a holder; other bits 0
//!   9       needy neighbours: how many neighbours the sender last heard
//!           lacking this release or some of its chunks (u8, saturating);
//!           askers prefer the holder that covers the most
//!   10..    security version, LEB128 u64 (1 to 10 bytes, the last)
//! Request (to one holder: bundle or patch index fragments wanted):
//!   0..4    release tag (first 4 bytes of the id), or the patch tag (first
//!           4 bytes of the patch id) for the patch index blob
//!   4       fragment count known to the asker (0: none yet = send all)
//!   5..     when the count is non-zero: progress bitmap of the fragments
//!           held (`meshota_radios::progress`, over `count` fragments)
//! Message (broadcast, fragment i of n in the frame header):
//!   0..4    release tag, or patch tag
//!   4..     bytes of the bundle (`super::bundle`), or of the patch index
//!           blob, from i * piece size (piece size: the frame payload less
//!           8, so that a repair fragment fits)
//! Repair (broadcast): a coded repair fragment of the bundle
//!   (`meshota_radios::repair`; the fragments are the systematic symbols)
//!   0..4    release tag
//!   4       fragment count n of the bundle
//!   5       repair number r (encoding symbol n + r)
//!   6..8    bundle length, u16 little-endian
//!   8..     the repair symbol, exactly one piece
//! Symbol (broadcast): a RaptorQ symbol of one chunk or patch piece
//!   (`meshota_radios::coding`; its 4-byte tag is the chunk's or piece's id)
//! Progress (to the chosen source: objects wanted):
//!   0..4    set tag: the release tag names the release's chunks, the patch
//!           tag the pieces of that patch (its index lists them)
//!   4       length L of the bitmap
//!   5..5+L  progress bitmap of the objects held, over the set's count (the
//!           index's chunks, or the patch index's pieces)
//!   5+L..   LEB128 varints: symbols still needed, one per missing object in
//!           order (a shorter list means "all symbols" for the rest)
//! ```

use alloc::vec::Vec;

use meshota_manifest::Hash;
use meshota_radios::Progress;

use super::error::RadioError;

/// Bytes of a release tag.
pub const TAG_LEN: usize = 4;
/// Bytes of a release key.
pub const RELEASE_KEY_LEN: usize = 8;
/// Fewest bytes of an announcement (a one-byte security version).
pub const ANNOUNCE_LEN_MIN: usize = RELEASE_KEY_LEN + 3;
/// Most bytes of an announcement (a ten-byte security version).
pub const ANNOUNCE_LEN_MAX: usize = RELEASE_KEY_LEN + 12;

/// A release as announcements name it: the first [`RELEASE_KEY_LEN`]
/// bytes of its id, enough to tell releases apart on the air (a bundle
/// fetched for a key is verified by signature and must have an id that
/// starts with the key). Invariant: the key of one id is always the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseKey(pub [u8; RELEASE_KEY_LEN]);

impl ReleaseKey {
    /// The key of release `id`.
    #[must_use]
    pub fn of(id: &Hash) -> Self {
        let mut k = [0u8; RELEASE_KEY_LEN];
        k.copy_from_slice(&id.as_bytes()[..RELEASE_KEY_LEN]);
        Self(k)
    }

    /// Whether this is the key of `id`.
    #[must_use]
    pub fn names(&self, id: &Hash) -> bool {
        *self == Self::of(id)
    }

    /// The release tag (the first [`TAG_LEN`] bytes of the id).
    #[must_use]
    pub fn tag(&self) -> [u8; TAG_LEN] {
        let k = self.0;
        [k[0], k[1], k[2], k[3]]
    }

    /// Lower-case hex, as [`Hash::short`] prints an id.
    #[must_use]
    pub fn short(&self) -> alloc::string::String {
        use core::fmt::Write;
        let mut out = alloc::string::String::with_capacity(2 * RELEASE_KEY_LEN);
        for b in self.0 {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// The 4-byte tag of a release id or chunk id.
#[must_use]
pub fn tag_of(id: &Hash) -> [u8; TAG_LEN] {
    let b = id.as_bytes();
    [b[0], b[1], b[2], b[3]]
}

fn tag_at(bytes: &[u8], what: &'static str) -> Result<[u8; TAG_LEN], RadioError> {
    bytes
        .get(..TAG_LEN)
        .and_then(|t| <[u8; TAG_LEN]>::try_from(t).ok())
        .ok_or(RadioError::Truncated { what })
}

/// A release announcement: its key and security version, whether the
/// sender holds all of it, and how many of its neighbours still need it.
/// Invariant: encodes to [`ANNOUNCE_LEN_MIN`]..=[`ANNOUNCE_LEN_MAX`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// The release.
    pub release: ReleaseKey,
    /// Its security version.
    pub security_version: u64,
    /// The sender holds every chunk and can serve symbols.
    pub complete: bool,
    /// The sender holds the patch index and every piece of a patch the
    /// release lists, and can serve them.
    pub pieces: bool,
    /// The sender only knows of the release: it holds no verified bundle
    /// of it and serves nothing.
    pub fetching: bool,
    /// Neighbours the sender heard lacking the release or some of its
    /// chunks (its coverage if it serves).
    pub needy: u8,
    /// The sender is a leaf: it serves nothing, whatever it holds.
    pub leaf: bool,
}

impl Announce {
    /// Whether the sender serves what it announces: it holds a verified
    /// bundle (it may still lack chunks) and is not a leaf.
    #[must_use]
    pub const fn serves(&self) -> bool {
        !self.fetching && !self.leaf
    }

    /// Whether the sender holds every chunk and serves them (a source).
    #[must_use]
    pub const fn is_source(&self) -> bool {
        self.complete && !self.leaf
    }

    /// The wire bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ANNOUNCE_LEN_MAX);
        out.extend_from_slice(&self.release.0);
        out.push(
            u8::from(self.complete)
                | u8::from(self.pieces) << 1
                | u8::from(self.fetching) << 2
                | u8::from(self.leaf) << 3,
        );
        out.push(self.needy);
        meshota_radios::leb128::push_u64(&mut out, self.security_version);
        out
    }

    /// Parses wire bytes.
    ///
    /// # Errors
    /// [`RadioError::Truncated`] / [`RadioError::Malformed`] on length,
    /// unknown flag bits, a security version that is not one minimal
    /// LEB128 u64 ending the frame, or a fetching sender claiming to hold
    /// something.
    pub fn decode(bytes: &[u8]) -> Result<Self, RadioError> {
        const WHAT: &str = "announce";
        let malformed = |reason| RadioError::Malformed { what: WHAT, reason };
        if bytes.len() < ANNOUNCE_LEN_MIN {
            return Err(RadioError::Truncated { what: WHAT });
        }
        if bytes.len() > ANNOUNCE_LEN_MAX {
            return Err(malformed("longer than 20 bytes"));
        }
        let mut key = [0u8; RELEASE_KEY_LEN];
        key.copy_from_slice(&bytes[..RELEASE_KEY_LEN]);
        let flags = bytes[RELEASE_KEY_LEN];
        if flags & !0x0F != 0 {
            return Err(malformed("unknown flag bits"));
        }
        let fetching = flags & 4 == 4;
        if fetching && flags & 3 != 0 {
            return Err(malformed("a fetching sender holds nothing"));
        }
        let varint = &bytes[RELEASE_KEY_LEN + 2..];
        let v = match meshota_radios::leb128::read_u64(varint) {
            Some((v, used)) if used == varint.len() => v,
            _ => {
                return Err(malformed(
                    "security version is not one shortest LEB128 u64 ending the frame",
                ));
            }
        };
        Ok(Self {
            release: ReleaseKey(key),
            security_version: v,
            complete: flags & 1 == 1,
            pieces: flags & 2 == 2,
            fetching,
            needy: bytes[RELEASE_KEY_LEN + 1],
            leaf: flags & 8 == 8,
        })
    }
}

/// A request for a release's bundle fragments (selective repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRequest {
    /// The release tag.
    pub tag: [u8; TAG_LEN],
    /// Fragments held, over the bundle's fragment count; `None` when the
    /// asker has none yet (send them all).
    pub held: Option<Progress>,
}

impl ManifestRequest {
    /// The wire bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.tag.to_vec();
        match &self.held {
            Some(p) => {
                // Fragment counts are 1..=255 (one byte in the frame header).
                out.push(u8::try_from(p.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(&p.to_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// Parses wire bytes.
    ///
    /// # Errors
    /// [`RadioError::Truncated`], or [`RadioError::Frame`] for a bad bitmap.
    pub fn decode(bytes: &[u8]) -> Result<Self, RadioError> {
        const WHAT: &str = "manifest request";
        let tag = tag_at(bytes, WHAT)?;
        let count = *bytes
            .get(TAG_LEN)
            .ok_or(RadioError::Truncated { what: WHAT })?;
        let rest = &bytes[TAG_LEN + 1..];
        let held = if count == 0 {
            if !rest.is_empty() {
                return Err(RadioError::Malformed {
                    what: WHAT,
                    reason: "bitmap without a fragment count",
                });
            }
            None
        } else {
            Some(Progress::from_bytes(rest, usize::from(count))?)
        };
        Ok(Self { tag, held })
    }
}

/// Chunks a receiver wants from its chosen source: what it holds and how
/// many symbols each missing chunk still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRequest {
    /// The release tag.
    pub tag: [u8; TAG_LEN],
    /// Chunks held, over the index's chunk count.
    pub held: Progress,
    /// Symbols still needed per missing chunk, in chunk order (may be
    /// shorter than the missing list).
    pub needs: Vec<u32>,
}

/// Most chunk needs one request lists (the rest count as "all symbols").
pub const NEEDS_MAX: usize = 64;

impl PayloadRequest {
    /// The wire bytes, listing needs while they fit in `room` bytes.
    #[must_use]
    pub fn encode(&self, room: usize) -> Vec<u8> {
        let bitmap = self.held.to_bytes();
        let mut out = self.tag.to_vec();
        out.push(u8::try_from(bitmap.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&bitmap);
        for &n in self.needs.iter().take(NEEDS_MAX) {
            let mut v = Vec::new();
            meshota_radios::leb128::push(&mut v, n);
            if out.len() + v.len() > room {
                break;
            }
            out.extend_from_slice(&v);
        }
        out
    }

    /// The set tag a request names, read before the rest (whose decoding
    /// needs the set's object count).
    ///
    /// # Errors
    /// [`RadioError::Truncated`] under 4 bytes.
    pub fn set_tag(bytes: &[u8]) -> Result<[u8; TAG_LEN], RadioError> {
        tag_at(bytes, "payload request")
    }

    /// Parses wire bytes for a set of `chunks` objects (a release's chunks
    /// or a patch's pieces).
    ///
    /// # Errors
    /// [`RadioError::Truncated`] / [`RadioError::Malformed`], or
    /// [`RadioError::Frame`] for a bad bitmap.
    pub fn decode(bytes: &[u8], chunks: usize) -> Result<Self, RadioError> {
        const WHAT: &str = "payload request";
        let tag = tag_at(bytes, WHAT)?;
        let len = usize::from(
            *bytes
                .get(TAG_LEN)
                .ok_or(RadioError::Truncated { what: WHAT })?,
        );
        let start = TAG_LEN + 1;
        let bitmap = bytes
            .get(start..start + len)
            .ok_or(RadioError::Truncated { what: WHAT })?;
        let held = Progress::from_bytes(bitmap, chunks)?;
        let mut rest = &bytes[start + len..];
        let mut needs = Vec::new();
        while !rest.is_empty() {
            if needs.len() >= NEEDS_MAX {
                return Err(RadioError::Malformed {
                    what: WHAT,
                    reason: "more needs than the limit",
                });
            }
            let (v, used) = meshota_radios::leb128::read(rest).ok_or(RadioError::Malformed {
                what: WHAT,
                reason: "bad varint",
            })?;
            needs.push(v);
            rest = &rest[used..];
        }
        Ok(Self { tag, held, needs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn announce_round_trips_and_refuses_unknown_flags() {
        let a = Announce {
            release: ReleaseKey::of(&Hash([7; 32])),
            security_version: 42,
            complete: true,
            pieces: true,
            fetching: false,
            needy: 17,
            leaf: false,
        };
        let bytes = a.encode();
        assert_eq!(bytes.len(), ANNOUNCE_LEN_MIN);
        assert_eq!(bytes[8], 3);
        assert_eq!(Announce::decode(&bytes).unwrap(), a);
        let mut bad = bytes.clone();
        bad[8] = 16;
        assert!(Announce::decode(&bad).is_err());
        bad[8] = 5;
        assert!(Announce::decode(&bad).is_err(), "fetching and complete");
        assert!(Announce::decode(&bytes[..10]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(Announce::decode(&long).is_err(), "trailing byte");
        let mut cont = bytes.clone();
        cont[10] |= 0x80;
        assert!(Announce::decode(&cont).is_err(), "varint cut short");
        for sv in [0, 127, 128, u64::from(u32::MAX) + 1, u64::MAX] {
            let b = Announce {
                security_version: sv,
                ..a
            };
            let enc = b.encode();
            assert!((ANNOUNCE_LEN_MIN..=ANNOUNCE_LEN_MAX).contains(&enc.len()));
            assert_eq!(Announce::decode(&enc).unwrap(), b);
        }
    }

    #[test]
    fn announce_carries_the_leaf_flag_in_bit_3() {
        let a = Announce {
            release: ReleaseKey::of(&Hash([9; 32])),
            security_version: 3,
            complete: true,
            pieces: false,
            fetching: false,
            needy: 0,
            leaf: true,
        };
        let bytes = a.encode();
        assert_eq!(bytes[8], 0b1001);
        assert_eq!(Announce::decode(&bytes).unwrap(), a);
        let fetching_leaf = Announce {
            complete: false,
            fetching: true,
            ..a
        };
        let bytes = fetching_leaf.encode();
        assert_eq!(bytes[8], 0b1100);
        assert_eq!(Announce::decode(&bytes).unwrap(), fetching_leaf);
    }

    proptest! {
        #[test]
        fn arbitrary_announce_bytes_never_panic_and_decoded_ones_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..24)
        ) {
            if let Ok(a) = Announce::decode(&bytes) {
                prop_assert_eq!(a.encode(), bytes);
            }
        }
    }

    #[test]
    fn payload_request_round_trips_and_cuts_needs_to_the_room() {
        let mut held = Progress::new(10).unwrap();
        held.set(0);
        held.set(3);
        let r = PayloadRequest {
            tag: [1, 2, 3, 4],
            held,
            needs: alloc::vec![5, 300, 7, 1, 1, 1, 1, 1],
        };
        let full = r.encode(200);
        assert_eq!(PayloadRequest::decode(&full, 10).unwrap(), r);
        let cut = r.encode(full.len() - 2);
        let back = PayloadRequest::decode(&cut, 10).unwrap();
        assert_eq!(back.needs, alloc::vec![5, 300, 7, 1, 1, 1]);
    }

    #[test]
    fn manifest_request_without_count_means_send_all() {
        let r = ManifestRequest {
            tag: [9; 4],
            held: None,
        };
        assert_eq!(ManifestRequest::decode(&r.encode()).unwrap(), r);
        let mut p = Progress::new(18).unwrap();
        p.set(17);
        let r2 = ManifestRequest {
            tag: [9; 4],
            held: Some(p),
        };
        assert_eq!(ManifestRequest::decode(&r2.encode()).unwrap(), r2);
    }

    #[test]
    fn payload_request_for_a_patch_set_needs_the_piece_count_and_refuses_truncation() {
        let mut held = Progress::new(3).unwrap();
        held.set(1);
        let r = PayloadRequest {
            tag: [0xAB; 4],
            held,
            needs: alloc::vec![40, 2],
        };
        let bytes = r.encode(200);
        assert_eq!(PayloadRequest::set_tag(&bytes).unwrap(), [0xAB; 4]);
        assert_eq!(PayloadRequest::decode(&bytes, 3).unwrap(), r);
        for cut in 0..bytes.len() - 2 {
            assert!(
                PayloadRequest::decode(&bytes[..cut], 3).is_err(),
                "cut at {cut}"
            );
        }
        assert!(PayloadRequest::set_tag(&bytes[..3]).is_err());
        // The bitmap's object count is the set's: another count is refused.
        assert!(PayloadRequest::decode(&bytes, 300).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), chunks in 0usize..40) {
            let _ = Announce::decode(&bytes);
            let _ = ManifestRequest::decode(&bytes);
            let _ = PayloadRequest::decode(&bytes, chunks);
            let _ = PayloadRequest::set_tag(&bytes);
        }
    }
}
