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
    /// Every release the device may legitimately hold.
    known: Vec<ReleaseImage>,
    /// The release the journey installs.
    target: Release,
}

/// A factory device: release 1 confirmed in slot A, slot B empty; the
/// journey installs release 2 into B.
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
        .on_boot(
            &mut || Ok(()),
            &mut |_| {
                Err(Error::ManifestRejected {
                    reason: "unused".to_string(),
                })
            },
            &OPTS,
            0,
        )
        .unwrap();
    assert_eq!(out, BootOutcome::Running { slot: SlotId::A });
    Rig {
        flash,
        dev,
        known: vec![a.image, b.image.clone()],
        target: b,
    }
}

/// A device that already took one update (A → B confirmed): the next update
/// (release 3) overwrites slot A, the old fallback, bootable until then.
fn rig_second_update(case: &Case) -> Rig {
    let mut r = rig(case);
    journey(&mut r, true).unwrap();
    let c = release(SEED ^ 3, case.image_a.max(case.image_b) - 100, 3);
    r.known.push(c.image.clone());
    r.target = c;
    r
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

fn check_for(r: &ReleaseImage) -> impl FnMut(u64) -> Result<ReleaseImage, Error> + '_ {
    move |installed| {
        if r.security_version > installed {
            Ok(r.clone())
        } else {
            Err(Error::ManifestRejected {
                reason: format!("rollback: {} <= {installed}", r.security_version),
            })
        }
    }
}

fn install_target(rig: &mut Rig, now: u64) -> Result<(), Error> {
    let t = rig.target.image.clone();
    rig.dev
        .install(&mut check_for(&t), &rig.target.bytes[..], &OPTS, now)
        .map(|_| ())
}

/// The clean journey; stops at the first error.
fn journey(rig: &mut Rig, healthy: bool) -> Result<(), Error> {
    let t = rig.target.image.clone();
    let from = rig.dev.record()?.confirmed;
    install_target(rig, 10)?;
    rig.dev.boot_control().simulate_boot()?;
    let out = rig
        .dev
        .on_boot(&mut health(healthy), &mut check_for(&t), &OPTS, 20)?;
    if healthy {
        let expected = BootOutcome::Confirmed {
            slot: from.other(),
            security_counter: t.security_version,
        };
        assert_eq!(out, expected);
    } else {
        assert!(
            matches!(out, BootOutcome::RolledBack { reboot: true, .. }),
            "{out:?}"
        );
        assert_eq!(rig.dev.boot_control().simulate_boot()?.slot, from);
        let out = rig
            .dev
            .on_boot(&mut health(healthy), &mut check_for(&t), &OPTS, 30)?;
        assert_eq!(out, BootOutcome::Running { slot: from });
    }
    Ok(())
}

/// Invariants that must hold at every boot: the booted slot, and every slot
/// the bootloader would boot if the other failed, hold a verified image.
fn check_invariants(rig: &mut Rig, booted: SlotId, ctx: &str) {
    let known = rig.known.clone();
    let status = rig.dev.boot_control().status().unwrap();
    for id in SlotId::ALL {
        if id != booted && !status.slot(id).bootable {
            continue;
        }
        let slot = rig.dev.slot(id);
        let holds_known = known.iter().any(|r| {
            slot.size() >= r.size && hash_slot(slot, r.size, 512).unwrap() == r.image_hash
        });
        assert!(
            holds_known,
            "{ctx}: slot {id:?} (booted {booted:?}) is bootable but holds no verified image"
        );
    }
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
fn recover(rig: &mut Rig, healthy: bool, from: SlotId, ctx: &str) {
    const MAX_BOOTS: usize = 12;
    let t = rig.target.image.clone();
    let to = from.other();
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
            .on_boot(&mut health(healthy), &mut check_for(&t), &OPTS, 100)
            .unwrap();
        let record = rig.dev.record().unwrap();
        match out {
            BootOutcome::Running { slot } => {
                let done = if healthy {
                    record.confirmed == to
                } else {
                    record.last_failure.as_ref().is_some_and(|f| f.slot == to)
                };
                if done {
                    assert_eq!(slot, if healthy { to } else { from }, "{ctx}");
                    return;
                }
                // The update is still wanted: install it (again).
                install_target(rig, 100).unwrap();
            }
            BootOutcome::InstallInterrupted { image } => {
                assert_eq!(image, t, "{ctx}");
                install_target(rig, 100).unwrap();
            }
            BootOutcome::Confirmed { .. }
            | BootOutcome::RolledBack { .. }
            | BootOutcome::RebootToTrial { .. }
            | BootOutcome::RebootRequired { .. } => {}
        }
    }
    panic!("{ctx}: device did not settle within {MAX_BOOTS} boots");
}

fn final_state(rig: &mut Rig, healthy: bool, from: SlotId, old_counter: u64, ctx: &str) {
    let record = rig.dev.record().unwrap();
    let booted = rig.dev.boot_control().booted().unwrap();
    let sv = rig.target.image.security_version;
    assert!(record.pending.is_none(), "{ctx}");
    let got = (booted, record.confirmed, record.security_counter);
    if healthy {
        assert_eq!(got, (Some(from.other()), from.other(), sv), "{ctx}");
    } else {
        assert_eq!(got, (Some(from), from, old_counter), "{ctx}");
        let f = record
            .last_failure
            .unwrap_or_else(|| panic!("{ctx}: failure not recorded"));
        assert_eq!(f.slot, from.other(), "{ctx}");
    }
}

fn every_cut_point(healthy: bool, setup: fn(&Case) -> Rig) -> usize {
    let mut covered = 0;
    for case in CASES {
        let mut clean = setup(case);
        let record = clean.dev.record().unwrap();
        let (from, old_counter) = (record.confirmed, record.security_counter);
        let base = clean.flash.ops();
        journey(&mut clean, healthy).unwrap();
        let total = clean.flash.ops() - base;
        final_state(&mut clean, healthy, from, old_counter, "clean run");
        for k in 0..=total {
            for tear in [Tear::None, Tear::Half, Tear::Seeded(SEED ^ k)] {
                let ctx = format!(
                    "sector {} healthy {healthy} from {from:?} cut at op {k}/{total} tear {tear:?} (seed {SEED:#x})",
                    case.sector_size
                );
                let mut r = setup(case);
                let base = r.flash.ops();
                r.flash.arm(CutPlan {
                    at_op: base + k,
                    tear,
                });
                match journey(&mut r, healthy) {
                    Ok(()) => assert_eq!(k, total, "{ctx}: journey finished despite the cut"),
                    Err(Error::PowerCut { .. }) => {
                        r.flash.power_cycle();
                        recover(&mut r, healthy, from, &ctx);
                    }
                    Err(e) => panic!("{ctx}: unexpected error {e}"),
                }
                final_state(&mut r, healthy, from, old_counter, &ctx);
                covered += 1;
            }
        }
    }
    covered
}

#[test]
fn update_survives_a_power_cut_at_every_flash_operation_and_confirms() {
    let covered = every_cut_point(true, rig);
    println!("power-cut points covered (install + confirm): {covered}");
    assert!(covered > 100);
}

#[test]
fn failed_update_survives_a_power_cut_at_every_flash_operation_and_rolls_back() {
    let covered = every_cut_point(false, rig);
    println!("power-cut points covered (install + failed health check + rollback): {covered}");
    assert!(covered > 100);
}

#[test]
fn second_update_over_the_old_fallback_survives_a_power_cut_at_every_flash_operation() {
    let confirmed = every_cut_point(true, rig_second_update);
    let rolled_back = every_cut_point(false, rig_second_update);
    println!(
        "power-cut points covered (second update, confirm / rollback): {confirmed} / {rolled_back}"
    );
    assert!(confirmed > 100 && rolled_back > 100);
}
