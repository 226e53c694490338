//! Want lists: what a field node (and the mesh it hears) holds, written to
//! the stick so the operator's next export carries only what is missing,
//! with the node reports queued in the field riding back on the same stick.
//!
//! Format: the frame header `MOTA 01 41` (kind 65), then the postcard
//! encoding of [`WantList`]. Not signed: a tampered want list can only make
//! the next bundle carry more or less than needed, never make a node accept
//! anything (bundles are verified on import); each report in it is signed
//! by its node and is verified where it is consumed.

use std::collections::HashSet;

use meshota_blobstore::ChunkStore;
use meshota_manifest::{Hash, Kind, UnixTime, frame};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest want list accepted.
pub const MAX_WANT_BYTES: usize = 32 << 20;

/// What a field node holds and needs. Invariant after [`WantList::decode`]:
/// every release's `held` bitmap is exactly `ceil(chunks / 8)` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantList {
    /// The writing node's id (hex of its device key id).
    pub node: String,
    /// Its hardware class.
    pub hardware: String,
    /// Its channel.
    pub channel: String,
    /// When it was written (node clock).
    pub created: UnixTime,
    /// The node's trust root version.
    pub trust_version: u64,
    /// The release its confirmed slot runs, if meshota installed one.
    pub installed_release: Option<Hash>,
    /// The image hash of that slot (a patch base).
    pub installed_image: Option<Hash>,
    /// The chunk index of that release: every chunk of it is held (the
    /// confirmed slot serves them), whether or not `releases` lists it.
    pub installed_index: Option<Hash>,
    /// Its installed security version.
    pub security_version: u64,
    /// Releases the node knows, with the chunks it or its peers hold.
    pub releases: Vec<WantRelease>,
    /// Signed node reports queued in the field (as gossiped), to carry back.
    pub reports: Vec<Vec<u8>>,
}

/// One release as a field node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantRelease {
    /// Release id.
    pub id: Hash,
    /// Its first component's chunk index id.
    pub index: Hash,
    /// Chunk entries in that index (duplicates included).
    pub chunks: u32,
    /// Bit `i` (byte `i / 8`, bit `i % 8`, least significant first) is set
    /// when the chunk at ordinal `i` is held by the node or a peer it hears.
    #[serde(with = "serde_bytes_compat")]
    pub held: Vec<u8>,
}

mod serde_bytes_compat {
    //! Byte strings as postcard byte arrays (length + bytes), not sequences.
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V)
    }
}

impl WantRelease {
    /// A release with `chunks` entries, none held.
    #[must_use]
    pub fn new(id: Hash, index: Hash, chunks: u32) -> Self {
        Self {
            id,
            index,
            chunks,
            held: vec![0; (chunks as usize).div_ceil(8)],
        }
    }

    /// Marks ordinal `i` held.
    pub fn set(&mut self, i: usize) {
        if let Some(b) = self.held.get_mut(i / 8) {
            *b |= 1 << (i % 8);
        }
    }

    /// Whether ordinal `i` is held.
    #[must_use]
    pub fn get(&self, i: usize) -> bool {
        self.held
            .get(i / 8)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// How many ordinals are held.
    #[must_use]
    pub fn count(&self) -> usize {
        (0..self.chunks as usize).filter(|&i| self.get(i)).count()
    }
}

impl WantList {
    /// The file bytes.
    ///
    /// # Errors
    /// [`Error::NotABundle`] only if encoding fails, never expected.
    pub fn encode(&self) -> Result<Vec<u8>> {
        frame::seal(Kind::WantList, self).map_err(|e| Error::NotABundle {
            what: "want list",
            reason: e.to_string(),
        })
    }

    /// Parses a want list file, checking its size, header, canonical
    /// encoding and bitmap lengths.
    ///
    /// # Errors
    /// [`Error::NotABundle`] naming the problem.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::NotABundle {
            what: "want list",
            reason,
        };
        let body =
            frame::open(bytes, Kind::WantList, MAX_WANT_BYTES).map_err(|e| bad(e.to_string()))?;
        let w: Self = frame::decode_exact(body, Kind::WantList).map_err(|e| bad(e.to_string()))?;
        for r in &w.releases {
            if r.held.len() != (r.chunks as usize).div_ceil(8) {
                return Err(bad(format!(
                    "release {}: a bitmap of {} bytes for {} chunks",
                    r.id.short(),
                    r.held.len(),
                    r.chunks
                )));
            }
        }
        Ok(w)
    }

    /// The chunks the field holds, as far as `store` (the exporter's) has
    /// the indexes to name them. Releases whose index the store lacks, or
    /// whose chunk count disagrees with it, name nothing.
    ///
    /// # Errors
    /// Store I/O other than a missing index.
    pub fn held_hashes<S: ChunkStore + ?Sized>(&self, store: &S) -> Result<HashSet<Hash>> {
        let mut out = HashSet::new();
        if let Some(id) = &self.installed_index {
            match store.get_index(id) {
                Ok(ix) => out.extend(ix.chunks().iter().map(|c| c.hash)),
                Err(meshota_blobstore::Error::IndexNotFound { .. }) => {}
                Err(e) => return Err(Error::Store(e)),
            }
        }
        for r in &self.releases {
            let index = match store.get_index(&r.index) {
                Ok(ix) => ix,
                Err(meshota_blobstore::Error::IndexNotFound { .. }) => continue,
                Err(e) => return Err(Error::Store(e)),
            };
            if index.chunks().len() != r.chunks as usize {
                continue;
            }
            for (i, c) in index.chunks().iter().enumerate() {
                if r.get(i) {
                    out.insert(c.hash);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WantList {
        let mut r = WantRelease::new(Hash::of(b"r"), Hash::of(b"i"), 10);
        r.set(0);
        r.set(9);
        WantList {
            node: "ab".into(),
            hardware: "hw".into(),
            channel: "stable".into(),
            created: UnixTime(5),
            trust_version: 1,
            installed_release: Some(Hash::of(b"r")),
            installed_image: None,
            installed_index: None,
            security_version: 3,
            releases: vec![r],
            reports: vec![vec![1, 2, 3]],
        }
    }

    #[test]
    fn want_list_round_trips_with_its_bitmaps() {
        let w = sample();
        let back = WantList::decode(&w.encode().unwrap()).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.releases[0].count(), 2);
        assert!(back.releases[0].get(9) && !back.releases[0].get(8));
    }

    #[test]
    fn want_list_with_a_short_bitmap_is_refused() {
        let mut w = sample();
        w.releases[0].held.pop();
        let err = WantList::decode(&w.encode().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("bitmap of 1 bytes for 10 chunks"),
            "{err}"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_want_list_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut framed = frame::header(Kind::WantList).to_vec();
            framed.extend_from_slice(&bytes);
            let _ = WantList::decode(&framed);
            let _ = WantList::decode(&bytes);
        }
    }
}
