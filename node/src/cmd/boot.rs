//! `meshota boot …`: what happens at and after a boot. `confirm` runs the
//! boot crate's decision at boot (`Device::on_boot`: health check, confirm
//! or roll back, resume an interrupted switch); `mark-bad` rejects the
//! update on trial; `reboot` performs the simulated bootloader's power-on
//! choice.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use meshota_boot::BootScheme;
use meshota_boot::control::BootControl;
use meshota_boot::install::{BootOutcome, HealthCheck};
use meshota_boot::lifecycle::Failure as BootFailure;

use crate::device::{Node, reason_text};
use crate::failure::{CmdResult, Failure};
use crate::timefmt::now;

/// Boot-time actions.
#[derive(Debug, Subcommand)]
pub(crate) enum BootCmd {
    /// Run the decision taken after every boot: on a trial boot, run the
    /// health check and confirm (raising the anti-rollback counter) or roll
    /// back (exit 1). Run it once the system is up.
    Confirm(ConfigArg),
    /// Reject the update on trial: record the failure and make its slot
    /// unbootable.
    MarkBad(ConfigArg),
    /// Power-on of the simulated bootloader: choose the slot to boot as its
    /// boot script would, counting down trial boots. Refused (exit 2) for
    /// U-Boot and GRUB, which choose for themselves: reboot the machine;
    /// `--dry-run` prints what they would choose.
    Reboot(RebootArgs),
}

/// Arguments of `boot confirm` and `boot mark-bad`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
}

/// Arguments of `boot reboot`.
#[derive(Debug, Args)]
pub(crate) struct RebootArgs {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
    /// Print the slot the bootloader would boot, changing nothing (any
    /// bootloader).
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(cmd: BootCmd) -> CmdResult {
    match cmd {
        BootCmd::Confirm(a) => confirm(&a),
        BootCmd::MarkBad(a) => mark_bad(&a),
        BootCmd::Reboot(a) => reboot(&a),
    }
}

fn failure_text(f: &BootFailure) -> String {
    let image = f.image.as_ref().map_or_else(String::new, |i| {
        format!(" ({} security version {})", i.version, i.security_version)
    });
    format!(
        "slot {}{image}: {}",
        f.slot.name(),
        reason_text(&f.reason).1
    )
}

fn confirm(a: &ConfigArg) -> CmdResult {
    let node = Node::load(&a.config)?;
    let outcome = after_boot(&node)?;
    match outcome {
        BootOutcome::Running { slot } => {
            println!("running confirmed slot {}; nothing to confirm", slot.name());
            Ok(())
        }
        BootOutcome::Confirmed {
            slot,
            security_counter,
        } => {
            println!(
                "confirmed slot {}: health check passed; security counter now {security_counter}",
                slot.name()
            );
            Ok(())
        }
        BootOutcome::RolledBack { failure, reboot } => Err(Failure::file(
            &node.path,
            format!(
                "update rolled back: {}{}",
                failure_text(&failure),
                if reboot {
                    "; reboot into the previous slot"
                } else {
                    ""
                }
            ),
        )),
        BootOutcome::RebootToTrial { slot } => {
            println!(
                "the switch to slot {} had not landed; it is verified and switched again: reboot",
                slot.name()
            );
            Ok(())
        }
        BootOutcome::RebootRequired { rejected } => Err(Failure::file(
            &node.path,
            format!(
                "slot {} booted but holds no confirmed or trial image; marked bad: reboot",
                rejected.name()
            ),
        )),
        BootOutcome::InstallInterrupted { image } => {
            println!(
                "an install of {} (security version {}) was interrupted while writing; \
                 run `meshota install` again",
                image.version, image.security_version
            );
            Ok(())
        }
    }
}

fn mark_bad(a: &ConfigArg) -> CmdResult {
    let node = Node::load(&a.config)?;
    let mut dev = node.open_device()?;
    let outcome = dev
        .mark_bad_pending(now().0)
        .map_err(|e| node.device_failure("boot mark-bad", &e))?;
    if let BootOutcome::RolledBack { failure, reboot } = outcome {
        println!(
            "marked bad: {}{}",
            failure_text(&failure),
            if reboot {
                "; reboot into the previous slot"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn reboot(a: &RebootArgs) -> CmdResult {
    let node = Node::load(&a.config)?;
    let kind = node.config.boot_kind();
    if kind != "simulated" && !a.dry_run {
        return Err(Failure::usage(format!(
            "{}: boot reboot performs the simulated bootloader's choice, but this device's \
             bootloader is {kind}, which chooses for itself at power-on: reboot the machine \
             (or add --dry-run to print what it would choose)",
            node.path.display()
        )));
    }
    let mut dev = node.open_device()?;
    let boot = dev.boot_control();
    let choice = if a.dry_run {
        let mut state = boot
            .load()
            .map_err(|e| node.device_failure("boot reboot", &e))?;
        state.boot()
    } else {
        boot.simulate_boot()
            .map_err(|e| node.device_failure("boot reboot", &e))?
    };
    let tries = boot
        .status()
        .map_err(|e| node.device_failure("boot reboot", &e))?
        .slot(choice.slot)
        .tries_left;
    let verb = if a.dry_run {
        format!("{kind} bootloader would boot")
    } else {
        "booted".to_string()
    };
    let how = match (choice.last_resort, choice.fell_back, tries) {
        (true, _, _) => " (last resort: no slot was bootable)".to_string(),
        (false, true, _) => " (fell back: the primary slot is not bootable)".to_string(),
        (false, false, Some(n)) if !a.dry_run => format!(" (trial boot; {n} left)"),
        (false, false, Some(n)) => format!(" (trial boot; {n} left before it)"),
        (false, false, None) => String::new(),
    };
    println!("{verb} slot {}{how}", choice.slot.name());
    if !a.dry_run {
        println!("next: `meshota boot confirm` once the system is up");
    }
    Ok(())
}

/// The decision at boot (`Device::on_boot`): health check, then confirm or
/// roll back. Shared by `meshota boot confirm` and the daemon.
pub(crate) fn after_boot(node: &Node) -> CmdResult<BootOutcome> {
    let mut dev = node.open_device()?;
    let pending = dev
        .record()
        .map_err(|e| node.device_failure("boot confirm", &e))?
        .pending
        .map(|p| p.slot);
    let mut check = node.saved_manifest_check(pending);
    let mut health: Box<dyn HealthCheck> = match node
        .config
        .device
        .health_check()
        .map_err(|e| node.device_failure("boot confirm", &e))?
    {
        Some(h) => Box::new(h),
        None => Box::new(|| Ok(())),
    };
    let opts = node.config.device.install_options();
    dev.on_boot(health.as_mut(), &mut check, &opts, now().0)
        .map_err(|e| node.device_failure("boot confirm", &e))
}

/// The simulated bootloader's choice at power-on (testnets and the demo):
/// returns the slot booted.
pub(crate) fn simulated_reboot(node: &Node) -> CmdResult<meshota_boot::SlotId> {
    let mut dev = node.open_device()?;
    let choice = dev
        .boot_control()
        .simulate_boot()
        .map_err(|e| node.device_failure("boot reboot", &e))?;
    Ok(choice.slot)
}
