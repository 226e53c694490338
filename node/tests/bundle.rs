//! `meshota bundle …` and `keys generate --kem` end to end: an operator's
//! store, a stick (a file), a node with no network, and an air-gapped
//! testnet whose only source is the stick, with the want list carried back.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshota_testkit::image;
use serde_json::Value;

mod common;
use common::*;

/// Exit code and output of a command expected to fail.
fn code(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = run(dir, args);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr(&o),
    )
}

/// Signs `img` as `version`/`sv` for `hardware`, chunks into `store`.
#[allow(clippy::too_many_arguments)]
fn release(
    d: &Path,
    trust: &str,
    key: &str,
    img: &str,
    hardware: &str,
    version: &str,
    sv: &str,
    store: &str,
    out: &str,
) {
    ok(
        d,
        &[
            "release",
            "create",
            "--trust",
            trust,
            "--key",
            key,
            "--image",
            img,
            "--hardware",
            hardware,
            "--version",
            version,
            "--security-version",
            sv,
            "--store",
            store,
            "--out",
            out,
        ],
    );
}

/// A node config with file slots and the simulated bootloader, no mesh.
fn offline_node(d: &Path) {
    field_node(d, "node", "rpi4", "../trust.mota", "v0.mota");
}

/// A node at `d/NAME` with file slots, the simulated bootloader and no
/// mesh, trusting `trust` (relative to it), provisioned with `factory`
/// from the operator's store `d/ops`.
fn field_node(d: &Path, name: &str, hardware: &str, trust: &str, factory: &str) {
    let node = d.join(name);
    std::fs::create_dir_all(node.join("state")).unwrap();
    let disk = std::fs::File::create(node.join("disk.img")).unwrap();
    disk.set_len(2 * 1024 * 1024).unwrap();
    std::fs::write(
        node.join("node.toml"),
        format!(
            r#"hardware = "{hardware}"
channel = "stable"
trust_root = "{trust}"
data_dir = "state"
store_dir = "store"

[device]
install_record = "state/install.rec"
trial_boots = 2

[device.slot_a]
path = "disk.img"
size = 1048576

[device.slot_b]
path = "disk.img"
offset = 1048576

[device.boot]
kind = "simulated"
records = "state/boot.rec"
"#
        ),
    )
    .unwrap();
    let cfg = format!("{name}/node.toml");
    // The factory image, from the operator's store.
    ok(
        d,
        &[
            "slots",
            "provision",
            "--config",
            &cfg,
            "--manifest",
            factory,
            "--store",
            "ops",
        ],
    );
}

/// `bundle export ARGS --json`: its report.
fn export(d: &Path, args: &[&str]) -> Value {
    let mut all = vec!["bundle", "export"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&ok(d, &all)).unwrap()
}

fn setup(d: &Path) {
    init_trust(d, "k/rel.pub");
    std::fs::write(d.join("v0.img"), image(200_000, 3)).unwrap();
    release(
        d,
        "trust.mota",
        "k/rel.key",
        "v0.img",
        "rpi4",
        "0.9.0",
        "1",
        "ops",
        "v0.mota",
    );
    std::fs::write(d.join("v1.img"), image(300_000, 1)).unwrap();
    release(
        d,
        "trust.mota",
        "k/rel.key",
        "v1.img",
        "rpi4",
        "1.0.0",
        "2",
        "ops",
        "v1.mota",
    );
}

#[test]
fn a_bundle_carries_a_release_to_a_node_with_no_network_which_installs_it() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    setup(d);
    export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "v1.mota",
            "--trust",
            "trust.mota",
            "--out",
            "update.bundle",
        ],
    );
    // The operator checks the stick before the trip.
    let v: Value = serde_json::from_str(&ok(
        d,
        &[
            "bundle",
            "verify",
            "--trust",
            "trust.mota",
            "update.bundle",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(v["summary"]["releases"][0]["version"], "1.0.0");
    let i: Value =
        serde_json::from_str(&ok(d, &["bundle", "inspect", "update.bundle", "--json"])).unwrap();
    assert_eq!(i["releases"][0]["version"], "1.0.0");
    assert_eq!(i["trust_roots"][0], 1);

    offline_node(d);
    let imp: Value = serde_json::from_str(&ok(
        d,
        &[
            "bundle",
            "import",
            "--config",
            "node/node.toml",
            "update.bundle",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(imp["ok"], true, "{imp:#}");
    assert!(imp["new_chunks"].as_u64().unwrap() > 0);
    // The node installs from its own store: the chunks came off the stick.
    ok(
        d,
        &[
            "install",
            "--config",
            "node/node.toml",
            "--manifest",
            "v1.mota",
        ],
    );
    let again: Value = serde_json::from_str(&ok(
        d,
        &[
            "bundle",
            "import",
            "--config",
            "node/node.toml",
            "update.bundle",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(again["new_chunks"], 0, "a second import stores nothing new");
}

#[test]
fn bundle_verify_exits_1_for_a_foreign_trust_root_and_a_truncated_file() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    setup(d);
    export(d, &["--store", "ops", "--release", "v1.mota", "--out", "b"]);
    // Another fleet's trust root.
    std::fs::create_dir_all(d.join("other")).unwrap();
    init_trust(&d.join("other"), "k/rel.pub");
    let (c, _, err) = code(d, &["bundle", "verify", "--trust", "other/trust.mota", "b"]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("rejected"), "{err}");

    let bytes = std::fs::read(d.join("b")).unwrap();
    std::fs::write(d.join("short"), &bytes[..bytes.len() - 20]).unwrap();
    let (c, out, err) = code(
        d,
        &[
            "bundle",
            "verify",
            "--trust",
            "trust.mota",
            "short",
            "--json",
        ],
    );
    assert_eq!(c, Some(1), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["error"].as_str().unwrap().contains("truncated"), "{v}");

    // The untouched bundle verifies.
    ok(d, &["bundle", "verify", "--trust", "trust.mota", "b"]);
}

#[test]
fn an_encrypted_bundle_opens_with_the_key_named_in_the_node_config() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    setup(d);
    ok(
        d,
        &[
            "keys",
            "generate",
            "--kem",
            "--out",
            "node/keys",
            "--name",
            "device",
        ],
    );
    let key = std::fs::read_to_string(d.join("node/keys/device.kem.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("node/keys/device.kem.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "v1.mota",
            "--trust",
            "trust.mota",
            "--encrypt-to",
            "node/keys/device.kem.pub",
            "--out",
            "sealed",
        ],
    );
    let i: Value =
        serde_json::from_str(&ok(d, &["bundle", "inspect", "sealed", "--json"])).unwrap();
    assert_eq!(i["encrypted"], true);
    assert_eq!(i["recipients"].as_array().unwrap().len(), 1);
    assert!(
        i.get("releases").is_none(),
        "nothing inside is readable: {i}"
    );

    offline_node(d);
    let (c, _, err) = code(
        d,
        &["bundle", "import", "--config", "node/node.toml", "sealed"],
    );
    assert_eq!(c, Some(1));
    assert!(err.contains("encrypted"), "{err}");

    // With `[bundle] kem_key` in the config, the same import succeeds.
    let cfg = d.join("node/node.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[bundle]\nkem_key = \"keys/device.kem.key\"\n");
    std::fs::write(&cfg, text).unwrap();
    ok(
        d,
        &["bundle", "import", "--config", "node/node.toml", "sealed"],
    );
}

// ------------------------------------------------------- air-gapped testnet

/// `testnet up` of `nodes` nodes in `d/tn` on free ports with 1 MiB
/// slots; the guard stops it when the test ends.
fn testnet_up(d: &Path, nodes: usize) -> (PathBuf, Down) {
    let tn = d.join("tn");
    let n = nodes.to_string();
    ok(
        d,
        &[
            "testnet",
            "up",
            "--nodes",
            &n,
            "--dir",
            tn.to_str().unwrap(),
            "--base-port",
            "0",
            "--image-size",
            "1",
        ],
    );
    (tn.clone(), Down(tn))
}

fn node_status(dir: &Path, i: usize) -> Value {
    let cfg = dir.join(format!("node-{i}/node.toml"));
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

fn wait_all_confirmed(dir: &Path, nodes: usize, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states: Vec<Value> = (0..nodes).map(|i| node_status(dir, i)).collect();
        if states
            .iter()
            .all(|s| s["installed"]["version"] == version && s["slot"]["state"] == "confirmed")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all confirmed on {version}: {states:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn an_air_gapped_mesh_converges_from_one_stick_and_the_want_list_trims_the_next() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (tn, _guard) = testnet_up(d, 3);
    let trust = tn.join("trust.mota");
    let key = tn.join("keys/release.key");
    let (trust, key) = (trust.to_str().unwrap(), key.to_str().unwrap());

    // The operator's side: v2 in a store, onto a stick.
    let v2 = image(600_000, 7);
    std::fs::write(d.join("v2.img"), &v2).unwrap();
    release(
        d, trust, key, "v2.img", "testnet", "2.0.0", "2", "ops", "v2.mota",
    );
    export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "v2.mota",
            "--trust",
            trust,
            "--out",
            "trip1.bundle",
        ],
    );
    // At the site: one node takes the stick (its daemon imports), the mesh does the rest.
    let cfg0 = tn.join("node-0/node.toml");
    let imp: Value = serde_json::from_str(&ok(
        d,
        &[
            "bundle",
            "import",
            "--config",
            cfg0.to_str().unwrap(),
            "trip1.bundle",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(imp["ok"], true, "{imp:#}");
    wait_all_confirmed(&tn, 3, "2.0.0");
    // Only node 0 read the stick; the others fetched over the mesh.
    for i in 1..3 {
        assert!(node_status(&tn, i)["chunks_fetched"].as_u64().unwrap() > 0);
    }

    // Back to the operator: the want list says what the field holds, and
    // carries the nodes' reports.
    let w: Value = serde_json::from_str(&ok(
        d,
        &[
            "bundle",
            "want",
            "--config",
            cfg0.to_str().unwrap(),
            "--out",
            "want.bin",
            "--json",
        ],
    ))
    .unwrap();
    assert!(w["reports"].as_u64().unwrap() >= 1, "{w:#}");
    let held = w["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["held"] == r["chunks"] && r["chunks"].as_u64().unwrap() > 0);
    assert!(held.is_some(), "v2 fully held: {w:#}");

    // v3 changes a tenth of the image; the next stick carries only that.
    let mut v3 = v2.clone();
    v3[250_000..310_000].copy_from_slice(&image(60_000, 9));
    std::fs::write(d.join("v3.img"), &v3).unwrap();
    release(
        d, trust, key, "v3.img", "testnet", "3.0.0", "3", "ops", "v3.mota",
    );
    let full = export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "v3.mota",
            "--out",
            "full.bundle",
        ],
    );
    let lean = export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "v3.mota",
            "--trust",
            trust,
            "--want",
            "want.bin",
            "--out",
            "trip2.bundle",
        ],
    );
    assert!(lean["chunks_skipped"].as_u64().unwrap() > 0, "{lean:#}");
    assert!(
        lean["bytes"].as_u64().unwrap() * 3 < full["bytes"].as_u64().unwrap(),
        "lean {lean:#} vs full {full:#}"
    );
    let cfg2 = tn.join("node-2/node.toml");
    ok(
        d,
        &[
            "bundle",
            "import",
            "--config",
            cfg2.to_str().unwrap(),
            "trip2.bundle",
        ],
    );
    wait_all_confirmed(&tn, 3, "3.0.0");

    // A replayed stick (v2 again) is refused by a node on v3, and changes nothing.
    let (c, _, err) = code(
        d,
        &[
            "bundle",
            "import",
            "--config",
            cfg2.to_str().unwrap(),
            "trip1.bundle",
        ],
    );
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("replayed"), "{err}");
    assert_eq!(node_status(&tn, 2)["installed"]["version"], "3.0.0");
}

/// Waits (bounded) for `file` to appear; returns its JSON.
fn wait_for_json(file: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn a_usb_station_imports_a_bundle_from_the_stick_and_answers_a_want_list() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (tn, _guard) = testnet_up(d, 2);
    let tns = tn.to_str().unwrap();
    // Node 0 becomes a station watching the stick's mount point.
    let stick = d.join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    let cfg0 = tn.join("node-0/node.toml");
    ok(d, &["testnet", "down", "--dir", tns]);
    let mut text = std::fs::read_to_string(&cfg0).unwrap();
    text.push_str(&format!(
        "\n[station]\ndir = \"{}\"\npoll_ms = 100\n",
        stick.display()
    ));
    std::fs::write(&cfg0, text).unwrap();
    ok(d, &["testnet", "up", "--dir", tns]);

    let trust = tn.join("trust.mota");
    let key = tn.join("keys/release.key");
    let (trust, key) = (trust.to_str().unwrap(), key.to_str().unwrap());
    let v1 = image(500_000, 21);
    let mut v2 = v1.clone();
    v2[100_000..150_000].copy_from_slice(&image(50_000, 22));
    std::fs::write(d.join("v1.img"), &v1).unwrap();
    std::fs::write(d.join("v2.img"), &v2).unwrap();
    release(
        d, trust, key, "v1.img", "testnet", "1.0.0", "2", "ops", "v1.mota",
    );
    release(
        d, trust, key, "v2.img", "testnet", "2.0.0", "3", "ops", "v2.mota",
    );

    // The operator drops v1 and v2 on the stick; the station imports them
    // and the mesh converges on v2.
    export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "v1.mota",
            "v2.mota",
            "--trust",
            trust,
            "--out",
            "stick/home.bundle",
        ],
    );
    let r = wait_for_json(&stick.join("home.bundle.result.json"));
    assert_eq!(r["ok"], true, "{r:#}");
    wait_all_confirmed(&tn, 2, "2.0.0");

    // A field node on 1.0.0 writes its want list onto the stick; the
    // station answers with v2 minus what the field holds.
    field_node(d, "field", "testnet", "../tn/trust.mota", "v1.mota");
    ok(
        d,
        &[
            "bundle",
            "want",
            "--config",
            "field/node.toml",
            "--out",
            "stick/field.want",
        ],
    );
    let r = wait_for_json(&stick.join("field.want.result.json"));
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["reply"], "field.reply.bundle");
    assert_eq!(r["version"], "2.0.0");
    assert!(r["export"]["chunks_skipped"].as_u64().unwrap() > 0, "{r:#}");
    // Back in the field, the reply installs.
    ok(
        d,
        &[
            "bundle",
            "import",
            "--config",
            "field/node.toml",
            "stick/field.reply.bundle",
        ],
    );
    ok(
        d,
        &[
            "install",
            "--config",
            "field/node.toml",
            "--manifest",
            "v2.mota",
        ],
    );
    // A corrupt bundle on the stick is refused with a reason, and the
    // station does not take it again.
    let mut bad = std::fs::read(stick.join("home.bundle")).unwrap();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(stick.join("bad.bundle"), &bad).unwrap();
    let r = wait_for_json(&stick.join("bad.bundle.result.json"));
    assert_eq!(r["ok"], false, "{r:#}");
    assert!(!r["error"].as_str().unwrap().is_empty());
}

#[test]
fn a_field_node_on_the_base_gets_a_patch_instead_of_chunks_and_installs_offline() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    init_trust(d, "k/rel.pub");
    let base = image(400_000, 31);
    let mut next = base.clone();
    next[200_000..205_000].copy_from_slice(&image(5_000, 32));
    std::fs::write(d.join("base.img"), &base).unwrap();
    std::fs::write(d.join("next.img"), &next).unwrap();
    release(
        d,
        "trust.mota",
        "k/rel.key",
        "base.img",
        "rpi4",
        "1.0.0",
        "1",
        "ops",
        "base.mota",
    );
    ok(
        d,
        &[
            "release",
            "create",
            "--trust",
            "trust.mota",
            "--key",
            "k/rel.key",
            "--image",
            "next.img",
            "--hardware",
            "rpi4",
            "--version",
            "1.1.0",
            "--security-version",
            "2",
            "--store",
            "ops",
            "--previous",
            "base.mota",
            "--out",
            "next.mota",
        ],
    );
    field_node(d, "field", "rpi4", "../trust.mota", "base.mota");
    ok(
        d,
        &[
            "bundle",
            "want",
            "--config",
            "field/node.toml",
            "--out",
            "field.want",
        ],
    );
    let full = export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "next.mota",
            "--out",
            "full.bundle",
        ],
    );
    let lean = export(
        d,
        &[
            "--store",
            "ops",
            "--release",
            "next.mota",
            "--trust",
            "trust.mota",
            "--want",
            "field.want",
            "--out",
            "lean.bundle",
        ],
    );
    assert_eq!(lean["patches"], 1, "{lean:#}");
    assert!(lean["chunks_patched"].as_u64().unwrap() > 0, "{lean:#}");
    assert!(
        lean["bytes"].as_u64().unwrap() * 10 < full["bytes"].as_u64().unwrap(),
        "lean {lean:#} vs full {full:#}"
    );
    // The field node applies the patch against its slot on import, and
    // installs from its own store.
    let imp: Value = serde_json::from_str(&ok(
        d,
        &[
            "bundle",
            "import",
            "--config",
            "field/node.toml",
            "lean.bundle",
            "--json",
        ],
    ))
    .unwrap();
    assert!(
        imp["patch_chunks_produced"].as_u64().unwrap() > 0,
        "{imp:#}"
    );
    ok(
        d,
        &[
            "install",
            "--config",
            "field/node.toml",
            "--manifest",
            "next.mota",
        ],
    );
}
