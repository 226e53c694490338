//! `release create --previous` and `delta plan` with patches, through the
//! built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

mod common;
use common::*;

/// Code-like bytes: short repeated opcodes and pseudo-random operands.
fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 16 < 6 {
                (i % 7) as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

/// The next release of `old`: an operand changed every 3 KiB.
fn next(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for at in (100..new.len() - 1).step_by(3 * 1024) {
        new[at] = new[at].wrapping_add(0x40);
    }
    new
}

fn setup(dir: &Path) {
    init_trust(dir, "k/rel.pub");
}

fn create(dir: &Path, image: &str, version: &str, sv: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "release",
        "create",
        "--trust",
        "trust.mota",
        "--key",
        "k/rel.key",
        "--image",
        image,
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
    ];
    args.extend_from_slice(extra);
    ok(dir, &args)
}

fn json_field<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[test]
fn release_with_previous_records_a_patch_and_delta_plan_picks_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    setup(dir);
    let v1 = image(600_000, 11);
    std::fs::write(dir.join("v1.img"), &v1).unwrap();
    std::fs::write(dir.join("v2.img"), next(&v1)).unwrap();
    create(dir, "v1.img", "1.0.0", "1", "r1.mota", &[]);
    let out = create(
        dir,
        "v2.img",
        "1.1.0",
        "2",
        "r2.mota",
        &["--previous", "r1.mota"],
    );
    assert!(out.contains("patch        from"), "{out}");

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(dir, &["release", "inspect", "--json", "r2.mota"])).unwrap();
    let patches = inspect["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let r1: serde_json::Value =
        serde_json::from_str(&ok(dir, &["release", "inspect", "--json", "r1.mota"])).unwrap();
    assert_eq!(
        patches[0]["base_image_hash"],
        r1["components"][0]["image_hash"]
    );

    // The store keeps the patch through GC (pinned under release 2).
    ok(dir, &["store", "gc", "--store", "store"]);
    let plan: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &[
            "delta", "plan", "--from", "v1.img", "--to", "r2.mota", "--store", "store", "--json",
        ],
    ))
    .unwrap();
    assert_eq!(plan["plan"], "patch");
    let fetch = plan["fetch_bytes"].as_u64().unwrap();
    let chunks = plan["chunk_plan_bytes"].as_u64().unwrap();
    assert!(fetch * 5 < chunks, "patch {fetch} vs chunks {chunks}");
    assert_eq!(
        json_field(&plan, &["patch", "total_bytes"]).as_u64(),
        Some(fetch)
    );
    assert_eq!(plan["patch"]["id"], patches[0]["patch"]);

    // A node on another base gets the chunk plan.
    std::fs::write(dir.join("other.img"), image(600_000, 12)).unwrap();
    let plan: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &[
            "delta",
            "plan",
            "--from",
            "other.img",
            "--to",
            "r2.mota",
            "--store",
            "store",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(plan["plan"], "chunks");
    assert!(plan["patch"].is_null());
    assert_eq!(plan["fetch_bytes"], plan["chunk_plan_bytes"]);
}

#[test]
fn release_records_no_patch_from_an_unrelated_previous_image() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    setup(dir);
    std::fs::write(dir.join("v1.img"), image(300_000, 21)).unwrap();
    let mut x = 0x2545_f491u32;
    let random: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(dir.join("v2.img"), random).unwrap();
    create(dir, "v1.img", "1.0.0", "1", "r1.mota", &[]);
    let out = create(
        dir,
        "v2.img",
        "2.0.0",
        "2",
        "r2.mota",
        &["--previous", "r1.mota"],
    );
    assert!(out.contains("no patch"), "{out}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(dir, &["release", "inspect", "--json", "r2.mota"])).unwrap();
    assert!(inspect["patches"].as_array().unwrap().is_empty());
}

#[test]
fn previous_without_store_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    setup(dir);
    std::fs::write(dir.join("v1.img"), image(10_000, 1)).unwrap();
    let o = run(
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
            "--out",
            "r.mota",
            "--previous",
            "r0.mota",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn delta_plan_make_patch_prices_a_patch_between_two_images() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let v1 = image(400_000, 5);
    std::fs::write(dir.join("v1.img"), &v1).unwrap();
    std::fs::write(dir.join("v2.img"), next(&v1)).unwrap();
    let plan: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &[
            "delta",
            "plan",
            "--from",
            "v1.img",
            "--to",
            "v2.img",
            "--make-patch",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(plan["plan"], "patch");
    assert!(plan["fetch_bytes"].as_u64().unwrap() < plan["chunk_plan_bytes"].as_u64().unwrap());
    let text = ok(
        dir,
        &[
            "delta",
            "plan",
            "--from",
            "v1.img",
            "--to",
            "v2.img",
            "--make-patch",
        ],
    );
    assert!(text.contains("by patch"), "{text}");
}
