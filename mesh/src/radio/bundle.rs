//! The bundle a release crosses one radio hop as before its payload: the
//! signed manifest and its chunk index, in bundle fragments any holder can
//! send and any neighbour can collect (fragments are keyed by the release
//! tag, not by sender), then verified before anything is relayed.
//!
//! ```text
//! bundle:  varint(len(manifest)) || manifest (signed envelope) || index
//! index:   the chunk index (MOTA kind 32), or an IndexDelta (kind 35)
//! piece i: bytes [i * P, (i + 1) * P) of the bundle, P = frame payload - 4
//! ```
//!
//! **Large releases.** A chunk index grows with the image (36 bytes a
//! chunk: a 64 MiB image's is about 150 KB, far past a bundle). Such a
//! release crosses the radio by patch only, and its bundle carries the
//! index as a [`meshota_blobstore::IndexDelta`] against the chunk index of
//! the base of the **first patch the manifest lists** ([`encode_delta`]):
//! one canonical bundle, so fragments from any holder fit together. The
//! delta is not trusted: a receiver rebuilds the index from its own base
//! index and accepts it only if it hashes to the manifest's signed
//! `chunk_index`. A node on another base refuses it
//! ([`RadioError::OtherBase`]) and never takes that release by radio.

use alloc::sync::Arc;
use alloc::vec::Vec;

use meshota_blobstore::{ChunkIndex, ChunkRef, IndexDelta};
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
    // Past BUNDLE_BYTES_MAX (refused below) the length is not read back.
    meshota_radios::leb128::push(&mut out, u32::try_from(manifest.len()).unwrap_or(u32::MAX));
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

/// Encodes the bundle of a large release: the manifest and the target
/// index as a delta against `base`, which must be the chunk index of the
/// base image of the first patch `manifest` lists (every holder then sends
/// the same bytes; [`verify`] does not check which base it is).
///
/// # Errors
/// [`RadioError::Index`] when the delta cannot be made or encoded;
/// [`RadioError::BundleTooLarge`] over [`BUNDLE_BYTES_MAX`].
pub fn encode_delta(
    manifest: &[u8],
    base: &ChunkIndex,
    target: &ChunkIndex,
) -> Result<Vec<u8>, RadioError> {
    let delta = IndexDelta::between(base, target)
        .and_then(|d| d.encode())
        .map_err(|e| RadioError::Index(alloc::format!("{e}")))?;
    encode(manifest, &delta)
}

/// A release whose manifest verified against the trust root and whose
/// index is the manifest's. Invariant: only [`verify`] builds one, and
/// `index` hashes to the manifest's signed chunk index id.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The release id.
    pub id: Hash,
    /// Its security version.
    pub security_version: u64,
    /// The bundle's bytes, as relayed to neighbours (the index whole or as
    /// a delta, as it came).
    pub bytes: Vec<u8>,
    /// The verified manifest.
    pub manifest: Verified<ReleaseManifest>,
    /// The chunk index of its (first) component, decoded once here.
    index: Arc<ChunkIndex>,
    /// The chunk index's encoding, whole (rebuilt when it came as a delta).
    index_bytes: Vec<u8>,
    /// Whether the index came as a delta.
    delta: bool,
}

impl VerifiedBundle {
    /// The chunk index's bytes, whole: they hash to the signed id.
    #[must_use]
    pub fn index_bytes(&self) -> &[u8] {
        &self.index_bytes
    }

    /// The chunk index those bytes encode, checked against the manifest's
    /// image hash and size.
    #[must_use]
    pub fn index(&self) -> &Arc<ChunkIndex> {
        &self.index
    }

    /// The chunks of its (first) component, in image order.
    #[must_use]
    pub fn chunks(&self) -> &[ChunkRef] {
        self.index.chunks()
    }

    /// The signed manifest's bytes (the envelope, as signed).
    #[must_use]
    pub fn manifest_bytes(&self) -> &[u8] {
        split(&self.bytes).map_or(&[], |(m, _)| m)
    }

    /// Whether the bundle carries its index as a delta (a large release,
    /// fetched by patch only).
    #[must_use]
    pub const fn is_delta(&self) -> bool {
        self.delta
    }
}

/// A bundle's signed manifest and chunk index bytes, split at its length
/// prefix (nothing is verified).
///
/// # Errors
/// [`RadioError::Malformed`] for a length prefix cut short or over three
/// bytes, [`RadioError::Truncated`] for a manifest longer than the bundle.
pub fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), RadioError> {
    const WHAT: &str = "bundle";
    let (len, at) = meshota_radios::leb128::read(bytes).ok_or(RadioError::Malformed {
        what: WHAT,
        reason: "manifest length varint cut short or too long",
    })?;
    let end = at.saturating_add(len as usize);
    let manifest = bytes
        .get(at..end)
        .ok_or(RadioError::Truncated { what: WHAT })?;
    Ok((manifest, &bytes[end..]))
}

/// Decodes and verifies a bundle: the manifest's signatures against
/// `trust` (with `policy`), its id against the release key `expected` when
/// given (before the signatures: a bundle for another release costs no
/// verification), and the index against the manifest's first component.
/// An index sent as a delta is rebuilt from `base` (the node's base chunk
/// index) first.
///
/// # Errors
/// [`RadioError::Malformed`], [`RadioError::Manifest`],
/// [`RadioError::WrongRelease`], [`RadioError::Index`],
/// [`RadioError::OtherBase`] for a delta against an index other than
/// `base` (or with no `base`).
pub fn verify(
    bytes: Vec<u8>,
    expected: Option<&super::msg::ReleaseKey>,
    trust: &Verified<TrustRoot>,
    policy: &InstallPolicy<'_>,
    base: Option<&BaseIndex>,
) -> Result<VerifiedBundle, RadioError> {
    if bytes.len() > BUNDLE_BYTES_MAX {
        return Err(RadioError::BundleTooLarge {
            len: bytes.len(),
            max: BUNDLE_BYTES_MAX,
        });
    }
    let (manifest, index_bytes) = split(&bytes)?;
    let doc = SignedDocument::<ReleaseManifest>::decode(manifest)
        .map_err(|e| RadioError::Manifest(alloc::format!("{e}")))?;
    let id = doc.id();
    if let Some(want) = expected {
        if !want.names(&id) {
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
    let delta = IndexDelta::is_delta_frame(index_bytes);
    let index_bytes = if delta {
        rebuild(index_bytes, base)?
    } else {
        index_bytes.to_vec()
    };
    if Hash::of(&index_bytes) != comp.chunk_index {
        return Err(RadioError::Index(
            "index bytes do not hash to the manifest's chunk index".into(),
        ));
    }
    let index =
        ChunkIndex::decode(&index_bytes).map_err(|e| RadioError::Index(alloc::format!("{e}")))?;
    if index.image_hash() != comp.image_hash || index.total_size() != comp.size {
        return Err(RadioError::Index(
            "index does not describe the manifest's image".into(),
        ));
    }
    Ok(VerifiedBundle {
        id,
        security_version: verified.body().security_version,
        manifest: verified,
        bytes,
        index: Arc::new(index),
        index_bytes,
        delta,
    })
}

/// A node's base chunk index (its installed release's), against which a
/// bundle's index delta is rebuilt. Invariant: `id` is `index`'s id.
#[derive(Debug, Clone)]
pub struct BaseIndex {
    index: ChunkIndex,
    id: Hash,
}

impl BaseIndex {
    /// Wraps an index.
    ///
    /// # Errors
    /// [`RadioError::Index`] when it cannot be encoded (not a valid index).
    pub fn new(index: ChunkIndex) -> Result<Self, RadioError> {
        let id = index
            .id()
            .map_err(|e| RadioError::Index(alloc::format!("base index: {e}")))?;
        Ok(Self { index, id })
    }

    /// The index.
    #[must_use]
    pub const fn index(&self) -> &ChunkIndex {
        &self.index
    }

    /// Its id.
    #[must_use]
    pub const fn id(&self) -> Hash {
        self.id
    }
}

/// The whole index encoding a delta describes, against `base`.
fn rebuild(delta: &[u8], base: Option<&BaseIndex>) -> Result<Vec<u8>, RadioError> {
    let delta = IndexDelta::decode(delta).map_err(|e| RadioError::Index(alloc::format!("{e}")))?;
    let base =
        base.filter(|b| b.id == delta.base_index())
            .ok_or_else(|| RadioError::OtherBase {
                base: delta.base_index().short(),
            })?;
    delta
        .apply(&base.index)
        .and_then(|i| i.encode())
        .map_err(|e| RadioError::Index(alloc::format!("{e}")))
}

/// Bytes before the symbol in a repair fragment's payload: the tag, the
/// fragment count (u8), the repair number (u8) and the message length
/// (u16 little-endian).
pub const REPAIR_HEADER_LEN: usize = TAG_LEN + 4;

/// Bytes of bundle per fragment for frames with `frame_payload` bytes: a
/// repair fragment (its header and one fragment-sized symbol) must fit.
#[must_use]
pub const fn piece_len(frame_payload: usize) -> usize {
    frame_payload.saturating_sub(REPAIR_HEADER_LEN)
}

/// A repair fragment's payload after its tag, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairHead {
    /// Fragments of the message.
    pub count: u8,
    /// The repair number (encoding symbol `count + r`).
    pub r: u8,
    /// The message's length in bytes.
    pub len: u16,
}

impl RepairHead {
    /// The 4 bytes after the tag.
    #[must_use]
    pub fn encode(&self) -> [u8; 4] {
        let l = self.len.to_le_bytes();
        [self.count, self.r, l[0], l[1]]
    }

    /// Parses the bytes after the tag: the head and the symbol.
    ///
    /// # Errors
    /// [`RadioError::Truncated`] under 4 bytes.
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), RadioError> {
        let head = bytes
            .get(..4)
            .ok_or(RadioError::Truncated { what: "repair" })?;
        Ok((
            Self {
                count: head[0],
                r: head[1],
                len: u16::from_le_bytes([head[2], head[3]]),
            },
            &bytes[4..],
        ))
    }
}

/// Fragments and repair fragments of one message (a bundle, a patch
/// index) being collected, from any sender. Invariant: holds at most
/// `count` fragments and 256 repair fragments, each at most the piece
/// length, all consistent with one count and, once a repair fragment told
/// it, one message length.
#[derive(Debug, Clone)]
pub struct Pieces {
    parts: Vec<Option<Vec<u8>>>,
    repairs: Vec<(u8, Vec<u8>)>,
    len: Option<usize>,
    decoded: Option<Vec<u8>>,
    piece_len: usize,
}

impl Pieces {
    /// Nothing collected yet.
    #[must_use]
    pub const fn new(piece_len: usize) -> Self {
        Self {
            parts: Vec::new(),
            repairs: Vec::new(),
            len: None,
            decoded: None,
            piece_len,
        }
    }

    fn take_count(&mut self, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        if self.parts.is_empty() {
            self.parts = alloc::vec![None; n];
            true
        } else {
            self.parts.len() == n
        }
    }

    /// Whether a last fragment of `last` bytes agrees with the length.
    fn last_agrees(&self, last: usize) -> bool {
        let n = self.parts.len();
        self.len
            .is_none_or(|len| len.saturating_sub((n - 1) * self.piece_len) == last)
    }

    /// Takes fragment `index` of `count`. Returns false (and keeps
    /// nothing) for a fragment inconsistent with those held: a different
    /// count, an over-long piece, or a short piece that is not the last.
    pub fn accept(&mut self, index: u8, count: u8, data: &[u8]) -> bool {
        let (i, n) = (usize::from(index), usize::from(count));
        if data.len() > self.piece_len || (i + 1 < n && data.len() != self.piece_len) {
            return false;
        }
        if !self.take_count(n) || i >= n || (i + 1 == n && !self.last_agrees(data.len())) {
            return false;
        }
        if self.parts[i].is_none() {
            self.parts[i] = Some(data.to_vec());
            self.try_decode();
        }
        true
    }

    /// Takes repair fragment `head.r` of a message of `head.count`
    /// fragments and `head.len` bytes. Returns false (and keeps nothing)
    /// when it is inconsistent with what is held: another count or length,
    /// a length the count cannot have, a symbol not exactly one piece.
    pub fn accept_repair(&mut self, head: RepairHead, symbol: &[u8]) -> bool {
        let (n, len) = (usize::from(head.count), usize::from(head.len));
        let fits = n > 0 && len > (n - 1) * self.piece_len && len <= n * self.piece_len;
        if !fits || symbol.len() != self.piece_len || self.len.is_some_and(|l| l != len) {
            return false;
        }
        if !self.take_count(n) {
            return false;
        }
        if let Some(Some(last)) = self.parts.last() {
            if len - (n - 1) * self.piece_len != last.len() {
                return false;
            }
        }
        self.len = Some(len);
        if !self.repairs.iter().any(|(r, _)| *r == head.r) {
            self.repairs.push((head.r, symbol.to_vec()));
            self.try_decode();
        }
        true
    }

    fn try_decode(&mut self) {
        let Some(len) = self.len else {
            return;
        };
        if self.decoded.is_some() || self.parts.iter().all(Option::is_some) {
            return;
        }
        let held = self.parts.iter().filter(|p| p.is_some()).count();
        if held + self.repairs.len() >= self.parts.len() {
            self.decoded =
                meshota_radios::repair::decode(len, self.piece_len, &self.parts, &self.repairs);
        }
    }

    /// Whether the message can be assembled: every fragment is held, or
    /// enough repair fragments replaced the missing ones.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.decoded.is_some() || (!self.parts.is_empty() && self.parts.iter().all(Option::is_some))
    }

    /// Which fragments are held, for a request; `None` before the first.
    /// Each repair fragment held also marks one missing fragment held
    /// (the highest), so the count of unmarked fragments is how many more
    /// fragments or repair fragments the message needs; but while the
    /// message is not complete at least one fragment stays unmarked (as
    /// many repair fragments as lost fragments fail to decode about once
    /// in a hundred: then one more is asked for, never none).
    #[must_use]
    pub fn held(&self) -> Option<Progress> {
        if self.parts.is_empty() {
            return None;
        }
        let mut p = Progress::new(self.parts.len()).ok()?;
        let missing = self.parts.iter().filter(|p| p.is_none()).count();
        let mut extra = self.repairs.len();
        if !self.is_complete() {
            extra = extra.min(missing.saturating_sub(1));
        }
        for (i, part) in self.parts.iter().enumerate().rev() {
            if part.is_some() {
                p.set(i);
            } else if extra > 0 {
                extra -= 1;
                p.set(i);
            }
        }
        Some(p)
    }

    /// The message, when complete.
    #[must_use]
    pub fn assemble(&self) -> Option<Vec<u8>> {
        if let Some(d) = &self.decoded {
            return Some(d.clone());
        }
        if !self.is_complete() {
            return None;
        }
        Some(self.parts.iter().flatten().flatten().copied().collect())
    }

    /// Forgets everything (after a bundle failed verification).
    pub fn clear(&mut self) {
        self.parts.clear();
        self.repairs.clear();
        self.len = None;
        self.decoded = None;
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
    fn repair_fragments_replace_whichever_fragments_were_lost() {
        let bundle: Vec<u8> = (0..=255u8).cycle().take(1_000).collect();
        let piece = 100;
        let enc = meshota_radios::RepairEncoder::new(&bundle, piece).unwrap();
        let head = |r| RepairHead {
            count: 10,
            r,
            len: 1_000,
        };
        let mut p = Pieces::new(piece);
        for i in [0u8, 2, 3, 5, 6, 7, 8, 9] {
            let at = usize::from(i) * piece;
            assert!(p.accept(i, 10, &bundle[at..at + piece]));
        }
        assert!(!p.is_complete());
        assert!(p.accept_repair(head(7), &enc.repair(7)));
        assert_eq!(p.held().unwrap().missing().count(), 1, "one more needed");
        assert!(!p.accept_repair(
            RepairHead {
                len: 999,
                ..head(8)
            },
            &enc.repair(8)
        ));
        assert!(
            !p.accept_repair(head(8), &enc.repair(8)[..50]),
            "short symbol"
        );
        let mut r = 8;
        while !p.is_complete() && r < 20 {
            assert!(p.accept_repair(head(r), &enc.repair(r)));
            r += 1;
        }
        assert_eq!(p.assemble().unwrap(), bundle);
        p.clear();
        assert!(p.held().is_none() && p.assemble().is_none());
    }

    /// As many repair fragments as lost fragments sometimes do not decode
    /// (RaptorQ, about once in a hundred): the request then still names a
    /// missing fragment, so the holder sends another; were it marked held,
    /// the holder would send nothing and the asker wait for ever.
    #[test]
    fn repairs_that_fail_to_decode_still_leave_a_fragment_to_ask_for() {
        let bundle: Vec<u8> = (0..3_574u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let piece = 202;
        let count = bundle.len().div_ceil(piece);
        let enc = meshota_radios::RepairEncoder::new(&bundle, piece).unwrap();
        let head = |r| RepairHead {
            count: u8::try_from(count).unwrap(),
            r,
            len: u16::try_from(bundle.len()).unwrap(),
        };
        let mut failed = None;
        'search: for lost in 0..count {
            for r in 0..=255u8 {
                let mut p = Pieces::new(piece);
                for i in (0..count).filter(|&i| i != lost) {
                    let at = i * piece;
                    let end = (at + piece).min(bundle.len());
                    assert!(p.accept(u8::try_from(i).unwrap(), head(0).count, &bundle[at..end]));
                }
                assert!(p.accept_repair(head(r), &enc.repair(r)));
                if !p.is_complete() {
                    failed = Some((p, r));
                    break 'search;
                }
            }
        }
        let (mut p, r) = failed.expect("one loss and one repair that do not decode");
        assert_eq!(p.held().unwrap().missing().count(), 1, "one more asked for");
        assert!(p.assemble().is_none());
        let mut next = r.wrapping_add(1);
        while !p.is_complete() && next != r {
            assert!(p.accept_repair(head(next), &enc.repair(next)));
            next = next.wrapping_add(1);
        }
        assert_eq!(p.assemble().unwrap(), bundle);
    }

    #[test]
    fn a_repair_fragment_must_agree_with_the_last_fragment_held() {
        let mut p = Pieces::new(100);
        assert!(p.accept(9, 10, &[1; 40]));
        let head = RepairHead {
            count: 10,
            r: 0,
            len: 950,
        };
        assert!(!p.accept_repair(head, &[0; 100]), "last fragment says 940");
        assert!(p.accept_repair(RepairHead { len: 940, ..head }, &[0; 100]));
        assert!(!p.accept(9, 10, &[1; 30]), "length now known");
    }

    #[test]
    fn bundle_length_prefix_is_checked_before_reading() {
        let b = encode(&[1, 2, 3], &[4]).unwrap();
        assert_eq!(b, [3, 1, 2, 3, 4]);
        let b = encode(&[1; 200], &[2; 5]).unwrap();
        let (m, i) = split(&b).unwrap();
        assert_eq!((m.len(), i), (200, &[2u8; 5][..]));
        assert!(split(&[]).is_err());
        assert!(split(&[0x80, 0x80, 0x80, 0x80]).is_err());
        assert!(split(&[10, 1, 2]).is_err());
        let too_long = encode(&alloc::vec![0; BUNDLE_BYTES_MAX], &[]);
        assert!(matches!(too_long, Err(RadioError::BundleTooLarge { .. })));
    }
}
