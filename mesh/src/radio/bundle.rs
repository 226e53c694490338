//! The bundle a release crosses one radio hop as before its payload: the
//! signed manifest and its chunk index, in bundle fragments any holder can
//! send and any neighbour can collect (fragments are keyed by the release
//! tag, not by sender), then verified before anything is relayed.
//!
//! ```text
//! bundle:  varint(len(manifest)) || manifest (signed envelope) || chunk index
//! piece i: bytes [i * P, (i + 1) * P) of the bundle, P = frame payload - 4
//! ```

use alloc::vec::Vec;

use meshota_blobstore::{ChunkIndex, ChunkRef};
use meshota_manifest::{Hash, InstallPolicy, ReleaseManifest, SignedDocument, TrustRoot, Verified};
use meshota_radios::Progress;

use super::error::RadioError;
use super::msg::TAG_LEN;

/// Largest bundle (bytes): a manifest with one signature is about 3.6 KB
/// and an index 36 bytes per chunk.
pub const BUNDLE_BYTES_MAX: usize = 32 * 1024;

/// Encodes a bundle.
///
/// # Errors
/// [`RadioError::BundleTooLarge`] over [`BUNDLE_BYTES_MAX`].
pub fn encode(manifest: &[u8], index: &[u8]) -> Result<Vec<u8>, RadioError> {
    let mut out = Vec::with_capacity(manifest.len() + index.len() + 5);
    let mut n = manifest.len();
    loop {
        let b = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(manifest);
    out.extend_from_slice(index);
    if out.len() > BUNDLE_BYTES_MAX {
        return Err(RadioError::BundleTooLarge {
            len: out.len(),
            max: BUNDLE_BYTES_MAX,
        });
    }
    Ok(out)
}

/// A release whose manifest verified against the trust root and whose
/// index is the manifest's. Invariant: only [`verify`] builds one.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The release id.
    pub id: Hash,
    /// Its security version.
    pub security_version: u64,
    /// The chunks of its (first) component, in image order.
    pub chunks: Vec<ChunkRef>,
    /// The bundle's bytes, as relayed to neighbours.
    pub bytes: Vec<u8>,
    /// The verified manifest.
    pub manifest: Verified<ReleaseManifest>,
}

impl VerifiedBundle {
    /// The chunk index's bytes inside the bundle (after the manifest).
    #[must_use]
    pub fn index_bytes(&self) -> Option<&[u8]> {
        let (len, at) = manifest_len(&self.bytes).ok()?;
        self.bytes.get(at.checked_add(len)?..)
    }
}

/// The manifest length prefix: (length, bytes it took).
fn manifest_len(bytes: &[u8]) -> Result<(usize, usize), RadioError> {
    const WHAT: &str = "bundle";
    let mut len = 0usize;
    let mut at = 0usize;
    loop {
        let b = *bytes.get(at).ok_or(RadioError::Truncated { what: WHAT })?;
        if at >= 3 {
            return Err(RadioError::Malformed {
                what: WHAT,
                reason: "manifest length varint too long",
            });
        }
        len |= usize::from(b & 0x7F) << (7 * at);
        at += 1;
        if b & 0x80 == 0 {
            return Ok((len, at));
        }
    }
}

/// Decodes and verifies a bundle: the manifest's signatures against
/// `trust` (with `policy`), its id against `expected` when given, and the
/// index against the manifest's first component.
///
/// # Errors
/// [`RadioError::Malformed`], [`RadioError::Manifest`],
/// [`RadioError::WrongRelease`], [`RadioError::Index`].
pub fn verify(
    bytes: Vec<u8>,
    expected: Option<&Hash>,
    trust: &Verified<TrustRoot>,
    policy: &InstallPolicy<'_>,
) -> Result<VerifiedBundle, RadioError> {
    const WHAT: &str = "bundle";
    if bytes.len() > BUNDLE_BYTES_MAX {
        return Err(RadioError::BundleTooLarge {
            len: bytes.len(),
            max: BUNDLE_BYTES_MAX,
        });
    }
    let (len, at) = manifest_len(&bytes)?;
    let manifest = bytes
        .get(at..at.saturating_add(len))
        .ok_or(RadioError::Truncated { what: WHAT })?;
    let index_bytes = &bytes[at + len..];
    let doc = SignedDocument::<ReleaseManifest>::decode(manifest)
        .map_err(|e| RadioError::Manifest(alloc::format!("{e}")))?;
    let id = doc.id();
    if let Some(want) = expected {
        if *want != id {
            return Err(RadioError::WrongRelease {
                expected: want.short(),
                found: id.short(),
            });
        }
    }
    let verified = trust
        .verify_manifest(&doc, policy)
        .map_err(|e| RadioError::Manifest(alloc::format!("{e}")))?;
    let comp = verified
        .body()
        .components
        .first()
        .ok_or(RadioError::Index("release has no component".into()))?;
    if Hash::of(index_bytes) != comp.chunk_index {
        return Err(RadioError::Index(
            "index bytes do not hash to the manifest's chunk index".into(),
        ));
    }
    let index =
        ChunkIndex::decode(index_bytes).map_err(|e| RadioError::Index(alloc::format!("{e}")))?;
    if index.image_hash() != comp.image_hash || index.total_size() != comp.size {
        return Err(RadioError::Index(
            "index does not describe the manifest's image".into(),
        ));
    }
    Ok(VerifiedBundle {
        id,
        security_version: verified.body().security_version,
        chunks: index.chunks().to_vec(),
        manifest: verified,
        bytes,
    })
}

/// Bytes of bundle per fragment for frames with `frame_payload` bytes.
#[must_use]
pub const fn piece_len(frame_payload: usize) -> usize {
    frame_payload.saturating_sub(TAG_LEN)
}

/// Fragments of one bundle being collected, from any sender. Invariant:
/// holds at most `count` pieces of at most the piece length each.
#[derive(Debug, Clone)]
pub struct Pieces {
    parts: Vec<Option<Vec<u8>>>,
    piece_len: usize,
}

impl Pieces {
    /// Nothing collected yet.
    #[must_use]
    pub const fn new(piece_len: usize) -> Self {
        Self {
            parts: Vec::new(),
            piece_len,
        }
    }

    /// Takes fragment `index` of `count`. Returns false (and keeps
    /// nothing) for a fragment inconsistent with those held: a different
    /// count, an over-long piece, or a short piece that is not the last.
    pub fn accept(&mut self, index: u8, count: u8, data: &[u8]) -> bool {
        let (i, n) = (usize::from(index), usize::from(count));
        if data.len() > self.piece_len || (i + 1 < n && data.len() != self.piece_len) {
            return false;
        }
        if self.parts.is_empty() {
            self.parts = alloc::vec![None; n];
        } else if self.parts.len() != n {
            return false;
        }
        match self.parts.get_mut(i) {
            Some(slot) => {
                if slot.is_none() {
                    *slot = Some(data.to_vec());
                }
                true
            }
            None => false,
        }
    }

    /// Whether every fragment is held.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        !self.parts.is_empty() && self.parts.iter().all(Option::is_some)
    }

    /// Which fragments are held; `None` before the first.
    #[must_use]
    pub fn held(&self) -> Option<Progress> {
        if self.parts.is_empty() {
            return None;
        }
        let mut p = Progress::new(self.parts.len()).ok()?;
        for (i, part) in self.parts.iter().enumerate() {
            if part.is_some() {
                p.set(i);
            }
        }
        Some(p)
    }

    /// The bundle, when complete.
    #[must_use]
    pub fn assemble(&self) -> Option<Vec<u8>> {
        if !self.is_complete() {
            return None;
        }
        Some(self.parts.iter().flatten().flatten().copied().collect())
    }

    /// Forgets everything (after a bundle failed verification).
    pub fn clear(&mut self) {
        self.parts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_assemble_in_any_order_and_refuse_inconsistent_ones() {
        let bundle: Vec<u8> = (0..50u8).collect();
        let mut p = Pieces::new(20);
        assert!(p.held().is_none());
        assert!(p.accept(2, 3, &bundle[40..]));
        assert!(!p.accept(0, 4, &bundle[..20]), "another count");
        assert!(!p.accept(1, 3, &bundle[20..30]), "short piece not last");
        assert!(p.accept(0, 3, &bundle[..20]));
        assert!(!p.is_complete());
        assert_eq!(p.held().unwrap().missing().collect::<Vec<_>>(), [1]);
        assert!(p.accept(1, 3, &bundle[20..40]));
        assert_eq!(p.assemble().unwrap(), bundle);
    }

    #[test]
    fn bundle_length_prefix_is_checked_before_reading() {
        let b = encode(&[1, 2, 3], &[4]).unwrap();
        assert_eq!(b, [3, 1, 2, 3, 4]);
        let too_long = encode(&alloc::vec![0; BUNDLE_BYTES_MAX], &[]);
        assert!(matches!(too_long, Err(RadioError::BundleTooLarge { .. })));
    }
}
