//! One patch piece: the compressed control, diff and extra streams that
//! rebuild a run of whole chunks of the target from the base image.
//!
//! Wire form: `b"MOTA"`, format version 1, kind [`KIND_PATCH_PIECE`] (34),
//! then the postcard encoding of
//! `(base_image_hash, base_cursor, first, count, output_len, control_len,
//! diff_len, control: bytes, diff: bytes, extra: bytes)`. `control`, `diff`
//! and `extra` are zstd frames (empty when their decoded length is 0).
//!
//! Decoded, the control stream is a sequence of postcard triples
//! `(add: u32, copy: u32, seek: i64)`, applied from the base cursor
//! `base_cursor`: `add` output bytes are base bytes plus diff bytes
//! (wrapping), `copy` output bytes come from `extra`, then the cursor moves
//! by `add + seek`. So `diff_len + extra_len == output_len`.

use meshota_manifest::{Hash, frame};
use serde::{Deserialize, Serialize};

use super::format::open_frame;
use super::{MAX_PIECE_BYTES, MAX_PIECE_CONTROL, MAX_PIECE_OUTPUT};
use crate::error::{Error, Result};

/// The document-kind byte of a patch piece.
pub const KIND_PATCH_PIECE: u8 = frame::Kind::PatchPiece as u8;

const WHAT: &str = "patch piece";

/// A decoded piece, borrowing its compressed streams from the encoded bytes.
///
/// Invariants (checked by [`Piece::decode`]): the encoded piece is at most
/// [`MAX_PIECE_BYTES`], `output_len <=` [`MAX_PIECE_OUTPUT`],
/// `control_len <=` [`MAX_PIECE_CONTROL`], `diff_len <= output_len`,
/// `count >= 1`, a stream is empty exactly when its decoded length is 0, and
/// the bytes are the canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece<'a> {
    pub(crate) base_image_hash: Hash,
    pub(crate) base_cursor: u64,
    pub(crate) first: u32,
    pub(crate) count: u32,
    pub(crate) output_len: u32,
    pub(crate) control_len: u32,
    pub(crate) diff_len: u32,
    #[serde(borrow)]
    pub(crate) control: &'a [u8],
    #[serde(borrow)]
    pub(crate) diff: &'a [u8],
    #[serde(borrow)]
    pub(crate) extra: &'a [u8],
}

impl<'a> Piece<'a> {
    /// BLAKE3 of the base image this piece reads.
    #[must_use]
    pub const fn base_image_hash(&self) -> Hash {
        self.base_image_hash
    }

    /// Ordinal of the first target chunk produced.
    #[must_use]
    pub const fn first(&self) -> u32 {
        self.first
    }

    /// Number of consecutive target chunks produced.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of new image produced.
    #[must_use]
    pub const fn output_len(&self) -> u32 {
        self.output_len
    }

    /// The canonical encoding: header then postcard body.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] if serialisation fails (not expected).
    pub fn encode(&self) -> Result<Vec<u8>> {
        frame::seal(frame::Kind::PatchPiece, self).map_err(|e| malformed(e.to_string()))
    }

    /// Decodes and checks an encoded piece (length limit first, then header,
    /// exact body, canonical form, limits). Never panics on any input; the
    /// streams are not decompressed here.
    ///
    /// # Errors
    /// [`Error::PatchTooLarge`], [`Error::PatchTruncated`], [`Error::BadMagic`],
    /// [`Error::UnsupportedVersion`], [`Error::WrongKind`], [`Error::PatchMalformed`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        let body = open_frame(bytes, frame::Kind::PatchPiece, MAX_PIECE_BYTES, WHAT)?;
        let (piece, rest): (Self, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => Error::PatchTruncated {
                    what: WHAT,
                    len: bytes.len(),
                },
                other => malformed(other.to_string()),
            })?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        piece.check()?;
        if !crate::index::is_canonical(&piece, body) {
            return Err(malformed("not in canonical encoding".into()));
        }
        Ok(piece)
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(malformed(reason));
        if self.output_len as usize > MAX_PIECE_OUTPUT {
            return bad(format!(
                "output of {} bytes, limit {MAX_PIECE_OUTPUT}",
                self.output_len
            ));
        }
        if self.control_len as usize > MAX_PIECE_CONTROL {
            return bad(format!(
                "control stream of {} bytes, limit {MAX_PIECE_CONTROL}",
                self.control_len
            ));
        }
        if self.diff_len > self.output_len {
            return bad(format!(
                "diff of {} bytes for an output of {}",
                self.diff_len, self.output_len
            ));
        }
        if self.count == 0 {
            return bad("produces no chunk".into());
        }
        let extra_len = self.output_len - self.diff_len;
        for (name, len, bytes) in [
            ("control", self.control_len, self.control),
            ("diff", self.diff_len, self.diff),
            ("extra", extra_len, self.extra),
        ] {
            if (len == 0) != bytes.is_empty() {
                return bad(format!(
                    "{name} stream has {} bytes for {len} decoded bytes",
                    bytes.len()
                ));
            }
        }
        Ok(())
    }

    /// The decoded streams (control, diff, extra), each decompressed into a
    /// buffer of exactly its declared length; anything else is malformed.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`].
    pub(crate) fn streams(&self) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let extra_len = self.output_len - self.diff_len;
        Ok((
            inflate("control", self.control, self.control_len)?,
            inflate("diff", self.diff, self.diff_len)?,
            inflate("extra", self.extra, extra_len)?,
        ))
    }
}

fn inflate(name: &str, bytes: &[u8], len: u32) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let out = zstd::bulk::decompress(bytes, len as usize)
        .map_err(|e| malformed(format!("{name} stream: zstd: {e}")))?;
    if out.len() != len as usize {
        return Err(malformed(format!(
            "{name} stream decodes to {} bytes, header says {len}",
            out.len()
        )));
    }
    Ok(out)
}

/// Compresses a stream for a piece (empty stays empty).
pub(crate) fn deflate(bytes: &[u8], level: i32) -> Result<Vec<u8>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    zstd::bulk::compress(bytes, level).map_err(|e| malformed(format!("zstd: {e}")))
}

fn malformed(reason: String) -> Error {
    Error::PatchMalformed { what: WHAT, reason }
}

/// One step of the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Control {
    /// Output bytes made of base bytes plus diff bytes.
    pub(crate) add: u32,
    /// Output bytes copied from the extra stream.
    pub(crate) copy: u32,
    /// Base cursor movement after the add run (beyond `add`).
    pub(crate) seek: i64,
}

/// Reads controls one at a time from a decoded control stream.
pub(crate) struct Controls<'a> {
    rest: &'a [u8],
}

impl<'a> Controls<'a> {
    pub(crate) const fn new(stream: &'a [u8]) -> Self {
        Self { rest: stream }
    }

    /// The next control, `None` at the end of the stream.
    pub(crate) fn next_control(&mut self) -> Result<Option<Control>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (c, rest) = postcard::take_from_bytes::<Control>(self.rest)
            .map_err(|e| malformed(format!("control stream: {e}")))?;
        self.rest = rest;
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_bytes() -> Vec<u8> {
        let control = postcard::to_allocvec(&Control {
            add: 3,
            copy: 2,
            seek: -1,
        })
        .unwrap();
        let (c, d, e) = (
            deflate(&control, 3).unwrap(),
            deflate(&[0, 0, 1], 3).unwrap(),
            deflate(b"xy", 3).unwrap(),
        );
        Piece {
            base_image_hash: Hash::of(b"base"),
            base_cursor: 0,
            first: 0,
            count: 1,
            output_len: 5,
            control_len: control.len() as u32,
            diff_len: 3,
            control: &c,
            diff: &d,
            extra: &e,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn piece_round_trips_and_decodes_its_streams() {
        let bytes = sample_bytes();
        assert_eq!(&bytes[..6], b"MOTA\x01\x22");
        let p = Piece::decode(&bytes).unwrap();
        let (c, d, e) = p.streams().unwrap();
        let mut controls = Controls::new(&c);
        assert_eq!(
            controls.next_control().unwrap(),
            Some(Control {
                add: 3,
                copy: 2,
                seek: -1
            })
        );
        assert_eq!(controls.next_control().unwrap(), None);
        assert_eq!((d, e), (vec![0, 0, 1], b"xy".to_vec()));
    }

    #[test]
    fn rejects_every_truncation_with_a_typed_error() {
        let bytes = sample_bytes();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    Piece::decode(&bytes[..n]),
                    Err(Error::PatchTruncated { .. } | Error::PatchMalformed { .. })
                ),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn rejects_a_piece_over_the_size_limit_before_parsing() {
        let big = vec![0u8; MAX_PIECE_BYTES + 1];
        assert!(matches!(
            Piece::decode(&big),
            Err(Error::PatchTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_a_stream_that_decodes_to_another_length_than_declared() {
        let d = deflate(&[0, 0, 1, 7], 3).unwrap();
        let e = deflate(b"xy", 3).unwrap();
        let bytes = Piece {
            base_image_hash: Hash::of(b"base"),
            base_cursor: 0,
            first: 0,
            count: 1,
            output_len: 5,
            control_len: 0,
            diff_len: 3,
            control: &[],
            diff: &d,
            extra: &e,
        }
        .encode()
        .unwrap();
        let p = Piece::decode(&bytes).unwrap();
        assert!(matches!(p.streams(), Err(Error::PatchMalformed { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoding_random_bytes_as_a_piece_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = Piece::decode(&bytes) {
                let _ = p.streams();
            }
        }

        #[test]
        fn mutating_one_byte_of_a_valid_piece_never_panics(pos in 0usize..200, val in any::<u8>()) {
            let mut a = sample_bytes();
            let p = pos % a.len();
            a[p] = val;
            if let Ok(p) = Piece::decode(&a) {
                let _ = p.streams();
            }
        }
    }
}
