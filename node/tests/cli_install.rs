//! The device commands end to end, as an operator or a testnet runs them:
//! `slots status|provision`, `install --store|--image`, `boot
//! reboot|confirm|mark-bad`, on file slots with the simulated bootloader
//! (and one U-Boot environment variant), driven by a node config file.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use meshota_testkit::image;
use serde_json::Value;

mod common;
use common::*;

/// Size of each slot.
const SLOT: u64 = 256 * 1024;

/// Runs a command that must be rejected with `code`; returns its stderr.
fn fails(dir: &Path, code: i32, args: &[&str]) -> String {
    let o = run(dir, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    stderr(&o)
}

/// Keys, a trust root and three images (`v1.img`, `v2.img`, `v3.img`).
fn setup(d: &Path) {
    init_trust(d, "k/rel.pub;hardware=rpi4");
    std::fs::write(d.join("v1.img"), image(150_000, 1)).unwrap();
    std::fs::write(d.join("v2.img"), image(200_000, 2)).unwrap();
    std::fs::write(d.join("v3.img"), image(120_000, 3)).unwrap();
}

/// `release create` of `img` as `version`/`sv` into `out`, chunks in `store`.
fn release(d: &Path, img: &str, version: &str, sv: &str, out: &str) {
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
            img,
            "--hardware",
            "rpi4",
            "--version",
            version,
            "--security-version",
            sv,
            "--store",
            "store",
            "--out",
            out,
        ],
    );
}

/// Writes `node/node.toml` (relative paths, resolved against `node/`) for
/// file slots in one disk image and the simulated bootloader.
fn write_config(d: &Path, health: &str) {
    let node = d.join("node");
    std::fs::create_dir_all(&node).unwrap();
    let disk = std::fs::File::create(node.join("disk.img")).unwrap();
    disk.set_len(2 * SLOT).unwrap();
    std::fs::write(
        node.join("node.toml"),
        format!(
            r#"# a testnet node
hardware = "rpi4"
channel = "stable"
trust_root = "../trust.mota"
data_dir = "state"
store_dir = "../store"

[device]
install_record = "state/install.rec"
trial_boots = 2

[device.slot_a]
path = "disk.img"
size = {SLOT}

[device.slot_b]
path = "disk.img"
offset = {SLOT}

[device.boot]
kind = "simulated"
records = "state/boot.rec"

[device.health]
command = {health}
timeout_ms = 10000
"#
        ),
    )
    .unwrap();
    std::fs::create_dir_all(node.join("state")).unwrap();
}

const CFG: &str = "node/node.toml";

fn status(d: &Path) -> Value {
    serde_json::from_str(&ok(d, &["slots", "status", "--config", CFG, "--json"])).unwrap()
}

fn slot_a_bytes(d: &Path, len: usize) -> Vec<u8> {
    std::fs::read(d.join("node/disk.img")).unwrap()[..len].to_vec()
}

/// Provisions slot A with release 1.0.0 (security version 1) from the store.
fn provisioned(d: &Path, health: &str) {
    setup(d);
    write_config(d, health);
    release(d, "v1.img", "1.0.0", "1", "r1.mota");
    let out = ok(
        d,
        &[
            "slots",
            "provision",
            "--config",
            CFG,
            "--manifest",
            "r1.mota",
            "--store",
            "store",
        ],
    );
    assert!(out.contains("provisioned slot A with 1.0.0"), "{out}");
    ok(d, &["boot", "reboot", "--config", CFG]);
}

#[test]
fn full_flow_installs_from_the_store_reboots_into_a_trial_and_confirms_the_new_security_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provisioned(d, r#"["true"]"#);
    let s = status(d);
    assert_eq!(s["confirmed"], "A");
    assert_eq!(s["booted"], "A");
    assert_eq!(s["state"], "idle");
    assert_eq!(s["security_counter"], 1);

    release(d, "v2.img", "2.0.0", "2", "r2.mota");
    let out = ok(
        d,
        &[
            "install",
            "--config",
            CFG,
            "--manifest",
            "r2.mota",
            "--store",
            "store",
        ],
    );
    assert!(
        out.contains("installed 2.0.0 (security version 2) into slot B"),
        "{out}"
    );
    let s = status(d);
    assert_eq!(s["state"], "trial");
    assert_eq!(s["primary"], "B");
    assert_eq!(s["security_counter"], 1, "not raised by an install");

    let out = ok(d, &["boot", "reboot", "--config", CFG]);
    assert!(out.contains("booted slot B (trial boot; 1 left)"), "{out}");
    let s = status(d);
    assert_eq!(s["booted"], "B");
    assert_eq!(s["state"], "trial");
    assert_eq!(s["slots"][1]["role"], "trial");
    assert_eq!(s["pending"]["image"]["version"], "2.0.0");
    let human = ok(d, &["slots", "status", "--config", CFG]);
    assert!(human.contains("slot B        trial"), "{human}");

    let out = ok(d, &["boot", "confirm", "--config", CFG]);
    assert!(out.contains("security counter now 2"), "{out}");
    let s = status(d);
    assert_eq!(s["confirmed"], "B");
    assert_eq!(s["state"], "idle");
    assert_eq!(s["security_counter"], 2);
    assert_eq!(s["slots"][1]["role"], "confirmed");
    assert_eq!(s["slots"][1]["image"]["security_version"], 2);
    assert_eq!(
        s["slots"][1]["image"]["image_hash"],
        blake3::hash(&image(200_000, 2)).to_hex().as_str()
    );
    assert_eq!(s["last_failure"], Value::Null);

    // The confirmed slot keeps booting; confirm again is a no-op.
    let out = ok(d, &["boot", "reboot", "--config", CFG]);
    assert!(out.contains("booted slot B"), "{out}");
    let out = ok(d, &["boot", "confirm", "--config", CFG]);
    assert!(out.contains("nothing to confirm"), "{out}");

    // The manifest copy kept for re-verification at boot.
    assert!(d.join("node/state/slot-B.mota").exists());
}

#[test]
fn a_failing_health_check_rolls_back_after_reboot_and_status_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provisioned(d, r#"["false"]"#);
    release(d, "v2.img", "2.0.0", "2", "r2.mota");
    ok(
        d,
        &[
            "install",
            "--config",
            CFG,
            "--manifest",
            "r2.mota",
            "--image",
            "v2.img",
        ],
    );
    ok(d, &["boot", "reboot", "--config", CFG]);
    let e = fails(d, 1, &["boot", "confirm", "--config", CFG]);
    assert!(e.contains("node/node.toml: update rolled back"), "{e}");
    assert!(e.contains("health check failed: `false` exited"), "{e}");
    assert!(e.contains("reboot into the previous slot"), "{e}");

    let out = ok(d, &["boot", "reboot", "--config", CFG]);
    assert!(out.contains("booted slot A"), "{out}");
    ok(d, &["boot", "confirm", "--config", CFG]);
    let s = status(d);
    assert_eq!(s["booted"], "A");
    assert_eq!(s["confirmed"], "A");
    assert_eq!(s["state"], "idle");
    assert_eq!(
        s["security_counter"], 1,
        "unchanged by a rolled-back update"
    );
    assert_eq!(s["slots"][1]["bootable"], false);
    assert_eq!(s["last_failure"]["slot"], "B");
    assert_eq!(s["last_failure"]["reason"], "health-check-failed");
    assert_eq!(s["last_failure"]["image"]["version"], "2.0.0");
    assert_eq!(s["failures"], 1);
    let human = ok(d, &["slots", "status", "--config", CFG]);
    assert!(
        human.contains("last failure  slot B: 2.0.0") && human.contains("health check failed"),
        "{human}"
    );
}

#[test]
fn a_tampered_image_is_rejected_with_exit_1_and_the_active_slot_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provisioned(d, r#"["true"]"#);
    release(d, "v2.img", "2.0.0", "2", "r2.mota");
    let mut bad = image(200_000, 2);
    bad[123_456] ^= 0x01;
    std::fs::write(d.join("tampered.img"), &bad).unwrap();
    let before = slot_a_bytes(d, 150_000);
    let e = fails(
        d,
        1,
        &[
            "install",
            "--config",
            CFG,
            "--manifest",
            "r2.mota",
            "--image",
            "tampered.img",
        ],
    );
    assert!(e.contains("tampered.img: image rejected"), "{e}");
    assert!(e.contains("the manifest says"), "{e}");
    assert_eq!(slot_a_bytes(d, 150_000), before);
    assert_eq!(before, image(150_000, 1));
    let s = status(d);
    assert_eq!(s["confirmed"], "A");
    assert_eq!(s["primary"], "A");
    assert_eq!(s["state"], "idle");
    assert_eq!(s["slots"][1]["bootable"], false);
    let out = ok(d, &["boot", "reboot", "--config", CFG]);
    assert!(out.contains("booted slot A"), "{out}");

    // A truncated image is rejected too, naming the lengths.
    std::fs::write(d.join("short.img"), &image(200_000, 2)[..199_999]).unwrap();
    let e = fails(
        d,
        1,
        &[
            "install",
            "--config",
            CFG,
            "--manifest",
            "r2.mota",
            "--image",
            "short.img",
        ],
    );
    assert!(
        e.contains(
            "short.img: image rejected: image stream has 199999 bytes but the manifest says 200000"
        ),
        "{e}"
    );
}

#[test]
fn a_second_install_of_an_older_security_version_is_refused_as_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provisioned(d, r#"["true"]"#);
    release(d, "v2.img", "2.0.0", "5", "r5.mota");
    release(d, "v3.img", "1.5.0", "3", "r3.mota");
    let install = |m: &str| {
        vec![
            "install".to_string(),
            "--config".into(),
            CFG.into(),
            "--manifest".into(),
            m.into(),
        ]
    };
    let args = install("r5.mota");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(d, &args);
    ok(d, &["boot", "reboot", "--config", CFG]);
    ok(d, &["boot", "confirm", "--config", CFG]);
    assert_eq!(status(d)["security_counter"], 5);

    let args = install("r3.mota");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = fails(d, 1, &args);
    assert!(
        e.contains(
            "r3.mota: rejected: security version 3 is not above installed 5: refusing a rollback"
        ),
        "{e}"
    );
    let s = status(d);
    assert_eq!(s["confirmed"], "B");
    assert_eq!(s["state"], "idle");
    assert_eq!(s["security_counter"], 5);
    assert_eq!(
        s["slots"][0]["image"]["version"], "1.0.0",
        "slot A not erased"
    );
}

#[test]
fn an_operator_mark_bad_rolls_the_trial_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provisioned(d, r#"["true"]"#);
    release(d, "v2.img", "2.0.0", "2", "r2.mota");
    ok(d, &["install", "--config", CFG, "--manifest", "r2.mota"]);
    let out = ok(d, &["boot", "mark-bad", "--config", CFG]);
    assert!(out.contains("marked bad: slot B (2.0.0"), "{out}");
    let out = ok(d, &["boot", "reboot", "--config", CFG]);
    assert!(out.contains("booted slot A"), "{out}");
    let s = status(d);
    assert_eq!(s["last_failure"]["reason"], "marked-bad");
    assert_eq!(s["security_counter"], 1);
    let e = fails(d, 1, &["boot", "mark-bad", "--config", CFG]);
    assert!(e.contains("no update is on trial"), "{e}");
}

#[test]
fn a_release_for_other_hardware_or_a_missing_store_chunk_index_is_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provisioned(d, r#"["true"]"#);
    // Same manifest, device of another hardware class.
    let cfg = std::fs::read_to_string(d.join(CFG)).unwrap();
    std::fs::write(
        d.join("node/other.toml"),
        cfg.replace("hardware = \"rpi4\"", "hardware = \"jetson\""),
    )
    .unwrap();
    release(d, "v2.img", "2.0.0", "2", "r2.mota");
    let e = fails(
        d,
        1,
        &[
            "install",
            "--config",
            "node/other.toml",
            "--manifest",
            "r2.mota",
        ],
    );
    assert!(e.contains("r2.mota: rejected:"), "{e}");
    // A store that lacks the release's chunk index.
    ok(d, &["store", "ingest", "--store", "other-store", "v3.img"]);
    let e = fails(
        d,
        1,
        &[
            "install",
            "--config",
            CFG,
            "--manifest",
            "r2.mota",
            "--store",
            "other-store",
        ],
    );
    assert!(e.contains("other-store: chunk index"), "{e}");
    assert_eq!(status(d)["state"], "idle");
}

#[test]
fn a_bad_config_file_is_rejected_naming_the_file_the_field_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    write_config(d, r#"["true"]"#);
    let good = std::fs::read_to_string(d.join(CFG)).unwrap();

    std::fs::write(d.join(CFG), good.replace("channel =", "chanel =")).unwrap();
    let e = fails(d, 1, &["slots", "status", "--config", CFG]);
    assert!(e.contains("node/node.toml: bad node config"), "{e}");
    assert!(e.contains("chanel") && e.contains("line 3"), "{e}");

    std::fs::write(
        d.join(CFG),
        good.replace("timeout_ms = 10000", "timeout_ms = \"soon\""),
    )
    .unwrap();
    let e = fails(d, 1, &["boot", "confirm", "--config", CFG]);
    assert!(
        e.contains("node/node.toml") && e.contains("timeout_ms"),
        "{e}"
    );

    std::fs::write(
        d.join(CFG),
        good.replace("command = [\"true\"]", "command = []"),
    )
    .unwrap();
    let e = fails(d, 1, &["install", "--config", CFG, "--manifest", "x.mota"]);
    assert!(e.contains("field `device.health.command` is empty"), "{e}");

    let e = fails(d, 1, &["slots", "status", "--config", "node/missing.toml"]);
    assert!(e.contains("node/missing.toml"), "{e}");
}

#[test]
fn status_of_a_device_never_provisioned_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    write_config(d, r#"["true"]"#);
    let e = fails(d, 1, &["slots", "status", "--config", CFG]);
    assert!(
        e.contains("never provisioned") && e.contains("slots provision"),
        "{e}"
    );
}

#[test]
fn uboot_device_installs_reboots_by_kernel_command_line_and_confirms() {
    use meshota_boot::control::UbootEnv;
    use meshota_boot::env::Vars;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    write_config(d, r#"["true"]"#);
    let node = d.join("node");
    // A redundant environment in two files, as fw_env.config describes it.
    std::fs::write(
        node.join("fw_env.config"),
        format!(
            "{} 0 0x4000\n{} 0 0x4000\n",
            node.join("env0").display(),
            node.join("env1").display()
        ),
    )
    .unwrap();
    let vars: Vars = [
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    UbootEnv::open_config(&node.join("fw_env.config"))
        .unwrap()
        .initialize(&vars)
        .unwrap();
    std::fs::write(node.join("cmdline"), "console=ttyS0 rauc.slot=A\n").unwrap();
    let cfg = std::fs::read_to_string(d.join(CFG)).unwrap().replace(
        "kind = \"simulated\"\nrecords = \"state/boot.rec\"",
        "kind = \"uboot\"\nfw_env_config = \"fw_env.config\"\ncmdline = \"cmdline\"",
    );
    std::fs::write(d.join(CFG), cfg).unwrap();

    release(d, "v1.img", "1.0.0", "1", "r1.mota");
    release(d, "v2.img", "2.0.0", "2", "r2.mota");
    ok(
        d,
        &[
            "slots",
            "provision",
            "--config",
            CFG,
            "--manifest",
            "r1.mota",
        ],
    );
    ok(d, &["install", "--config", CFG, "--manifest", "r2.mota"]);
    let s = status(d);
    assert_eq!(
        (s["bootloader"].as_str(), s["primary"].as_str()),
        (Some("uboot"), Some("B"))
    );

    // U-Boot chooses for itself: reboot is refused, a dry run only tells.
    let e = fails(d, 2, &["boot", "reboot", "--config", CFG]);
    assert!(
        e.contains("bootloader is uboot") && e.contains("--dry-run"),
        "{e}"
    );
    let out = ok(d, &["boot", "reboot", "--config", CFG, "--dry-run"]);
    assert!(out.contains("uboot bootloader would boot slot B"), "{out}");
    let vars = UbootEnv::open_config(&node.join("fw_env.config"))
        .unwrap()
        .vars()
        .unwrap();
    assert_eq!(vars.get("BOOT_ORDER").map(String::as_str), Some("B A"));
    assert_eq!(
        vars.get("BOOT_B_LEFT").map(String::as_str),
        Some("2"),
        "dry run changed nothing"
    );

    // The machine rebooted into B (the script counted one trial down).
    std::fs::write(node.join("cmdline"), "console=ttyS0 rauc.slot=B\n").unwrap();
    let out = ok(d, &["boot", "confirm", "--config", CFG]);
    assert!(out.contains("confirmed slot B"), "{out}");
    let s = status(d);
    assert_eq!(s["booted"], "B");
    assert_eq!(s["confirmed"], "B");
    assert_eq!(s["security_counter"], 2);
}
