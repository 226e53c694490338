//! The signed world a run starts from: a trust root, the release every
//! honest node should install, and the documents attackers replay or forge.
//! Keys come from fixed seeds, so the same options always sign the same
//! bytes (ML-DSA signing here is deterministic).

use std::collections::BTreeMap;
use std::rc::Rc;

use meshota_blobstore::{ChunkRef, DEFAULT_PARAMS, index_reader};
use meshota_manifest::{
    Component, Expiration, Hash, KeyId, ReleaseKey, ReleaseManifest, RolloutPolicy, RootKey, Scope,
    SecretKey, SignedDocument, TrustRoot, UnixTime, Verified,
};

use crate::Error;
use crate::rng::SimRng;

/// The hardware class of every simulated node.
pub const HARDWARE: &str = "sim-board";
/// The channel every simulated node follows.
pub const CHANNEL: &str = "stable";
/// Security version every node runs at time zero.
pub const INSTALLED_SECURITY_VERSION: u64 = 1;
/// Security version of the release the fleet must converge on.
pub const TARGET_SECURITY_VERSION: u64 = 2;
/// Security version an attacker's forged manifest claims.
pub const FORGED_SECURITY_VERSION: u64 = 99;

/// A release as its publisher holds it.
#[derive(Debug, Clone)]
pub struct Published {
    /// Manifest id.
    pub id: Hash,
    /// Encoded signed manifest.
    pub manifest: Vec<u8>,
    /// Encoded chunk index.
    pub index: Vec<u8>,
    /// Every chunk, by id (shared, never copied per node).
    pub chunks: BTreeMap<Hash, Rc<[u8]>>,
    /// The whole image's hash.
    pub image_hash: Hash,
}

/// Everything signed for a run.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The trust root every node (and the safety checker) starts from.
    pub trust: Verified<TrustRoot>,
    /// The release (security version [`TARGET_SECURITY_VERSION`]) the
    /// fleet converges on; node 0 holds it at time zero.
    pub target: Published,
    /// The release every node runs at time zero
    /// ([`INSTALLED_SECURITY_VERSION`]); attackers replay its manifest.
    pub installed: Published,
    /// A validly signed release at the installed security version with a
    /// different image: installing it would be a rollback.
    pub rollback: Published,
    /// A manifest claiming [`FORGED_SECURITY_VERSION`], signed by a key the
    /// trust root does not list.
    pub forged: Published,
}

/// A node's id: a stable fake device key id (links are admitted by the
/// simulator, so no device key is generated).
#[must_use]
pub fn node_id(i: usize) -> KeyId {
    let mut h = blake3::Hasher::new();
    h.update(b"meshota-sim/node");
    h.update(&(i as u64).to_le_bytes());
    KeyId(*h.finalize().as_bytes())
}

/// Deterministic pseudo-random image bytes of `len` bytes.
#[must_use]
pub fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SimRng::stream(seed, 0x1a6e);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn key(seed_byte: u8, name: &str) -> Result<SecretKey, Error> {
    SecretKey::from_seed([seed_byte; 32], name).map_err(|e| Error::Fixture(e.to_string()))
}

/// Chunks `img` and signs a release manifest for it with `key`.
///
/// # Errors
/// [`Error::Fixture`] if chunking, encoding or signing fails.
pub fn publish(
    key: &SecretKey,
    img: &[u8],
    version: &str,
    security_version: u64,
) -> Result<Published, Error> {
    let fx = |e: &dyn core::fmt::Display| Error::Fixture(e.to_string());
    let index = index_reader(img, &DEFAULT_PARAMS).map_err(|e| fx(&e))?;
    let index_bytes = index.encode().map_err(|e| fx(&e))?;
    let mut chunks = BTreeMap::new();
    let mut off = 0usize;
    for ChunkRef { hash, len } in index.chunks() {
        let end = off + *len as usize;
        let data = img
            .get(off..end)
            .ok_or_else(|| fx(&"index overruns image"))?;
        chunks.insert(*hash, Rc::from(data));
        off = end;
    }
    let body = ReleaseManifest {
        product: "meshota-sim".into(),
        hardware: HARDWARE.into(),
        channel: CHANNEL.into(),
        version: version.into(),
        security_version,
        created: UnixTime(1_790_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: index.total_size(),
            image_hash: index.image_hash(),
            chunk_index: Hash::of(&index_bytes),
            chunking: *index.params(),
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    };
    let doc = SignedDocument::sign(body, &[key]).map_err(|e| fx(&e))?;
    Ok(Published {
        id: doc.id(),
        manifest: doc.encode().map_err(|e| fx(&e))?,
        index: index_bytes,
        chunks,
        image_hash: index.image_hash(),
    })
}

impl Fixture {
    /// Keys, trust root and releases for a run with images of `size` bytes
    /// drawn from `seed`.
    ///
    /// # Errors
    /// [`Error::Fixture`] if a key, signature or index cannot be made.
    pub fn new(seed: u64, size: usize) -> Result<Self, Error> {
        let fx = |e: &dyn core::fmt::Display| Error::Fixture(e.to_string());
        let root = key(1, "sim-root")?;
        let release = key(2, "sim-release")?;
        let rogue = key(66, "rogue")?;
        let body = TrustRoot {
            version: 1,
            expires: None,
            root_keys: vec![RootKey {
                name: "sim-root".into(),
                key: root.public().clone(),
            }],
            root_threshold: 1,
            release_keys: vec![ReleaseKey {
                name: "sim-release".into(),
                key: release.public().clone(),
                scope: Scope::default(),
                expires: None,
            }],
            release_threshold: 1,
            revoked: vec![],
            provisioning_keys: vec![],
        };
        let doc = SignedDocument::sign(body, &[&root]).map_err(|e| fx(&e))?;
        let trust =
            TrustRoot::verify_initial(&doc, Expiration::dangerous_ignore()).map_err(|e| fx(&e))?;
        let small = size.min(64 * 1024);
        Ok(Self {
            trust,
            target: publish(
                &release,
                &image(seed, size),
                "2.0.0",
                TARGET_SECURITY_VERSION,
            )?,
            installed: publish(
                &release,
                &image(seed ^ 1, small),
                "1.0.0",
                INSTALLED_SECURITY_VERSION,
            )?,
            rollback: publish(
                &release,
                &image(seed ^ 2, small),
                "1.0.1-rollback",
                INSTALLED_SECURITY_VERSION,
            )?,
            forged: publish(
                &rogue,
                &image(seed ^ 3, small),
                "9.9.9",
                FORGED_SECURITY_VERSION,
            )?,
        })
    }

    /// The true bytes of a chunk of any fixture release, if it is one.
    #[must_use]
    pub fn chunk(&self, hash: &Hash) -> Option<&Rc<[u8]>> {
        [&self.target, &self.rollback, &self.installed, &self.forged]
            .into_iter()
            .find_map(|p| p.chunks.get(hash))
    }
}
