//! Mesh admission by device certificate (`[mesh.certificates]`), with real
//! daemons: devices provisioned by the fleet's CA are admitted and converge;
//! a revoked device and a device of another CA are refused by everyone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run(
            Path::new("/"),
            &["testnet", "down", "--dir", self.0.to_str().unwrap()],
        );
    }
}

fn node_status(tn: &Path, i: usize) -> Value {
    let cfg = tn.join(format!("node-{i}/node.toml"));
    serde_json::from_str(&ok(
        Path::new("/"),
        &[
            "node",
            "status",
            "--config",
            cfg.to_str().unwrap(),
            "--json",
        ],
    ))
    .unwrap()
}

/// A device identity from `ca`: `d/NAME/identity.key` and `d/NAME/device.crt`
/// (the chain `provision sign` writes).
fn device(d: &Path, ca: &str, name: &str) {
    ok(
        d,
        &[
            "provision",
            "keygen",
            "--device-id",
            name,
            "--hardware",
            "testnet",
            "--hwid",
            &format!("HW-{name}"),
            "--out",
            name,
        ],
    );
    ok(
        d,
        &[
            "provision",
            "sign",
            "--ca",
            ca,
            "--csr",
            &format!("{name}/device.csr"),
            "--out",
            &format!("{name}/device.crt"),
        ],
    );
}

#[test]
fn only_devices_certified_by_the_fleet_ca_and_not_revoked_join_the_mesh() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // The fleet's CA, and another one.
    ok(
        d,
        &[
            "provision",
            "ca",
            "root",
            "--name",
            "Fleet Root",
            "--out",
            "root",
        ],
    );
    ok(
        d,
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "root",
            "--name",
            "Factory",
            "--out",
            "factory",
        ],
    );
    ok(
        d,
        &[
            "provision",
            "ca",
            "root",
            "--name",
            "Other Root",
            "--out",
            "oroot",
        ],
    );
    ok(
        d,
        &[
            "provision",
            "ca",
            "intermediate",
            "--root",
            "oroot",
            "--name",
            "Other",
            "--out",
            "other",
        ],
    );
    for name in ["dev-0", "dev-1", "dev-2"] {
        device(d, "factory", name);
    }
    device(d, "other", "dev-3");
    ok(
        d,
        &[
            "provision",
            "revoke",
            "--ca",
            "factory",
            "--device-id",
            "dev-2",
        ],
    );

    let tn = d.join("tn");
    let tns = tn.to_str().unwrap();
    ok(
        d,
        &[
            "testnet",
            "up",
            "--nodes",
            "4",
            "--dir",
            tns,
            "--base-port",
            "0",
            "--image-size",
            "1",
        ],
    );
    let _guard = Down(tn.clone());
    ok(d, &["testnet", "down", "--dir", tns]);
    // Every node admits by certificate instead of `open = true`.
    for i in 0..4 {
        let cfg = tn.join(format!("node-{i}/node.toml"));
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains("open = true"), "{text}");
        let dev = d.join(format!("dev-{i}"));
        let text = text.replace("open = true\n", "").replace(
            "device_key = \"keys/node.key\"",
            &format!("device_key = \"{}\"", dev.join("identity.key").display()),
        ) + &format!(
            "\n[mesh.certificates]\nroot = \"{}\"\nchain = \"{}\"\ncrl = \"{}\"\n",
            d.join("root/ca.crt").display(),
            dev.join("device.crt").display(),
            d.join("factory/crl.pem").display(),
        );
        std::fs::write(&cfg, text).unwrap();
    }
    ok(d, &["testnet", "up", "--dir", tns]);

    std::fs::write(d.join("v1.img"), vec![0x5au8; 300_000]).unwrap();
    ok(
        d,
        &[
            "testnet",
            "publish",
            "--dir",
            tns,
            d.join("v1.img").to_str().unwrap(),
            "--version",
            "1.0.0",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(0..2).all(|i| {
        let s = node_status(&tn, i);
        s["installed"]["version"] == "1.0.0" && s["slot"]["state"] == "confirmed"
    }) {
        assert!(
            Instant::now() < deadline,
            "nodes 0 and 1 did not confirm 1.0.0"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The admitted pair see each other; the revoked device and the other
    // CA's device have no peer and never got the release.
    assert!(node_status(&tn, 0)["peers"].as_u64().unwrap() >= 1);
    assert!(node_status(&tn, 1)["peers"].as_u64().unwrap() >= 1);
    for i in 2..4 {
        let s = node_status(&tn, i);
        assert_eq!(s["peers"], 0, "node {i}: {s:#}");
        assert_eq!(s["installed"]["version"], "0.1.0", "node {i}: {s:#}");
    }
    // The admitted nodes' logs name why they refused them (the refused
    // nodes keep dialling with backoff: wait, bounded, for both reasons).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs: String = (0..2)
            .map(|i| std::fs::read_to_string(tn.join(format!("node-{i}/node.log"))).unwrap())
            .collect();
        if logs.contains("revoked") && logs.contains("does not chain to this root") {
            break;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
