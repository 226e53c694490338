//! Node reports: what a node says about itself, signed by its device key,
//! gossiped toward gateways. A report carries its device public key, so
//! any node can check it without knowing the fleet: only the holder of a
//! device key can make a report under that key's id
//! ([`NodeReport::verify_self`]).

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::frame::Kind;
use crate::limits::MAX_NODE_REPORT_BYTES;
use crate::signed::{Document, SignedDocument, Verified};
use crate::trust::check_string;
use crate::{Error, Hash, KeyId, PublicKey, Role, UnixTime};

/// The body of a node report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node's id: its device key's id.
    pub node_id: KeyId,
    /// The node's device public key (`node_id` is its id): what the
    /// report's signature is checked against.
    pub device_key: PublicKey,
    /// The node's hardware class.
    pub hardware: String,
    /// Human version of the running release, if any.
    pub installed_version: Option<String>,
    /// Id of the running release manifest, if any.
    pub installed_release: Option<Hash>,
    /// Confirmed security version.
    pub security_version: u64,
    /// Boot slot state.
    pub slot_state: SlotState,
    /// Outcome of the last install attempt.
    pub last_install: InstallOutcome,
    /// Strictly increasing per node: a gateway keeps the report with the
    /// highest counter and drops replays.
    pub counter: u64,
    /// The node's clock when it wrote the report, if it has one.
    pub time: Option<UnixTime>,
}

/// Which slot runs and in what state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SlotState {
    /// Running the confirmed slot.
    Confirmed {
        /// The slot name (`A` or `B`).
        slot: String,
    },
    /// Running a slot on trial, not yet confirmed.
    Trial {
        /// The slot name.
        slot: String,
        /// Trial boots left before automatic rollback.
        tries_left: u32,
    },
}

/// The last install's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InstallOutcome {
    /// No install attempted yet.
    None,
    /// Installed and confirmed.
    Confirmed {
        /// The release.
        release: Hash,
    },
    /// Installed but rolled back (health check failed or trials ran out).
    RolledBack {
        /// The release.
        release: Hash,
        /// Why.
        reason: String,
    },
    /// Refused or failed before the slot switch.
    Failed {
        /// The release.
        release: Hash,
        /// Why.
        reason: String,
    },
}

impl Document for NodeReport {
    const KIND: Kind = Kind::NodeReport;
    const MAX_BYTES: usize = MAX_NODE_REPORT_BYTES;

    fn check_structure(&self) -> Result<(), Error> {
        if self.node_id != self.device_key.id() {
            return Err(Error::ReportNodeMismatch {
                claimed: self.node_id,
                key: self.device_key.id(),
            });
        }
        check_string("hardware class", &self.hardware)?;
        if let Some(v) = &self.installed_version {
            check_string("installed version", v)?;
        }
        match &self.slot_state {
            SlotState::Confirmed { slot } | SlotState::Trial { slot, .. } => {
                check_string("slot", slot)?;
            }
        }
        match &self.last_install {
            InstallOutcome::RolledBack { reason, .. } | InstallOutcome::Failed { reason, .. } => {
                check_string("install outcome reason", reason)
            }
            InstallOutcome::None | InstallOutcome::Confirmed { .. } => Ok(()),
        }
    }
}

impl NodeReport {
    /// Verifies a node report against the device key of the node it claims
    /// to come from (the caller finds that key from the fleet allow-list or
    /// the device certificate).
    ///
    /// # Errors
    /// [`Error::ReportNodeMismatch`], [`Error::InvalidSignature`],
    /// [`Error::ThresholdNotMet`] when the device key did not sign.
    pub fn verify(
        doc: &SignedDocument<Self>,
        device_key: &PublicKey,
    ) -> Result<Verified<Self>, Error> {
        let report = doc.unverified_body();
        if report.node_id != device_key.id() {
            return Err(Error::ReportNodeMismatch {
                claimed: report.node_id,
                key: device_key.id(),
            });
        }
        let scan = doc.signers(|id| (*id == device_key.id()).then_some(device_key));
        if let Some(key) = scan.invalid {
            return Err(Error::InvalidSignature { key });
        }
        if scan.valid.is_empty() {
            return Err(Error::ThresholdNotMet {
                role: Role::Device,
                valid: 0,
                threshold: 1,
            });
        }
        Ok(doc.clone().into_verified())
    }

    /// Verifies a node report against the device key it carries: it was
    /// signed by the key whose id it names. Says nothing of whether that
    /// device belongs to the fleet (admission does), only that nobody but
    /// the holder of that key made it, so a forged report cannot take a
    /// node's id (nor shadow its real reports with a higher counter).
    ///
    /// # Errors
    /// As [`NodeReport::verify`].
    pub fn verify_self(doc: &SignedDocument<Self>) -> Result<Verified<Self>, Error> {
        Self::verify(doc, &doc.unverified_body().device_key)
    }
}
