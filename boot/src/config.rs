//! A device described by configuration (the `[device]` part of a node's
//! config file, deserialised by the caller from TOML or JSON): which files or
//! block devices are the slots, which bootloader, where the install record
//! lives, and the health check.
//!
//! ```toml
//! trial_boots = 3
//! install_record = "/var/lib/meshota/install.rec"
//! [slot_a]
//! path = "/dev/mmcblk0p2"
//! block_device = true
//! [slot_b]
//! path = "/dev/mmcblk0p3"
//! block_device = true
//! [boot]
//! kind = "uboot"                      # or "grub", "simulated"
//! fw_env_config = "/etc/fw_env.config"
//! [health]
//! command = ["/usr/bin/systemctl", "is-system-running", "--wait"]
//! timeout_ms = 120000
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::{AnyBootControl, GrubEnv, SimBootloader, UbootEnv};
use crate::error::{Error, Result, io_err};
use crate::file::{Durability, FileSlot};
use crate::install::{CommandHealthCheck, Device, InstallOptions};
use crate::state::SlotId;

/// Size of an install-record or simulated-bootloader record file created by
/// [`DeviceConfig::open`] (two 4 KiB copies).
pub const RECORD_FILE_SIZE: u64 = 8192;

/// Where one slot lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// File, block device or partition.
    pub path: PathBuf,
    /// Byte offset of the slot in it (default 0).
    #[serde(default)]
    pub offset: u64,
    /// Size in bytes (default: to the end).
    #[serde(default)]
    pub size: Option<u64>,
    /// Open with `O_SYNC` as a block device (default false: a plain file).
    #[serde(default)]
    pub block_device: bool,
}

/// Which bootloader, and where its state lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootConfig {
    /// meshota's simulated bootloader (testnets, demo).
    Simulated {
        /// Record file (created when missing).
        records: PathBuf,
    },
    /// U-Boot with RAUC's script.
    Uboot {
        /// `fw_env.config` describing the environment.
        fw_env_config: PathBuf,
        /// Kernel command line to read `rauc.slot=` from (default `/proc/cmdline`).
        #[serde(default)]
        cmdline: Option<PathBuf>,
    },
    /// GRUB with RAUC's `grub.cfg`.
    Grub {
        /// The `grubenv` file.
        grubenv: PathBuf,
        /// Kernel command line to read `rauc.slot=` from (default `/proc/cmdline`).
        #[serde(default)]
        cmdline: Option<PathBuf>,
    },
}

/// The health check run after a trial boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Program and arguments; healthy when it exits 0.
    pub command: Vec<String>,
    /// How long it may run, in milliseconds.
    pub timeout_ms: u64,
}

const fn default_trial_boots() -> u8 {
    3
}

/// A whole A/B device.
///
/// Invariant: slot A and slot B are distinct regions (not checked across
/// files: the operator's config must not overlap them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Slot A.
    pub slot_a: SlotConfig,
    /// Slot B.
    pub slot_b: SlotConfig,
    /// The install record file (created when missing).
    pub install_record: PathBuf,
    /// The bootloader.
    pub boot: BootConfig,
    /// The health check; none means "healthy once booted".
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Trial boots of a new slot (default 3; GRUB grants 1).
    #[serde(default = "default_trial_boots")]
    pub trial_boots: u8,
}

/// A device opened from a [`DeviceConfig`].
pub type ConfiguredDevice = Device<FileSlot, AnyBootControl<FileSlot>, FileSlot>;

fn open_slot(c: &SlotConfig) -> Result<FileSlot> {
    let durability = if c.block_device {
        Durability::SyncWrites
    } else {
        Durability::FsyncOnFlush
    };
    FileSlot::open_region(&c.path, c.offset, c.size, durability)
}

fn open_or_create_record(path: &Path) -> Result<FileSlot> {
    if path.exists() {
        FileSlot::open_file(path)
    } else {
        FileSlot::create(path, RECORD_FILE_SIZE)
    }
}

fn booted_from(cmdline: Option<&Path>) -> Result<Option<SlotId>> {
    let path = cmdline.unwrap_or_else(|| Path::new("/proc/cmdline"));
    let text = std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    Ok(SlotId::from_cmdline(&text))
}

impl DeviceConfig {
    /// Opens the slots, the boot control and the install record.
    ///
    /// # Errors
    /// I/O errors naming the path; format errors of `fw_env.config`.
    pub fn open(&self) -> Result<ConfiguredDevice> {
        let boot = match &self.boot {
            BootConfig::Simulated { records } => AnyBootControl::Simulated(SimBootloader::new(
                open_or_create_record(records)?,
                SlotId::A,
            )?),
            BootConfig::Uboot {
                fw_env_config,
                cmdline,
            } => AnyBootControl::Uboot(
                UbootEnv::open_config(fw_env_config)?.with_booted(booted_from(cmdline.as_deref())?),
            ),
            BootConfig::Grub { grubenv, cmdline } => AnyBootControl::Grub(
                GrubEnv::new(grubenv).with_booted(booted_from(cmdline.as_deref())?),
            ),
        };
        Device::new(
            open_slot(&self.slot_a)?,
            open_slot(&self.slot_b)?,
            boot,
            open_or_create_record(&self.install_record)?,
        )
    }

    /// The configured health check: the command, or always healthy.
    ///
    /// # Errors
    /// [`Error::WrongState`] for an empty command.
    pub fn health_check(&self) -> Result<Option<CommandHealthCheck>> {
        let Some(h) = &self.health else {
            return Ok(None);
        };
        let (program, args) = h.command.split_first().ok_or(Error::WrongState {
            action: "configure the health check",
            reason: "`health.command` is empty".to_string(),
        })?;
        Ok(Some(CommandHealthCheck {
            program: program.clone(),
            args: args.to_vec(),
            timeout: Duration::from_millis(h.timeout_ms),
        }))
    }

    /// Install options from this config.
    #[must_use]
    pub fn install_options(&self) -> InstallOptions {
        InstallOptions {
            trial_boots: self.trial_boots.max(1),
            ..InstallOptions::default()
        }
    }
}
