//! The safety checker: judges every install on its own, from the node's
//! store and the trust root, without asking the core anything.

use std::collections::BTreeMap;
use std::rc::Rc;

use meshota_blobstore::ChunkIndex;
use meshota_manifest::{
    Expiration, Hash, InstallPolicy, ReleaseManifest, SignedDocument, TrustRoot, Verified,
};

use crate::Error;
use crate::fixture::{CHANNEL, HARDWARE};

/// What one simulated node has persisted: the files its driver wrote on
/// the core's `Store*` actions. Survives crashes.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Encoded signed manifests, by manifest id.
    pub manifests: BTreeMap<Hash, Vec<u8>>,
    /// Encoded chunk indexes, by index id.
    pub indexes: BTreeMap<Hash, Vec<u8>>,
    /// Chunk bytes, by chunk id, exactly as the core handed them over
    /// (shared with the fixture when identical, so 2,000 nodes do not hold
    /// 2,000 copies).
    pub chunks: BTreeMap<Hash, Rc<[u8]>>,
}

fn unsafe_install(release: &Hash, reason: impl Into<String>) -> Error {
    Error::UnsafeInstall {
        release: release.short(),
        reason: reason.into(),
    }
}

/// Checks that installing `release` from `store` is safe for a node whose
/// confirmed security version is `installed_security_version`, and returns
/// the release's security version. Safe means, in order:
/// 1. the store holds the manifest and its id is `release`;
/// 2. the trust root's release keys signed it, for this hardware class
///    (`meshota_manifest` verification, independent of the core);
/// 3. its security version is above the installed one, and its channel is
///    the node's;
/// 4. the store holds the chunk index the manifest names, and the chunks it
///    lists, concatenated, hash to the manifest's image hash and size.
///
/// # Errors
/// [`Error::UnsafeInstall`] naming the first rule broken.
pub fn check_install(
    trust: &Verified<TrustRoot>,
    store: &Store,
    installed_security_version: Option<u64>,
    release: &Hash,
) -> Result<u64, Error> {
    // 1.
    let bytes = store
        .manifests
        .get(release)
        .ok_or_else(|| unsafe_install(release, "the manifest was never stored"))?;
    let doc = SignedDocument::<ReleaseManifest>::decode(bytes)
        .map_err(|e| unsafe_install(release, format!("stored manifest: {e}")))?;
    if doc.id() != *release {
        return Err(unsafe_install(release, "stored manifest has another id"));
    }
    // 2. and 3. (security version)
    let policy = InstallPolicy {
        hardware: Some(HARDWARE),
        installed_security_version,
        expiration: Expiration::dangerous_ignore(),
    };
    let m = trust
        .verify_manifest(&doc, &policy)
        .map_err(|e| unsafe_install(release, format!("manifest: {e}")))?;
    if installed_security_version.is_some_and(|v| m.security_version <= v) {
        return Err(unsafe_install(
            release,
            "not above the installed security version",
        ));
    }
    if m.channel != CHANNEL {
        return Err(unsafe_install(release, "another channel"));
    }
    // 4.
    let comp = m
        .components
        .first()
        .ok_or_else(|| unsafe_install(release, "no component"))?;
    let ix_bytes = store
        .indexes
        .get(&comp.chunk_index)
        .ok_or_else(|| unsafe_install(release, "chunk index not stored"))?;
    if Hash::of(ix_bytes) != comp.chunk_index {
        return Err(unsafe_install(release, "stored index has another id"));
    }
    let index =
        ChunkIndex::decode(ix_bytes).map_err(|e| unsafe_install(release, format!("index: {e}")))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    for c in index.chunks() {
        let data = store
            .chunks
            .get(&c.hash)
            .ok_or_else(|| unsafe_install(release, format!("chunk {} missing", c.hash.short())))?;
        hasher.update(data);
        size += data.len() as u64;
    }
    if Hash(*hasher.finalize().as_bytes()) != comp.image_hash || size != comp.size {
        return Err(unsafe_install(
            release,
            "the assembled image does not match the manifest's image hash and size",
        ));
    }
    Ok(m.security_version)
}
