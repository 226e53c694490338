//! The trust root: who may sign what.
//!
//! Like TUF's root role, but post-quantum: a set of root keys with a
//! threshold signs the trust root; the trust root lists release keys, each
//! with a scope, and the number of distinct release keys a manifest needs.
//!
//! Rules (checked by [`TrustRoot::verify_initial`] and
//! [`Verified::<TrustRoot>::verify_rotation`]):
//! 1. A trust root is signed by at least `root_threshold` distinct keys of
//!    its own `root_keys`.
//! 2. Version N+1 is accepted only by a node holding version N, and only
//!    when it is also signed by `root_threshold` distinct keys of version
//!    N's root keys. Versions are never skipped or repeated.
//! 3. A key listed in `revoked` signs nothing that this trust root accepts.
//!    Tools that rotate a root add every removed key to `revoked`.
//! 4. An expired trust root accepts nothing while expiry is enforced.

use alloc::{string::String, vec::Vec};

use serde::{Deserialize, Serialize};

use crate::frame::Kind;
use crate::limits::{
    MAX_KEYS, MAX_REVOKED_KEYS, MAX_SCOPE_ENTRIES, MAX_STRING_BYTES, MAX_TRUST_ROOT_BYTES,
};
use crate::signed::{Document, SignedDocument, Verified};
use crate::{Error, Expiration, KeyId, PublicKey, Role, UnixTime};

/// A root key: signs trust roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootKey {
    /// A human name for the key (informational).
    pub name: String,
    /// The key.
    pub key: PublicKey,
}

/// What a release key may sign for. An empty list means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Hardware classes the key may sign for; empty = all.
    pub hardware: Vec<String>,
    /// Channels the key may sign for; empty = all.
    pub channels: Vec<String>,
}

impl Scope {
    /// Whether this scope covers a document for `hardware` on `channel`.
    #[must_use]
    pub fn covers(&self, hardware: &str, channel: &str) -> bool {
        (self.hardware.is_empty() || self.hardware.iter().any(|h| h == hardware))
            && (self.channels.is_empty() || self.channels.iter().any(|c| c == channel))
    }

    /// True when the scope restricts nothing.
    #[must_use]
    pub fn is_unrestricted(&self) -> bool {
        self.hardware.is_empty() && self.channels.is_empty()
    }
}

/// A release key: signs release manifests and rollout commands within its
/// scope until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseKey {
    /// A human name for the key (informational).
    pub name: String,
    /// The key.
    pub key: PublicKey,
    /// What it may sign for.
    pub scope: Scope,
    /// When its authority ends, if ever.
    pub expires: Option<UnixTime>,
}

/// A provisioning key: signs provisioning images (a device's identity
/// files, certificate chain and configuration) for the hardware classes it
/// lists, until it expires. It signs nothing else, and no release key
/// signs provisioning images: the factory station that holds it cannot
/// publish software, and a release key cannot re-identify devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningKey {
    /// A human name for the key (informational).
    pub name: String,
    /// The key.
    pub key: PublicKey,
    /// Hardware classes it may provision; empty = all.
    pub hardware: Vec<String>,
    /// When its authority ends, if ever.
    pub expires: Option<UnixTime>,
}

/// The body of a trust root document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRoot {
    /// Monotonic version; each rotation adds exactly one.
    pub version: u64,
    /// When this trust root stops being trusted, if ever.
    pub expires: Option<UnixTime>,
    /// The root keys.
    pub root_keys: Vec<RootKey>,
    /// Distinct root keys that must sign a trust root (≥ 1).
    pub root_threshold: u32,
    /// The release keys.
    pub release_keys: Vec<ReleaseKey>,
    /// Distinct in-scope release keys that must sign a manifest or rollout
    /// command (≥ 1).
    pub release_threshold: u32,
    /// Keys that no longer sign anything, whatever role they had.
    pub revoked: Vec<KeyId>,
    /// The provisioning keys (one valid signature suffices: an image is a
    /// per-device document made by one factory station).
    pub provisioning_keys: Vec<ProvisioningKey>,
}

pub(crate) fn check_string(field: &'static str, s: &str) -> Result<(), Error> {
    if s.len() > MAX_STRING_BYTES {
        return Err(Error::LimitExceeded {
            field,
            count: s.len(),
            max: MAX_STRING_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), Error> {
    if count > max {
        return Err(Error::LimitExceeded { field, count, max });
    }
    Ok(())
}

impl Document for TrustRoot {
    const KIND: Kind = Kind::TrustRoot;
    const MAX_BYTES: usize = MAX_TRUST_ROOT_BYTES;

    fn check_structure(&self) -> Result<(), Error> {
        check_count("root keys", self.root_keys.len(), MAX_KEYS)?;
        check_count("release keys", self.release_keys.len(), MAX_KEYS)?;
        check_count("revoked keys", self.revoked.len(), MAX_REVOKED_KEYS)?;
        for k in &self.root_keys {
            check_string("root key name", &k.name)?;
        }
        for k in &self.release_keys {
            check_string("release key name", &k.name)?;
            check_count(
                "scope hardware classes",
                k.scope.hardware.len(),
                MAX_SCOPE_ENTRIES,
            )?;
            check_count("scope channels", k.scope.channels.len(), MAX_SCOPE_ENTRIES)?;
            for s in k.scope.hardware.iter().chain(&k.scope.channels) {
                check_string("scope entry", s)?;
            }
        }
        check_count("provisioning keys", self.provisioning_keys.len(), MAX_KEYS)?;
        for k in &self.provisioning_keys {
            check_string("provisioning key name", &k.name)?;
            check_count(
                "provisioning hardware classes",
                k.hardware.len(),
                MAX_SCOPE_ENTRIES,
            )?;
            for s in &k.hardware {
                check_string("scope entry", s)?;
            }
        }
        if self.root_keys.is_empty() {
            return Err(invalid(
                "root keys",
                "a trust root needs at least one root key",
            ));
        }
        if self.root_threshold == 0 || self.root_threshold as usize > self.root_keys.len() {
            return Err(invalid(
                "root threshold",
                alloc::format!(
                    "{} must be between 1 and the number of root keys ({})",
                    self.root_threshold,
                    self.root_keys.len()
                ),
            ));
        }
        if self.release_threshold == 0 {
            return Err(invalid("release threshold", "must be at least 1"));
        }
        if !self.release_keys.is_empty()
            && self.release_threshold as usize > self.release_keys.len()
        {
            return Err(invalid(
                "release threshold",
                alloc::format!(
                    "{} exceeds the number of release keys ({})",
                    self.release_threshold,
                    self.release_keys.len()
                ),
            ));
        }
        let mut ids: Vec<KeyId> = self.root_keys.iter().map(|k| k.key.id()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("root keys", "a key is listed twice"));
        }
        let mut rids: Vec<KeyId> = self.release_keys.iter().map(|k| k.key.id()).collect();
        rids.sort_unstable();
        if rids.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("release keys", "a key is listed twice"));
        }
        let mut pids: Vec<KeyId> = self.provisioning_keys.iter().map(|k| k.key.id()).collect();
        pids.sort_unstable();
        if pids.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("provisioning keys", "a key is listed twice"));
        }
        if let Some(k) = pids
            .iter()
            .find(|id| ids.binary_search(id).is_ok() || rids.binary_search(id).is_ok())
        {
            return Err(invalid(
                "provisioning keys",
                alloc::format!("key {k} is also a root or release key: a key has one role"),
            ));
        }
        if let Some(k) = ids
            .iter()
            .chain(&rids)
            .chain(&pids)
            .find(|id| self.revoked.contains(id))
        {
            return Err(invalid(
                "revoked keys",
                alloc::format!("key {k} is both listed and revoked"),
            ));
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

impl TrustRoot {
    /// A version-1 body with one root key and one release key (both
    /// thresholds 1), no expiry, nothing revoked and no provisioning keys:
    /// what a testnet, a simulation or a test starts from. It still has to
    /// be signed by the root key and verified like any other.
    #[must_use]
    pub fn with_one_key_each(root: RootKey, release: ReleaseKey) -> Self {
        Self {
            version: 1,
            expires: None,
            root_keys: alloc::vec![root],
            root_threshold: 1,
            release_keys: alloc::vec![release],
            release_threshold: 1,
            revoked: alloc::vec![],
            provisioning_keys: alloc::vec![],
        }
    }

    /// The root key with this id, if listed.
    #[must_use]
    pub fn root_key(&self, id: &KeyId) -> Option<&RootKey> {
        self.root_keys.iter().find(|k| k.key.id() == *id)
    }

    /// The release key with this id, if listed.
    #[must_use]
    pub fn release_key(&self, id: &KeyId) -> Option<&ReleaseKey> {
        self.release_keys.iter().find(|k| k.key.id() == *id)
    }

    /// The provisioning key with this id, if listed.
    #[must_use]
    pub fn provisioning_key(&self, id: &KeyId) -> Option<&ProvisioningKey> {
        self.provisioning_keys.iter().find(|k| k.key.id() == *id)
    }

    /// Whether `id` is revoked by this trust root.
    #[must_use]
    pub fn is_revoked(&self, id: &KeyId) -> bool {
        self.revoked.contains(id)
    }

    /// Verifies a trust root taken as the starting point of trust (shipped
    /// at provisioning, or given to a tool): it must be signed by its own
    /// root threshold and not be expired.
    ///
    /// # Errors
    /// [`Error::InvalidSignature`], [`Error::RevokedKey`],
    /// [`Error::UnknownKey`], [`Error::ThresholdNotMet`],
    /// [`Error::ExpiredTrustRoot`].
    pub fn verify_initial(
        doc: &SignedDocument<Self>,
        expiration: Expiration,
    ) -> Result<Verified<Self>, Error> {
        let root = doc.unverified_body();
        let signers = RootSigners::scan(doc, root)?;
        let threshold = root.root_threshold as usize;
        if signers.valid < threshold {
            signers.revoked_error(root)?;
            if signers.valid == 0 {
                if let Some(key) = signers.first_unknown {
                    return Err(Error::UnknownKey {
                        key,
                        role: Role::Root,
                        trust_version: root.version,
                    });
                }
            }
            return Err(Error::ThresholdNotMet {
                role: Role::Root,
                valid: signers.valid,
                threshold,
            });
        }
        root.check_not_expired(expiration)?;
        Ok(doc.clone().into_verified())
    }

    /// Errors with [`Error::ExpiredTrustRoot`] when expiry is enforced and passed.
    ///
    /// # Errors
    /// [`Error::ExpiredTrustRoot`].
    pub fn check_not_expired(&self, expiration: Expiration) -> Result<(), Error> {
        if let (Some(now), Some(expires)) = (expiration.now(), self.expires) {
            if expires <= now {
                return Err(Error::ExpiredTrustRoot {
                    version: self.version,
                    expires,
                    now,
                });
            }
        }
        Ok(())
    }
}

/// The distinct keys of one trust root's root set that signed a document.
struct RootSigners {
    /// Distinct root keys with a valid signature.
    valid: usize,
    /// The first signer that the signing root lists as revoked.
    revoked: Option<KeyId>,
    /// The first signer that is not one of the root keys.
    first_unknown: Option<KeyId>,
}

impl RootSigners {
    /// Checks every distinct signature by a root key of `signer_root`. A
    /// failing one means the document was altered: an error, whatever the
    /// others say.
    fn scan(doc: &SignedDocument<TrustRoot>, signer_root: &TrustRoot) -> Result<Self, Error> {
        let scan = doc.signers(|id| signer_root.root_key(id).map(|k| &k.key));
        if let Some(key) = scan.invalid {
            return Err(Error::InvalidSignature { key });
        }
        Ok(Self {
            valid: scan.valid.len(),
            revoked: scan
                .unmatched
                .iter()
                .copied()
                .find(|id| signer_root.is_revoked(id)),
            first_unknown: scan.unmatched.first().copied(),
        })
    }

    /// Below the threshold, a signature by a revoked key is the reason to
    /// name.
    fn revoked_error(&self, signer_root: &TrustRoot) -> Result<(), Error> {
        match self.revoked {
            Some(key) => Err(Error::RevokedKey {
                key,
                trust_version: signer_root.version,
            }),
            None => Ok(()),
        }
    }
}

impl Verified<TrustRoot> {
    /// The key that may sign a provisioning image for `hardware`: `key`
    /// must be a listed provisioning key, not revoked, not expired, with
    /// `hardware` in its scope, and this trust root must not be expired.
    /// The caller verifies the signature with the returned key.
    ///
    /// # Errors
    /// [`Error::ExpiredTrustRoot`], [`Error::RevokedKey`],
    /// [`Error::UnknownKey`] (role provisioning), [`Error::KeyExpired`],
    /// [`Error::ProvisioningOutOfScope`].
    pub fn provisioning_signer(
        &self,
        key: &KeyId,
        hardware: &str,
        expiration: Expiration,
    ) -> Result<&PublicKey, Error> {
        let root = self.body();
        root.check_not_expired(expiration)?;
        if root.is_revoked(key) {
            return Err(Error::RevokedKey {
                key: *key,
                trust_version: root.version,
            });
        }
        let k = root.provisioning_key(key).ok_or(Error::UnknownKey {
            key: *key,
            role: Role::Provisioning,
            trust_version: root.version,
        })?;
        if let (Some(now), Some(expired_at)) = (expiration.now(), k.expires) {
            if expired_at <= now {
                return Err(Error::KeyExpired {
                    key: *key,
                    expired_at,
                    now,
                });
            }
        }
        if !(k.hardware.is_empty() || k.hardware.iter().any(|h| h == hardware)) {
            return Err(Error::ProvisioningOutOfScope {
                key: *key,
                hardware: hardware.into(),
            });
        }
        Ok(&k.key)
    }

    /// Accepts the next trust root version (rotation), per rules 1–2 of the
    /// module doc: `next.version == self.version + 1`, signed by this
    /// version's root threshold and by its own, not expired.
    ///
    /// # Errors
    /// [`Error::TrustRootVersion`], [`Error::RotationNotSigned`],
    /// [`Error::InvalidSignature`], [`Error::ExpiredTrustRoot`].
    pub fn verify_rotation(
        &self,
        next: &SignedDocument<TrustRoot>,
        expiration: Expiration,
    ) -> Result<Self, Error> {
        let current = self.body();
        let offered = next.unverified_body();
        if Some(offered.version) != current.version.checked_add(1) {
            return Err(Error::TrustRootVersion {
                current: current.version,
                offered: offered.version,
            });
        }
        // Step 1: the previous version's root threshold vouches for it.
        // Step 2: its own root threshold accepts the new role.
        for (signer_root, signed_by) in [(current, "previous"), (offered, "new")] {
            let signers = RootSigners::scan(next, signer_root)?;
            let threshold = signer_root.root_threshold as usize;
            if signers.valid < threshold {
                signers.revoked_error(signer_root)?;
                return Err(Error::RotationNotSigned {
                    from_version: current.version,
                    to_version: offered.version,
                    signed_by,
                    valid: signers.valid,
                    threshold,
                });
            }
        }
        // Step 3: freeze-attack protection.
        offered.check_not_expired(expiration)?;
        Ok(next.clone().into_verified())
    }
}
