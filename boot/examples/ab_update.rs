//! An A/B update on a simulated NOR-flash device, start to finish:
//! provision release 1 in slot A, install release 2 into slot B, reboot,
//! pass the health check, confirm. Run with
//! `cargo run -p meshota-boot --example ab_update`.

use meshota_boot::control::{BootControl, SimBootloader};
use meshota_boot::flash::{Geometry, NorFlash};
use meshota_boot::install::{BootOutcome, Device, InstallOptions};
use meshota_boot::lifecycle::ReleaseImage;
use meshota_boot::{Error, SlotId};
use meshota_manifest::Hash;

fn release(bytes: &[u8], security_version: u64) -> ReleaseImage {
    ReleaseImage {
        image_hash: Hash::of(bytes),
        size: bytes.len() as u64,
        security_version,
        version: format!("1.{security_version}.0"),
    }
}

fn main() -> Result<(), Error> {
    // 4 KiB sectors: 16 per slot, 2 for the bootloader, 2 for the install record.
    let flash = NorFlash::new(Geometry {
        sector_size: 4096,
        sectors: 36,
    });
    let boot = SimBootloader::new(flash.partition(32, 2)?, SlotId::A)?;
    let mut dev = Device::new(
        flash.partition(0, 16)?,
        flash.partition(16, 16)?,
        boot,
        flash.partition(34, 2)?,
    )?;
    let opts = InstallOptions::default();

    let v1 = vec![0x11u8; 50_000];
    dev.provision(SlotId::A, &release(&v1, 1), &v1[..], &opts)?;
    println!("booted {:?}", dev.boot_control().simulate_boot()?.slot);

    // In a node this closure is `TrustedManifest`: the signed manifest
    // checked against the trust root and the anti-rollback counter.
    let v2 = vec![0x22u8; 60_000];
    let r2 = release(&v2, 2);
    let mut check = |installed: u64| {
        if r2.security_version > installed {
            Ok(r2.clone())
        } else {
            Err(Error::Downgrade {
                counter: installed,
                offered: r2.security_version,
            })
        }
    };
    let installed = dev.install(&mut check, &v2[..], &opts, 1_790_000_000)?;
    println!(
        "installed into {:?} with {} trial boots",
        installed.slot, installed.trial_boots
    );

    let choice = dev.boot_control().simulate_boot()?;
    println!("rebooted into {:?}", choice.slot);
    match dev.on_boot(&mut || Ok(()), &mut check, &opts, 1_790_000_060)? {
        BootOutcome::Confirmed {
            slot,
            security_counter,
        } => {
            println!("confirmed {slot:?}; anti-rollback counter now {security_counter}");
        }
        other => println!("unexpected: {other:?}"),
    }
    println!("{} flash operations", flash.ops());
    Ok(())
}
