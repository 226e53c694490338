//! What a bundle's records mean, checked record by record as they stream
//! past: trust roots are the verifier's own, manifests verify under it and
//! are not older than what is installed, every index is named by a manifest,
//! every chunk by an index or a patch the bundle carries. The same checks
//! run for `bundle verify` (no node) and before an import commits anything.

use std::collections::{BTreeMap, HashMap, HashSet};

use meshota_blobstore::ChunkIndex;
use meshota_blobstore::patch::PatchIndex;
use meshota_manifest::release::InstallPolicy;
use meshota_manifest::{Expiration, Hash, ReleaseManifest, SignedDocument, TrustRoot, Verified};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::RecordKind;
use crate::reader::{Item, Record};

/// What the verifier trusts and knows about the node that will import.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The trust root every manifest must verify under.
    pub trust: &'a Verified<TrustRoot>,
    /// Expiry enforcement (the node's clock).
    pub expiration: Expiration,
    /// The node's hardware class and channel, with its installed security
    /// version there: a manifest for them below it is a replay. `None`
    /// when verifying without a node.
    pub installed: Option<Installed<'a>>,
}

/// The importing node's installed state, for the replay check.
#[derive(Debug, Clone, Copy)]
pub struct Installed<'a> {
    /// Hardware class.
    pub hardware: &'a str,
    /// Channel.
    pub channel: &'a str,
    /// Installed security version.
    pub security_version: u64,
}

/// One release a bundle carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseSummary {
    /// Release id (BLAKE3 of the signed manifest body), hex.
    pub id: String,
    /// Product.
    pub product: String,
    /// Hardware class.
    pub hardware: String,
    /// Channel.
    pub channel: String,
    /// Version.
    pub version: String,
    /// Security version.
    pub security_version: u64,
    /// Image size in bytes (all components).
    pub image_bytes: u64,
    /// Distinct chunks of its index(es).
    pub chunks_total: usize,
    /// Of those, how many the bundle carries.
    pub chunks_carried: usize,
    /// Patches the manifest lists that the bundle carries (index and every piece).
    pub patches_carried: usize,
}

/// What a bundle holds, once every record was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Whether its records are encrypted.
    pub encrypted: bool,
    /// Recipient ids (hex).
    pub recipients: Vec<String>,
    /// Trust root versions carried.
    pub trust_roots: Vec<u64>,
    /// The releases, in record order.
    pub releases: Vec<ReleaseSummary>,
    /// Records of each kind.
    pub records: BTreeMap<String, u64>,
    /// Raw bytes of the chunks carried.
    pub chunk_bytes: u64,
    /// Size of the bundle file.
    pub file_bytes: u64,
}

/// Checks records in order. Call [`Checker::check`] on each record a
/// [`crate::BundleReader`] yields, then [`Checker::finish`].
#[derive(Debug)]
pub struct Checker<'a> {
    policy: Policy<'a>,
    releases: Vec<Verified<ReleaseManifest>>,
    /// Index id → the releases naming it.
    wanted_indexes: HashMap<Hash, Vec<usize>>,
    /// Patch index id → (its size limit, releases listing it).
    wanted_patches: HashMap<Hash, (u64, Vec<usize>)>,
    /// Chunk hash → whether it is a patch piece (else an index chunk).
    allowed: HashSet<Hash>,
    /// Patch index id → its piece hashes.
    patch_pieces: HashMap<Hash, Vec<Hash>>,
    /// Index id → its distinct chunk hashes.
    index_chunks: HashMap<Hash, Vec<Hash>>,
    carried: HashSet<Hash>,
    trust_roots: Vec<u64>,
    records: BTreeMap<String, u64>,
    chunk_bytes: u64,
}

impl<'a> Checker<'a> {
    /// A checker for `policy`.
    #[must_use]
    pub fn new(policy: Policy<'a>) -> Self {
        Self {
            policy,
            releases: Vec::new(),
            wanted_indexes: HashMap::new(),
            wanted_patches: HashMap::new(),
            allowed: HashSet::new(),
            patch_pieces: HashMap::new(),
            index_chunks: HashMap::new(),
            carried: HashSet::new(),
            trust_roots: Vec::new(),
            records: BTreeMap::new(),
            chunk_bytes: 0,
        }
    }

    /// The manifests verified so far, in record order.
    #[must_use]
    pub fn manifests(&self) -> Vec<&Verified<ReleaseManifest>> {
        self.releases.iter().collect()
    }

    /// Checks one record (the reader already checked its id).
    ///
    /// # Errors
    /// [`Error::ForeignTrust`], [`Error::TrustRotationFirst`],
    /// [`Error::Manifest`], [`Error::Replayed`], [`Error::Unreferenced`],
    /// [`Error::Blob`].
    pub fn check(&mut self, record: &Record) -> Result<()> {
        let kind = record.kind();
        *self.records.entry(kind.name().to_string()).or_default() += 1;
        match &record.item {
            Item::TrustRoot(bytes) => self.trust_root(bytes),
            Item::Manifest(bytes) => self.manifest(&record.id, bytes),
            Item::Index(bytes) => self.index(&record.id, bytes),
            Item::Chunk { raw, .. } => self.chunk(&record.id, raw),
        }
    }

    fn trust_root(&mut self, bytes: &[u8]) -> Result<()> {
        let trusted = self.policy.trust;
        let doc = SignedDocument::<TrustRoot>::decode(bytes).map_err(|e| Error::Manifest {
            id: Hash::of(bytes).to_hex(),
            source: e,
        })?;
        let offered = doc.unverified_body().version;
        self.trust_roots.push(offered);
        if doc.id() == trusted.id() {
            return Ok(());
        }
        if trusted
            .verify_rotation(&doc, self.policy.expiration)
            .is_ok()
        {
            return Err(Error::TrustRotationFirst {
                trusted: trusted.body().version,
                offered,
            });
        }
        Err(Error::ForeignTrust {
            offered,
            id: doc.id().to_hex(),
            trusted: trusted.body().version,
            trusted_id: trusted.id().to_hex(),
        })
    }

    fn manifest(&mut self, record_id: &Hash, bytes: &[u8]) -> Result<()> {
        let doc =
            SignedDocument::<ReleaseManifest>::decode(bytes).map_err(|e| Error::Manifest {
                id: record_id.to_hex(),
                source: e,
            })?;
        let verified = self
            .policy
            .trust
            .verify_manifest(
                &doc,
                &InstallPolicy {
                    hardware: None,
                    installed_security_version: None,
                    expiration: self.policy.expiration,
                },
            )
            .map_err(|e| Error::Manifest {
                id: doc.id().to_hex(),
                source: e,
            })?;
        if let Some(node) = self.policy.installed {
            if verified.hardware == node.hardware
                && verified.channel == node.channel
                && verified.security_version < node.security_version
            {
                return Err(Error::Replayed {
                    id: verified.id().to_hex(),
                    version: verified.version.clone(),
                    offered: verified.security_version,
                    installed: node.security_version,
                });
            }
        }
        let n = self.releases.len();
        for c in &verified.components {
            self.wanted_indexes
                .entry(c.chunk_index)
                .or_default()
                .push(n);
        }
        for p in &verified.patches {
            let e = self
                .wanted_patches
                .entry(p.patch)
                .or_insert((p.size, Vec::new()));
            e.0 = e.0.min(p.size);
            e.1.push(n);
        }
        self.releases.push(verified);
        Ok(())
    }

    fn index(&mut self, id: &Hash, bytes: &[u8]) -> Result<()> {
        if !self.wanted_indexes.contains_key(id) {
            return Err(Error::unreferenced(RecordKind::ChunkIndex, id));
        }
        let index = ChunkIndex::decode(bytes).map_err(|e| Error::Blob {
            kind: RecordKind::ChunkIndex,
            id: id.to_hex(),
            source: e,
        })?;
        let mut distinct = Vec::new();
        let mut seen = HashSet::new();
        for c in index.chunks() {
            if seen.insert(c.hash) {
                distinct.push(c.hash);
                self.allowed.insert(c.hash);
            }
        }
        self.index_chunks.insert(*id, distinct);
        Ok(())
    }

    fn chunk(&mut self, id: &Hash, raw: &[u8]) -> Result<()> {
        if let Some(&(max, _)) = self.wanted_patches.get(id) {
            if raw.len() as u64 > max {
                return Err(Error::Blob {
                    kind: RecordKind::Chunk,
                    id: id.to_hex(),
                    source: meshota_blobstore::Error::PatchTooLarge {
                        what: "patch index",
                        len: raw.len(),
                        max: usize::try_from(max).unwrap_or(usize::MAX),
                    },
                });
            }
            let patch = PatchIndex::decode(raw).map_err(|e| Error::Blob {
                kind: RecordKind::Chunk,
                id: id.to_hex(),
                source: e,
            })?;
            let pieces: Vec<Hash> = patch.pieces().iter().map(|p| p.hash).collect();
            self.allowed.extend(pieces.iter().copied());
            self.patch_pieces.insert(*id, pieces);
        } else if !self.allowed.contains(id) {
            return Err(Error::unreferenced(RecordKind::Chunk, id));
        }
        self.carried.insert(*id);
        self.chunk_bytes += raw.len() as u64;
        Ok(())
    }

    /// The summary of a bundle whose end record was read; `encrypted`,
    /// `recipients` and `file_bytes` come from the reader.
    ///
    /// # Errors
    /// [`Error::MissingIndex`] when a release's chunk index is not in the bundle.
    pub fn finish(self, encrypted: bool, recipients: &[Hash], file_bytes: u64) -> Result<Summary> {
        for m in &self.releases {
            for c in &m.components {
                if !self.index_chunks.contains_key(&c.chunk_index) {
                    return Err(Error::MissingIndex {
                        id: m.id().to_hex(),
                        version: m.version.clone(),
                        index: c.chunk_index.to_hex(),
                    });
                }
            }
        }
        let releases =
            self.releases
                .iter()
                .map(|m| {
                    let mut chunks: HashSet<Hash> = HashSet::new();
                    for c in &m.components {
                        if let Some(list) = self.index_chunks.get(&c.chunk_index) {
                            chunks.extend(list.iter().copied());
                        }
                    }
                    let patches_carried =
                        m.patches
                            .iter()
                            .filter(|p| {
                                self.carried.contains(&p.patch)
                                    && self.patch_pieces.get(&p.patch).is_some_and(|ps| {
                                        ps.iter().all(|h| self.carried.contains(h))
                                    })
                            })
                            .count();
                    ReleaseSummary {
                        id: m.id().to_hex(),
                        product: m.product.clone(),
                        hardware: m.hardware.clone(),
                        channel: m.channel.clone(),
                        version: m.version.clone(),
                        security_version: m.security_version,
                        image_bytes: m.components.iter().map(|c| c.size).sum(),
                        chunks_total: chunks.len(),
                        chunks_carried: chunks.iter().filter(|h| self.carried.contains(h)).count(),
                        patches_carried,
                    }
                })
                .collect();
        Ok(Summary {
            encrypted,
            recipients: recipients.iter().map(Hash::to_hex).collect(),
            trust_roots: self.trust_roots,
            releases,
            records: self.records,
            chunk_bytes: self.chunk_bytes,
            file_bytes,
        })
    }
}
