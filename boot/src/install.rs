//! The install pipeline and the boot-time confirm/rollback driver, over any
//! [`Slot`] pair, any [`BootControl`] and a record area.
//!
//! ```text
//! install:  check counter & size → mark target bad → record Writing
//!           → erase → stream → flush → read back + BLAKE3
//!           → re-verify manifest + counter → record Trial → mark trial
//!           → (caller reboots)
//! on_boot:  decide_on_boot → health check → mark good → record confirm
//!                                       ↘ record failure → mark bad → (reboot)
//! ```
//! See [`crate::lifecycle`] for the ordering rules and `docs/boot.md` for the
//! state table.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshota_manifest::{
    Expiration, Hash, InstallPolicy, ReleaseManifest, SignedDocument, TrustRoot, Verified,
};
use serde::{Deserialize, Serialize};

use crate::control::BootControl;
use crate::error::{Error, Result};
use crate::lifecycle::{
    BootAction, Failure, FailureReason, InstallRecord, Pending, Phase, ReleaseImage, decide_on_boot,
};
use crate::record::RecordStore;
use crate::slot::{Slot, erase_span};
use crate::state::{BootStatus, SlotId};

/// Record magic of the install record.
pub const INSTALL_MAGIC: [u8; 4] = *b"MOIN";

/// Verifies the release manifest now: before an install writes anything, and
/// again right before the slot switch.
///
/// Invariant expected of implementations: `Ok` only if the manifest's
/// signatures verify against the current trust root (not expired, keys not
/// revoked, hardware matching) and its security version is above
/// `installed_security_version`. [`TrustedManifest`] is the implementation
/// backed by meshota-manifest; closures serve tests and other verifiers.
pub trait ManifestCheck {
    /// Verifies now; returns the image the manifest names.
    ///
    /// # Errors
    /// [`Error::Manifest`] (or [`Error::ManifestRejected`]) naming the rule that failed.
    fn reverify(&mut self, installed_security_version: u64) -> Result<ReleaseImage>;
}

impl<F: FnMut(u64) -> Result<ReleaseImage>> ManifestCheck for F {
    fn reverify(&mut self, installed: u64) -> Result<ReleaseImage> {
        self(installed)
    }
}

/// A signed release manifest checked with meshota-manifest's rules
/// (`Verified::<TrustRoot>::verify_manifest`) against the node's trust root,
/// hardware class and anti-rollback counter, naming the component this
/// device's A/B slots hold.
#[derive(Debug, Clone, Copy)]
pub struct TrustedManifest<'a> {
    /// The node's current trust root.
    pub trust: &'a Verified<TrustRoot>,
    /// The signed manifest.
    pub manifest: &'a SignedDocument<ReleaseManifest>,
    /// The node's hardware class.
    pub hardware: &'a str,
    /// The component written to the slots (e.g. `rootfs`).
    pub component: &'a str,
    /// Expiry enforcement, with the caller's clock.
    pub expiration: Expiration,
}

impl ManifestCheck for TrustedManifest<'_> {
    fn reverify(&mut self, installed: u64) -> Result<ReleaseImage> {
        let policy = InstallPolicy {
            hardware: Some(self.hardware),
            installed_security_version: Some(installed),
            expiration: self.expiration,
        };
        let verified = self.trust.verify_manifest(self.manifest, &policy)?;
        release_image(verified.body(), self.component)
    }
}

/// The [`ReleaseImage`] of component `name` of a (verified) manifest.
///
/// # Errors
/// [`Error::NoSuchComponent`].
pub fn release_image(manifest: &ReleaseManifest, name: &str) -> Result<ReleaseImage> {
    let c = manifest
        .components
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::NoSuchComponent {
            name: name.to_string(),
        })?;
    Ok(ReleaseImage {
        image_hash: c.image_hash,
        size: c.size,
        security_version: manifest.security_version,
        version: manifest.version.clone(),
    })
}

/// Decides whether the running system is healthy enough to confirm.
pub trait HealthCheck {
    /// `Ok` when healthy; `Err` with a reason otherwise.
    ///
    /// # Errors
    /// The reason the system is not healthy.
    fn check(&mut self) -> core::result::Result<(), String>;
}

impl<F: FnMut() -> core::result::Result<(), String>> HealthCheck for F {
    fn check(&mut self) -> core::result::Result<(), String> {
        self()
    }
}

/// Most time a health-check command may be given.
pub const HEALTH_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
const HEALTH_POLL: Duration = Duration::from_millis(20);

/// A health check that runs a command: healthy when it exits 0 within the timeout.
///
/// Invariant: the child is killed and reaped when the timeout passes; the
/// wait is bounded by `min(timeout, HEALTH_TIMEOUT_MAX)`.
#[derive(Debug, Clone)]
pub struct CommandHealthCheck {
    /// Program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

impl HealthCheck for CommandHealthCheck {
    // A driver, not state logic: the timeout of a child process needs a clock.
    #[allow(clippy::disallowed_methods)]
    fn check(&mut self) -> core::result::Result<(), String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.program))?;
        let timeout = self.timeout.min(HEALTH_TIMEOUT_MAX);
        let start = Instant::now();
        let max_polls = timeout.as_millis() / HEALTH_POLL.as_millis() + 2;
        for _ in 0..max_polls {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("`{}` exited with {status}", self.program)),
                Ok(None) if start.elapsed() >= timeout => break,
                Ok(None) => std::thread::sleep(HEALTH_POLL),
                Err(e) => return Err(format!("waiting for `{}`: {e}", self.program)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "`{}` did not finish within {} ms",
            self.program,
            timeout.as_millis()
        ))
    }
}

/// Tunables of the pipeline, with documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallOptions {
    /// Trial boots the new slot gets before automatic rollback (default 3;
    /// GRUB grants one).
    pub trial_boots: u8,
    /// Bytes per write and per read-back (default 64 KiB).
    pub chunk_size: usize,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            trial_boots: 3,
            chunk_size: 64 * 1024,
        }
    }
}

/// What an install left for the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The slot now on trial.
    pub slot: SlotId,
    /// Trial boots granted.
    pub trial_boots: u8,
}

/// What a boot led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootOutcome {
    /// Running the confirmed slot; nothing pending.
    Running {
        /// The slot.
        slot: SlotId,
    },
    /// The trial slot passed its health check and is now confirmed; the
    /// anti-rollback counter was raised.
    Confirmed {
        /// The slot.
        slot: SlotId,
        /// The new counter.
        security_counter: u64,
    },
    /// The update was rolled back; the failure is recorded. `reboot` says the
    /// caller must reboot into the previous slot.
    RolledBack {
        /// The recorded failure.
        failure: Failure,
        /// A reboot is needed to leave the failed slot.
        reboot: bool,
    },
    /// The bootloader was (re)switched to the trial slot: reboot into it.
    RebootToTrial {
        /// The trial slot.
        slot: SlotId,
    },
    /// The running slot must not run: it was marked bad; reboot.
    RebootRequired {
        /// The slot that was rejected.
        rejected: SlotId,
    },
    /// An install was cut while writing; run it again.
    InstallInterrupted {
        /// What was being installed.
        image: ReleaseImage,
    },
}

/// The device status, for `meshota slots status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The slot running now, if known.
    pub booted: Option<SlotId>,
    /// The install record.
    pub record: InstallRecord,
    /// The bootloader's view.
    pub boot: BootStatus,
}

/// An A/B device: two slots, a bootloader, and an install record area.
///
/// Invariants: see [`crate::lifecycle`]; in particular no slot is bootable
/// while it is being written, and the running confirmed slot is never written.
#[derive(Debug)]
pub struct Device<S: Slot, B: BootControl, R: Slot> {
    slots: [S; 2],
    boot: B,
    records: RecordStore<R>,
}

impl<S: Slot, B: BootControl, R: Slot> Device<S, B, R> {
    /// Assembles a device from slots A and B, its boot control and its record area.
    ///
    /// # Errors
    /// [`Error::RecordAreaGeometry`].
    pub fn new(slot_a: S, slot_b: S, boot: B, record_area: R) -> Result<Self> {
        Ok(Self {
            slots: [slot_a, slot_b],
            boot,
            records: RecordStore::new(record_area, INSTALL_MAGIC, "install")?,
        })
    }

    /// The boot control.
    pub fn boot_control(&mut self) -> &mut B {
        &mut self.boot
    }

    /// One slot.
    pub fn slot(&mut self, id: SlotId) -> &mut S {
        &mut self.slots[id.index()]
    }

    /// The install record.
    ///
    /// # Errors
    /// Medium errors; [`Error::WrongState`] for a device never provisioned.
    pub fn record(&mut self) -> Result<InstallRecord> {
        self.records
            .load_value::<InstallRecord>()?
            .ok_or_else(|| Error::WrongState {
                action: "read the install record",
                reason: "the device was never provisioned".into(),
            })
    }

    /// Status for reports.
    ///
    /// # Errors
    /// As [`Device::record`] and [`BootControl::status`].
    pub fn status(&mut self) -> Result<DeviceStatus> {
        Ok(DeviceStatus {
            booted: self.boot.booted()?,
            record: self.record()?,
            boot: self.boot.status()?,
        })
    }

    /// The last recorded failure.
    ///
    /// # Errors
    /// As [`Device::record`].
    pub fn last_failure(&mut self) -> Result<Option<Failure>> {
        Ok(self.record()?.last_failure)
    }

    /// Factory provisioning: writes `image` into `slot`, checks it, marks it
    /// confirmed in the bootloader and commits a fresh install record.
    ///
    /// # Errors
    /// Medium errors, [`Error::ImageHashMismatch`], [`Error::SlotTooSmall`].
    pub fn provision(
        &mut self,
        slot: SlotId,
        image: &ReleaseImage,
        bytes: impl Read,
        opts: &InstallOptions,
    ) -> Result<()> {
        self.write_image(slot, image, bytes, opts)?;
        self.verify_slot(slot, image, opts)?;
        self.boot.mark_trial(slot, 1)?;
        self.boot.mark_bad(slot.other())?;
        self.boot.mark_good(slot)?;
        self.records
            .commit_value(&InstallRecord::factory(slot, image.clone()))?;
        Ok(())
    }

    /// Adopts a device already running `image` from `slot` (written by other
    /// means, e.g. a factory flasher): checks that the slot hashes to the
    /// image, makes it the confirmed slot, makes the other slot unbootable
    /// (its contents are unknown) and commits a fresh install record.
    ///
    /// # Errors
    /// Medium errors, [`Error::ImageHashMismatch`], [`Error::SlotTooSmall`].
    pub fn adopt(
        &mut self,
        slot: SlotId,
        image: &ReleaseImage,
        opts: &InstallOptions,
    ) -> Result<()> {
        let slot_size = self.slots[slot.index()].size();
        if image.size > slot_size {
            return Err(Error::SlotTooSmall {
                slot,
                image: image.size,
                slot_size,
            });
        }
        self.verify_slot(slot, image, opts)?;
        self.boot.mark_bad(slot.other())?;
        self.boot.mark_good(slot)?;
        self.records
            .commit_value(&InstallRecord::factory(slot, image.clone()))?;
        Ok(())
    }

    fn write_image(
        &mut self,
        slot: SlotId,
        image: &ReleaseImage,
        mut bytes: impl Read,
        opts: &InstallOptions,
    ) -> Result<()> {
        let chunk = opts.chunk_size.clamp(1, 1 << 24);
        let s = &mut self.slots[slot.index()];
        let slot_size = s.size();
        if image.size > slot_size {
            return Err(Error::SlotTooSmall {
                slot,
                image: image.size,
                slot_size,
            });
        }
        let span = erase_span(s, image.size).min(slot_size);
        let es = s.erase_size().max(1);
        let unit = if es > 1 { es } else { span.max(1) };
        let mut off = 0;
        while off < span {
            let len = unit.min(span - off);
            s.erase(off, len)?;
            off += len;
        }
        let mut buf = vec![0u8; chunk];
        let mut written: u64 = 0;
        // Bounded: stops at the manifest's size plus one chunk.
        loop {
            let n = read_full(&mut bytes, &mut buf)?;
            if n == 0 {
                break;
            }
            let end = written + n as u64;
            if end > image.size {
                return Err(Error::ImageLengthMismatch {
                    expected: image.size,
                    actual: end,
                });
            }
            s.write(written, buf.get(..n).unwrap_or(&buf))?;
            written = end;
        }
        if written != image.size {
            return Err(Error::ImageLengthMismatch {
                expected: image.size,
                actual: written,
            });
        }
        s.flush()
    }

    /// Reads back the whole image from `slot` and checks its BLAKE3.
    fn verify_slot(
        &mut self,
        slot: SlotId,
        image: &ReleaseImage,
        opts: &InstallOptions,
    ) -> Result<()> {
        let actual = hash_slot(&mut self.slots[slot.index()], image.size, opts.chunk_size)?;
        if actual != image.image_hash {
            return Err(Error::ImageHashMismatch {
                slot,
                expected: image.image_hash,
                actual,
            });
        }
        Ok(())
    }

    /// Installs the release `check` verifies (its image streamed from
    /// `image`) into the inactive slot and switches the bootloader to it for
    /// trial boots. The caller reboots afterwards.
    ///
    /// The manifest is verified before anything is written and again right
    /// before the switch. Every rejection happens before the target is marked
    /// bootable, and the running slot is never written.
    ///
    /// # Errors
    /// [`Error::Manifest`], [`Error::Downgrade`], [`Error::SlotTooSmall`],
    /// [`Error::ImageLengthMismatch`], [`Error::ImageHashMismatch`],
    /// [`Error::ManifestChanged`], [`Error::WrongState`] (a trial in
    /// progress, or not running the confirmed slot), medium errors.
    pub fn install(
        &mut self,
        check: &mut dyn ManifestCheck,
        image: impl Read,
        opts: &InstallOptions,
        now: u64,
    ) -> Result<Installed> {
        let mut record = self.record()?;
        let booted = self.boot.booted()?.unwrap_or(record.confirmed);
        if booted != record.confirmed {
            return Err(Error::WrongState {
                action: "install",
                reason: format!(
                    "running slot {booted:?}, which is not the confirmed slot {:?}",
                    record.confirmed
                ),
            });
        }
        if let Some(p) = &record.pending {
            if p.phase == Phase::Trial {
                return Err(Error::WrongState {
                    action: "install",
                    reason: format!("slot {:?} is on trial; confirm or roll back first", p.slot),
                });
            }
        }
        let release = check.reverify(record.security_counter)?;
        let release = &release;
        let target = record.confirmed.other();
        check_counter(record.security_counter, release.security_version)?;
        let slot_size = self.slots[target.index()].size();
        if release.size > slot_size {
            return Err(Error::SlotTooSmall {
                slot: target,
                image: release.size,
                slot_size,
            });
        }

        // 1. Target unbootable before any byte of it changes.
        self.boot.mark_bad(target)?;
        record.slots[target.index()] = None;
        record.pending = Some(Pending {
            slot: target,
            image: release.clone(),
            phase: Phase::Writing,
            started_at: now,
        });
        self.records.commit_value(&record)?;

        // 2. Stream, flush, read back, hash.
        let result = self
            .write_image(target, release, image, opts)
            .and_then(|()| self.verify_slot(target, release, opts))
            .and_then(|()| reverify(check, record.security_counter, release));
        if let Err(e) = result {
            if !matches!(e, Error::PowerCut { .. } | Error::Io { .. }) {
                record.pending = None;
                self.records.commit_value(&record)?;
            }
            return Err(e);
        }

        // 3. Record the trial, then switch.
        record.slots[target.index()] = Some(release.clone());
        record.pending = Some(Pending {
            slot: target,
            image: release.clone(),
            phase: Phase::Trial,
            started_at: now,
        });
        self.records.commit_value(&record)?;
        let granted = self.boot.mark_trial(target, opts.trial_boots.max(1))?;
        Ok(Installed {
            slot: target,
            trial_boots: granted,
        })
    }

    /// Runs after every boot: decides from the record and the bootloader
    /// whether to run the health check, confirm, roll back, resume a switch
    /// or ask for the install to be restarted, and does it.
    ///
    /// # Errors
    /// Medium errors; [`Error::WrongState`] when the booted slot is unknown.
    pub fn on_boot(
        &mut self,
        health: &mut dyn HealthCheck,
        check: &mut dyn ManifestCheck,
        opts: &InstallOptions,
        now: u64,
    ) -> Result<BootOutcome> {
        let mut record = self.record()?;
        let booted = self.boot.booted()?.ok_or(Error::WrongState {
            action: "decide after boot",
            reason: "the booted slot is unknown (no rauc.slot= on the kernel command line?)".into(),
        })?;
        let status = self.boot.status()?;
        match decide_on_boot(&record, booted, &status) {
            BootAction::RunConfirmed { slot, refresh } => {
                if refresh {
                    self.boot.mark_good(slot)?;
                }
                Ok(BootOutcome::Running { slot })
            }
            BootAction::CheckHealth { slot } => match health.check() {
                Ok(()) => {
                    self.boot.mark_good(slot)?;
                    record.confirm(slot);
                    self.records.commit_value(&record)?;
                    Ok(BootOutcome::Confirmed {
                        slot,
                        security_counter: record.security_counter,
                    })
                }
                Err(reason) => self.roll_back(
                    record,
                    slot,
                    FailureReason::HealthCheckFailed(reason),
                    true,
                    now,
                ),
            },
            BootAction::RollBack { slot } => {
                self.boot.mark_good(booted)?;
                self.roll_back(record, slot, FailureReason::TrialsExhausted, false, now)
            }
            BootAction::ResumeSwitch { slot } => {
                self.boot.mark_good(booted)?;
                let Some(image) = record.pending.as_ref().map(|p| p.image.clone()) else {
                    return Ok(BootOutcome::Running { slot: booted });
                };
                let verified = self
                    .verify_slot(slot, &image, opts)
                    .and_then(|()| reverify(check, record.security_counter, &image));
                match verified {
                    Ok(()) => {
                        self.boot.mark_trial(slot, opts.trial_boots.max(1))?;
                        Ok(BootOutcome::RebootToTrial { slot })
                    }
                    Err(e @ (Error::PowerCut { .. } | Error::Io { .. })) => Err(e),
                    Err(e) => self.roll_back(
                        record,
                        slot,
                        FailureReason::ReverifyFailed(e.to_string()),
                        false,
                        now,
                    ),
                }
            }
            BootAction::RestartInstall { slot: _ } => {
                self.boot.mark_good(booted)?;
                let image = record.pending.take().map(|p| p.image);
                self.records.commit_value(&record)?;
                match image {
                    Some(image) => Ok(BootOutcome::InstallInterrupted { image }),
                    None => Ok(BootOutcome::Running { slot: booted }),
                }
            }
            BootAction::RejectBooted { slot } => {
                self.boot.mark_bad(slot)?;
                Ok(BootOutcome::RebootRequired { rejected: slot })
            }
            BootAction::ConfirmedFellBack { booted } => {
                let failed = booted.other();
                self.boot.mark_good(booted)?;
                record.record_failure(failed, FailureReason::ConfirmedSlotFellBack, now);
                self.records.commit_value(&record)?;
                let failure = record.last_failure.clone().ok_or(Error::WrongState {
                    action: "record failure",
                    reason: "failure vanished".into(),
                })?;
                Ok(BootOutcome::RolledBack {
                    failure,
                    reboot: false,
                })
            }
        }
    }

    /// Operator's mark-bad of the trial slot (`meshota boot mark-bad`): the
    /// failure is recorded, the slot made unbootable.
    ///
    /// # Errors
    /// Medium errors; [`Error::WrongState`] when no trial is pending.
    pub fn mark_bad_pending(&mut self, now: u64) -> Result<BootOutcome> {
        let record = self.record()?;
        let Some(p) = record.pending.clone() else {
            return Err(Error::WrongState {
                action: "mark bad",
                reason: "no update is on trial".into(),
            });
        };
        let booted = self.boot.booted()?;
        self.roll_back(
            record,
            p.slot,
            FailureReason::MarkedBad,
            booted == Some(p.slot),
            now,
        )
    }

    fn roll_back(
        &mut self,
        mut record: InstallRecord,
        slot: SlotId,
        reason: FailureReason,
        reboot: bool,
        now: u64,
    ) -> Result<BootOutcome> {
        // Failure first, then the bootloader (rule 4).
        record.record_failure(slot, reason, now);
        self.records.commit_value(&record)?;
        self.boot.mark_bad(slot)?;
        let failure = record.last_failure.ok_or(Error::WrongState {
            action: "record failure",
            reason: "failure vanished".into(),
        })?;
        Ok(BootOutcome::RolledBack { failure, reboot })
    }
}

fn check_counter(counter: u64, offered: u64) -> Result<()> {
    if offered <= counter {
        return Err(Error::Downgrade { counter, offered });
    }
    Ok(())
}

fn reverify(check: &mut dyn ManifestCheck, counter: u64, written: &ReleaseImage) -> Result<()> {
    let now = check.reverify(counter)?;
    if now.image_hash != written.image_hash || now.size != written.size {
        return Err(Error::ManifestChanged {
            written: written.image_hash,
            now: now.image_hash,
        });
    }
    check_counter(counter, now.security_version)
}

/// BLAKE3 of the first `len` bytes of `slot`, read in chunks.
///
/// # Errors
/// Medium errors, [`Error::OutOfBounds`].
pub fn hash_slot(slot: &mut dyn Slot, len: u64, chunk: usize) -> Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; chunk.clamp(1, 1 << 24)];
    let mut off = 0u64;
    while off < len {
        let n = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let part = buf.get_mut(..n).unwrap_or_default();
        slot.read(off, part)?;
        hasher.update(part);
        off += n as u64;
    }
    Ok(Hash(*hasher.finalize().as_bytes()))
}

/// Retries of a read interrupted by a signal before giving up.
const MAX_INTERRUPTS: u32 = 1000;

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    let mut interrupts = 0u32;
    // Bounded: each successful read makes progress, zero ends it, and
    // interruptions are retried a limited number of times.
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted && interrupts < MAX_INTERRUPTS =>
            {
                interrupts += 1;
            }
            Err(source) => {
                return Err(Error::Io {
                    context: "read image stream".into(),
                    source,
                });
            }
        }
    }
    Ok(n)
}
