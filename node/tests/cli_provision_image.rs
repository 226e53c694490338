//! `meshota provision image|apply` through the binary: deterministic
//! squashfs images built from the registry, read by Debian's `unsquashfs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

mod common;
use common::{ok, run, stderr};

const HWID: &str = "10000000abcdef01";
const ISSUED: &str = "2026-11-20T00:00:00Z";

/// `unsquashfs`, which scripts/test.sh installs (Debian squashfs-tools).
fn unsquashfs() -> &'static str {
    for p in [
        "/usr/bin/unsquashfs",
        "/usr/sbin/unsquashfs",
        "/bin/unsquashfs",
    ] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("unsquashfs not found: install squashfs-tools (scripts/test.sh does)");
}

/// Root and intermediate CAs (`root/`, `factory/`), and device `pump-1`
/// with its keys in `dev/`, signed with its KEM public key recorded.
fn provisioned_station(dir: &Path) {
    ok(
        dir,
        &[
            "provision",
            "ca",
            "root",
            "--name",
            "Acme Root",
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
            "Acme Factory",
            "--out",
            "factory",
        ],
    );
    ok(
        dir,
        &[
            "provision",
            "keygen",
            "--device-id",
            "pump-1",
            "--hardware",
            "rpi4",
            "--hwid",
            HWID,
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
            "--hwid",
            HWID,
            "--kem-pub",
            "dev/kem.pub",
        ],
    );
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/mesh.toml"), "peers = []\n").unwrap();
}

fn image_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "provision",
        "image",
        "--registry",
        "factory",
        "--hwid",
        HWID,
        "--out",
        out,
        "--fleet",
        "north",
        "--config-dir",
        "conf",
        "--machine-id",
        "--issued",
        ISSUED,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn image_is_byte_identical_across_processes_and_unsquashfs_extracts_its_files() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    provisioned_station(dir);
    // Two separate processes, same inputs.
    ok(dir, &image_args("a.sqfs", &[]));
    ok(dir, &image_args("b.sqfs", &[]));
    let a = std::fs::read(dir.join("a.sqfs")).unwrap();
    assert_eq!(a, std::fs::read(dir.join("b.sqfs")).unwrap());
    // A changed mutable input gives another image.
    std::fs::write(dir.join("conf/mesh.toml"), "peers = [\"10.0.0.1:7070\"]\n").unwrap();
    ok(dir, &image_args("c.sqfs", &[]));
    assert_ne!(a, std::fs::read(dir.join("c.sqfs")).unwrap());

    let x = dir.join("x");
    let o = Command::new(unsquashfs())
        .args(["-n", "-no-xattrs", "-d"])
        .arg(&x)
        .arg(dir.join("a.sqfs"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &str| std::fs::read_to_string(x.join(p)).unwrap();
    let serial = read("etc/serial-number");
    assert_eq!(serial.trim().len(), 10);
    assert!(
        ok(
            dir,
            &[
                "provision",
                "registry",
                "export",
                "--ca",
                "factory",
                "--format",
                "csv"
            ]
        )
        .contains(&format!("pump-1,{}", serial.trim()))
    );
    assert_eq!(read("etc/hostname"), "pump-1\n");
    assert_eq!(read("etc/mqtt-client-id"), "pump-1\n");
    assert_eq!(read("etc/mqtt-group-id"), "north\n");
    assert_eq!(read("etc/machine-id").trim().len(), 32);
    assert_eq!(read("etc/meshota/config/mesh.toml"), "peers = []\n");
    assert_eq!(
        read("etc/meshota/root.crt"),
        std::fs::read_to_string(dir.join("factory/root.crt")).unwrap()
    );
    // The chain in the image verifies against the root, as on the device.
    let v = ok(
        dir,
        &[
            "provision",
            "verify",
            "--root",
            "factory/root.crt",
            x.join("etc/meshota/device.crt").to_str().unwrap(),
        ],
    );
    assert!(v.contains("valid: device pump-1"), "{v}");
}

#[test]
fn image_refuses_hardware_the_registry_does_not_know_and_revoked_devices() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    provisioned_station(dir);
    let o = run(
        dir,
        &[
            "provision",
            "image",
            "--registry",
            "factory",
            "--hwid",
            "feedface",
            "--out",
            "u.sqfs",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no device in the registry"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("u.sqfs").exists());

    ok(
        dir,
        &[
            "provision",
            "revoke",
            "--ca",
            "factory",
            "--device-id",
            "pump-1",
        ],
    );
    let o = run(dir, &image_args("r.sqfs", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("pump-1 is revoked"), "{}", stderr(&o));
    assert!(!dir.join("r.sqfs").exists());
}
