//! An independent implementation checks meshota's signatures: Python's
//! `cryptography` (>= 50, OpenSSL's ML-DSA) verifies a manifest written by
//! the `meshota` binary, over the documented signed bytes and context
//! string (ARCHITECTURE.md, "Signed bytes").
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{init_trust, workspace_root};

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

fn meshota(dir: &Path, args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_meshota"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn py_verify(dir: &Path, file: &str, key: &str) -> (bool, String) {
    let o = Command::new(python())
        .arg(workspace_root().join("tests/python/verify_manifest.py"))
        .args(["--manifest", file, "--public-key", key])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn python_cryptography_verifies_meshota_manifest_and_trust_root_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_trust(d, "k/rel.pub");
    std::fs::write(d.join("img"), b"an image").unwrap();
    meshota(
        d,
        &[
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
            "1.0.0",
            "--security-version",
            "1",
            "--out",
            "m.mota",
        ],
    );
    let (ok, log) = py_verify(d, "m.mota", "k/rel.pub");
    assert!(ok, "Python rejected a meshota manifest:\n{log}");
    assert!(log.contains("meshota/v1/release-manifest"), "{log}");
    let (ok, log) = py_verify(d, "trust.mota", "k/root.pub");
    assert!(ok, "Python rejected a meshota trust root:\n{log}");

    // And it rejects what meshota rejects: one flipped body byte.
    let mut bytes = std::fs::read(d.join("m.mota")).unwrap();
    bytes[30] ^= 0x01;
    std::fs::write(d.join("bad.mota"), bytes).unwrap();
    let (ok, log) = py_verify(d, "bad.mota", "k/rel.pub");
    assert!(!ok, "Python accepted a tampered manifest:\n{log}");
    // The wrong key's signature is not there at all.
    let (ok, _) = py_verify(d, "m.mota", "k/root.pub");
    assert!(!ok);
}
