//! One boot-control contract, every backend: the simulated bootloader on NOR
//! flash and on a file, U-Boot environments (redundant and single), GRUB env.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use meshota_boot::control::{BootControl, GrubEnv, SimBootloader, UbootEnv};
use meshota_boot::env::{self, Vars};
use meshota_boot::file::FileSlot;
use meshota_boot::flash::{Geometry, NorFlash};
use meshota_boot::{Error, SlotId};

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A device freshly provisioned with slot A confirmed, B empty.
fn contract<B: BootControl>(mut open: impl FnMut() -> B) {
    let mut b = open();
    let first = b.simulate_boot().unwrap();
    assert_eq!(first.slot, SlotId::A);
    b.mark_good(SlotId::A).unwrap();
    assert_eq!(b.booted().unwrap(), Some(SlotId::A));

    // trial_slot_boots_for_its_trials_then_falls_back_when_not_confirmed
    assert!(matches!(
        b.mark_trial(SlotId::B, 0),
        Err(Error::BadTrialCount { .. })
    ));
    let granted = b.mark_trial(SlotId::B, 2).unwrap();
    assert!((1..=2).contains(&granted));
    let mut b = open(); // state survives reopening
    assert_eq!(b.status().unwrap().primary, SlotId::B);
    for _ in 0..granted {
        let c = b.simulate_boot().unwrap();
        assert_eq!((c.slot, c.fell_back), (SlotId::B, false));
    }
    let c = b.simulate_boot().unwrap();
    assert_eq!(
        (c.slot, c.fell_back, c.last_resort),
        (SlotId::A, true, false)
    );
    assert!(b.status().unwrap().primary_exhausted());

    // rolled_back_slot_is_never_booted_again
    b.mark_bad(SlotId::B).unwrap();
    b.mark_good(SlotId::A).unwrap();
    let mut b = open();
    assert_eq!(b.status().unwrap().primary, SlotId::A);
    for _ in 0..4 {
        assert_eq!(b.simulate_boot().unwrap().slot, SlotId::A);
        b.mark_good(SlotId::A).unwrap();
    }

    // confirmed_trial_slot_keeps_booting
    b.mark_trial(SlotId::B, 3).unwrap();
    assert_eq!(b.simulate_boot().unwrap().slot, SlotId::B);
    b.mark_good(SlotId::B).unwrap();
    for _ in 0..5 {
        let mut b = open();
        let c = b.simulate_boot().unwrap();
        assert_eq!((c.slot, c.fell_back), (SlotId::B, false));
        b.mark_good(SlotId::B).unwrap();
    }
}

#[test]
fn simulated_bootloader_on_nor_flash_meets_the_boot_control_contract() {
    for sector_size in [256u64, 4096] {
        let flash = NorFlash::new(Geometry {
            sector_size,
            sectors: 4,
        });
        contract(|| SimBootloader::new(flash.partition(1, 2).unwrap(), SlotId::A).unwrap());
    }
}

#[test]
fn simulated_bootloader_on_a_file_meets_the_boot_control_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootrec");
    drop(FileSlot::create(&path, 1024).unwrap());
    contract(|| SimBootloader::new(FileSlot::open_file(&path).unwrap(), SlotId::A).unwrap());
}

pub fn provision_uboot(dir: &Path, redundant: bool) -> std::path::PathBuf {
    let cfg = dir.join("fw_env.config");
    let mut text = format!("{} 0x0 0x2000\n", dir.join("uboot.env").display());
    if redundant {
        text.push_str(&format!(
            "{} 0x0 0x2000\n",
            dir.join("uboot-redund.env").display()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let ub = UbootEnv::open_config(&cfg).unwrap();
    ub.initialize(&vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
        ("bootcmd", "run rauc"),
    ]))
    .unwrap();
    cfg
}

#[test]
fn redundant_uboot_environment_meets_the_boot_control_contract() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = provision_uboot(dir.path(), true);
    let mut booted = None;
    contract(|| {
        // A reboot forgets nothing but the booted slot, which the kernel
        // command line would tell; carry it over here.
        let b = UbootEnv::open_config(&cfg).unwrap().with_booted(booted);
        booted = Some(SlotId::A);
        b
    });
    let ub = UbootEnv::open_config(&cfg).unwrap();
    assert_eq!(
        ub.vars().unwrap().get("bootcmd").map(String::as_str),
        Some("run rauc")
    );
}

#[test]
fn single_uboot_environment_meets_the_boot_control_contract() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = provision_uboot(dir.path(), false);
    let mut booted = None;
    contract(|| {
        let b = UbootEnv::open_config(&cfg).unwrap().with_booted(booted);
        booted = Some(SlotId::A);
        b
    });
}

#[test]
fn grub_environment_meets_the_boot_control_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    GrubEnv::new(&path)
        .write_vars(&vars(&[
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("A_TRY", "0"),
            ("B_OK", "0"),
            ("B_TRY", "0"),
            ("saved_entry", "0"),
        ]))
        .unwrap();
    let mut booted = None;
    contract(|| {
        let b = GrubEnv::new(&path).with_booted(booted);
        booted = Some(SlotId::A);
        b
    });
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        env::GRUBENV_SIZE as u64
    );
    assert_eq!(
        GrubEnv::new(&path)
            .vars()
            .unwrap()
            .get("saved_entry")
            .map(String::as_str),
        Some("0")
    );
}

#[test]
fn redundant_uboot_write_goes_to_the_other_copy_with_flags_incremented() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = provision_uboot(dir.path(), true);
    let mut ub = UbootEnv::open_config(&cfg).unwrap();
    let read_flags = |name: &str| std::fs::read(dir.path().join(name)).unwrap()[4];
    assert_eq!(
        (read_flags("uboot.env"), read_flags("uboot-redund.env")),
        (0, 1)
    );
    ub.mark_bad(SlotId::B).unwrap();
    assert_eq!(
        (read_flags("uboot.env"), read_flags("uboot-redund.env")),
        (2, 1)
    );
    // Corrupting the current copy falls back to the previous one.
    let p = dir.path().join("uboot.env");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&p, bytes).unwrap();
    assert_eq!(
        ub.vars().unwrap().get("BOOT_B_LEFT").map(String::as_str),
        Some("0")
    );
    assert!(ub.mark_good(SlotId::A).is_ok());
}

#[test]
fn environment_with_no_valid_copy_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = provision_uboot(dir.path(), true);
    std::fs::write(dir.path().join("uboot.env"), vec![0x5Au8; 0x2000]).unwrap();
    std::fs::write(dir.path().join("uboot-redund.env"), vec![0u8; 0x2000]).unwrap();
    let mut ub = UbootEnv::open_config(&cfg).unwrap();
    assert!(matches!(ub.status(), Err(Error::EnvNoValidCopy)));
    let g = dir.path().join("grubenv");
    std::fs::write(&g, vec![b'#'; 1024]).unwrap();
    assert!(matches!(
        GrubEnv::new(&g).status(),
        Err(Error::EnvMalformed { .. })
    ));
}

mod decoding {
    use meshota_boot::control::{BootControl, SimBootloader};
    use meshota_boot::flash::{Geometry, NorFlash};
    use meshota_boot::install::{Device, INSTALL_MAGIC};
    use meshota_boot::lifecycle::InstallRecord;
    use meshota_boot::record::{MAX_PAYLOAD, encode_frame};
    use meshota_boot::state::SimState;
    use meshota_boot::{Slot, SlotId};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decoding_random_bytes_as_a_boot_record_never_panics(
            junk in proptest::collection::vec(any::<u8>(), 512),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            // Random medium contents.
            let flash = NorFlash::new(Geometry { sector_size: 256, sectors: 2 });
            let mut medium = flash.partition(0, 2).unwrap();
            medium.erase(0, 512).unwrap();
            medium.write(0, &junk).unwrap();
            let mut b = SimBootloader::new(medium, SlotId::A).unwrap();
            let _ = b.status();
            // A CRC-valid frame around a random payload: typed error, no panic.
            let frame = encode_frame(*b"MOBT", 7, &payload).unwrap();
            let medium = b.records().medium();
            medium.erase(0, 512).unwrap();
            medium.write(0, &frame).unwrap();
            let _ = b.status();
            let _ = postcard::from_bytes::<SimState>(&payload);
            let _ = postcard::from_bytes::<InstallRecord>(&payload);
            prop_assert!(payload.len() <= MAX_PAYLOAD);
        }

        #[test]
        fn decoding_random_bytes_as_an_install_record_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..240),
        ) {
            let flash = NorFlash::new(Geometry { sector_size: 256, sectors: 8 });
            let boot = SimBootloader::new(flash.partition(4, 2).unwrap(), SlotId::A).unwrap();
            let mut rec = flash.partition(6, 2).unwrap();
            rec.write(0, &encode_frame(INSTALL_MAGIC, 1, &payload).unwrap()).unwrap();
            let mut dev = Device::new(flash.partition(0, 2).unwrap(), flash.partition(2, 2).unwrap(), boot, rec).unwrap();
            let _ = dev.record();
            let _ = dev.status();
        }
    }
}
