//! Mesh admission by device certificate through real daemons: nodes of a
//! provisioned fleet connect to each other; a node whose certificate comes
//! from another CA is refused by every one of them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Down, ok};

/// Runs `testnet down` on drop, so a failed assertion leaves no daemon.
fn peers(dir: &Path, i: usize) -> u64 {
    let cfg = format!("node-{i}/node.toml");
    let s: Value =
        serde_json::from_str(&ok(dir, &["node", "status", "--config", &cfg, "--json"])).unwrap();
    s["peers"].as_u64().unwrap()
}

/// Gives node `i` a device key made by `provision keygen` and a
/// certificate from the intermediate CA `ca`, and switches its `[mesh]`
/// from open admission to `[mesh.certificate]` with the root of `root`.
fn certify(dir: &Path, i: usize, ca: &str, root: &str) {
    let node = format!("node-{i}");
    ok(
        dir,
        &[
            "provision",
            "keygen",
            "--device-id",
            &format!("n{i}"),
            "--hardware",
            "rpi4",
            "--hwid",
            &format!("hw-n{i}"),
            "--out",
            &format!("{node}/prov"),
        ],
    );
    ok(
        dir,
        &[
            "provision",
            "sign",
            "--ca",
            ca,
            "--csr",
            &format!("{node}/prov/device.csr"),
            "--out",
            &format!("{node}/prov/device.crt"),
        ],
    );
    let path = dir.join(&node).join("node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("open = true") && text.contains("device_key = \"keys/node.key\""));
    let mut out = text.replace("open = true\n", "").replace(
        "device_key = \"keys/node.key\"",
        "device_key = \"prov/identity.key\"",
    );
    out.push_str(&format!(
        "\n[mesh.certificate]\nroot = \"../{root}/ca.crt\"\nchain = \"prov/device.crt\"\n"
    ));
    std::fs::write(&path, out).unwrap();
}

#[test]
fn certified_nodes_admit_each_other_and_refuse_a_node_of_another_ca() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::create_dir_all(dir.join("tn")).unwrap();
    let tn = dir.join("tn");
    ok(
        &tn,
        &[
            "testnet",
            "up",
            "--nodes",
            "3",
            "--dir",
            ".",
            "--base-port",
            "0",
            "--image-size",
            "1",
        ],
    );
    let _down = Down(tn.clone());
    ok(&tn, &["testnet", "down", "--dir", "."]);
    for (name, ca) in [("acme", "acme-factory"), ("evil", "evil-factory")] {
        ok(
            &tn,
            &["provision", "ca", "root", "--name", name, "--out", name],
        );
        ok(
            &tn,
            &[
                "provision",
                "ca",
                "intermediate",
                "--root",
                name,
                "--name",
                ca,
                "--out",
                ca,
            ],
        );
    }
    certify(&tn, 0, "acme-factory", "acme");
    certify(&tn, 1, "acme-factory", "acme");
    certify(&tn, 2, "evil-factory", "evil");
    ok(&tn, &["testnet", "up", "--dir", "."]);

    // Nodes 0 and 1 connect; node 2 (another CA) is refused by both.
    // (A dial that meets a peer not yet listening retries on QUIC's
    // backoff: allow a loaded machine time.)
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p: Vec<u64> = (0..3).map(|i| peers(&tn, i)).collect();
        if p[0] == 1 && p[1] == 1 {
            assert_eq!(p[2], 0, "a node of another CA was admitted: {p:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "peers per node after 90 s: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give node 2 time to try every peer again; it stays alone.
    std::thread::sleep(Duration::from_secs(3));
    let p: Vec<u64> = (0..3).map(|i| peers(&tn, i)).collect();
    assert_eq!(p, vec![1, 1, 0]);
}
