//! [`BootControl`]: where a bootloader keeps its slot-selection state, and the
//! three backends meshota drives:
//! - [`SimBootloader`]: meshota's simulated bootloader, state in
//!   double-buffered CRC records on any [`Slot`] (so power-cut tests cut every
//!   write of it);
//! - [`UbootEnv`]: a U-Boot environment described by `fw_env.config`
//!   (single or redundant), RAUC's `BOOT_ORDER`/`BOOT_x_LEFT`;
//! - [`GrubEnv`]: a GRUB environment block, RAUC's `ORDER`/`x_OK`/`x_TRY`.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::env::{self, FwEnvConfig, FwEnvLocation, Vars};
use crate::error::{Error, Result, io_err};
use crate::record::RecordStore;
use crate::slot::Slot;
use crate::state::{
    BootChoice, BootScheme, BootStatus, GrubState, SimState, SlotId, UBOOT_DEFAULT_ATTEMPTS,
    UbootState,
};

/// Persistent boot-control state of one bootloader.
///
/// Invariant of every backend: each `mark_*` call is one atomic commit (old
/// or new state after a power cut, as far as the medium allows: see each
/// backend), and unrelated bootloader variables are preserved.
pub trait BootControl {
    /// The bootloader's selection rules and state.
    type Scheme: BootScheme;

    /// Reads the current state.
    ///
    /// # Errors
    /// Medium errors; typed format errors for bad bytes (never a panic).
    fn load(&mut self) -> Result<Self::Scheme>;

    /// Commits `state`.
    ///
    /// # Errors
    /// Medium errors; format errors if it does not fit.
    fn store(&mut self, state: &Self::Scheme) -> Result<()>;

    /// The slot the running system was booted from, when known (the
    /// simulated bootloader records it; for U-Boot and GRUB it comes from the
    /// kernel command line, see [`SlotId::from_cmdline`], or from
    /// [`BootControl::simulate_boot`]).
    ///
    /// # Errors
    /// Medium errors.
    fn booted(&mut self) -> Result<Option<SlotId>>;

    /// Remembers which slot the bootloader just booted.
    fn note_booted(&mut self, slot: SlotId);

    /// A backend-neutral view of the state.
    ///
    /// # Errors
    /// As [`BootControl::load`].
    fn status(&mut self) -> Result<BootStatus> {
        Ok(self.load()?.status())
    }

    /// Makes `slot` primary for up to `tries` trial boots, keeping the other
    /// slot as fallback. Returns the trials granted (GRUB grants one).
    ///
    /// # Errors
    /// [`Error::BadTrialCount`] for 0; as [`BootControl::store`].
    fn mark_trial(&mut self, slot: SlotId, tries: u8) -> Result<u8> {
        let mut s = self.load()?;
        let max = s.max_trial_boots();
        if tries == 0 {
            return Err(Error::BadTrialCount { asked: tries, max });
        }
        s.mark_trial(slot, tries);
        self.store(&s)?;
        Ok(tries.min(max))
    }

    /// Confirms `slot`.
    ///
    /// # Errors
    /// As [`BootControl::store`].
    fn mark_good(&mut self, slot: SlotId) -> Result<()> {
        let mut s = self.load()?;
        s.mark_good(slot);
        self.store(&s)
    }

    /// Makes `slot` unbootable (the other slot becomes primary).
    ///
    /// # Errors
    /// As [`BootControl::store`].
    fn mark_bad(&mut self, slot: SlotId) -> Result<()> {
        let mut s = self.load()?;
        s.mark_bad(slot);
        self.store(&s)
    }

    /// Runs the bootloader's power-on decision against the stored state and
    /// saves the counters it changes, exactly as the boot script would.
    ///
    /// # Errors
    /// As [`BootControl::load`] and [`BootControl::store`].
    fn simulate_boot(&mut self) -> Result<BootChoice> {
        let mut s = self.load()?;
        let choice = s.boot();
        self.store(&s)?;
        self.note_booted(choice.slot);
        Ok(choice)
    }
}

/// Record magic of the simulated bootloader.
pub const SIM_BOOT_MAGIC: [u8; 4] = *b"MOBT";

/// meshota's simulated bootloader: [`SimState`] in double-buffered records.
///
/// Invariant: a blank or wholly corrupt record area reads as the factory
/// state ([`SimState::factory`] of the configured initial slot), so a device
/// always has something to boot.
#[derive(Debug)]
pub struct SimBootloader<S: Slot> {
    records: RecordStore<S>,
    initial: SlotId,
}

impl<S: Slot> SimBootloader<S> {
    /// Uses `medium` (two erase-aligned halves) as the record area; `initial`
    /// is the slot a blank device boots.
    ///
    /// # Errors
    /// [`Error::RecordAreaGeometry`].
    pub fn new(medium: S, initial: SlotId) -> Result<Self> {
        Ok(Self {
            records: RecordStore::new(medium, SIM_BOOT_MAGIC, "boot")?,
            initial,
        })
    }

    /// The record area (for inspection in tests).
    pub fn records(&mut self) -> &mut RecordStore<S> {
        &mut self.records
    }
}

impl<S: Slot> BootControl for SimBootloader<S> {
    type Scheme = SimState;

    fn load(&mut self) -> Result<SimState> {
        Ok(self
            .records
            .load_value::<SimState>()?
            .unwrap_or(SimState::factory(self.initial)))
    }

    fn store(&mut self, state: &SimState) -> Result<()> {
        self.records.commit_value(state).map(|_| ())
    }

    fn booted(&mut self) -> Result<Option<SlotId>> {
        Ok(self.load()?.booted)
    }

    fn note_booted(&mut self, _slot: SlotId) {
        // Persisted by `simulate_boot` in the record itself.
    }
}

fn read_at(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let ctx = || format!("read environment {} at {offset:#x}", path.display());
    let mut f = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(io_err(ctx()))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err(ctx()))?;
    let len = usize::try_from(len.min(env::MAX_ENV_SIZE)).unwrap_or(0);
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(io_err(ctx()))?;
    Ok(buf)
}

fn write_at(path: &Path, offset: u64, bytes: &[u8], create: bool) -> Result<()> {
    let ctx = || format!("write environment {} at {offset:#x}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(io_err(ctx()))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err(ctx()))?;
    f.write_all(bytes).map_err(io_err(ctx()))?;
    f.sync_all().map_err(io_err(ctx()))
}

/// A U-Boot environment in files or block devices described by `fw_env.config`,
/// read and written in the format of U-Boot and libubootenv (`fw_printenv`).
///
/// Invariants: with a redundant environment a write goes to the copy that is
/// not current, with the flags counter incremented, then `fsync`: a power cut
/// leaves the previous copy current. A single environment is rewritten in
/// place (as U-Boot itself does; not power-cut safe). Variables other than
/// RAUC's three are preserved.
#[derive(Debug, Clone)]
pub struct UbootEnv {
    config: FwEnvConfig,
    default_attempts: u8,
    booted: Option<SlotId>,
}

struct Current {
    index: usize,
    flags: Option<u8>,
    vars: Vars,
}

impl UbootEnv {
    /// Reads `fw_env.config` at `path`.
    ///
    /// # Errors
    /// I/O errors; [`Error::FwEnvConfig`].
    pub fn open_config(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
        Ok(Self::new(env::parse_fw_env_config(&text)?))
    }

    /// Uses a parsed config, RAUC's default attempts (3), booted slot unknown.
    #[must_use]
    pub const fn new(config: FwEnvConfig) -> Self {
        Self {
            config,
            default_attempts: UBOOT_DEFAULT_ATTEMPTS,
            booted: None,
        }
    }

    /// Sets the attempts mark-good writes (RAUC's `boot-attempts`).
    #[must_use]
    pub const fn with_default_attempts(mut self, attempts: u8) -> Self {
        self.default_attempts = attempts;
        self
    }

    /// Sets the booted slot (from the kernel command line).
    #[must_use]
    pub const fn with_booted(mut self, booted: Option<SlotId>) -> Self {
        self.booted = booted;
        self
    }

    fn read_copy(&self, loc: &FwEnvLocation) -> Result<env::UbootCopy> {
        let bytes = read_at(Path::new(&loc.device), loc.offset, loc.env_size)?;
        env::decode_uboot_copy(&bytes, self.config.redundant())
    }

    fn current(&self) -> Result<Current> {
        let copies: Vec<Option<env::UbootCopy>> = self
            .config
            .locations
            .iter()
            .map(|l| self.read_copy(l).ok())
            .collect();
        let pick = match copies.as_slice() {
            [Some(a), Some(b)] => {
                let (fa, fb) = (a.flags.unwrap_or(0), b.flags.unwrap_or(0));
                Some(env::uboot_current_copy(fa, fb))
            }
            [Some(_), None] | [Some(_)] => Some(0),
            [None, Some(_)] => Some(1),
            _ => None,
        };
        let index = pick.ok_or(Error::EnvNoValidCopy)?;
        let copy = copies
            .into_iter()
            .nth(index)
            .flatten()
            .ok_or(Error::EnvNoValidCopy)?;
        Ok(Current {
            index,
            flags: copy.flags,
            vars: copy.vars,
        })
    }

    /// All variables of the current copy.
    ///
    /// # Errors
    /// I/O errors, [`Error::EnvNoValidCopy`], [`Error::EnvMalformed`].
    pub fn vars(&self) -> Result<Vars> {
        Ok(self.current()?.vars)
    }

    /// Commits `vars` as the whole environment (the next copy, for a redundant one).
    ///
    /// # Errors
    /// I/O errors, [`Error::EnvNoValidCopy`] when there is no current copy
    /// (use [`UbootEnv::initialize`]), [`Error::EnvTooLarge`].
    pub fn write_vars(&self, vars: &Vars) -> Result<()> {
        let cur = self.current()?;
        self.write_copy(vars, 1 - cur.index, cur.flags.map(|f| f.wrapping_add(1)))
    }

    fn write_copy(&self, vars: &Vars, index: usize, flags: Option<u8>) -> Result<()> {
        let index = if self.config.redundant() { index } else { 0 };
        let loc = self.config.locations.get(index).ok_or(Error::FwEnvConfig {
            line: 0,
            reason: "missing environment copy".to_string(),
        })?;
        let size = usize::try_from(loc.env_size).unwrap_or(0);
        let flags = if self.config.redundant() {
            Some(flags.unwrap_or(1))
        } else {
            None
        };
        let bytes = env::encode_uboot_copy(vars, size, flags)?;
        write_at(Path::new(&loc.device), loc.offset, &bytes, true)
    }

    /// Writes a fresh environment holding `vars` into every copy (factory
    /// provisioning). Creates missing files.
    ///
    /// # Errors
    /// I/O errors, [`Error::EnvTooLarge`].
    pub fn initialize(&self, vars: &Vars) -> Result<()> {
        if self.config.redundant() {
            self.write_copy(vars, 0, Some(0))?;
            self.write_copy(vars, 1, Some(1))
        } else {
            self.write_copy(vars, 0, None)
        }
    }
}

impl BootControl for UbootEnv {
    type Scheme = UbootState;

    fn load(&mut self) -> Result<UbootState> {
        env::uboot_state_from_vars(&self.current()?.vars, self.default_attempts)
    }

    fn store(&mut self, state: &UbootState) -> Result<()> {
        let mut vars = self.current()?.vars;
        env::uboot_state_into_vars(state, &mut vars);
        self.write_vars(&vars)
    }

    fn booted(&mut self) -> Result<Option<SlotId>> {
        Ok(self.booted)
    }

    fn note_booted(&mut self, slot: SlotId) {
        self.booted = Some(slot);
    }
}

/// A GRUB environment block file (`grubenv`), as `grub-editenv` and GRUB's
/// `load_env`/`save_env` read and write it.
///
/// Invariants: the file stays exactly [`env::GRUBENV_SIZE`] bytes and is
/// rewritten in place (GRUB writes it through a fixed block list, so it must
/// not move); variables other than RAUC's five are preserved. An in-place
/// rewrite is not power-cut safe: GRUB's format has no second copy.
#[derive(Debug, Clone)]
pub struct GrubEnv {
    path: PathBuf,
    booted: Option<SlotId>,
}

impl GrubEnv {
    /// The block at `path`, booted slot unknown.
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            booted: None,
        }
    }

    /// Sets the booted slot (from the kernel command line).
    #[must_use]
    pub const fn with_booted(mut self, booted: Option<SlotId>) -> Self {
        self.booted = booted;
        self
    }

    /// All variables.
    ///
    /// # Errors
    /// I/O errors, [`Error::EnvMalformed`].
    pub fn vars(&self) -> Result<Vars> {
        let bytes = read_at(&self.path, 0, env::GRUBENV_SIZE as u64)?;
        env::parse_grubenv(&bytes)
    }

    /// Rewrites the block with `vars`, in place.
    ///
    /// # Errors
    /// I/O errors, [`Error::EnvTooLarge`].
    pub fn write_vars(&self, vars: &Vars) -> Result<()> {
        write_at(&self.path, 0, &env::encode_grubenv(vars)?, true)
    }
}

impl BootControl for GrubEnv {
    type Scheme = GrubState;

    fn load(&mut self) -> Result<GrubState> {
        env::grub_state_from_vars(&self.vars()?)
    }

    fn store(&mut self, state: &GrubState) -> Result<()> {
        let mut vars = self.vars()?;
        env::grub_state_into_vars(state, &mut vars);
        self.write_vars(&vars)
    }

    fn booted(&mut self) -> Result<Option<SlotId>> {
        Ok(self.booted)
    }

    fn note_booted(&mut self, slot: SlotId) {
        self.booted = Some(slot);
    }
}

/// The state of whichever bootloader an [`AnyBootControl`] drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyScheme {
    /// meshota's simulated bootloader.
    Simulated(SimState),
    /// RAUC's U-Boot script.
    Uboot(UbootState),
    /// RAUC's GRUB script.
    Grub(GrubState),
}

impl BootScheme for AnyScheme {
    fn max_trial_boots(&self) -> u8 {
        match self {
            Self::Simulated(s) => s.max_trial_boots(),
            Self::Uboot(s) => s.max_trial_boots(),
            Self::Grub(s) => s.max_trial_boots(),
        }
    }
    fn boot(&mut self) -> BootChoice {
        match self {
            Self::Simulated(s) => s.boot(),
            Self::Uboot(s) => s.boot(),
            Self::Grub(s) => s.boot(),
        }
    }
    fn mark_trial(&mut self, slot: SlotId, tries: u8) {
        match self {
            Self::Simulated(s) => s.mark_trial(slot, tries),
            Self::Uboot(s) => s.mark_trial(slot, tries),
            Self::Grub(s) => s.mark_trial(slot, tries),
        }
    }
    fn mark_good(&mut self, slot: SlotId) {
        match self {
            Self::Simulated(s) => s.mark_good(slot),
            Self::Uboot(s) => s.mark_good(slot),
            Self::Grub(s) => s.mark_good(slot),
        }
    }
    fn mark_bad(&mut self, slot: SlotId) {
        match self {
            Self::Simulated(s) => s.mark_bad(slot),
            Self::Uboot(s) => s.mark_bad(slot),
            Self::Grub(s) => s.mark_bad(slot),
        }
    }
    fn status(&self) -> BootStatus {
        match self {
            Self::Simulated(s) => s.status(),
            Self::Uboot(s) => s.status(),
            Self::Grub(s) => s.status(),
        }
    }
}

/// One of the three backends, chosen at run time (from a config file).
///
/// Invariant: [`BootControl::store`] refuses a state of another backend's
/// kind with [`Error::WrongState`].
#[derive(Debug)]
pub enum AnyBootControl<S: Slot> {
    /// meshota's simulated bootloader on a record area.
    Simulated(SimBootloader<S>),
    /// A U-Boot environment.
    Uboot(UbootEnv),
    /// A GRUB environment block.
    Grub(GrubEnv),
}

fn kind_mismatch() -> Error {
    Error::WrongState {
        action: "store boot state",
        reason: "state of another bootloader kind".to_string(),
    }
}

impl<S: Slot> BootControl for AnyBootControl<S> {
    type Scheme = AnyScheme;

    fn load(&mut self) -> Result<AnyScheme> {
        Ok(match self {
            Self::Simulated(b) => AnyScheme::Simulated(b.load()?),
            Self::Uboot(b) => AnyScheme::Uboot(b.load()?),
            Self::Grub(b) => AnyScheme::Grub(b.load()?),
        })
    }

    fn store(&mut self, state: &AnyScheme) -> Result<()> {
        match (self, state) {
            (Self::Simulated(b), AnyScheme::Simulated(s)) => b.store(s),
            (Self::Uboot(b), AnyScheme::Uboot(s)) => b.store(s),
            (Self::Grub(b), AnyScheme::Grub(s)) => b.store(s),
            _ => Err(kind_mismatch()),
        }
    }

    fn booted(&mut self) -> Result<Option<SlotId>> {
        match self {
            Self::Simulated(b) => b.booted(),
            Self::Uboot(b) => b.booted(),
            Self::Grub(b) => b.booted(),
        }
    }

    fn note_booted(&mut self, slot: SlotId) {
        match self {
            Self::Simulated(b) => b.note_booted(slot),
            Self::Uboot(b) => b.note_booted(slot),
            Self::Grub(b) => b.note_booted(slot),
        }
    }
}
