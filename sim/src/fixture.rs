//! The signed world a run starts from: a trust root, the release every
//! honest node should install, and the documents attackers replay or forge.
//! Keys come from fixed seeds, so the same options always sign the same
//! bytes (ML-DSA signing here is deterministic).

use std::collections::BTreeMap;
use std::rc::Rc;

use meshota_blobstore::patch::{PatchIndex, PatchOptions, PieceRef, create_patch};
use meshota_blobstore::{ChunkRef, ChunkStore, DEFAULT_PARAMS, MemStore, index_reader};
use meshota_manifest::{
    Component, Expiration, Hash, KeyId, PatchRef, ReleaseKey, ReleaseManifest, RolloutPolicy,
    RootKey, Scope, SecretKey, SignedDocument, TrustRoot, UnixTime, Verified,
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
    publish_with_patches(key, img, version, security_version, vec![])
}

/// As [`publish`], with the manifest listing `patches`.
///
/// # Errors
/// [`Error::Fixture`] if chunking, encoding or signing fails.
pub fn publish_with_patches(
    key: &SecretKey,
    img: &[u8],
    version: &str,
    security_version: u64,
    patches: Vec<PatchRef>,
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
        patches,
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

/// A release (v2) whose manifest lists a patch from the release every node
/// runs (v1), made by the blobstore's real patch creation on synthetic
/// images, as the publisher holds it.
#[derive(Debug, Clone)]
pub struct PatchedRelease {
    /// The installed release's image (the patch's base).
    pub base_image: Rc<[u8]>,
    /// Its chunks, in index order.
    pub base_chunks: Rc<[Vec<u8>]>,
    /// Another installed image (a node on another base), and its chunks.
    pub other_image: Rc<[u8]>,
    /// Its chunks, in index order.
    pub other_chunks: Rc<[Vec<u8>]>,
    /// The encoded patch index (its hash is the manifest's patch id).
    pub patch_index: Vec<u8>,
    /// The pieces, in the index's order.
    pub pieces: Vec<Vec<u8>>,
    /// Bytes of the patch: index and pieces.
    pub patch_bytes: usize,
    /// The new image's length.
    pub image_bytes: usize,
    /// Bytes of the new image's chunks the base does not hold: what a node
    /// on the base fetches without the patch.
    pub new_chunk_bytes: usize,
    /// Position of the corrupt piece, when one was asked for.
    pub corrupt_piece: Option<usize>,
}

/// Bytes of new image one sim patch piece produces at most (so a patch has
/// several pieces, and a corrupt one costs only its chunks).
pub const SIM_PIECE_OUTPUT_BYTES: usize = 64 * 1024;

/// The new image from `base`: six sites, each with fresh (incompressible)
/// bytes inserted (`fresh` in all) and a few bytes nudged before it, so
/// the patch is about `fresh` bytes while the chunks that change are many
/// times more.
fn evolve(base: &[u8], fresh: usize, seed: u64) -> Vec<u8> {
    const SITES: usize = 6;
    let new = image(seed ^ 0x5eed, fresh);
    let mut out = Vec::with_capacity(base.len() + fresh);
    for s in 0..SITES {
        let seg = &base[s * base.len() / SITES..(s + 1) * base.len() / SITES];
        let at = out.len();
        out.extend_from_slice(seg);
        let end = out.len();
        for b in out[at..end].iter_mut().take(2048).step_by(61) {
            *b = b.wrapping_add(1);
        }
        out.extend_from_slice(&new[s * fresh / SITES..(s + 1) * fresh / SITES]);
    }
    out
}

fn chunks_of(p: &Published) -> Result<Rc<[Vec<u8>]>, Error> {
    let index = meshota_blobstore::ChunkIndex::decode(&p.index)
        .map_err(|e| Error::Fixture(e.to_string()))?;
    index
        .chunks()
        .iter()
        .map(|c| {
            p.chunks
                .get(&c.hash)
                .map(|b| b.to_vec())
                .ok_or_else(|| Error::Fixture("chunk missing".into()))
        })
        .collect()
}

struct Keys {
    release: SecretKey,
    rogue: SecretKey,
    trust: Verified<TrustRoot>,
}

fn keys() -> Result<Keys, Error> {
    let fx = |e: &dyn core::fmt::Display| Error::Fixture(e.to_string());
    let root = key(1, "sim-root")?;
    let release = key(2, "sim-release")?;
    let rogue = key(66, "rogue")?;
    let body = TrustRoot::with_one_key_each(
        RootKey {
            name: "sim-root".into(),
            key: root.public().clone(),
        },
        ReleaseKey {
            name: "sim-release".into(),
            key: release.public().clone(),
            scope: Scope::default(),
            expires: None,
        },
    );
    let doc = SignedDocument::sign(body, &[&root]).map_err(|e| fx(&e))?;
    let trust =
        TrustRoot::verify_initial(&doc, Expiration::dangerous_ignore()).map_err(|e| fx(&e))?;
    Ok(Keys {
        release,
        rogue,
        trust,
    })
}

impl Fixture {
    /// Keys, trust root and releases for a run with images of `size` bytes
    /// drawn from `seed`.
    ///
    /// # Errors
    /// [`Error::Fixture`] if a key, signature or index cannot be made.
    pub fn new(seed: u64, size: usize) -> Result<Self, Error> {
        let Keys {
            release,
            rogue,
            trust,
        } = keys()?;
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

    /// A world for a patch release: every node runs v1 (an image of
    /// `image_bytes`, by default ten times `patch_bytes` and at least
    /// 64 KiB); the target v2 differs from it
    /// by about `patch_bytes` of fresh bytes, and its manifest lists the
    /// patch from v1 that `create_patch` made (pieces of at most
    /// [`SIM_PIECE_OUTPUT_BYTES`] of output). With `corrupt_piece`, one
    /// piece has a byte flipped after creation (and is re-hashed into the
    /// patch index the manifest signs): a publisher that shipped a bad
    /// piece; its output cannot match the signed chunk index.
    ///
    /// # Errors
    /// [`Error::Fixture`] if a key, signature, index or the patch cannot be
    /// made (or creation found no patch worth recording).
    pub fn with_patch(
        seed: u64,
        patch_bytes: usize,
        corrupt_piece: bool,
        image_bytes: Option<usize>,
    ) -> Result<(Self, PatchedRelease), Error> {
        let fx = |e: &dyn core::fmt::Display| Error::Fixture(e.to_string());
        let Keys {
            release,
            rogue,
            trust,
        } = keys()?;
        let base_len = image_bytes.unwrap_or_else(|| (patch_bytes * 10).max(64 * 1024));
        let base_img = image(seed ^ 1, base_len);
        // Fresh bytes cost their size in the patch; the controls, the
        // nudged bytes and the index take about a kibibyte more.
        let fresh = patch_bytes.saturating_sub(1024).max(64);
        let new_img = evolve(&base_img, fresh, seed);
        let installed = publish(&release, &base_img, "1.0.0", INSTALLED_SECURITY_VERSION)?;
        let plain = publish(&release, &new_img, "2.0.0", TARGET_SECURITY_VERSION)?;
        let base_index =
            meshota_blobstore::ChunkIndex::decode(&installed.index).map_err(|e| fx(&e))?;
        let target_index =
            meshota_blobstore::ChunkIndex::decode(&plain.index).map_err(|e| fx(&e))?;
        let store = MemStore::new();
        let opts = PatchOptions {
            piece_output_bytes: SIM_PIECE_OUTPUT_BYTES,
            ..PatchOptions::default()
        };
        let build = create_patch(
            &store,
            base_img.as_slice(),
            &base_index,
            new_img.as_slice(),
            &target_index,
            &opts,
        )
        .map_err(|e| fx(&e))?
        .ok_or_else(|| fx(&"no patch worth recording"))?;
        let mut refs: Vec<PieceRef> = build.index.pieces().to_vec();
        let mut pieces = refs
            .iter()
            .map(|r| store.get(&r.hash).map_err(|e| fx(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut encoded = build.encoded;
        let mut corrupt = None;
        if corrupt_piece {
            let k = pieces.len() / 2;
            let piece = &mut pieces[k];
            let at = piece.len() - 8;
            piece[at] ^= 0x5a;
            refs[k].hash = Hash::of(piece);
            let index = PatchIndex::new(
                build.index.base_image_hash(),
                build.index.base_size(),
                build.index.target_index(),
                refs,
            )
            .map_err(|e| fx(&e))?;
            encoded = index.encode().map_err(|e| fx(&e))?;
            corrupt = Some(k);
        }
        let patch = PatchRef {
            component: "rootfs".into(),
            base_image_hash: installed.image_hash,
            patch: Hash::of(&encoded),
            size: encoded.len() as u64,
        };
        let target = publish_with_patches(
            &release,
            &new_img,
            "2.0.0",
            TARGET_SECURITY_VERSION,
            vec![patch],
        )?;
        let other_img = image(seed ^ 7, base_len);
        let other = publish(
            &release,
            &other_img,
            "1.0.0-other",
            INSTALLED_SECURITY_VERSION,
        )?;
        let small = 64 * 1024;
        let patched = PatchedRelease {
            base_image: Rc::from(base_img),
            base_chunks: chunks_of(&installed)?,
            other_image: Rc::from(other_img),
            other_chunks: chunks_of(&other)?,
            patch_bytes: encoded.len() + pieces.iter().map(Vec::len).sum::<usize>(),
            patch_index: encoded,
            pieces,
            image_bytes: new_img.len(),
            new_chunk_bytes: {
                let old: std::collections::BTreeSet<Hash> =
                    base_index.chunks().iter().map(|c| c.hash).collect();
                let mut seen = std::collections::BTreeSet::new();
                target_index
                    .chunks()
                    .iter()
                    .filter(|c| !old.contains(&c.hash) && seen.insert(c.hash))
                    .map(|c| c.len as usize)
                    .sum()
            },
            corrupt_piece: corrupt,
        };
        let fixture = Self {
            trust,
            target,
            installed,
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
        };
        Ok((fixture, patched))
    }

    /// The true bytes of a chunk of any fixture release, if it is one.
    #[must_use]
    pub fn chunk(&self, hash: &Hash) -> Option<&Rc<[u8]>> {
        [&self.target, &self.rollback, &self.installed, &self.forged]
            .into_iter()
            .find_map(|p| p.chunks.get(hash))
    }
}
