//! The device registry's rules, through the library.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_manifest::UnixTime;
use meshota_provision::Error;
use meshota_provision::cert::Period;
use meshota_provision::registry::{Issued, Registry, Selector, Status, export_csv, export_json};
use meshota_provision::serial::HardwareId;

const NOW: UnixTime = UnixTime(1_795_392_000);

fn hw(s: &str) -> HardwareId {
    HardwareId::normalise(s).unwrap()
}

fn issued(id: &str, h: &str, cert: &str) -> Issued {
    Issued {
        device_id: id.into(),
        serial: hw(h).serial(),
        hardware_id: Some(hw(h)),
        hardware_class: "rpi4".into(),
        cert_serial: cert.into(),
        period: Period::days_from(NOW, 730, None),
        artifacts: None,
    }
}

fn open() -> (tempfile::TempDir, Registry) {
    let d = tempfile::tempdir().unwrap();
    let r = Registry::open(&d.path().join("registry.redb")).unwrap();
    (d, r)
}

#[test]
fn new_hardware_gets_the_requested_id_or_dev_serial() {
    let (_d, r) = open();
    let s = hw("SN1").serial();
    assert_eq!(
        r.resolve(s, Some(&hw("SN1")), None).unwrap(),
        format!("dev-{s}")
    );
    assert_eq!(
        r.resolve(s, Some(&hw("SN1")), Some("pump-1")).unwrap(),
        "pump-1"
    );
}

#[test]
fn reprovisioning_the_same_hardware_returns_the_same_device_id_and_serial() {
    let (_d, r) = open();
    r.record(&[issued("pump-1", "SN1", "01")], NOW).unwrap();
    let s = hw("sn1").serial();
    assert_eq!(r.resolve(s, Some(&hw(" SN1\n")), None).unwrap(), "pump-1");
    r.record(&[issued("pump-1", "SN1", "02")], UnixTime(NOW.0 + 5))
        .unwrap();
    let rec = r.get("pump-1").unwrap().unwrap();
    assert_eq!(rec.cert_serial, "02");
    assert_eq!(rec.serial, s.to_string());
    // The replaced certificate is revoked as superseded.
    assert_eq!(rec.revoked_certs.len(), 1);
    assert_eq!(rec.revoked_certs[0].cert_serial, "01");
    assert_eq!(
        r.revoked_certs(NOW).unwrap(),
        vec![(vec![0x01], UnixTime(NOW.0 + 5))]
    );
    // Asking for another id for this hardware is refused.
    let e = r.resolve(s, Some(&hw("SN1")), Some("pump-2")).unwrap_err();
    assert!(matches!(e, Error::DeviceIdMismatch { .. }), "{e}");
}

#[test]
fn two_hardware_ids_with_one_serial_are_a_detected_collision() {
    let (_d, r) = open();
    // A real 40-bit collision of the serial mapping.
    assert_eq!(hw("hw00053033").serial(), hw("hw0006b231").serial());
    r.record(&[issued("a", "hw00053033", "01")], NOW).unwrap();
    let e = r
        .resolve(hw("hw0006b231").serial(), Some(&hw("hw0006b231")), None)
        .unwrap_err();
    assert!(matches!(e, Error::SerialCollision { .. }), "{e}");
    // Recording it anyway is refused too, and changes nothing.
    let e = r
        .record(&[issued("b", "hw0006b231", "02")], NOW)
        .unwrap_err();
    assert!(matches!(e, Error::SerialCollision { .. }), "{e}");
    assert_eq!(r.devices().unwrap().len(), 1);
}

#[test]
fn a_device_id_belongs_to_one_serial() {
    let (_d, r) = open();
    r.record(&[issued("pump-1", "SN1", "01")], NOW).unwrap();
    let e = r
        .resolve(hw("SN2").serial(), Some(&hw("SN2")), Some("pump-1"))
        .unwrap_err();
    assert!(matches!(e, Error::DeviceIdTaken { .. }), "{e}");
}

#[test]
fn a_revoked_device_is_not_provisioned_again_and_revoking_twice_changes_nothing() {
    let (_d, r) = open();
    r.record(&[issued("pump-1", "SN1", "0a")], NOW).unwrap();
    let rec = r
        .revoke(&Selector::CertSerial("0A".into()), UnixTime(NOW.0 + 1))
        .unwrap();
    assert_eq!(rec.status, Status::Revoked { at: NOW.0 + 1 });
    let again = r
        .revoke(&Selector::Serial(hw("SN1").serial()), UnixTime(NOW.0 + 9))
        .unwrap();
    assert_eq!(again, rec);
    let e = r
        .resolve(hw("SN1").serial(), Some(&hw("SN1")), None)
        .unwrap_err();
    assert!(matches!(e, Error::DeviceRevoked(_)), "{e}");
    let e = r
        .revoke(&Selector::DeviceId("nobody".into()), NOW)
        .unwrap_err();
    assert!(matches!(e, Error::UnknownDevice(_)), "{e}");
    // Expired certificates leave the revocation list.
    let after = UnixTime(NOW.0 + 731 * 86_400);
    assert!(r.revoked_certs(after).unwrap().is_empty());
}

#[test]
fn exports_list_every_device_with_its_status() {
    let (_d, r) = open();
    r.record(&[issued("a", "SN1", "01"), issued("b", "SN2", "02")], NOW)
        .unwrap();
    r.revoke(&Selector::DeviceId("b".into()), NOW).unwrap();
    let devices = r.devices().unwrap();
    let csv = export_csv(&devices);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with(&format!(
        "a,{},sn1,rpi4,01,2026-11-23T00:00:00Z,",
        hw("SN1").serial()
    )));
    assert!(lines[1].ends_with(",active,"), "{}", lines[1]);
    assert!(
        lines[2].ends_with(",revoked,2026-11-23T00:00:00Z"),
        "{}",
        lines[2]
    );
    let json: serde_json::Value = serde_json::from_str(&export_json(&devices)).unwrap();
    assert_eq!(json[0]["status"], "active");
    assert_eq!(json[0]["revoked_at"], serde_json::Value::Null);
    assert_eq!(json[1]["status"], "revoked");
    assert_eq!(json[1]["hardware_id"], "sn2");
}

#[test]
fn crl_numbers_increase_across_reopening() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("registry.redb");
    {
        let r = Registry::open(&p).unwrap();
        assert_eq!(r.next_crl_number().unwrap(), 1);
        assert_eq!(r.next_crl_number().unwrap(), 2);
    }
    assert_eq!(Registry::open(&p).unwrap().next_crl_number().unwrap(), 3);
}
