//! One patch piece: the compressed control, diff and extra streams that
//! rebuild a run of whole chunks of the target from the base image.
//!
//! Wire form: `b"MOTA"`, format version 1, kind [`KIND_PATCH_PIECE`] (34),
//! then the postcard encoding of
//! `(base_image_hash, base_cursor, first, count, output_len, control_len,
//! diff_len, diff_codec: u8, control: bytes, diff: bytes, extra: bytes)`.
//! `control` and `extra` are zstd frames (empty when their decoded length
//! is 0); `diff` is coded as `diff_codec` says ([`DiffCodec`]): a zstd
//! frame (0), or the base-context coder of `patch/diffcode.rs` (1).
//!
//! Decoded, the control stream is a sequence of postcard triples
//! `(add: u32, copy: u32, seek: i64)`, applied from the base cursor
//! `base_cursor`: `add` output bytes are base bytes plus diff bytes
//! (wrapping), `copy` output bytes come from `extra`, then the cursor moves
//! by `add + seek`. So `diff_len + extra_len == output_len`.

use meshota_manifest::{Hash, frame};
use serde::{Deserialize, Serialize};

use super::diffcode;
use super::format::open_frame;
use super::{MAX_PIECE_BYTES, MAX_PIECE_CONTROL, MAX_PIECE_OUTPUT};
use crate::error::{Error, Result};

/// The document-kind byte of a patch piece.
pub const KIND_PATCH_PIECE: u8 = frame::Kind::PatchPiece as u8;

const WHAT: &str = "patch piece";

/// How a piece's diff stream is coded (the `diff_codec` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffCodec {
    /// A zstd frame of the diff bytes.
    Zstd = 0,
    /// The base-context coder (`patch/diffcode.rs`): each diff byte
    /// predicted from the base bytes under it and the diffs before it.
    /// Smaller on executables; the default.
    BaseContext = 1,
}

impl DiffCodec {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Zstd),
            1 => Some(Self::BaseContext),
            _ => None,
        }
    }
}

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
    pub(crate) diff_codec: u8,
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
        if DiffCodec::from_byte(self.diff_codec).is_none() {
            return bad(format!("unknown diff codec {}", self.diff_codec));
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

    /// The control and extra streams, each decompressed into a buffer of
    /// exactly its declared length, and the diff stream's reader; anything
    /// else is malformed.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`].
    pub(crate) fn streams(&self) -> Result<(Vec<u8>, DiffSource<'a>, Vec<u8>)> {
        let extra_len = self.output_len - self.diff_len;
        let diff = match DiffCodec::from_byte(self.diff_codec) {
            Some(DiffCodec::Zstd) => DiffSource::Plain {
                bytes: inflate("diff", self.diff, self.diff_len)?,
                pos: 0,
            },
            Some(DiffCodec::BaseContext) if self.diff_len == 0 => DiffSource::Plain {
                bytes: Vec::new(),
                pos: 0,
            },
            Some(DiffCodec::BaseContext) => DiffSource::Coded(Box::new(diffcode::Decoder::new(
                self.diff,
                self.diff_len as usize,
            )?)),
            None => return Err(malformed(format!("unknown diff codec {}", self.diff_codec))),
        };
        Ok((
            inflate("control", self.control, self.control_len)?,
            diff,
            inflate("extra", self.extra, extra_len)?,
        ))
    }
}

/// The diff stream as the applier reads it: one byte per base byte, in
/// order. The applier checks beforehand that the add runs total
/// `diff_len`; [`DiffSource::finish`] that the stream was used exactly.
pub(crate) enum DiffSource<'a> {
    /// Decompressed whole (zstd).
    Plain { bytes: Vec<u8>, pos: usize },
    /// Decoded as read (base-context coder).
    Coded(Box<diffcode::Decoder<'a>>),
}

impl DiffSource<'_> {
    /// The diff byte to add to the base byte `under`.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`] past the stream's end.
    pub(crate) fn next(&mut self, under: u8) -> Result<u8> {
        match self {
            Self::Plain { bytes, pos } => {
                let Some(&d) = bytes.get(*pos) else {
                    return Err(malformed("add runs past the diff stream".into()));
                };
                *pos += 1;
                Ok(d)
            }
            Self::Coded(decoder) => decoder.next(under),
        }
    }

    /// Checks that every diff byte was used.
    ///
    /// # Errors
    /// [`Error::PatchMalformed`].
    pub(crate) fn finish(self) -> Result<()> {
        match self {
            Self::Plain { bytes, pos } if pos == bytes.len() => Ok(()),
            Self::Plain { .. } => Err(malformed("streams not fully used".into())),
            Self::Coded(decoder) => decoder.finish(),
        }
    }
}

/// Codes a diff stream with `codec`, or when `None` with whichever codec
/// makes it smaller; returns the codec used and the coded bytes. `under`
/// holds the base byte under each diff byte (used by
/// [`DiffCodec::BaseContext`]).
///
/// # Errors
/// [`Error::PatchMalformed`] if zstd fails (not expected).
pub(crate) fn code_diff(
    codec: Option<DiffCodec>,
    diff: &[u8],
    under: &[u8],
    level: i32,
) -> Result<(DiffCodec, Vec<u8>)> {
    let chosen = codec.unwrap_or(DiffCodec::BaseContext);
    if diff.is_empty() {
        return Ok((chosen, Vec::new()));
    }
    let context = || diffcode::encode(diff, under);
    match codec {
        Some(DiffCodec::Zstd) => Ok((DiffCodec::Zstd, deflate(diff, level)?)),
        Some(DiffCodec::BaseContext) => Ok((DiffCodec::BaseContext, context())),
        None => {
            let (c, z) = (context(), deflate(diff, level)?);
            Ok(if c.len() <= z.len() {
                (DiffCodec::BaseContext, c)
            } else {
                (DiffCodec::Zstd, z)
            })
        }
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
            diff_codec: DiffCodec::Zstd as u8,
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
        let DiffSource::Plain { bytes: d, .. } = d else {
            panic!("a zstd diff stream is decompressed whole");
        };
        assert_eq!((d, e), (vec![0, 0, 1], b"xy".to_vec()));
    }

    #[test]
    fn rejects_an_unknown_diff_codec() {
        let bytes = sample_bytes();
        let p = Piece::decode(&bytes).unwrap();
        let other = Piece { diff_codec: 2, ..p }.encode().unwrap();
        assert!(matches!(
            Piece::decode(&other),
            Err(Error::PatchMalformed { reason, .. }) if reason.contains("diff codec")
        ));
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
            diff_codec: DiffCodec::Zstd as u8,
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
