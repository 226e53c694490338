//! The image server's check of a device-signed fetch, against a real
//! registry: who may fetch, with which key, and only once.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_manifest::{Protection, SecretKey, UnixTime};
use meshota_provision::Error;
use meshota_provision::ca::{Ca, NewKey};
use meshota_provision::cert::{self, DeviceSubject, Period, to_pem};
use meshota_provision::fetch_auth::{FetchAuth, ReplayGuard, verify_fetch};
use meshota_provision::registry::{DeviceArtifacts, Issued, Registry, Selector};
use meshota_provision::serial::HardwareId;

const NOW: UnixTime = UnixTime(1_795_392_000);
const PATH: &str = "/v1/provision/image/pump-1";

/// A registry with pump-1 (identity key seed 50) issued by a fresh CA.
fn registry(dir: &std::path::Path) -> (Registry, SecretKey) {
    let rk = SecretKey::from_seed([1; 32], "ca").unwrap();
    let rfile = rk.secret_key_file(Protection::None).unwrap();
    let root = Ca::create_root(
        &dir.join("root"),
        "Root",
        &NewKey {
            key: &rk,
            file: &rfile,
        },
        cert::ROOT_VALIDITY_DAYS,
        1,
        NOW,
        "tester",
    )
    .unwrap();
    let ik = SecretKey::from_seed([2; 32], "ca").unwrap();
    let ifile = ik.secret_key_file(Protection::None).unwrap();
    let inter = root
        .create_intermediate(
            &dir.join("inter"),
            "Factory",
            &NewKey {
                key: &ik,
                file: &ifile,
            },
            cert::INTERMEDIATE_VALIDITY_DAYS,
            0,
            NOW,
        )
        .unwrap();
    let device = SecretKey::from_seed([50; 32], "pump-1").unwrap();
    let hw = HardwareId::normalise("hw-pump-1").unwrap();
    let subject = DeviceSubject {
        device_id: "pump-1".into(),
        serial: hw.serial(),
        hardware: "rpi4".into(),
    };
    let c = inter
        .issue_device(&subject, device.public(), cert::DEVICE_VALIDITY_DAYS, NOW)
        .unwrap();
    let reg = Registry::open(&dir.join("registry.redb")).unwrap();
    reg.record(
        &[Issued {
            device_id: "pump-1".into(),
            serial: hw.serial(),
            hardware_id: Some(hw),
            hardware_class: "rpi4".into(),
            cert_serial: cert::serial_hex(&c),
            period: Period::of(&c),
            artifacts: Some(DeviceArtifacts {
                cert_pem: to_pem(&c).unwrap(),
                kem_public: None,
            }),
        }],
        NOW,
    )
    .unwrap();
    (reg, device)
}

fn signed(key: &SecretKey, device: &str, nonce: u8) -> FetchAuth {
    FetchAuth::sign(key, "GET", PATH, device, NOW, [nonce; 16]).unwrap()
}

#[test]
fn a_fetch_signed_by_the_devices_certificate_key_is_accepted_once() {
    let d = tempfile::tempdir().unwrap();
    let (reg, key) = registry(d.path());
    let mut g = ReplayGuard::default();
    let a = signed(&key, "pump-1", 1);
    assert_eq!(
        verify_fetch(&reg, &a, "GET", PATH, NOW, &mut g)
            .unwrap()
            .device_id,
        "pump-1"
    );
    let e = verify_fetch(&reg, &a, "GET", PATH, NOW, &mut g).unwrap_err();
    assert!(e.to_string().contains("replayed"), "{e}");
}

#[test]
fn a_fetch_signed_by_another_key_or_for_another_path_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (reg, _) = registry(d.path());
    let mut g = ReplayGuard::default();
    let stranger = SecretKey::from_seed([51; 32], "pump-1").unwrap();
    let e = verify_fetch(
        &reg,
        &signed(&stranger, "pump-1", 2),
        "GET",
        PATH,
        NOW,
        &mut g,
    )
    .unwrap_err();
    assert!(matches!(e, Error::FetchUnauthorized { .. }), "{e}");
    let (_, key) = registry(&d.path().join("again"));
    let e = verify_fetch(
        &reg,
        &signed(&key, "pump-1", 3),
        "GET",
        "/v1/provision/image/x",
        NOW,
        &mut g,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn unknown_and_revoked_devices_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (reg, key) = registry(d.path());
    let mut g = ReplayGuard::default();
    let e = verify_fetch(&reg, &signed(&key, "pump-9", 4), "GET", PATH, NOW, &mut g).unwrap_err();
    assert!(e.to_string().contains("not in the registry"), "{e}");
    reg.revoke(&Selector::DeviceId("pump-1".into()), NOW)
        .unwrap();
    let e = verify_fetch(&reg, &signed(&key, "pump-1", 5), "GET", PATH, NOW, &mut g).unwrap_err();
    assert!(matches!(e, Error::DeviceRevoked(_)), "{e}");
}
