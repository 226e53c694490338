//! Rollout commands: advance a release's rollout stage, halt it, or revoke
//! it. Signed by release keys whose scope covers the release, with the
//! same threshold as manifests.

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::frame::Kind;
use crate::limits::MAX_ROLLOUT_COMMAND_BYTES;
use crate::release::check_release_signatures;
use crate::signed::{Document, SignedDocument, Verified};
use crate::trust::{TrustRoot, check_string};
use crate::{Error, Expiration, Hash, UnixTime};

/// The body of a rollout command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCommand {
    /// Hardware class of the release concerned.
    pub hardware: String,
    /// Channel of the release concerned.
    pub channel: String,
    /// The release manifest's id (BLAKE3 of its signed body).
    pub release: Hash,
    /// What to do.
    pub action: RolloutAction,
    /// Strictly increasing per (hardware, channel): a node ignores a
    /// command whose sequence is not above the last one it applied.
    pub sequence: u64,
    /// When it was issued.
    pub issued: UnixTime,
    /// When it stops applying, if ever.
    pub expires: Option<UnixTime>,
}

/// A rollout action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RolloutAction {
    /// Admit the cohorts of this stage index (0-based) now.
    AdvanceStage {
        /// The stage to open.
        stage: u32,
    },
    /// Stop admitting nodes; installed nodes stay.
    Halt,
    /// Resume after a halt, at the current stage.
    Resume,
    /// Withdraw the release: nodes stop fetching, relaying and installing it.
    Revoke,
}

impl Document for RolloutCommand {
    const KIND: Kind = Kind::RolloutCommand;
    const MAX_BYTES: usize = MAX_ROLLOUT_COMMAND_BYTES;

    fn check_structure(&self) -> Result<(), Error> {
        check_string("hardware class", &self.hardware)?;
        check_string("channel", &self.channel)
    }
}

impl Verified<TrustRoot> {
    /// Verifies a rollout command: trust root not expired, release-key
    /// threshold met within scope, command not expired.
    ///
    /// # Errors
    /// As for manifests, plus [`Error::Expired`].
    pub fn verify_rollout_command(
        &self,
        doc: &SignedDocument<RolloutCommand>,
        expiration: Expiration,
    ) -> Result<Verified<RolloutCommand>, Error> {
        let trust = self.body();
        trust.check_not_expired(expiration)?;
        let c = doc.unverified_body();
        check_release_signatures(trust, doc, &c.hardware, &c.channel, expiration)?;
        if let (Some(now), Some(expires)) = (expiration.now(), c.expires) {
            if expires <= now {
                return Err(Error::Expired {
                    kind: Kind::RolloutCommand,
                    expires,
                    now,
                });
            }
        }
        Ok(doc.clone().into_verified())
    }
}
