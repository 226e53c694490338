//! Helpers shared by the node crate's CLI tests: run the built `meshota`
//! binary in a directory and read what it printed.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `meshota` binary cargo built for these tests.
pub fn meshota() -> &'static str {
    env!("CARGO_BIN_EXE_meshota")
}

/// The workspace root (scripts, tests/python).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `meshota ARGS` in `dir` without a passphrase in the environment.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(meshota())
        .args(args)
        .current_dir(dir)
        .env_remove("MESHOTA_PASSPHRASE")
        .output()
        .unwrap()
}

/// What a command printed on standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; returns its standard output.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Generates root and release keys in `dir/k` and a trust root
/// `dir/trust.mota` (threshold 1). `release_key` is the `--release-key`
/// argument: `k/rel.pub`, optionally scoped (`k/rel.pub;hardware=rpi4`).
pub fn init_trust(dir: &Path, release_key: &str) {
    ok(dir, &["keys", "generate", "--out", "k", "--name", "root"]);
    ok(dir, &["keys", "generate", "--out", "k", "--name", "rel"]);
    ok(
        dir,
        &[
            "trust",
            "init",
            "--root-key",
            "k/root.pub",
            "--threshold",
            "1",
            "--release-key",
            release_key,
            "--sign",
            "k/root.key",
            "--out",
            "trust.mota",
        ],
    );
}

/// Runs `testnet down` on the testnet in the directory it holds when
/// dropped, so a failed assertion leaves no daemon running.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(meshota())
            .args(["testnet", "down", "--dir"])
            .arg(&self.0)
            .env_remove("MESHOTA_PASSPHRASE")
            .output();
    }
}

/// `meshota testnet up` of `nodes` small daemons (1 MiB images, ports
/// picked by the OS) in `dir`, with `extra` arguments; returns its
/// standard output and the guard that takes the testnet down.
pub fn testnet_up(dir: &Path, nodes: usize, extra: &[&str]) -> (String, Down) {
    let n = nodes.to_string();
    let mut args = vec![
        "testnet",
        "up",
        "--nodes",
        &n,
        "--dir",
        dir.to_str().unwrap(),
        "--base-port",
        "0",
        "--image-size",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = ok_here(&args);
    (out, Down(dir.to_path_buf()))
}

/// `meshota testnet publish` of `img` as `version` on the testnet in
/// `dir`, with `extra` arguments; its standard output.
pub fn testnet_publish(dir: &str, img: &Path, version: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "testnet",
        "publish",
        "--dir",
        dir,
        img.to_str().unwrap(),
        "--version",
        version,
    ];
    args.extend_from_slice(extra);
    ok_here(&args)
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

/// Bytes a command printed, as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `meshota ARGS` in the current directory (paths in ARGS absolute)
/// without a passphrase in the environment.
pub fn run_here(args: &[&str]) -> Output {
    Command::new(meshota())
        .args(args)
        .env_remove("MESHOTA_PASSPHRASE")
        .output()
        .unwrap()
}

/// [`run_here`] for a command that must succeed; returns its standard
/// output, and on failure shows the exit code and both streams.
pub fn ok_here(args: &[&str]) -> String {
    let o = run_here(args);
    assert!(
        o.status.success(),
        "{args:?} failed ({:?}): stdout {} stderr {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// `meshota release create` of `image` with a testnet's dev release key,
/// trust root, hardware class and channel (from its `testnet.json`,
/// `state`), into the publisher's `store`; with `previous`, patches from
/// that earlier release too.
pub fn testnet_release_create(
    state: &serde_json::Value,
    store: &Path,
    image: &Path,
    version: &str,
    security_version: u64,
    out: &Path,
    previous: Option<&Path>,
) {
    let field = |k: &str| state[k].as_str().unwrap().to_string();
    let (trust, key, hw, ch) = (
        field("trust_root"),
        field("release_key"),
        field("hardware"),
        field("channel"),
    );
    let sv = security_version.to_string();
    let mut args = vec![
        "release",
        "create",
        "--trust",
        &trust,
        "--key",
        &key,
        "--image",
        image.to_str().unwrap(),
        "--hardware",
        &hw,
        "--channel",
        &ch,
        "--version",
        version,
        "--security-version",
        &sv,
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(p) = previous {
        args.extend_from_slice(&["--previous", p.to_str().unwrap()]);
    }
    ok_here(&args);
}
