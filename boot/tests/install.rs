//! The install pipeline end to end on file-backed slots, with real signed
//! manifests (meshota-manifest), every bootloader backend, the command health
//! check, and one test per kind of bad input: each is rejected with a typed
//! error before the inactive slot is bootable, the active slot untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use meshota_boot::control::{BootControl, GrubEnv, SimBootloader, UbootEnv};
use meshota_boot::env::Vars;
use meshota_boot::file::FileSlot;
use meshota_boot::install::{
    BootOutcome, CommandHealthCheck, Device, HealthCheck, InstallOptions, TrustedManifest,
    hash_slot,
};
use meshota_boot::lifecycle::{FailureReason, ReleaseImage};
use meshota_boot::{Error, SlotId};
use meshota_manifest::{
    ChunkingAlgorithm, ChunkingParams, Component, Expiration, Hash, ReleaseKey, ReleaseManifest,
    RolloutPolicy, RootKey, Scope, SecretKey, SignedDocument, TrustRoot, UnixTime, Verified,
};

const NOW: u64 = 1_790_000_000;
const SLOT_SIZE: u64 = 64 * 1024;
const HW: &str = "border-sensor-v2";

fn key(n: u8, name: &str) -> SecretKey {
    SecretKey::from_seed([n; 32], name).unwrap()
}

fn enforce(now: u64) -> Expiration {
    Expiration::Enforce { now: UnixTime(now) }
}

struct Trust {
    release_key: SecretKey,
    trust: Verified<TrustRoot>,
}

fn trust_with(edit: impl FnOnce(&mut TrustRoot, &SecretKey)) -> Trust {
    let roots = [key(1, "root-1"), key(2, "root-2")];
    let release_key = key(10, "release");
    let mut body = TrustRoot {
        version: 1,
        expires: None,
        root_keys: roots
            .iter()
            .map(|k| RootKey {
                name: k.name().into(),
                key: k.public().clone(),
            })
            .collect(),
        root_threshold: 2,
        release_keys: vec![ReleaseKey {
            name: "release".into(),
            key: release_key.public().clone(),
            scope: Scope::default(),
            expires: None,
        }],
        release_threshold: 1,
        revoked: vec![],
        provisioning_keys: vec![],
    };
    edit(&mut body, &release_key);
    let doc = SignedDocument::sign(body, &[&roots[0], &roots[1]]).unwrap();
    // Verified when it was first installed, a while before NOW.
    let trust = TrustRoot::verify_initial(&doc, enforce(NOW - 1000)).unwrap();
    Trust { release_key, trust }
}

/// A later trust root: `k` revoked, another release key listed instead.
fn revoke(tr: &mut TrustRoot, k: &SecretKey) {
    tr.version = 2;
    tr.release_keys.retain(|r| r.key.id() != k.id());
    let other = key(11, "release-2");
    tr.release_keys.push(ReleaseKey {
        name: "release-2".into(),
        key: other.public().clone(),
        scope: Scope::default(),
        expires: None,
    });
    tr.revoked.push(k.id());
}

fn image(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn manifest(hardware: &str, sv: u64, bytes: &[u8]) -> ReleaseManifest {
    ReleaseManifest {
        product: "border-sensor".into(),
        hardware: hardware.into(),
        channel: "stable".into(),
        version: format!("2.{sv}.0"),
        security_version: sv,
        created: UnixTime(NOW - 100),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: bytes.len() as u64,
            image_hash: Hash::of(bytes),
            chunk_index: Hash::of(b"index"),
            chunking: ChunkingParams {
                algorithm: ChunkingAlgorithm::FastCdc2020,
                min_size: 16 * 1024,
                avg_size: 64 * 1024,
                max_size: 256 * 1024,
            },
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    }
}

fn signed(t: &Trust, body: ReleaseManifest) -> SignedDocument<ReleaseManifest> {
    SignedDocument::sign(body, &[&t.release_key]).unwrap()
}

fn check<'a>(t: &'a Trust, m: &'a SignedDocument<ReleaseManifest>) -> TrustedManifest<'a> {
    TrustedManifest {
        trust: &t.trust,
        manifest: m,
        hardware: HW,
        component: "rootfs",
        expiration: enforce(NOW),
    }
}

const OPTS: InstallOptions = InstallOptions {
    trial_boots: 3,
    chunk_size: 4096,
};

type SimDev = Device<FileSlot, SimBootloader<FileSlot>, FileSlot>;

/// A file-backed device with release sv=5 confirmed in slot A and booted.
fn sim_device(dir: &Path, t: &Trust) -> (SimDev, Vec<u8>) {
    let slot = |n: &str, size| FileSlot::create(&dir.join(n), size).unwrap();
    let boot = SimBootloader::new(slot("bootrec", 8192), SlotId::A).unwrap();
    let mut dev = Device::new(
        slot("a.img", SLOT_SIZE),
        slot("b.img", SLOT_SIZE),
        boot,
        slot("install.rec", 8192),
    )
    .unwrap();
    let a = image(1, 40_000);
    let m = manifest(HW, 5, &a);
    let img = meshota_boot::install::release_image(&m, "rootfs").unwrap();
    dev.provision(SlotId::A, &img, &a[..], &OPTS).unwrap();
    dev.boot_control().simulate_boot().unwrap();
    assert_eq!(
        ok_health_on_boot(&mut dev),
        BootOutcome::Running { slot: SlotId::A }
    );
    let _ = t;
    (dev, a)
}

fn no_check(_: u64) -> Result<ReleaseImage, Error> {
    Err(Error::ManifestRejected {
        reason: "not expected".into(),
    })
}

fn ok_health_on_boot(dev: &mut SimDev) -> BootOutcome {
    dev.on_boot(&mut || Ok(()), &mut no_check, &OPTS, NOW)
        .unwrap()
}

/// The rejection left the device as it was: A active, intact, confirmed;
/// B not bootable; nothing pending; counter unchanged.
fn assert_untouched(dev: &mut SimDev, a: &[u8]) {
    let st = dev.boot_control().status().unwrap();
    assert_eq!(st.primary, SlotId::A);
    assert!(
        !st.slot(SlotId::B).bootable,
        "inactive slot became bootable"
    );
    assert_eq!(
        hash_slot(dev.slot(SlotId::A), a.len() as u64, 4096).unwrap(),
        Hash::of(a)
    );
    let r = dev.record().unwrap();
    assert_eq!(
        (r.confirmed, r.security_counter, r.pending.is_none()),
        (SlotId::A, 5, true)
    );
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
}

#[test]
fn signed_update_installs_boots_passes_health_check_and_raises_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, _) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    let done = dev.install(&mut check(&t, &m), &b[..], &OPTS, NOW).unwrap();
    assert_eq!((done.slot, done.trial_boots), (SlotId::B, 3));
    assert_eq!(
        dev.record().unwrap().security_counter,
        5,
        "counter rises only on confirm"
    );
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
    let out = dev
        .on_boot(&mut || Ok(()), &mut check(&t, &m), &OPTS, NOW)
        .unwrap();
    assert_eq!(
        out,
        BootOutcome::Confirmed {
            slot: SlotId::B,
            security_counter: 6
        }
    );
    for _ in 0..5 {
        assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
        assert_eq!(
            ok_health_on_boot(&mut dev),
            BootOutcome::Running { slot: SlotId::B }
        );
    }
}

#[test]
fn failed_health_check_rolls_back_and_records_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, a) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    dev.install(&mut check(&t, &m), &b[..], &OPTS, NOW).unwrap();
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
    let mut failing = CommandHealthCheck {
        program: "false".into(),
        args: vec![],
        timeout: Duration::from_secs(5),
    };
    let out = dev
        .on_boot(&mut failing, &mut check(&t, &m), &OPTS, NOW + 60)
        .unwrap();
    let BootOutcome::RolledBack {
        failure,
        reboot: true,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(failure.slot, SlotId::B);
    assert_eq!(failure.at, NOW + 60);
    assert!(matches!(
        failure.reason,
        FailureReason::HealthCheckFailed(_)
    ));
    assert_eq!(failure.image.as_ref().map(|i| i.security_version), Some(6));
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
    assert_eq!(
        ok_health_on_boot(&mut dev),
        BootOutcome::Running { slot: SlotId::A }
    );
    assert_untouched(&mut dev, &a);
    assert_eq!(dev.last_failure().unwrap().map(|f| f.slot), Some(SlotId::B));
    assert_eq!(dev.record().unwrap().failures, 1);
}

#[test]
fn unconfirmed_update_rolls_back_automatically_when_its_trial_boots_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, a) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    dev.install(&mut check(&t, &m), &b[..], &OPTS, NOW).unwrap();
    // The new system crashes before it can run its health check, three times.
    for _ in 0..3 {
        assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
    }
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
    let out = dev
        .on_boot(&mut || Ok(()), &mut check(&t, &m), &OPTS, NOW)
        .unwrap();
    let BootOutcome::RolledBack {
        failure,
        reboot: false,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(failure.reason, FailureReason::TrialsExhausted);
    assert_untouched(&mut dev, &a);
}

#[test]
#[allow(clippy::disallowed_methods)] // measures the timeout with a real clock
fn health_check_command_that_hangs_fails_after_its_timeout() {
    let mut hang = CommandHealthCheck {
        program: "sleep".into(),
        args: vec!["5".into()],
        timeout: Duration::from_millis(200),
    };
    let start = std::time::Instant::now();
    let err = hang.check().unwrap_err();
    assert!(err.contains("did not finish"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let mut ok = CommandHealthCheck {
        program: "true".into(),
        args: vec![],
        timeout: Duration::from_secs(5),
    };
    assert!(ok.check().is_ok());
    let mut missing = CommandHealthCheck {
        program: "/nonexistent/check".into(),
        args: vec![],
        timeout: Duration::from_secs(1),
    };
    assert!(missing.check().unwrap_err().contains("cannot start"));
}

fn expect_rejected(
    edit_trust: impl FnOnce(&mut TrustRoot, &SecretKey),
    make: impl FnOnce(&Trust, &[u8]) -> SignedDocument<ReleaseManifest>,
) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(edit_trust);
    let (mut dev, a) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = make(&t, &b);
    let err = dev
        .install(&mut check(&t, &m), &b[..], &OPTS, NOW)
        .unwrap_err();
    assert_untouched(&mut dev, &a);
    err
}

#[test]
fn image_that_does_not_match_its_manifest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, a) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    let mut tampered = b.clone();
    tampered[12_345] ^= 1;
    let err = dev
        .install(&mut check(&t, &m), &tampered[..], &OPTS, NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImageHashMismatch {
                slot: SlotId::B,
                ..
            }
        ),
        "{err}"
    );
    assert_untouched(&mut dev, &a);
    let err = dev
        .install(&mut check(&t, &m), &b[..40_000], &OPTS, NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImageLengthMismatch {
                expected: 50_000,
                actual: 40_000
            }
        ),
        "{err}"
    );
    let mut longer = b.clone();
    longer.push(0);
    let err = dev
        .install(&mut check(&t, &m), &longer[..], &OPTS, NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImageLengthMismatch {
                expected: 50_000,
                ..
            }
        ),
        "{err}"
    );
    assert_untouched(&mut dev, &a);
}

#[test]
fn manifest_for_other_hardware_is_rejected() {
    let err = expect_rejected(|_, _| {}, |t, b| signed(t, manifest("other-board", 6, b)));
    assert!(
        matches!(
            err,
            Error::Manifest(meshota_manifest::Error::WrongHardware { .. })
        ),
        "{err}"
    );
}

#[test]
fn downgrade_is_rejected() {
    for sv in [4, 5] {
        let err = expect_rejected(|_, _| {}, |t, b| signed(t, manifest(HW, sv, b)));
        assert!(
            matches!(
                err,
                Error::Manifest(meshota_manifest::Error::Rollback { installed: 5, .. })
            ),
            "{err}"
        );
    }
}

#[test]
fn unsigned_manifest_is_rejected() {
    let err = expect_rejected(
        |_, _| {},
        |t, b| {
            let mut m = signed(t, manifest(HW, 6, b));
            m.signatures_mut().clear();
            m
        },
    );
    assert!(matches!(err, Error::Manifest(_)), "{err}");
}

#[test]
fn manifest_signed_by_an_unknown_key_is_rejected() {
    let err = expect_rejected(
        |_, _| {},
        |_, b| SignedDocument::sign(manifest(HW, 6, b), &[&key(99, "attacker")]).unwrap(),
    );
    assert!(matches!(err, Error::Manifest(_)), "{err}");
}

#[test]
fn manifest_signed_by_a_revoked_key_is_rejected() {
    let err = expect_rejected(revoke, |t, b| signed(t, manifest(HW, 6, b)));
    assert!(
        matches!(
            err,
            Error::Manifest(meshota_manifest::Error::RevokedKey { .. })
        ),
        "{err}"
    );
}

#[test]
fn expired_trust_root_is_rejected() {
    let err = expect_rejected(
        |tr, _| tr.expires = Some(UnixTime(NOW - 10)),
        |t, b| signed(t, manifest(HW, 6, b)),
    );
    assert!(
        matches!(
            err,
            Error::Manifest(meshota_manifest::Error::ExpiredTrustRoot { .. })
        ),
        "{err}"
    );
}

#[test]
fn image_larger_than_the_slot_is_rejected() {
    let big = image(3, SLOT_SIZE as usize + 1);
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, a) = sim_device(dir.path(), &t);
    let m = signed(&t, manifest(HW, 6, &big));
    let err = dev
        .install(&mut check(&t, &m), &big[..], &OPTS, NOW)
        .unwrap_err();
    assert!(
        matches!(err, Error::SlotTooSmall { slot: SlotId::B, image, slot_size: SLOT_SIZE } if image == SLOT_SIZE + 1),
        "{err}"
    );
    assert_untouched(&mut dev, &a);
}

#[test]
fn manifest_that_stops_verifying_before_the_switch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, a) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    // First verification passes; by the time of the switch the key was revoked.
    let revoked = trust_with(revoke);
    let mut calls = 0;
    let mut flaky = |installed: u64| {
        calls += 1;
        let trust = if calls == 1 { &t } else { &revoked };
        meshota_boot::install::ManifestCheck::reverify(&mut check(trust, &m), installed)
    };
    let err = dev.install(&mut flaky, &b[..], &OPTS, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Manifest(meshota_manifest::Error::RevokedKey { .. })
        ),
        "{err}"
    );
    assert_untouched(&mut dev, &a);

    // A manifest swapped for another image between the checks is refused too.
    let other = signed(&t, manifest(HW, 6, &image(9, 50_000)));
    let mut calls = 0;
    let mut swapped = |installed: u64| {
        calls += 1;
        let doc = if calls == 1 { &m } else { &other };
        meshota_boot::install::ManifestCheck::reverify(&mut check(&t, doc), installed)
    };
    let err = dev.install(&mut swapped, &b[..], &OPTS, NOW).unwrap_err();
    assert!(matches!(err, Error::ManifestChanged { .. }), "{err}");
    assert_untouched(&mut dev, &a);
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The same update flow with a real bootloader environment: provisioning,
/// install, (simulated) boot script, health check, confirm; then a failed
/// update that rolls back.
fn update_with<B: BootControl>(dir: &Path, boot: B) {
    let t = trust_with(|_, _| {});
    let slot = |n: &str, size| FileSlot::create(&dir.join(n), size).unwrap();
    let mut dev = Device::new(
        slot("a.img", SLOT_SIZE),
        slot("b.img", SLOT_SIZE),
        boot,
        slot("install.rec", 8192),
    )
    .unwrap();
    let a = image(1, 40_000);
    let img = meshota_boot::install::release_image(&manifest(HW, 5, &a), "rootfs").unwrap();
    dev.provision(SlotId::A, &img, &a[..], &OPTS).unwrap();
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
    assert_eq!(
        dev.on_boot(&mut || Ok(()), &mut no_check, &OPTS, NOW)
            .unwrap(),
        BootOutcome::Running { slot: SlotId::A }
    );

    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    dev.install(&mut check(&t, &m), &b[..], &OPTS, NOW).unwrap();
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
    let out = dev
        .on_boot(&mut || Ok(()), &mut check(&t, &m), &OPTS, NOW)
        .unwrap();
    assert_eq!(
        out,
        BootOutcome::Confirmed {
            slot: SlotId::B,
            security_counter: 6
        }
    );
    for _ in 0..4 {
        assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
        assert_eq!(
            dev.on_boot(&mut || Ok(()), &mut no_check, &OPTS, NOW)
                .unwrap(),
            BootOutcome::Running { slot: SlotId::B }
        );
    }

    let c = image(3, 30_000);
    let m = signed(&t, manifest(HW, 7, &c));
    dev.install(&mut check(&t, &m), &c[..], &OPTS, NOW).unwrap();
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
    let out = dev
        .on_boot(
            &mut || Err("no network".to_string()),
            &mut check(&t, &m),
            &OPTS,
            NOW,
        )
        .unwrap();
    assert!(
        matches!(out, BootOutcome::RolledBack { reboot: true, .. }),
        "{out:?}"
    );
    for _ in 0..4 {
        assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
        assert_eq!(
            dev.on_boot(&mut || Ok(()), &mut no_check, &OPTS, NOW)
                .unwrap(),
            BootOutcome::Running { slot: SlotId::B }
        );
    }
    assert_eq!(dev.record().unwrap().security_counter, 6);
}

#[test]
fn update_confirms_and_rolls_back_with_a_uboot_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fw_env.config");
    std::fs::write(
        &cfg,
        format!(
            "{} 0x0 0x2000\n{} 0x0 0x2000\n",
            dir.path().join("env0").display(),
            dir.path().join("env1").display()
        ),
    )
    .unwrap();
    let ub = UbootEnv::open_config(&cfg).unwrap();
    ub.initialize(&vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ]))
    .unwrap();
    update_with(dir.path(), ub);
}

#[test]
fn update_confirms_and_rolls_back_with_a_grub_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let g = GrubEnv::new(&path);
    g.write_vars(&vars(&[
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("A_TRY", "0"),
        ("B_OK", "0"),
        ("B_TRY", "0"),
    ]))
    .unwrap();
    update_with(dir.path(), g);
}

#[test]
fn update_confirms_and_rolls_back_with_the_simulated_bootloader_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = FileSlot::create(&dir.path().join("bootrec"), 8192).unwrap();
    update_with(dir.path(), SimBootloader::new(rec, SlotId::A).unwrap());
}

#[test]
fn install_is_refused_while_an_update_is_on_trial() {
    let dir = tempfile::tempdir().unwrap();
    let t = trust_with(|_, _| {});
    let (mut dev, _) = sim_device(dir.path(), &t);
    let b = image(2, 50_000);
    let m = signed(&t, manifest(HW, 6, &b));
    dev.install(&mut check(&t, &m), &b[..], &OPTS, NOW).unwrap();
    let err = dev
        .install(&mut check(&t, &m), &b[..], &OPTS, NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongState {
                action: "install",
                ..
            }
        ),
        "{err}"
    );
    let out = dev.mark_bad_pending(NOW).unwrap();
    assert!(
        matches!(out, BootOutcome::RolledBack { ref failure, reboot: false } if failure.reason == FailureReason::MarkedBad),
        "{out:?}"
    );
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::A);
}
