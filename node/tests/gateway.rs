//! `meshota publish` and `meshota gateway run` end to end: the binary
//! writes an origin, a real nginx on loopback serves it, a gateway node of
//! a testnet syncs it and the mesh installs it. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "../../gateway/tests/common/nginx.rs"]
mod nginx;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{init_trust, meshota, ok, run, stderr};
use nginx::Nginx;
use serde_json::Value;

fn write_image(path: &Path, len: u32, mul: u32) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(mul) >> 11) as u8)
        .collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn publish_writes_an_origin_once_and_a_second_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    init_trust(dir, "k/rel.pub");
    write_image(&dir.join("v1.img"), 300_000, 2_654_435_761);
    ok(
        dir,
        &[
            "release",
            "create",
            "--trust",
            "trust.mota",
            "--key",
            "k/rel.key",
            "--image",
            "v1.img",
            "--hardware",
            "rpi4",
            "--version",
            "1.0.0",
            "--security-version",
            "1",
            "--store",
            "store",
            "--out",
            "v1.mota",
        ],
    );
    let args = [
        "publish",
        "--store",
        "store",
        "--release",
        "v1.mota",
        "--to",
        "origin",
        "--trust",
        "trust.mota",
        "--key",
        "k/rel.key",
        "--json",
    ];
    let first: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    assert_eq!(first["catalog_sequence"], 1);
    assert_eq!(first["catalog_written"], true);
    assert!(first["objects_written"].as_u64().unwrap() > 3, "{first}");
    assert!(dir.join("origin/catalog.mota").exists());
    let again: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    assert_eq!(again["objects_written"], 0);
    assert_eq!(again["objects_present"], first["objects_written"]);
    assert_eq!(again["catalog_written"], false);

    // A key the trust root does not list: exit 1, named, nothing written.
    ok(dir, &["keys", "generate", "--out", "k", "--name", "other"]);
    let o = run(
        dir,
        &[
            "publish",
            "--store",
            "store",
            "--release",
            "v1.mota",
            "--to",
            "origin2",
            "--trust",
            "trust.mota",
            "--key",
            "k/other.key",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown key"), "{}", stderr(&o));
    assert!(!dir.join("origin2").exists());
}

/// Runs `testnet down` on drop.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new(meshota())
            .args(["testnet", "down", "--dir", self.0.to_str().unwrap()])
            .output();
    }
}

fn status(cfg: &Path) -> Option<Value> {
    let o = std::process::Command::new(meshota())
        .args([
            "node",
            "status",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn a_gateway_node_syncs_a_release_from_nginx_and_the_four_node_mesh_confirms_it() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let tn = root.join("tn");
    let ds = tn.to_str().unwrap();
    ok(
        root,
        &[
            "testnet",
            "up",
            "--nodes",
            "4",
            "--dir",
            ds,
            "--base-port",
            "0",
            "--image-size",
            "1",
        ],
    );
    let _guard = Down(tn.clone());
    ok(root, &["testnet", "down", "--dir", ds]);

    // The release engineer's side: create, publish, serve with nginx.
    write_image(&root.join("v1.img"), 400_000, 2_246_822_519);
    ok(
        root,
        &[
            "release",
            "create",
            "--trust",
            "tn/trust.mota",
            "--key",
            "tn/keys/release.key",
            "--image",
            "v1.img",
            "--hardware",
            "testnet",
            "--version",
            "1.0.0",
            "--security-version",
            "10",
            "--store",
            "pub-store",
            "--out",
            "v1.mota",
        ],
    );
    ok(
        root,
        &[
            "publish",
            "--store",
            "pub-store",
            "--release",
            "v1.mota",
            "--to",
            "origin",
            "--trust",
            "tn/trust.mota",
            "--key",
            "tn/keys/release.key",
        ],
    );
    let nginx = Nginx::start(&root.join("origin"), "");

    // Node 0 becomes the gateway: a [gateway] table in its config.
    let cfg0 = tn.join("node-0/node.toml");
    let mut text = std::fs::read_to_string(&cfg0).unwrap();
    text.push_str(&format!(
        "\n[gateway]\norigin = \"{}\"\npoll_interval_secs = 1\n",
        nginx.url()
    ));
    std::fs::write(&cfg0, text).unwrap();
    ok(root, &["testnet", "up", "--dir", ds]);

    // Every node runs 1.0.0 confirmed (`testnet status --watch` follows
    // `testnet publish`, not the origin, so poll each node's status).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states: Vec<(String, String)> = (0..4)
            .map(|i| {
                let s = status(&tn.join(format!("node-{i}/node.toml"))).unwrap_or_default();
                (
                    s["installed"]["version"]
                        .as_str()
                        .unwrap_or("-")
                        .to_string(),
                    s["state"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect();
        if states
            .iter()
            .all(|(v, st)| v == "1.0.0" && st == "confirmed")
        {
            break;
        }
        assert!(Instant::now() < deadline, "after 120 s: {states:?}");
        std::thread::sleep(Duration::from_millis(250));
    }

    let s = status(&cfg0).unwrap();
    let g = &s["gateway"];
    assert_eq!(g["releases_injected"], 1, "{s:#}");
    assert_eq!(g["last_sync"]["ok"], true, "{s:#}");
    assert_eq!(g["last_sync"]["catalog_sequence"], 1, "{s:#}");
    // Chunks came from nginx once; later polls asked only for the catalog.
    let log = nginx.access_log();
    let chunk_gets = log.iter().filter(|l| l.starts_with("/chunks/")).count();
    let distinct: std::collections::BTreeSet<_> = log
        .iter()
        .filter(|l| l.starts_with("/chunks/"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        chunk_gets,
        distinct.len(),
        "no chunk fetched twice: {log:?}"
    );
    assert!(log.iter().all(|l| l.contains(" 200 ")), "{log:?}");

    // `gateway sync` asks for a poll now; a plain node refuses it.
    ok(
        root,
        &["gateway", "sync", "--config", cfg0.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = g["syncs"].as_u64().unwrap();
    while status(&cfg0).unwrap()["gateway"]["syncs"].as_u64().unwrap() <= before {
        assert!(Instant::now() < deadline, "no poll after `gateway sync`");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cfg1 = tn.join("node-1/node.toml");
    let o = run(
        root,
        &["gateway", "sync", "--config", cfg1.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a gateway"), "{}", stderr(&o));
}
