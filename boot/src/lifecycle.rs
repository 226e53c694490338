//! Sans-IO install/confirm/rollback state: what the device holds, what is in
//! flight, and the decision taken at every boot. `core` + `alloc` only; time
//! is passed in as Unix seconds.
//!
//! The state table is in `docs/boot.md`. The ordering rules that make it
//! power-cut safe (each step is one atomic commit):
//! 1. the target slot is marked bad *before* it is erased, so a half-written
//!    slot is never bootable;
//! 2. the install record says `Trial` *before* the bootloader is switched, so
//!    a switched bootloader always has a record explaining it;
//! 3. the bootloader marks the slot good *before* the record raises the
//!    anti-rollback counter, so the counter never exceeds a confirmed image;
//! 4. a failure is recorded *before* the slot is marked bad.

use alloc::string::String;

use meshota_manifest::Hash;
use serde::{Deserialize, Serialize};

use crate::state::{BootStatus, SlotId};

/// What a release says about the image it installs, taken from a verified
/// manifest. Invariant: all three of hash, size and security version come
/// from the same signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseImage {
    /// BLAKE3 of the whole image.
    pub image_hash: Hash,
    /// Image size in bytes.
    pub size: u64,
    /// The release's anti-rollback security version.
    pub security_version: u64,
    /// Human version (`1.4.2`), for reports.
    pub version: String,
}

/// Where an install in flight stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The target slot is marked bad and being erased and written.
    Writing,
    /// The image was read back, hash-checked and re-verified; the bootloader
    /// is being (or was) switched to it for trial boots.
    Trial,
}

/// An install in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The slot being written (never the confirmed one).
    pub slot: SlotId,
    /// What is being installed.
    pub image: ReleaseImage,
    /// Where it stands.
    pub phase: Phase,
    /// When it started (Unix seconds, from the caller).
    pub started_at: u64,
}

/// Why an update did not stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    /// The bootloader ran out of trial boots without a confirm (crash,
    /// hang, or power loss during every trial).
    TrialsExhausted,
    /// The health check reported failure.
    HealthCheckFailed(String),
    /// The manifest did not verify again when resuming the slot switch.
    ReverifyFailed(String),
    /// The confirmed slot stopped booting and the bootloader fell back.
    ConfirmedSlotFellBack,
    /// An operator marked the slot bad.
    MarkedBad,
}

/// A recorded failure, kept until the next one replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The slot that failed.
    pub slot: SlotId,
    /// What was in it.
    pub image: Option<ReleaseImage>,
    /// Why.
    pub reason: FailureReason,
    /// When it was recorded (Unix seconds, from the caller).
    pub at: u64,
}

/// The device's install record, committed atomically.
///
/// Invariants: `slots[confirmed]` holds the confirmed image; `pending`, when
/// set, names the other slot; `security_counter` never exceeds the security
/// version of the confirmed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The slot holding the confirmed image.
    pub confirmed: SlotId,
    /// What each slot holds, as far as verified installs wrote it.
    pub slots: [Option<ReleaseImage>; 2],
    /// Anti-rollback counter: the security version last confirmed.
    pub security_counter: u64,
    /// An install in flight.
    pub pending: Option<Pending>,
    /// The last failure, for reports.
    pub last_failure: Option<Failure>,
    /// Failures so far (saturating).
    pub failures: u32,
}

impl InstallRecord {
    /// A factory-provisioned device: `image` confirmed in `slot`.
    #[must_use]
    pub fn factory(slot: SlotId, image: ReleaseImage) -> Self {
        let counter = image.security_version;
        let mut slots = [None, None];
        slots[slot.index()] = Some(image);
        Self {
            confirmed: slot,
            slots,
            security_counter: counter,
            pending: None,
            last_failure: None,
            failures: 0,
        }
    }

    /// The image in the confirmed slot.
    #[must_use]
    pub fn confirmed_image(&self) -> Option<&ReleaseImage> {
        self.slots[self.confirmed.index()].as_ref()
    }

    /// Records a failure of `slot` and drops any pending install.
    pub fn record_failure(&mut self, slot: SlotId, reason: FailureReason, at: u64) {
        let image = self.slots[slot.index()].clone();
        self.pending = None;
        self.last_failure = Some(Failure {
            slot,
            image,
            reason,
            at,
        });
        self.failures = self.failures.saturating_add(1);
    }

    /// Commits the confirm of `slot`: it becomes the confirmed slot and the
    /// counter rises to its security version (never falls).
    pub fn confirm(&mut self, slot: SlotId) {
        if let Some(img) = &self.slots[slot.index()] {
            self.security_counter = self.security_counter.max(img.security_version);
        }
        self.confirmed = slot;
        self.pending = None;
    }
}

/// What to do after a boot, decided from the record, the slot that booted and
/// the bootloader's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootAction {
    /// Running the confirmed slot. `refresh`: re-mark it good (RAUC's U-Boot
    /// and GRUB scripts count down even confirmed slots).
    RunConfirmed {
        /// The slot.
        slot: SlotId,
        /// Its bootloader state needs re-marking.
        refresh: bool,
    },
    /// Running the trial slot: run the health check, then confirm or reject.
    CheckHealth {
        /// The trial slot.
        slot: SlotId,
    },
    /// The trial slot's boots ran out and the bootloader fell back: record
    /// the failure and mark the slot bad.
    RollBack {
        /// The failed slot.
        slot: SlotId,
    },
    /// The record says `Trial` but the bootloader was never switched (power
    /// cut in between): verify again and switch.
    ResumeSwitch {
        /// The slot to switch to.
        slot: SlotId,
    },
    /// An install was cut while writing: the caller starts it again.
    RestartInstall {
        /// The slot that was being written.
        slot: SlotId,
    },
    /// Running a slot that is neither confirmed nor on trial (a failure was
    /// recorded but the bootloader was not yet told): mark it bad, reboot.
    RejectBooted {
        /// The booted slot.
        slot: SlotId,
    },
    /// The confirmed slot did not boot and the bootloader fell back to the
    /// other one: record it and keep running the fallback.
    ConfirmedFellBack {
        /// The slot that is running.
        booted: SlotId,
    },
}

/// The decision at boot. Pure: the same inputs give the same action.
#[must_use]
pub fn decide_on_boot(record: &InstallRecord, booted: SlotId, boot: &BootStatus) -> BootAction {
    if let Some(p) = &record.pending {
        return match p.phase {
            Phase::Writing if booted == p.slot => BootAction::RejectBooted { slot: booted },
            Phase::Writing => BootAction::RestartInstall { slot: p.slot },
            Phase::Trial if booted == p.slot => BootAction::CheckHealth { slot: p.slot },
            Phase::Trial if boot.primary == p.slot => BootAction::RollBack { slot: p.slot },
            Phase::Trial => BootAction::ResumeSwitch { slot: p.slot },
        };
    }
    if booted == record.confirmed {
        let st = boot.slot(booted);
        let refresh = boot.primary != booted || st.tries_left.is_some();
        return BootAction::RunConfirmed {
            slot: booted,
            refresh,
        };
    }
    if boot.primary == record.confirmed
        && !boot.slot(record.confirmed).bootable
        && record.slots[booted.index()].is_some()
    {
        return BootAction::ConfirmedFellBack { booted };
    }
    BootAction::RejectBooted { slot: booted }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::{BootScheme, SimState};

    fn img(n: u8, sv: u64) -> ReleaseImage {
        ReleaseImage {
            image_hash: Hash([n; 32]),
            size: 10,
            security_version: sv,
            version: "1.0.0".into(),
        }
    }

    fn trial_record() -> InstallRecord {
        let mut r = InstallRecord::factory(SlotId::A, img(1, 1));
        r.slots[1] = Some(img(2, 2));
        r.pending = Some(Pending {
            slot: SlotId::B,
            image: img(2, 2),
            phase: Phase::Trial,
            started_at: 0,
        });
        r
    }

    #[test]
    fn trial_slot_that_booted_gets_a_health_check() {
        let mut s = SimState::factory(SlotId::A);
        s.mark_trial(SlotId::B, 2);
        assert_eq!(
            decide_on_boot(&trial_record(), SlotId::B, &s.status()),
            BootAction::CheckHealth { slot: SlotId::B }
        );
    }

    #[test]
    fn fallback_after_exhausted_trial_rolls_back() {
        let mut s = SimState::factory(SlotId::A);
        s.mark_trial(SlotId::B, 1);
        s.boot();
        assert_eq!(s.boot().slot, SlotId::A);
        assert_eq!(
            decide_on_boot(&trial_record(), SlotId::A, &s.status()),
            BootAction::RollBack { slot: SlotId::B }
        );
    }

    #[test]
    fn trial_recorded_but_bootloader_not_switched_resumes_the_switch() {
        let s = SimState::factory(SlotId::A);
        assert_eq!(
            decide_on_boot(&trial_record(), SlotId::A, &s.status()),
            BootAction::ResumeSwitch { slot: SlotId::B }
        );
    }

    #[test]
    fn confirm_raises_the_counter_and_never_lowers_it() {
        let mut r = trial_record();
        r.confirm(SlotId::B);
        assert_eq!(
            (r.confirmed, r.security_counter, r.pending.is_none()),
            (SlotId::B, 2, true)
        );
        r.slots[0] = Some(img(3, 1));
        r.confirm(SlotId::A);
        assert_eq!(r.security_counter, 2);
    }

    #[test]
    fn booting_a_slot_with_a_recorded_failure_rejects_it() {
        let mut r = trial_record();
        r.record_failure(
            SlotId::B,
            FailureReason::HealthCheckFailed("exit 1".into()),
            5,
        );
        let mut s = SimState::factory(SlotId::A);
        s.mark_trial(SlotId::B, 2);
        assert_eq!(
            decide_on_boot(&r, SlotId::B, &s.status()),
            BootAction::RejectBooted { slot: SlotId::B }
        );
        assert_eq!(r.failures, 1);
    }
}
