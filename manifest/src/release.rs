//! Release manifests: what a release is, and the rules for accepting one.

use alloc::{string::String, vec::Vec};

use serde::{Deserialize, Serialize};

use crate::frame::Kind;
use crate::limits::{MAX_COMPONENTS, MAX_MANIFEST_BYTES, MAX_PATCHES, MAX_ROLLOUT_STAGES};
use crate::signed::{Document, SignedDocument, Verified};
use crate::trust::{TrustRoot, check_count, check_string};
use crate::{ChunkingParams, Error, Expiration, Hash, Role, UnixTime};

/// The body of a release manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// The product line, e.g. `border-sensor`.
    pub product: String,
    /// The hardware class this release runs on; a node installs only
    /// releases of its own class.
    pub hardware: String,
    /// The channel, e.g. `stable`.
    pub channel: String,
    /// The human version, a semantic version (`1.4.2`).
    pub version: String,
    /// Anti-rollback counter: strictly increasing per (hardware, channel);
    /// a node installs only releases above its installed one.
    pub security_version: u64,
    /// When the release was created.
    pub created: UnixTime,
    /// The images this release writes (at least one).
    pub components: Vec<Component>,
    /// Binary patches from earlier releases (filled by `release create
    /// --previous`), at most one per (component, base image).
    pub patches: Vec<PatchRef>,
    /// How the release is rolled out across the fleet.
    pub rollout: RolloutPolicy,
}

/// One image of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Component name, e.g. `rootfs`.
    pub name: String,
    /// The slot group this image is written to, e.g. `rootfs` (the node
    /// picks the inactive slot of that group).
    pub slot: String,
    /// Image size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole image.
    pub image_hash: Hash,
    /// BLAKE3 of the encoded chunk index blob (see the blobstore crate).
    pub chunk_index: Hash,
    /// The chunking that produced the index.
    pub chunking: ChunkingParams,
}

/// A binary patch that rebuilds chunks of a component from an earlier
/// image. Its output is trusted only because the produced chunks hash to
/// the signed chunk index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRef {
    /// The component this patch produces chunks for.
    pub component: String,
    /// BLAKE3 of the base image the patch applies to.
    pub base_image_hash: Hash,
    /// BLAKE3 of the encoded patch index blob (`MOTA` kind 33, defined in
    /// `blobstore/src/patch/format.rs`), which lists the patch's pieces by
    /// hash and size.
    pub patch: Hash,
    /// Size in bytes of the encoded patch index blob (a fetcher refuses a
    /// longer one). Piece sizes are listed in the index itself.
    pub size: u64,
}

/// Staged rollout: stage *i* admits the nodes whose cohort (0–99, derived
/// from the node id) is below `cohort_percent`, once the previous stage
/// soaked for its minimum time. No stages means everyone at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// The stages, in order, with strictly increasing percentages.
    pub stages: Vec<RolloutStage>,
}

/// One rollout stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStage {
    /// Percentage of the fleet admitted at this stage, 1–100.
    pub cohort_percent: u8,
    /// How long this stage runs before the next may start, in seconds.
    pub min_soak_secs: u64,
}

impl Document for ReleaseManifest {
    const KIND: Kind = Kind::ReleaseManifest;
    const MAX_BYTES: usize = MAX_MANIFEST_BYTES;

    fn check_structure(&self) -> Result<(), Error> {
        check_string("product", &self.product)?;
        check_string("hardware class", &self.hardware)?;
        check_string("channel", &self.channel)?;
        check_string("version", &self.version)?;
        if self.hardware.is_empty() {
            return Err(invalid("hardware class", "must not be empty"));
        }
        if self.channel.is_empty() {
            return Err(invalid("channel", "must not be empty"));
        }
        if semver::Version::parse(&self.version).is_err() {
            return Err(invalid(
                "version",
                alloc::format!("{:?} is not a semantic version such as 1.4.2", self.version),
            ));
        }
        check_count("components", self.components.len(), MAX_COMPONENTS)?;
        check_count("patches", self.patches.len(), MAX_PATCHES)?;
        check_count(
            "rollout stages",
            self.rollout.stages.len(),
            MAX_ROLLOUT_STAGES,
        )?;
        if self.components.is_empty() {
            return Err(invalid(
                "components",
                "a release needs at least one component",
            ));
        }
        for (i, c) in self.components.iter().enumerate() {
            check_string("component name", &c.name)?;
            check_string("component slot", &c.slot)?;
            if self.components[..i].iter().any(|o| o.name == c.name) {
                return Err(invalid(
                    "components",
                    alloc::format!("component {:?} is listed twice", c.name),
                ));
            }
            if !c.chunking.validate() {
                return Err(invalid(
                    "chunking parameters",
                    alloc::format!("{:?} are out of order or out of bounds", c.chunking),
                ));
            }
        }
        for p in &self.patches {
            check_string("patch component", &p.component)?;
            if !self.components.iter().any(|c| c.name == p.component) {
                return Err(invalid(
                    "patches",
                    alloc::format!("patch for unknown component {:?}", p.component),
                ));
            }
        }
        let mut last = 0u8;
        for s in &self.rollout.stages {
            if s.cohort_percent <= last || s.cohort_percent > 100 {
                return Err(invalid(
                    "rollout stages",
                    "cohort percentages must increase strictly and stay within 1-100",
                ));
            }
            last = s.cohort_percent;
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// What the verifying node knows about itself.
#[derive(Debug, Clone, Copy)]
pub struct InstallPolicy<'a> {
    /// The node's hardware class; `None` to accept any (tools, relays).
    pub hardware: Option<&'a str>,
    /// The node's installed security version for the release's (hardware,
    /// channel); `None` when nothing is installed or for relays.
    pub installed_security_version: Option<u64>,
    /// Expiry enforcement.
    pub expiration: Expiration,
}

impl Verified<TrustRoot> {
    /// Verifies a release manifest. Steps, in order:
    /// 1. the trust root itself is not expired;
    /// 2. signatures: every distinct signer counted once; a failing
    ///    signature by an eligible key rejects the manifest; at least
    ///    `release_threshold` eligible keys (listed, not revoked, not
    ///    expired, scope covering the manifest's hardware and channel) must
    ///    have signed;
    /// 3. the hardware class matches the node's;
    /// 4. the security version is above the installed one (anti-rollback).
    ///
    /// # Errors
    /// One typed error per rule; see [`Error`].
    pub fn verify_manifest(
        &self,
        doc: &SignedDocument<ReleaseManifest>,
        policy: &InstallPolicy<'_>,
    ) -> Result<Verified<ReleaseManifest>, Error> {
        let trust = self.body();
        trust.check_not_expired(policy.expiration)?;
        let m = doc.unverified_body();
        check_release_signatures(trust, doc, &m.hardware, &m.channel, policy.expiration)?;
        if let Some(hw) = policy.hardware {
            if hw != m.hardware {
                return Err(Error::WrongHardware {
                    expected: hw.into(),
                    found: m.hardware.clone(),
                });
            }
        }
        if let Some(installed) = policy.installed_security_version {
            if m.security_version <= installed {
                return Err(Error::Rollback {
                    installed,
                    offered: m.security_version,
                });
            }
        }
        Ok(doc.clone().into_verified())
    }
}

/// Checks that at least `release_threshold` distinct eligible release keys
/// validly signed `doc` for (`hardware`, `channel`).
pub(crate) fn check_release_signatures<T: Document>(
    trust: &TrustRoot,
    doc: &SignedDocument<T>,
    hardware: &str,
    channel: &str,
    expiration: Expiration,
) -> Result<(), Error> {
    let now = expiration.now();
    let scan = doc.signers(|id| {
        if trust.is_revoked(id) {
            return None;
        }
        let k = trust.release_key(id)?;
        if expiration.has_passed(k.expires) || !k.scope.covers(hardware, channel) {
            return None;
        }
        Some(&k.key)
    });
    if let Some(key) = scan.invalid {
        return Err(Error::InvalidSignature { key });
    }
    let threshold = trust.release_threshold as usize;
    if scan.valid.len() >= threshold {
        return Ok(());
    }
    // Not enough: name the most telling reason among the signers that did
    // not count.
    if let Some(key) = scan.unmatched.iter().find(|id| trust.is_revoked(id)) {
        return Err(Error::RevokedKey {
            key: *key,
            trust_version: trust.version,
        });
    }
    for id in &scan.unmatched {
        if let Some(k) = trust.release_key(id) {
            if let (Some(now), Some(exp)) = (now, k.expires) {
                if exp <= now {
                    return Err(Error::KeyExpired {
                        key: *id,
                        expired_at: exp,
                        now,
                    });
                }
            }
            return Err(Error::KeyOutOfScope {
                key: *id,
                hardware: hardware.into(),
                channel: channel.into(),
            });
        }
    }
    if scan.valid.is_empty() {
        if let Some(key) = scan.unmatched.first() {
            return Err(Error::UnknownKey {
                key: *key,
                role: Role::Release,
                trust_version: trust.version,
            });
        }
    }
    Err(Error::ThresholdNotMet {
        role: Role::Release,
        valid: scan.valid.len(),
        threshold,
    })
}
