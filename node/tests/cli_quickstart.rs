//! The README quickstart, run for real, plus the CLI's exit-code contract.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::*;

#[test]
fn readme_quickstart_script_succeeds_and_rejects_tampering_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/quickstart.sh"))
        .arg(dir.path())
        .env("MESHOTA", meshota())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("valid: meshota 1.0.0 for rpi4/stable"),
        "{stdout}"
    );
    assert!(stderr.contains("tampered.mota: rejected:"), "{stderr}");
    assert!(
        stderr.contains("security version 1 is not above installed 1: refusing a rollback"),
        "{stderr}"
    );
    assert!(stdout.contains("quickstart finished"));
}

/// Generates root and release keys and a trust root in `dir`.
fn setup(dir: &Path) {
    init_trust(dir, "k/rel.pub");
    std::fs::write(dir.join("img"), vec![7u8; 100_000]).unwrap();
}

fn create(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "release",
        "create",
        "--trust",
        "trust.mota",
        "--key",
        "k/rel.key",
        "--image",
        "img",
        "--hardware",
        "rpi4",
        "--version",
        "2.0.0",
        "--security-version",
        "7",
        "--out",
        "m.mota",
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        run(dir.path(), &["release", "verify"]).status.code(),
        Some(2)
    );
    assert_eq!(run(dir.path(), &["no-such-command"]).status.code(), Some(2));
    setup(dir.path());
    let o = create(dir.path(), &["--rollout", "fifty:1h"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("PERCENT:SOAK"));
}

#[test]
fn secret_key_readable_by_others_is_refused_with_exit_1() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let key = dir.path().join("k/rel.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = create(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("k/rel.key: secret key file is accessible by group or others"));
    assert!(!dir.path().join("m.mota").exists());
}

#[test]
fn passphrase_protected_key_signs_with_env_passphrase_and_refuses_without() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let gen_out = Command::new(meshota())
        .args([
            "keys",
            "generate",
            "--out",
            "k",
            "--name",
            "sealed",
            "--encrypt",
        ])
        .current_dir(dir.path())
        .env("MESHOTA_PASSPHRASE", "hunter2")
        .output()
        .unwrap();
    assert!(gen_out.status.success(), "{}", stderr(&gen_out));
    let sign = |pass: Option<&str>| {
        let mut c = Command::new(meshota());
        c.args([
            "trust",
            "init",
            "--root-key",
            "k/sealed.pub",
            "--threshold",
            "1",
            "--sign",
            "k/sealed.key",
            "--out",
            "t2.mota",
        ])
        .current_dir(dir.path())
        .env_remove("MESHOTA_PASSPHRASE");
        if let Some(p) = pass {
            c.env("MESHOTA_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    let o = sign(None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("passphrase-protected"),
        "{}",
        stderr(&o)
    );
    let o = sign(Some("wrong"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    let o = sign(Some("hunter2"));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn release_create_refuses_to_write_a_manifest_outside_the_key_scope() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keys", "generate", "--out", "k", "--name", "root"]);
    ok(d, &["keys", "generate", "--out", "k", "--name", "rel"]);
    ok(
        d,
        &[
            "trust",
            "init",
            "--root-key",
            "k/root.pub",
            "--threshold",
            "1",
            "--release-key",
            "k/rel.pub;hardware=imx8;channels=beta",
            "--sign",
            "k/root.key",
            "--out",
            "trust.mota",
        ],
    );
    std::fs::write(d.join("img"), b"image").unwrap();
    let o = create(d, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("outside its scope"), "{}", stderr(&o));
    assert!(!d.join("m.mota").exists());
}

#[test]
fn rotation_revokes_removed_release_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ok(d, &["keys", "generate", "--out", "k", "--name", "rel2"]);
    assert!(create(d, &[]).status.success());
    ok(
        d,
        &[
            "trust",
            "rotate",
            "--trust",
            "trust.mota",
            "--remove-release-key",
            "k/rel.pub",
            "--add-release-key",
            "k/rel2.pub",
            "--sign",
            "k/root.key",
            "--out",
            "trust-v2.mota",
        ],
    );
    let shown = ok(d, &["trust", "show", "--json", "trust-v2.mota"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["revoked"].as_array().unwrap().len(), 1);
    ok(
        d,
        &["trust", "verify", "--trust", "trust.mota", "trust-v2.mota"],
    );
    // The manifest signed by the removed key verified under v1 ...
    ok(d, &["release", "verify", "--trust", "trust.mota", "m.mota"]);
    // ... and is rejected under v2.
    let o = run(
        d,
        &["release", "verify", "--trust", "trust-v2.mota", "m.mota"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("signed by revoked key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn release_inspect_json_names_the_component_fields() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    assert!(
        create(dir.path(), &["--rollout", "10:1h,100:0"])
            .status
            .success()
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["release", "inspect", "--json", "m.mota"])).unwrap();
    assert_eq!(v["security_version"], 7);
    assert_eq!(v["components"][0]["size"], 100_000);
    assert_eq!(
        v["components"][0]["image_hash"],
        blake3::hash(&vec![7u8; 100_000]).to_hex().as_str()
    );
    assert_eq!(v["rollout"][0]["min_soak_secs"], 3600);
}

#[test]
fn wrong_kind_of_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let o = run(
        dir.path(),
        &["release", "verify", "--trust", "trust.mota", "trust.mota"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("trust.mota: wrong kind of file: expected a release-manifest"),
        "{}",
        stderr(&o)
    );
}

/// Runs `meshota ARGS` on a pseudo-terminal (util-linux `script`), typing
/// `lines` after a pause each, as a person at the prompt would.
fn on_terminal(dir: &Path, args: &str, lines: &[&str]) -> Output {
    let mut feed = String::from("sleep 1");
    for l in lines {
        feed.push_str(&format!("; printf '%s\\n' '{l}'; sleep 1"));
    }
    let cmd = format!(
        "({feed}) | timeout 30 script -qec \"{} {args}\" /dev/null",
        meshota()
    );
    Command::new("bash")
        .args(["-c", &cmd])
        .current_dir(dir)
        .env_remove("MESHOTA_PASSPHRASE")
        .output()
        .unwrap()
}

#[test]
fn passphrase_is_asked_on_a_terminal_when_not_in_the_environment() {
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "util-linux `script` is needed to give the CLI a terminal"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = on_terminal(
        d,
        "keys generate --out k --name p --encrypt",
        &["s3cret", "s3cret"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("New passphrase"), "{out}");
    assert!(out.contains("(passphrase-protected)"), "{out}");
    let key = std::fs::read(d.join("k/p.key")).unwrap();
    assert!(!key.windows(6).any(|w| w == b"s3cret"));
    // Signing asks for it; the right one signs, a wrong one is refused.
    let init = "trust init --root-key k/p.pub --threshold 1 --sign k/p.key --out t.mota";
    let o = on_terminal(d, init, &["wrong"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("wrong passphrase"));
    assert!(!d.join("t.mota").exists());
    let o = on_terminal(d, init, &["s3cret"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Passphrase for key \"p\""), "{out}");
    assert!(d.join("t.mota").exists(), "{out}");
}
