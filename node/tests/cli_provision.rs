//! `meshota provision …` through the binary: the CA, device keys and CSRs,
//! offline verification, revocation, batches and the registry, with Python
//! `cryptography` (>= 50) as the independent verifier of every certificate,
//! CSR, CRL and ML-KEM key meshota writes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{ok, run, stderr, workspace_root};

/// The Python with `cryptography` >= 50: `MESHOTA_PYTHON`, else the
/// project's `.venv` made by the README's test command.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHOTA_PYTHON") {
        return p.into();
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with `cryptography` found: run the README's test command \
         (scripts/test.sh), which creates .venv, or set MESHOTA_PYTHON"
    );
    venv
}

fn py(dir: &Path, args: &[&str]) -> Output {
    Command::new(python())
        .arg(workspace_root().join("tests/python/verify_provision.py"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn py_ok(dir: &Path, args: &[&str]) -> String {
    let o = py(dir, args);
    assert!(
        o.status.success(),
        "python {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must be rejected (exit 1); returns standard error.
fn rejected(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    stderr(&o)
}

/// Root and intermediate CAs in `dir/root` and `dir/factory`.
fn make_cas(dir: &Path, name: &str) {
    ok(
        dir,
        &[
            "provision",
            "ca",
            "root",
            "--name",
            &format!("{name} Root"),
            "--out",
            "root",
        ],
    );
    ok(
        dir,
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "root",
            "--name",
            &format!("{name} Factory"),
            "--out",
            "factory",
        ],
    );
}

#[test]
fn python_cryptography_verifies_the_chain_csr_crl_and_kem_keys_meshota_writes() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    make_cas(d, "Acme");
    ok(
        d,
        &[
            "provision",
            "keygen",
            "--device-id",
            "pump-7",
            "--hardware",
            "rpi4",
            "--hwid",
            "10000000abcdef01",
            "--out",
            "dev",
        ],
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("dev/identity.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let out = ok(
        d,
        &[
            "provision",
            "sign",
            "--ca",
            "factory",
            "--csr",
            "dev/device.csr",
            "--out",
            "dev/device.crt",
        ],
    );
    assert!(out.contains("pump-7 (serial e7bd9ee47f)"), "{out}");
    let out = ok(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "dev/device.crt",
        ],
    );
    assert!(
        out.starts_with("valid: device pump-7 (serial e7bd9ee47f)"),
        "{out}"
    );

    // The independent check: path validation, every extension, the CSR
    // signature and the ML-KEM key pair.
    let out = py_ok(
        d,
        &[
            "--root",
            "root/ca.crt",
            "--device",
            "dev/device.crt",
            "--device-id",
            "pump-7",
            "--csr",
            "dev/device.csr",
            "--kem-key",
            "dev/kem.key",
            "--kem-pub",
            "dev/kem.pub",
        ],
    );
    assert!(
        out.contains("OK chain: pump-7 (serial e7bd9ee47f, rpi4)"),
        "{out}"
    );
    assert!(out.contains("OK csr") && out.contains("OK kem"), "{out}");

    // A CRL before revocation: Python reads it and finds the device absent.
    ok(d, &["provision", "crl", "--ca", "factory"]);
    py_ok(
        d,
        &[
            "--root",
            "root/ca.crt",
            "--device",
            "dev/device.crt",
            "--crl",
            "factory/crl.pem",
        ],
    );
    ok(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "dev/device.crt",
            "--crl",
            "factory/crl.pem",
        ],
    );

    // Revoked: both verifiers see it on the list, meshota rejects the device.
    ok(
        d,
        &[
            "provision",
            "revoke",
            "--ca",
            "factory",
            "--serial",
            "e7bd9ee47f",
        ],
    );
    py_ok(
        d,
        &[
            "--root",
            "root/ca.crt",
            "--device",
            "dev/device.crt",
            "--crl",
            "factory/crl.pem",
            "--expect-revoked",
        ],
    );
    let err = rejected(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "dev/device.crt",
            "--crl",
            "factory/crl.pem",
        ],
    );
    assert!(
        err.contains("device pump-7") && err.contains("was revoked"),
        "{err}"
    );
    // A revoked device is not provisioned again.
    let err = rejected(
        d,
        &[
            "provision",
            "sign",
            "--ca",
            "factory",
            "--csr",
            "dev/device.csr",
            "--out",
            "dev/again.crt",
        ],
    );
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn python_rejects_what_meshota_rejects_a_certificate_from_another_ca_and_an_expired_one() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    make_cas(d, "Acme");
    std::fs::create_dir(d.join("other")).unwrap();
    make_cas(&d.join("other"), "Acme");
    let keygen = |dir: &Path| {
        ok(
            dir,
            &[
                "provision",
                "keygen",
                "--device-id",
                "d1",
                "--hardware",
                "rpi4",
                "--hwid",
                "hw1",
                "--out",
                "dev",
            ],
        );
        ok(
            dir,
            &[
                "provision",
                "sign",
                "--ca",
                "factory",
                "--csr",
                "dev/device.csr",
                "--out",
                "dev/device.crt",
            ],
        );
    };
    keygen(d);
    keygen(&d.join("other"));
    // Same CA names, other keys: both verifiers refuse the foreign device.
    let err = rejected(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "other/dev/device.crt",
        ],
    );
    assert!(err.contains("rejected"), "{err}");
    let o = py(
        d,
        &["--root", "root/ca.crt", "--device", "other/dev/device.crt"],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Two years and a day from now the device certificate has expired.
    let err = rejected(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "dev/device.crt",
            "--at",
            "+731d",
        ],
    );
    assert!(err.contains("expired at"), "{err}");
    let at = ok(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "dev/device.crt",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&at).unwrap();
    let not_after = v["not_after"].as_str().unwrap();
    // Python agrees at one second after notAfter ...
    let after = bump_rfc3339(not_after);
    let o = py(
        d,
        &[
            "--root",
            "root/ca.crt",
            "--device",
            "dev/device.crt",
            "--at",
            &after,
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // ... and before notBefore.
    let err = rejected(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "root/ca.crt",
            "dev/device.crt",
            "--at",
            "2020-01-01",
        ],
    );
    assert!(err.contains("is not valid before"), "{err}");
    let o = py(
        d,
        &[
            "--root",
            "root/ca.crt",
            "--device",
            "dev/device.crt",
            "--at",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `YYYY-MM-DDTHH:MM:SSZ` one year later (well past notAfter).
fn bump_rfc3339(s: &str) -> String {
    let date = &s[..10];
    let y: i32 = date[..4].parse().unwrap();
    format!("{}{}", y + 1, &s[4..])
}

#[test]
fn sign_refuses_a_csr_whose_signature_does_not_match_its_key() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    make_cas(d, "Acme");
    ok(
        d,
        &[
            "provision",
            "keygen",
            "--device-id",
            "d1",
            "--hardware",
            "rpi4",
            "--hwid",
            "hw1",
            "--out",
            "dev",
        ],
    );
    // Flip one byte inside the base64 of the signature (near the end of the PEM).
    let pem = std::fs::read_to_string(d.join("dev/device.csr")).unwrap();
    let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
    let n = lines.len();
    let line = &mut lines[n - 3];
    let c = line.remove(10);
    line.insert(10, if c == 'A' { 'B' } else { 'A' });
    std::fs::write(d.join("bad.csr"), lines.join("\n") + "\n").unwrap();
    let err = rejected(
        d,
        &[
            "provision",
            "sign",
            "--ca",
            "factory",
            "--csr",
            "bad.csr",
            "--out",
            "x.crt",
        ],
    );
    assert!(
        err.contains("bad.csr") && err.contains("signature does not verify"),
        "{err}"
    );
    assert!(!d.join("x.crt").exists());
    // The same hardware id must map to the CSR's serial.
    let err = rejected(
        d,
        &[
            "provision",
            "sign",
            "--ca",
            "factory",
            "--csr",
            "dev/device.csr",
            "--out",
            "x.crt",
            "--hwid",
            "hw2",
        ],
    );
    assert!(err.contains("maps to serial"), "{err}");
}

#[test]
fn batch_provisions_a_csv_reports_failures_and_reprovisioning_keeps_ids() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    make_cas(d, "Acme");
    let mut csv = String::from("hardware_id,hardware_class,device_id\n");
    for i in 0..20 {
        csv.push_str(&format!("SN{i:04},rpi4,\n"));
    }
    csv.push_str("SN0003,rpi4,\n"); // twice in the batch
    csv.push_str("bad id,rpi4,\n"); // a space
    csv.push_str("SN9999,rpi4,pump-1\n"); // an explicit device id
    // A real 40-bit collision of the serial mapping.
    csv.push_str("hw00053033,rpi4,\nhw0006b231,rpi4,\n");
    std::fs::write(d.join("devices.csv"), &csv).unwrap();
    let o = run(
        d,
        &[
            "provision",
            "batch",
            "--ca",
            "factory",
            "--devices",
            "devices.csv",
            "--out",
            "out",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["devices"], 25);
    assert_eq!(stats["succeeded"], 22);
    let reasons: Vec<String> = stats["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["line"], f["reason"]))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].starts_with("22 ") && reasons[0].contains("appears twice"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("23 ") && reasons[1].contains("hardware id"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("26 ") && reasons[2].contains("serial collision"),
        "{reasons:?}"
    );
    assert!(stats["devices_per_second"].as_f64().unwrap() > 0.0);
    assert!(stats["p99_ms"].as_f64().unwrap() >= stats["p50_ms"].as_f64().unwrap());

    // Every device verifies; Python checks one of them and its keys.
    let serial = "c566d0ae41";
    let dev = format!("out/dev-{serial}/device.crt");
    ok(d, &["provision", "verify", "--root", "out/root.crt", &dev]);
    py_ok(
        d,
        &[
            "--root",
            "out/root.crt",
            "--device",
            "out/pump-1/device.crt",
            "--device-id",
            "pump-1",
            "--kem-key",
            "out/pump-1/kem.key",
            "--kem-pub",
            "out/pump-1/kem.pub",
        ],
    );

    // The registry, as CSV and JSON.
    let csv_out = ok(
        d,
        &[
            "provision",
            "registry",
            "export",
            "--ca",
            "factory",
            "--format",
            "csv",
        ],
    );
    assert_eq!(csv_out.lines().count(), 23, "{csv_out}");
    assert!(csv_out.starts_with("device_id,serial,hardware_id,hardware_class,cert_serial,"));
    assert!(
        csv_out.contains(&format!("dev-{serial},{serial},hw00053033,rpi4,")),
        "{csv_out}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "provision",
            "registry",
            "export",
            "--ca",
            "factory",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let pump = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device_id"] == "pump-1")
        .unwrap()
        .clone();
    assert_eq!(pump["status"], "active");
    assert_eq!(pump["hardware_id"], "sn9999");

    // Re-provisioning the same hardware (no device id given) keeps its id
    // and serial, issues a new certificate, and supersedes the old one.
    std::fs::write(
        d.join("again.csv"),
        "hardware_id,hardware_class\nSN9999,rpi4\n",
    )
    .unwrap();
    let old_cert = std::fs::read(d.join("out/pump-1/device.crt")).unwrap();
    ok(
        d,
        &[
            "provision",
            "batch",
            "--ca",
            "factory",
            "--devices",
            "again.csv",
            "--out",
            "out",
        ],
    );
    let new_cert = std::fs::read(d.join("out/pump-1/device.crt")).unwrap();
    assert_ne!(old_cert, new_cert);
    let json: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "provision",
            "registry",
            "export",
            "--ca",
            "factory",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let again = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hardware_id"] == "sn9999")
        .unwrap();
    assert_eq!(again["device_id"], "pump-1");
    assert_eq!(again["serial"], pump["serial"]);
    assert_ne!(again["cert_serial"], pump["cert_serial"]);
    // The superseded certificate is on the next revocation list.
    std::fs::write(d.join("old.crt"), &old_cert).unwrap();
    ok(d, &["provision", "crl", "--ca", "factory"]);
    let err = rejected(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "out/root.crt",
            "old.crt",
            "--crl",
            "factory/crl.pem",
        ],
    );
    assert!(err.contains("was revoked"), "{err}");
    ok(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "out/root.crt",
            "out/pump-1/device.crt",
            "--crl",
            "factory/crl.pem",
        ],
    );
    // Asking for another id for registered hardware is refused.
    std::fs::write(
        d.join("rename.csv"),
        "hardware_id,hardware_class,device_id\nSN9999,rpi4,pump-2\n",
    )
    .unwrap();
    let o = run(
        d,
        &[
            "provision",
            "batch",
            "--ca",
            "factory",
            "--devices",
            "rename.csv",
            "--out",
            "out",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("registered as device pump-1"), "{out}");
}

#[test]
fn a_passphrase_protected_ca_signs_only_with_its_passphrase() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let with_pass = |args: &[&str], pass: &str| {
        Command::new(common::meshota())
            .args(args)
            .current_dir(d)
            .env("MESHOTA_PASSPHRASE", pass)
            .output()
            .unwrap()
    };
    let o = with_pass(
        &[
            "provision",
            "ca",
            "root",
            "--name",
            "R",
            "--out",
            "root",
            "--encrypt",
        ],
        "s3cret",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = with_pass(
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "root",
            "--name",
            "F",
            "--out",
            "f",
        ],
        "wrong",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("root/ca.key"), "{}", stderr(&o));
    // Without a passphrase (and no terminal) the sealed key is not opened.
    let err = rejected(
        d,
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "root",
            "--name",
            "F",
            "--out",
            "f",
        ],
    );
    assert!(err.contains("ca.key"), "{err}");
    let o = with_pass(
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "root",
            "--name",
            "F",
            "--out",
            "f",
        ],
        "s3cret",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(d.join("root/audit.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains("\"action\":\"issue-intermediate\""), "{log}");
}

#[test]
fn batch_signs_csrs_collected_from_devices_and_refuses_one_for_other_hardware() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    make_cas(d, "Acme");
    // Two devices make their own keys; their hardware ids come from files
    // as the devices report them (cpuinfo text, a device-tree string).
    std::fs::write(
        d.join("cpuinfo"),
        "processor\t: 0\nSerial\t\t: 10000000AAAA0001\n",
    )
    .unwrap();
    std::fs::write(d.join("dt-serial"), "10000000aaaa0002\0").unwrap();
    for (id, file) in [("gw-1", "cpuinfo"), ("gw-2", "dt-serial")] {
        ok(
            d,
            &[
                "provision",
                "keygen",
                "--device-id",
                id,
                "--hardware",
                "gw",
                "--hwid-file",
                file,
                "--out",
                id,
            ],
        );
    }
    // gw-2's CSR is listed on gw-1's row too: its serial does not match.
    std::fs::write(
        d.join("devices.csv"),
        "hardware_id,hardware_class,device_id,csr\n\
         10000000aaaa0001,gw,gw-1,gw-1/device.csr\n\
         10000000aaaa0002,gw,gw-2,gw-2/device.csr\n\
         10000000aaaa0003,gw,gw-3,gw-2/device.csr\n",
    )
    .unwrap();
    let o = run(
        d,
        &[
            "provision",
            "batch",
            "--ca",
            "factory",
            "--devices",
            "devices.csv",
            "--out",
            "out",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("provisioned 2 of 3 devices"), "{out}");
    assert!(
        out.contains("line 4 (10000000aaaa0003)") && out.contains("asks for device gw-2"),
        "{out}"
    );
    // Only a certificate is written for a CSR row: the keys stay on the device.
    assert!(d.join("out/gw-1/device.crt").exists());
    assert!(!d.join("out/gw-1/identity.key").exists());
    // The certificate carries the device's own key: its node id.
    let keygen_pub = std::fs::read(d.join("gw-1/identity.pub")).unwrap();
    std::fs::write(d.join("gw1.pub"), keygen_pub).unwrap();
    let key_id = ok(d, &["keys", "show", "gw1.pub", "--json"]);
    let key_id: serde_json::Value = serde_json::from_str(&key_id).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "provision",
            "verify",
            "--root",
            "factory/root.crt",
            "out/gw-1/device.crt",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(v["node_id"], key_id["key_id"]);
    assert_eq!(v["hardware_class"], "gw");
    // Python checks the CSR-issued certificate and the device's key files.
    py_ok(
        d,
        &[
            "--root",
            "factory/root.crt",
            "--device",
            "out/gw-2/device.crt",
            "--device-id",
            "gw-2",
            "--csr",
            "gw-2/device.csr",
            "--kem-key",
            "gw-2/kem.key",
            "--kem-pub",
            "gw-2/kem.pub",
        ],
    );
}
