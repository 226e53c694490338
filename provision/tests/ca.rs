//! The provisioning CA end to end, through the library: root →
//! intermediate → device, verification and every rejection the issue asks
//! a test for.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use meshota_manifest::{Protection, SecretKey, UnixTime};
use meshota_provision::ca::{AUDIT_FILE, Ca, NewKey};
use meshota_provision::cert::{DeviceSubject, Period};
use meshota_provision::csr::{DeviceKeys, build_csr, csr_to_pem, verify_csr};
use meshota_provision::registry::{Issued, Registry, Selector};
use meshota_provision::serial::HardwareId;
use meshota_provision::verify::verify_device;
use meshota_provision::{Error, cert};
use x509_cert::Certificate;

const DAY: u64 = 86_400;
/// 2026-11-23T00:00:00Z.
const NOW: UnixTime = UnixTime(1_795_392_000);

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32], "ca").unwrap()
}

fn new_ca(dir: &Path, root_seed: u8, name: &str, now: UnixTime) -> (Ca, Ca) {
    let rk = key(root_seed);
    let rfile = rk.secret_key_file(Protection::None).unwrap();
    let root = Ca::create_root(
        &dir.join("root"),
        &format!("{name} Root"),
        &NewKey {
            key: &rk,
            file: &rfile,
        },
        cert::ROOT_VALIDITY_DAYS,
        1,
        now,
        "tester",
    )
    .unwrap();
    let ik = key(root_seed + 1);
    let ifile = ik.secret_key_file(Protection::None).unwrap();
    let inter = root
        .create_intermediate(
            &dir.join("inter"),
            &format!("{name} Factory"),
            &NewKey {
                key: &ik,
                file: &ifile,
            },
            cert::INTERMEDIATE_VALIDITY_DAYS,
            0,
            now,
        )
        .unwrap();
    (root, inter)
}

fn subject(id: &str, hw: &str) -> DeviceSubject {
    DeviceSubject {
        device_id: id.into(),
        serial: HardwareId::normalise(hw).unwrap().serial(),
        hardware: "rpi4".into(),
    }
}

fn device(inter: &Ca, id: &str, now: UnixTime) -> Certificate {
    let keys = DeviceKeys::generate(id).unwrap();
    inter
        .issue_device(
            &subject(id, &format!("hw-{id}")),
            keys.identity.public(),
            cert::DEVICE_VALIDITY_DAYS,
            now,
        )
        .unwrap()
}

#[test]
fn a_device_certificate_verifies_through_its_intermediate_to_the_root() {
    let d = tempfile::tempdir().unwrap();
    let (root, inter) = new_ca(d.path(), 10, "Acme", NOW);
    let keys = DeviceKeys::generate("pump-7").unwrap();
    let s = subject("pump-7", "10000000abcdef01");
    let c = inter
        .issue_device(&s, keys.identity.public(), cert::DEVICE_VALIDITY_DAYS, NOW)
        .unwrap();
    let v = verify_device(
        root.certificate(),
        &[inter.certificate().clone()],
        &c,
        NOW,
        None,
    )
    .unwrap();
    assert_eq!(v.subject, s);
    assert_eq!(&v.public_key, keys.identity.public());
    assert_eq!(v.chain, ["pump-7", "Acme Factory", "Acme Root"]);
    assert_eq!(v.period.not_after.0 - v.period.not_before.0, 730 * DAY);
    // The default validities of the CAs.
    assert_eq!(root.period().not_after.0 - NOW.0, 3652 * DAY);
    assert_eq!(inter.period().not_after.0 - NOW.0, 1826 * DAY);
}

#[test]
fn a_certificate_from_another_ca_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let (root, inter) = new_ca(d.path(), 10, "Acme", NOW);
    // Another CA with other names: the chain does not link.
    let (_, other_inter) = new_ca(&d.path().join("o"), 20, "Other", NOW);
    let foreign = device(&other_inter, "d1", NOW);
    let e = verify_device(
        root.certificate(),
        &[inter.certificate().clone()],
        &foreign,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotIssuedBy { .. }), "{e}");
    // Another CA with the same names: the names link, the signature does not.
    let (_, twin_inter) = new_ca(&d.path().join("t"), 30, "Acme", NOW);
    let forged = device(&twin_inter, "d1", NOW);
    let e = verify_device(
        root.certificate(),
        &[inter.certificate().clone()],
        &forged,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::NotIssuedBy { .. } | Error::BadSignature { .. }),
        "{e}"
    );
    // ... and with the twin's intermediate offered, its signature by our root fails.
    let e = verify_device(
        root.certificate(),
        &[twin_inter.certificate().clone()],
        &forged,
        NOW,
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::NotIssuedBy { .. } | Error::BadSignature { .. }),
        "{e}"
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected_at_the_time_given() {
    let d = tempfile::tempdir().unwrap();
    let (root, inter) = new_ca(d.path(), 10, "Acme", NOW);
    let c = device(&inter, "d1", NOW);
    let chain = [inter.certificate().clone()];
    let e = verify_device(root.certificate(), &chain, &c, UnixTime(NOW.0 - 1), None).unwrap_err();
    assert!(matches!(e, Error::NotYetValid { .. }), "{e}");
    let after = UnixTime(NOW.0 + 730 * DAY + 1);
    let e = verify_device(root.certificate(), &chain, &c, after, None).unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
    assert!(e.to_string().contains("d1"), "{e}");
    // The last second of validity is still valid.
    verify_device(
        root.certificate(),
        &chain,
        &c,
        UnixTime(NOW.0 + 730 * DAY),
        None,
    )
    .unwrap();
}

#[test]
fn a_ca_refuses_to_sign_outside_its_own_validity_and_clamps_what_it_issues() {
    let d = tempfile::tempdir().unwrap();
    let (_, inter) = new_ca(d.path(), 10, "Acme", NOW);
    let end = inter.period().not_after;
    let keys = DeviceKeys::generate("d1").unwrap();
    let s = subject("d1", "hw1");
    let e = inter
        .issue_device(&s, keys.identity.public(), 730, UnixTime(end.0 + 1))
        .unwrap_err();
    assert!(matches!(e, Error::CaOutOfValidity { .. }), "{e}");
    // A year before the CA expires, a two-year certificate ends with the CA.
    let late = UnixTime(end.0 - 365 * DAY);
    let c = inter
        .issue_device(&s, keys.identity.public(), 730, late)
        .unwrap();
    assert_eq!(Period::of(&c).not_after, end);
}

#[test]
fn a_revoked_device_is_rejected_and_others_still_verify() {
    let d = tempfile::tempdir().unwrap();
    let (root, inter) = new_ca(d.path(), 10, "Acme", NOW);
    let reg = Registry::open(&d.path().join("reg.redb")).unwrap();
    let mut certs = Vec::new();
    for id in ["d1", "d2"] {
        let c = device(&inter, id, NOW);
        reg.record(
            &[Issued {
                device_id: id.into(),
                serial: HardwareId::normalise(&format!("hw-{id}")).unwrap().serial(),
                hardware_id: Some(HardwareId::normalise(&format!("hw-{id}")).unwrap()),
                hardware_class: "rpi4".into(),
                cert_serial: cert::serial_hex(&c),
                period: Period::of(&c),
                artifacts: None,
            }],
            NOW,
        )
        .unwrap();
        certs.push(c);
    }
    reg.revoke(&Selector::DeviceId("d1".into()), UnixTime(NOW.0 + 10))
        .unwrap();
    let later = UnixTime(NOW.0 + 20);
    let n = reg.next_crl_number().unwrap();
    let crl = inter
        .issue_crl(&reg.revoked_certs(later).unwrap(), n, later, 30)
        .unwrap();
    let chain = [inter.certificate().clone()];
    let e = verify_device(root.certificate(), &chain, &certs[0], later, Some(&crl)).unwrap_err();
    assert!(
        matches!(e, Error::Revoked { ref device_id, .. } if device_id == "d1"),
        "{e}"
    );
    verify_device(root.certificate(), &chain, &certs[1], later, Some(&crl)).unwrap();
    // A list past its nextUpdate is refused rather than trusted.
    let stale = UnixTime(later.0 + 31 * DAY);
    let e = verify_device(root.certificate(), &chain, &certs[1], stale, Some(&crl)).unwrap_err();
    assert!(matches!(e, Error::StaleCrl { .. }), "{e}");
    // A list signed by another CA is refused.
    let (_, other) = new_ca(&d.path().join("o"), 40, "Acme", NOW);
    let forged = other.issue_crl(&[], 1, later, 30).unwrap();
    let e = verify_device(root.certificate(), &chain, &certs[0], later, Some(&forged)).unwrap_err();
    assert!(matches!(e, Error::BadSignature { .. }), "{e}");
}

#[test]
fn a_csr_is_accepted_only_when_signed_by_the_key_it_carries() {
    let keys = DeviceKeys::generate("d1").unwrap();
    let s = subject("d1", "hw1");
    let csr = build_csr(&s, &keys.identity).unwrap();
    let pem = csr_to_pem(&csr).unwrap();
    let v = verify_csr(pem.as_bytes()).unwrap();
    assert_eq!(v.subject, s);
    assert_eq!(&v.public_key, keys.identity.public());

    // Swap in another device's public key: the signature no longer matches.
    let other = DeviceKeys::generate("d2").unwrap();
    let other_csr = build_csr(&s, &other.identity).unwrap();
    let mut forged = csr.clone();
    forged.info.public_key = other_csr.info.public_key.clone();
    let e = verify_csr(csr_to_pem(&forged).unwrap().as_bytes()).unwrap_err();
    assert!(matches!(e, Error::BadSignature { .. }), "{e}");
    assert!(
        e.to_string().contains("does not hold the private key"),
        "{e}"
    );
}

#[test]
fn every_signing_operation_is_in_the_audit_log() {
    let d = tempfile::tempdir().unwrap();
    let (_, inter) = new_ca(d.path(), 10, "Acme", NOW);
    let c = device(&inter, "d1", NOW);
    inter.issue_crl(&[], 1, NOW, 30).unwrap();
    let root_log = std::fs::read_to_string(d.path().join("root").join(AUDIT_FILE)).unwrap();
    let inter_log = std::fs::read_to_string(d.path().join("inter").join(AUDIT_FILE)).unwrap();
    let actions = |log: &str| -> Vec<String> {
        log.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(actions(&root_log), ["create-root", "issue-intermediate"]);
    assert_eq!(actions(&inter_log), ["issue-device", "issue-crl"]);
    let entry: serde_json::Value = serde_json::from_str(inter_log.lines().next().unwrap()).unwrap();
    assert_eq!(entry["serial"], cert::serial_hex(&c));
    assert_eq!(entry["operator"], "tester");
    assert_eq!(entry["time"], "2026-11-23T00:00:00Z");
}

#[test]
fn a_ca_directory_with_a_sealed_key_opens_only_with_its_passphrase() {
    let d = tempfile::tempdir().unwrap();
    let rk = key(50);
    let file = rk
        .secret_key_file(Protection::Passphrase {
            passphrase: "correct horse",
            kdf: meshota_manifest::KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            salt: [1; 16],
            nonce: [2; 24],
        })
        .unwrap();
    let dir = d.path().join("root");
    Ca::create_root(
        &dir,
        "R",
        &NewKey {
            key: &rk,
            file: &file,
        },
        10,
        1,
        NOW,
        "t",
    )
    .unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("ca.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let e = Ca::open(&dir, "t", |_| Some("wrong".to_owned().into())).unwrap_err();
    assert!(matches!(e, Error::Key { .. }), "{e}");
    Ca::open(&dir, "t", |_| Some("correct horse".to_owned().into())).unwrap();
    // A second CA is not written over the first.
    let e = Ca::create_root(
        &dir,
        "R",
        &NewKey {
            key: &rk,
            file: &file,
        },
        10,
        1,
        NOW,
        "t",
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn a_crl_names_the_key_that_signed_it_not_the_issuers_issuer() {
    // RFC 5280 §5.2.1. x509-cert 0.3's CrlBuilder copies the intermediate's
    // own AKI (the root's key id); Python's cryptography caught it.
    use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
    let d = tempfile::tempdir().unwrap();
    let (root, inter) = new_ca(d.path(), 10, "Acme", NOW);
    let crl = inter.issue_crl(&[], 1, NOW, 30).unwrap();
    let aki = crl
        .tbs_cert_list
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER)
        .map(|e| {
            <AuthorityKeyIdentifier as der::Decode>::from_der(e.extn_value.as_bytes()).unwrap()
        })
        .unwrap()
        .key_identifier
        .unwrap();
    let ski = |c: &Ca| {
        c.certificate()
            .tbs_certificate()
            .get_extension::<SubjectKeyIdentifier>()
            .unwrap()
            .unwrap()
            .1
            .0
    };
    assert_eq!(aki, ski(&inter));
    assert_ne!(aki, ski(&root));
}
