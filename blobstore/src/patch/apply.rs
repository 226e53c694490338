//! Applying one piece against the base image, streaming, with every
//! produced chunk checked against the signed chunk index.

use meshota_manifest::Hash;

use super::format::{PatchIndex, PieceRef};
use super::piece::{Controls, Piece};
use super::source::{ReadAt, WindowReader};
use crate::error::{Error, Result};
use crate::index::ChunkIndex;

const WHAT: &str = "patch piece";

/// Applies the piece `bytes` (listed as `piece` in `patch`) to `base`, and
/// returns the chunks it produced, in ordinal order, each already checked
/// to hash to its entry in `target`.
///
/// Before anything is read from the base, the piece must name the patch's
/// base image, produce exactly the range `piece` lists, and that range must
/// lie in `target` with lengths summing to the piece's output. The base is
/// read through one 64 KiB window; memory is the piece, its decoded streams
/// (bounded by [`super::MAX_PIECE_OUTPUT`] and [`super::MAX_PIECE_CONTROL`])
/// and the produced chunks (the same bound), whatever the image size.
/// The caller hashes the base against the patch once beforehand
/// ([`super::rebuild_from_patch`] does); a base that differs anyway fails
/// here by the chunk hashes.
///
/// On any error nothing produced is returned: discard the piece and fetch
/// its chunks plainly.
///
/// # Errors
/// [`Error::WrongBase`], [`Error::PatchMalformed`] (decode errors, streams
/// that do not fit, reads outside the base), [`Error::PieceOutputMismatch`],
/// [`Error::Read`] (base I/O).
pub fn apply_piece<B: ReadAt + ?Sized>(
    base: &B,
    bytes: &[u8],
    piece: &PieceRef,
    patch: &PatchIndex,
    target: &ChunkIndex,
) -> Result<Vec<Vec<u8>>> {
    let p = Piece::decode(bytes)?;
    if p.base_image_hash != patch.base_image_hash() {
        return Err(Error::WrongBase {
            expected: patch.base_image_hash(),
            actual: p.base_image_hash,
        });
    }
    if (p.first, p.count) != (piece.first, piece.count) {
        return Err(malformed(format!(
            "produces chunks {}..+{}, the patch index lists {}..+{}",
            p.first, p.count, piece.first, piece.count
        )));
    }
    let Some(refs) = target.chunks().get(piece.ordinals()) else {
        return Err(malformed(format!(
            "chunks {:?} are outside the target's {}",
            piece.ordinals(),
            target.chunks().len()
        )));
    };
    let want: u64 = refs.iter().map(|c| u64::from(c.len)).sum();
    if want != u64::from(p.output_len) {
        return Err(malformed(format!(
            "produces {} bytes, its chunks total {want}",
            p.output_len
        )));
    }
    let (control, mut diff, extra) = p.streams()?;
    let mut reader = WindowReader::new(base, patch.base_size());
    let mut out = Output::new(refs, piece.first);
    let mut controls = Controls::new(&control);
    let (mut d, mut e) = (0u64, 0usize);
    let mut cursor = i128::from(p.base_cursor);
    let mut old = vec![0u8; super::source::BASE_WINDOW];
    while let Some(c) = controls.next_control()? {
        let add = c.add as usize;
        if d + add as u64 > u64::from(p.diff_len) {
            return Err(malformed("add runs past the diff stream".into()));
        }
        let mut done = 0usize;
        while done < add {
            let n = (add - done).min(old.len());
            let at = u64::try_from(cursor + done as i128)
                .map_err(|_| malformed("add reads before the base".into()))?;
            if reader.read(at, &mut old[..n])?.is_none() {
                return Err(malformed(format!(
                    "add reads {n} bytes at {at}, past the base's {} bytes",
                    patch.base_size()
                )));
            }
            for o in &mut old[..n] {
                *o = o.wrapping_add(diff.next(*o)?);
            }
            out.push(&old[..n])?;
            done += n;
        }
        d += add as u64;
        let Some(copy_run) = extra.get(e..e.saturating_add(c.copy as usize)) else {
            return Err(malformed("copy runs past the extra stream".into()));
        };
        out.push(copy_run)?;
        e += c.copy as usize;
        cursor += add as i128 + i128::from(c.seek);
    }
    if d != u64::from(p.diff_len) || e != extra.len() {
        return Err(malformed("streams not fully used".into()));
    }
    diff.finish()?;
    out.finish()
}

/// Cuts produced bytes into the target's chunks and checks each hash as it
/// completes.
struct Output<'a> {
    refs: &'a [crate::index::ChunkRef],
    first: u32,
    done: Vec<Vec<u8>>,
    current: Vec<u8>,
}

impl<'a> Output<'a> {
    fn new(refs: &'a [crate::index::ChunkRef], first: u32) -> Self {
        Self {
            refs,
            first,
            done: Vec::with_capacity(refs.len()),
            current: Vec::new(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let Some(c) = self.refs.get(self.done.len()) else {
                return Err(malformed("produces more bytes than its chunks".into()));
            };
            let take = (c.len as usize - self.current.len()).min(bytes.len());
            self.current.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.current.len() == c.len as usize {
                let actual = Hash::of(&self.current);
                if actual != c.hash {
                    let ordinal = self.first + u32::try_from(self.done.len()).unwrap_or(u32::MAX);
                    return Err(Error::PieceOutputMismatch {
                        ordinal,
                        expected: c.hash,
                        actual,
                    });
                }
                self.done.push(std::mem::take(&mut self.current));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<Vec<u8>>> {
        if self.done.len() != self.refs.len() || !self.current.is_empty() {
            return Err(malformed("produces fewer bytes than its chunks".into()));
        }
        Ok(self.done)
    }
}

fn malformed(reason: String) -> Error {
    Error::PatchMalformed { what: WHAT, reason }
}
