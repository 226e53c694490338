//! What the device commands (`slots`, `install`, `boot`) share: opening the
//! configured device, the image sources, the manifest re-verification the
//! boot crate calls back, and turning the boot crate's errors into
//! [`Failure`]s that name the file, the rule and the values.
//!
//! All install, confirm and rollback logic is the boot crate's
//! (`meshota_boot::install::Device`); this module only wires files to it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use meshota_blobstore::{ChunkStore, FsStore};
use meshota_boot::config::ConfiguredDevice;
use meshota_boot::install::{ManifestCheck, TrustedManifest, release_image};
use meshota_boot::lifecycle::{FailureReason, ReleaseImage};
use meshota_boot::{Error as BootError, SlotId};
use meshota_manifest::fs::write_atomic;
use meshota_manifest::{
    Component, InstallPolicy, ReleaseManifest, SignedDocument, TrustRoot, Verified,
};

use crate::cmd::release::read_manifest;
use crate::cmd::trust::load_trust;
use crate::config::NodeConfig;
use crate::failure::{AtPath, CmdResult, Failure};
use crate::image_reader::StoreImageReader;

/// Bytes buffered when streaming an image file.
const FILE_BUFFER: usize = 1 << 20;

/// A config loaded from `path`, with its path kept for messages.
pub(crate) struct Node {
    /// The config file.
    pub(crate) path: PathBuf,
    /// Its contents.
    pub(crate) config: NodeConfig,
}

impl Node {
    /// Loads the config file.
    pub(crate) fn load(path: &Path) -> CmdResult<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            config: NodeConfig::load(path)?,
        })
    }

    /// Opens the A/B device the config describes.
    pub(crate) fn open_device(&self) -> CmdResult<ConfiguredDevice> {
        self.config
            .device
            .open()
            .map_err(|e| Failure::file(&self.path, format!("cannot open the device: {e}")))
    }

    /// The trust root, verified as an anchor with the config's expiry rule.
    pub(crate) fn trust(&self) -> CmdResult<Verified<TrustRoot>> {
        load_trust(&self.config.trust_root, self.config.expiration())
    }

    /// A failure of the device or its state, naming the config file.
    pub(crate) fn device_failure(&self, action: &str, e: &BootError) -> Failure {
        Failure::file(&self.path, format!("{action}: {e}"))
    }

    /// Verifies `doc` for this node (trust root, hardware class, expiry; the
    /// anti-rollback counter is the boot crate's to check) and checks its
    /// channel; returns the component the A/B slots hold.
    pub(crate) fn verify_release(
        &self,
        trust: &Verified<TrustRoot>,
        manifest_path: &Path,
        doc: &SignedDocument<ReleaseManifest>,
    ) -> CmdResult<(Component, ReleaseImage)> {
        let c = &self.config;
        let policy = InstallPolicy {
            hardware: Some(&c.hardware),
            installed_security_version: None,
            expiration: c.expiration(),
        };
        let v = trust
            .verify_manifest(doc, &policy)
            .map_err(|e| Failure::file(manifest_path, format!("rejected: {e}")))?;
        if v.channel != c.channel {
            return Err(Failure::file(
                manifest_path,
                format!(
                    "rejected: release is for channel {:?}, this node follows {:?} ({})",
                    v.channel,
                    c.channel,
                    self.path.display()
                ),
            ));
        }
        let component = v
            .components
            .iter()
            .find(|x| x.name == c.component)
            .cloned()
            .ok_or_else(|| {
                Failure::file(
                    manifest_path,
                    format!(
                        "rejected: the release has no component {:?} (the `component` of {})",
                        c.component,
                        self.path.display()
                    ),
                )
            })?;
        let image =
            release_image(v.body(), &c.component).map_err(|e| Failure::file(manifest_path, e))?;
        Ok((component, image))
    }

    /// Keeps a copy of the manifest of the release written to `slot`, for
    /// re-verification at boot (`boot confirm`) and for reports.
    pub(crate) fn save_slot_manifest(
        &self,
        slot: SlotId,
        doc: &SignedDocument<ReleaseManifest>,
    ) -> CmdResult {
        let dir = &self.config.data_dir;
        std::fs::create_dir_all(dir).at(dir)?;
        let path = self.config.slot_manifest_path(slot);
        write_atomic(&path, &doc.encode().at(&path)?, 0o644)?;
        Ok(())
    }

    /// The re-verification the boot crate calls when it resumes a slot
    /// switch at boot: the saved manifest of `slot` against the trust root,
    /// loaded only if needed. A missing or bad file fails the check (the
    /// boot crate then rolls back), never the command.
    pub(crate) fn saved_manifest_check(
        &self,
        slot: Option<SlotId>,
    ) -> impl FnMut(u64) -> meshota_boot::Result<ReleaseImage> + '_ {
        move |installed: u64| {
            let Some(slot) = slot else {
                return Err(BootError::ManifestRejected {
                    reason: "no install is pending".to_string(),
                });
            };
            let path = self.config.slot_manifest_path(slot);
            let reject = |f: Failure| BootError::ManifestRejected { reason: f.message };
            let trust = self.trust().map_err(reject)?;
            let doc = read_manifest(&path).map_err(reject)?;
            let mut check = TrustedManifest {
                trust: &trust,
                manifest: &doc,
                hardware: &self.config.hardware,
                component: &self.config.component,
                expiration: self.config.expiration(),
            };
            check.reverify(installed)
        }
    }
}

/// The confirmed slot, seeded into a store by [`Node::seed_confirmed_slot`].
pub(crate) struct SeededSlot {
    /// Which slot.
    pub(crate) slot: SlotId,
    /// The installed image's chunk index (now in the store).
    pub(crate) index: meshota_blobstore::ChunkIndex,
    /// Chunks the slot serves.
    pub(crate) chunks: u64,
}

impl Node {
    /// Seeds the confirmed slot's image into `store` (its chunks served in
    /// place, re-hashed on every read) and unseeds the other slot, which
    /// the next install overwrites. When the store lacks the installed
    /// release's chunk index it is rebuilt from the slot and kept only if
    /// it hashes to the index the slot's signed manifest names, so nothing
    /// unsigned becomes a source. `None` when meshota installed nothing
    /// there.
    pub(crate) fn seed_confirmed_slot(&self, store: &FsStore) -> CmdResult<Option<SeededSlot>> {
        use std::io::{Seek, SeekFrom};
        let mut dev = self.open_device()?;
        let record = dev
            .record()
            .map_err(|e| self.device_failure("read the install record", &e))?;
        let active = record.confirmed;
        let cfg = &self.config.device;
        let (slot, other) = match active {
            SlotId::A => (&cfg.slot_a, &cfg.slot_b),
            SlotId::B => (&cfg.slot_b, &cfg.slot_a),
        };
        // One file holding both slots is re-seeded as a whole below.
        if other.path != slot.path {
            store.unseed(&other.path).at(&other.path)?;
        }
        let path = self.config.slot_manifest_path(active);
        let Ok(bytes) =
            meshota_manifest::fs::read_limited(&path, meshota_manifest::limits::MAX_MANIFEST_BYTES)
        else {
            store.unseed(&slot.path).at(&slot.path)?;
            return Ok(None);
        };
        let doc = SignedDocument::<ReleaseManifest>::decode(&bytes).at(&path)?;
        let body = doc.unverified_body();
        let Some(c) = body
            .components
            .iter()
            .find(|c| c.name == self.config.component)
            .or_else(|| body.components.first())
        else {
            return Ok(None);
        };
        let index = match store.get_index(&c.chunk_index) {
            Ok(ix) => ix,
            Err(_) => {
                let mut f = File::open(&slot.path).at(&slot.path)?;
                f.seek(SeekFrom::Start(slot.offset)).at(&slot.path)?;
                let ix = meshota_blobstore::index_reader(
                    BufReader::with_capacity(FILE_BUFFER, f.take(c.size)),
                    &c.chunking,
                )
                .at(&slot.path)?;
                if ix.id().at(&slot.path)? != c.chunk_index {
                    return Err(Failure::file(
                        &slot.path,
                        "the confirmed slot does not hold the image its manifest names",
                    ));
                }
                store.put_index(&ix).at(&slot.path)?;
                ix
            }
        };
        let report = store
            .seed_region(&slot.path, slot.offset, &index)
            .at(&slot.path)?;
        Ok(Some(SeededSlot {
            slot: active,
            index,
            chunks: report.chunks,
        }))
    }
}

/// Where an install or provisioning reads the image from.
#[derive(Clone)]
pub(crate) enum ImageSource {
    /// Assembled from the chunk store at this directory.
    Store(PathBuf),
    /// Assembled from a store this process already holds open (the daemon).
    Open(std::sync::Arc<FsStore>, PathBuf),
    /// Streamed from this file.
    File(PathBuf),
}

impl ImageSource {
    /// From `--store`/`--image`, else the config's `store_dir`.
    pub(crate) fn from_args(
        store: Option<&PathBuf>,
        image: Option<&PathBuf>,
        node: &Node,
    ) -> CmdResult<Self> {
        match (store, image, &node.config.store_dir) {
            (Some(s), None, _) => Ok(Self::Store(s.clone())),
            (None, Some(i), _) => Ok(Self::File(i.clone())),
            (None, None, Some(s)) => Ok(Self::Store(s.clone())),
            (None, None, None) => Err(Failure::usage(format!(
                "give --store DIR or --image FILE ({} sets no `store_dir`)",
                node.path.display()
            ))),
            (Some(_), Some(_), _) => Err(Failure::usage("give --store or --image, not both")),
        }
    }

    /// The file or directory, for messages.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::Store(p) | Self::Open(_, p) | Self::File(p) => p,
        }
    }

    /// Runs `f` with a reader of the image of `component`. From a store, the
    /// chunk index must describe the manifest's image and every chunk must
    /// be present, or nothing is run.
    pub(crate) fn with_reader<T>(
        &self,
        component: &Component,
        f: impl FnOnce(&mut dyn Read) -> CmdResult<T>,
    ) -> CmdResult<T> {
        match self {
            Self::File(path) => {
                let file = File::open(path).at(path)?;
                let mut r = BufReader::with_capacity(FILE_BUFFER, file);
                f(&mut r)
            }
            Self::Store(dir) => {
                let store = FsStore::open(dir).at(dir)?;
                with_store_reader(&store, dir, component, f)
            }
            Self::Open(store, dir) => with_store_reader(store, dir, component, f),
        }
    }
}

/// Runs `f` with a reader that assembles `component`'s image from `store`
/// (at `dir`, for messages): the chunk index must describe the manifest's
/// image and every chunk must be present, or nothing is run.
fn with_store_reader<T>(
    store: &FsStore,
    dir: &Path,
    component: &Component,
    f: impl FnOnce(&mut dyn Read) -> CmdResult<T>,
) -> CmdResult<T> {
    {
        {
            {
                let index = store.get_index(&component.chunk_index).map_err(|e| {
                    Failure::file(
                        dir,
                        format!(
                            "chunk index {} of component {:?}: {e}",
                            component.chunk_index, component.name
                        ),
                    )
                })?;
                if index.image_hash() != component.image_hash
                    || index.total_size() != component.size
                {
                    return Err(Failure::file(
                        dir,
                        format!(
                            "chunk index {} describes an image of {} bytes hashing to {}, \
                             the manifest says {} bytes hashing to {}",
                            component.chunk_index,
                            index.total_size(),
                            index.image_hash(),
                            component.size,
                            component.image_hash
                        ),
                    ));
                }
                let missing = store.missing(&index).at(dir)?;
                if let Some(first) = missing.first() {
                    return Err(Failure::file(
                        dir,
                        format!(
                            "{} of the image's {} chunks are not in the store (first: {}); \
                             fetch them before installing",
                            missing.len(),
                            index.chunks().len(),
                            first.hash
                        ),
                    ));
                }
                let mut r = StoreImageReader::new(store, &index);
                f(&mut r)
            }
        }
    }
}

/// The error of an install or provisioning, naming the file at fault: the
/// manifest for its rules, the image source for the bytes, the config file
/// for the device's state.
pub(crate) fn install_failure(
    node: &Node,
    manifest: &Path,
    source: &ImageSource,
    e: &BootError,
) -> Failure {
    match e {
        BootError::Manifest(m) => Failure::file(manifest, format!("rejected: {m}")),
        BootError::ManifestRejected { .. }
        | BootError::ManifestChanged { .. }
        | BootError::NoSuchComponent { .. } => Failure::file(manifest, format!("rejected: {e}")),
        BootError::Downgrade { .. } => Failure::file(manifest, format!("rejected: {e}")),
        BootError::ImageHashMismatch { .. }
        | BootError::ImageLengthMismatch { .. }
        | BootError::SlotTooSmall { .. } => Failure::file(
            source.path(),
            format!("image rejected: {e}; the running slot is untouched"),
        ),
        BootError::Io { context, .. } if context == "read image stream" => {
            Failure::file(source.path(), format!("{e}; the running slot is untouched"))
        }
        _ => node.device_failure("install", e),
    }
}

/// A failure reason as `(kind, text)`: a stable name for scripts and a
/// sentence for people.
pub(crate) fn reason_text(r: &FailureReason) -> (&'static str, String) {
    match r {
        FailureReason::TrialsExhausted => (
            "trials-exhausted",
            "the trial boots ran out without a confirm".to_string(),
        ),
        FailureReason::HealthCheckFailed(s) => {
            ("health-check-failed", format!("health check failed: {s}"))
        }
        FailureReason::ReverifyFailed(s) => (
            "reverify-failed",
            format!("manifest re-verification failed: {s}"),
        ),
        FailureReason::ConfirmedSlotFellBack => (
            "confirmed-slot-fell-back",
            "the confirmed slot stopped booting; the bootloader fell back".to_string(),
        ),
        FailureReason::MarkedBad => ("marked-bad", "an operator marked it bad".to_string()),
    }
}
