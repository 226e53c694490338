//! Power cut at every flash operation of a whole update, on the strict NOR
//! model, in three tear modes, over several sector geometries.
//!
//! A clean run (install B → reboot → health check → confirm, or → failed
//! health check → rollback → reboot) counts its flash operations N. Then for
//! every k in 0..=N the run is repeated with the power cut at operation k,
//! the device is power-cycled, and booted again and again (bounded) with the
//! node's normal logic: it must always boot a slot holding a verified image,
//! never hold an anti-rollback counter above its confirmed image, and reach
//! the clean run's end state without manual repair.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_boot::control::{BootControl, SimBootloader};
use meshota_boot::flash::{CutPlan, Geometry, NorFlash, NorSlot, Tear};
use meshota_boot::install::{BootOutcome, Device, InstallOptions, hash_slot};
use meshota_boot::lifecycle::ReleaseImage;
use meshota_boot::{Error, Slot, SlotId};
use meshota_manifest::Hash;

type Dev = Device<NorSlot, SimBootloader<NorSlot>, NorSlot>;

/// Seed of every pseudo-random choice in this file; printed on failure.
const SEED: u64 = 0x006d_6573_686f_7461;

struct Case {
    sector_size: u64,
    slot_sectors: u64,
    image_a: usize,
    image_b: usize,
}

const CASES: &[Case] = &[
    Case {
        sector_size: 256,
        slot_sectors: 8,
        image_a: 1500,
        image_b: 1800,
    },
    Case {
        sector_size: 1024,
        slot_sectors: 4,
        image_a: 3000,
        image_b: 2500,
    },
    Case {
        sector_size: 4096,
        slot_sectors: 2,
        image_a: 5000,
        image_b: 8192,
    },
];

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

struct Release {
    image: ReleaseImage,
    bytes: Vec<u8>,
}

fn release(seed: u64, len: usize, sv: u64) -> Release {
    let bytes = bytes(seed, len);
    let image = ReleaseImage {
        image_hash: Hash::of(&bytes),
        size: len as u64,
        security_version: sv,
        version: format!("1.{sv}.0"),
    };
    Release { image, bytes }
}

const OPTS: InstallOptions = InstallOptions {
    trial_boots: 2,
    chunk_size: 256,
};

struct Rig {
    flash: NorFlash,
    dev: Dev,
    a: Release,
    b: Release,
}

fn rig(case: &Case) -> Rig {
    let rec_sectors = 2 * 1024u64.div_ceil(case.sector_size).max(1);
    let flash = NorFlash::new(Geometry {
        sector_size: case.sector_size,
        sectors: 2 * case.slot_sectors + 2 * rec_sectors,
    });
    let s = case.slot_sectors;
    let boot = SimBootloader::new(flash.partition(2 * s, rec_sectors).unwrap(), SlotId::A).unwrap();
    let mut dev = Device::new(
        flash.partition(0, s).unwrap(),
        flash.partition(s, s).unwrap(),
        boot,
        flash.partition(2 * s + rec_sectors, rec_sectors).unwrap(),
    )
    .unwrap();
    let a = release(SEED ^ 1, case.image_a, 1);
    let b = release(SEED ^ 2, case.image_b, 2);
    dev.provision(SlotId::A, &a.image, &a.bytes[..], &OPTS)
        .unwrap();
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
    let out = dev
        .on_boot(&mut || Ok(()), &mut |_| Err("unused".to_string()), &OPTS, 0)
        .unwrap();
    assert_eq!(out, BootOutcome::Running { slot: SlotId::A });
    Rig { flash, dev, a, b }
}

fn health(healthy: bool) -> impl FnMut() -> Result<(), String> {
    move || {
        if healthy {
            Ok(())
        } else {
            Err("service did not come up".to_string())
        }
    }
}

fn check_for(r: &ReleaseImage) -> impl FnMut(u64) -> Result<ReleaseImage, String> + '_ {
    move |installed| {
        if r.security_version > installed {
            Ok(r.clone())
        } else {
            Err(format!("rollback: {} <= {installed}", r.security_version))
        }
    }
}

/// The clean journey after provisioning; stops at the first error.
fn journey(rig: &mut Rig, healthy: bool) -> Result<(), Error> {
    let b = rig.b.image.clone();
    rig.dev
        .install(&b, &rig.b.bytes[..], &mut check_for(&b), &OPTS, 10)?;
    rig.dev.boot_control().simulate_boot()?;
    let out = rig
        .dev
        .on_boot(&mut health(healthy), &mut check_for(&b), &OPTS, 20)?;
    if healthy {
        assert!(
            matches!(
                out,
                BootOutcome::Confirmed {
                    slot: SlotId::B,
                    security_counter: 2
                }
            ),
            "{out:?}"
        );
    } else {
        assert!(
            matches!(out, BootOutcome::RolledBack { reboot: true, .. }),
            "{out:?}"
        );
        assert_eq!(rig.dev.boot_control().simulate_boot()?.slot, SlotId::A);
        let out = rig
            .dev
            .on_boot(&mut health(healthy), &mut check_for(&b), &OPTS, 30)?;
        assert_eq!(out, BootOutcome::Running { slot: SlotId::A });
    }
    Ok(())
}

/// Invariants that must hold at every boot.
fn check_invariants(rig: &mut Rig, booted: SlotId, ctx: &str) {
    let (a, b) = (rig.a.image.clone(), rig.b.image.clone());
    let slot = rig.dev.slot(booted);
    let holds_a = slot.size() >= a.size && hash_slot(slot, a.size, 512).unwrap() == a.image_hash;
    let holds_b = slot.size() >= b.size && hash_slot(slot, b.size, 512).unwrap() == b.image_hash;
    assert!(
        holds_a || holds_b,
        "{ctx}: booted slot {booted:?} holds no verified image"
    );
    let record = rig
        .dev
        .record()
        .unwrap_or_else(|e| panic!("{ctx}: install record unreadable: {e}"));
    let confirmed = record
        .confirmed_image()
        .unwrap_or_else(|| panic!("{ctx}: no confirmed image"));
    assert!(
        record.security_counter <= confirmed.security_version,
        "{ctx}: counter {} above confirmed image's {}",
        record.security_counter,
        confirmed.security_version
    );
    let h = hash_slot(rig.dev.slot(record.confirmed), confirmed.size, 512).unwrap();
    assert_eq!(
        h, confirmed.image_hash,
        "{ctx}: confirmed slot does not hold its image"
    );
}

/// Boots until the node settles, doing what a node does; bounded.
fn recover(rig: &mut Rig, healthy: bool, ctx: &str) {
    const MAX_BOOTS: usize = 12;
    let b = rig.b.image.clone();
    for n in 0..MAX_BOOTS {
        let ctx = format!("{ctx}, boot {n}");
        let choice = rig.dev.boot_control().simulate_boot().unwrap();
        assert!(
            !choice.last_resort,
            "{ctx}: bootloader found no bootable slot"
        );
        check_invariants(rig, choice.slot, &ctx);
        let out = rig
            .dev
            .on_boot(&mut health(healthy), &mut check_for(&b), &OPTS, 100)
            .unwrap();
        let record = rig.dev.record().unwrap();
        match out {
            BootOutcome::Running { slot } => {
                let done = if healthy {
                    record.confirmed == SlotId::B
                } else {
                    record
                        .last_failure
                        .as_ref()
                        .is_some_and(|f| f.slot == SlotId::B)
                };
                if done {
                    assert_eq!(slot, if healthy { SlotId::B } else { SlotId::A }, "{ctx}");
                    return;
                }
                // The update is still wanted: install it (again).
                rig.dev
                    .install(&b, &rig.b.bytes[..], &mut check_for(&b), &OPTS, 100)
                    .unwrap();
            }
            BootOutcome::InstallInterrupted { image } => {
                assert_eq!(image, b, "{ctx}");
                rig.dev
                    .install(&b, &rig.b.bytes[..], &mut check_for(&b), &OPTS, 100)
                    .unwrap();
            }
            BootOutcome::Confirmed { .. }
            | BootOutcome::RolledBack { .. }
            | BootOutcome::RebootToTrial { .. }
            | BootOutcome::RebootRequired { .. } => {}
        }
    }
    panic!("{ctx}: device did not settle within {MAX_BOOTS} boots");
}

fn final_state(rig: &mut Rig, healthy: bool, ctx: &str) {
    let record = rig.dev.record().unwrap();
    let booted = rig.dev.boot_control().booted().unwrap();
    assert!(record.pending.is_none(), "{ctx}");
    if healthy {
        assert_eq!(
            (booted, record.confirmed, record.security_counter),
            (Some(SlotId::B), SlotId::B, 2),
            "{ctx}"
        );
    } else {
        assert_eq!(
            (booted, record.confirmed, record.security_counter),
            (Some(SlotId::A), SlotId::A, 1),
            "{ctx}"
        );
        let f = record
            .last_failure
            .unwrap_or_else(|| panic!("{ctx}: failure not recorded"));
        assert_eq!(f.slot, SlotId::B, "{ctx}");
    }
}

fn every_cut_point(healthy: bool) -> usize {
    let mut covered = 0;
    for case in CASES {
        let mut clean = rig(case);
        let base = clean.flash.ops();
        journey(&mut clean, healthy).unwrap();
        let total = clean.flash.ops() - base;
        final_state(&mut clean, healthy, "clean run");
        for k in 0..=total {
            for tear in [Tear::None, Tear::Half, Tear::Seeded(SEED ^ k)] {
                let ctx = format!(
                    "sector {} healthy {healthy} cut at op {k}/{total} tear {tear:?} (seed {SEED:#x})",
                    case.sector_size
                );
                let mut r = rig(case);
                let base = r.flash.ops();
                r.flash.arm(CutPlan {
                    at_op: base + k,
                    tear,
                });
                match journey(&mut r, healthy) {
                    Ok(()) => assert_eq!(k, total, "{ctx}: journey finished despite the cut"),
                    Err(Error::PowerCut { .. }) => {
                        r.flash.power_cycle();
                        recover(&mut r, healthy, &ctx);
                    }
                    Err(e) => panic!("{ctx}: unexpected error {e}"),
                }
                final_state(&mut r, healthy, &ctx);
                covered += 1;
            }
        }
    }
    covered
}

#[test]
fn update_survives_a_power_cut_at_every_flash_operation_and_confirms() {
    let covered = every_cut_point(true);
    println!("power-cut points covered (install + confirm): {covered}");
    assert!(covered > 100);
}

#[test]
fn failed_update_survives_a_power_cut_at_every_flash_operation_and_rolls_back() {
    let covered = every_cut_point(false);
    println!("power-cut points covered (install + failed health check + rollback): {covered}");
    assert!(covered > 100);
}
