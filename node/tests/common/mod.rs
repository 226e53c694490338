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
