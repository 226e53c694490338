//! Real node daemons on loopback: convergence, resume after SIGKILL, and an
//! adversarial process. Every wait is bounded; every process started here
//! is killed when its guard drops.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `meshota` binary next to this test's target directory, built on
/// demand when the test runs on its own.
fn meshota() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("meshota");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "meshota-node"])
            .current_dir(workspace_root())
            .status()
            .unwrap()
            .success();
        assert!(ok && bin.exists(), "could not build {}", bin.display());
    }
    bin
}

fn run(args: &[&str]) -> Output {
    Command::new(meshota()).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "meshota {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Kills its process on drop.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(dir: &Path, i: usize) -> Guard {
    let cfg = dir.join(format!("node-{i}/node.toml"));
    let log = std::fs::File::create(dir.join(format!("node-{i}/test.log"))).unwrap();
    Guard(
        Command::new(meshota())
            .args(["node", "run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn status(dir: &Path, i: usize) -> Option<Value> {
    let cfg = dir.join(format!("node-{i}/node.toml"));
    let o = run(&[
        "node",
        "status",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A testnet of `n` provisioned nodes, created by `meshota testnet up` and
/// stopped again, so that the test starts the daemons itself.
fn testnet(n: usize, image_mib: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let d = dir.to_str().unwrap();
    ok(&[
        "testnet",
        "up",
        "--nodes",
        &n.to_string(),
        "--dir",
        d,
        "--base-port",
        "0",
        "--image-size",
        &image_mib.to_string(),
    ]);
    ok(&["testnet", "down", "--dir", d]);
    tmp
}

fn cap_upload(dir: &Path, i: usize, bytes_per_sec: u64) {
    let cfg = dir.join(format!("node-{i}/node.toml"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.trim_end().contains("[mesh]"),
        "[mesh] must be the last table"
    );
    text.push_str(&format!("upload_bytes_per_sec = {bytes_per_sec}\n"));
    std::fs::write(&cfg, text).unwrap();
}

fn image(path: &Path, len: usize, seed: u64) {
    let mut s = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
}

fn release(dir: &Path, img: &Path, version: &str, sv: u64) -> PathBuf {
    let out = dir.join(format!("release-{version}.mota"));
    ok(&[
        "release",
        "create",
        "--trust",
        dir.join("trust.mota").to_str().unwrap(),
        "--key",
        dir.join("keys/release.key").to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--hardware",
        "testnet",
        "--version",
        version,
        "--security-version",
        &sv.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

fn confirmed_on(s: &Option<Value>, version: &str) -> bool {
    s.as_ref().is_some_and(|s| {
        s["installed"]["version"] == version
            && s["slot"]["state"] == "confirmed"
            && s["state"] == "confirmed"
    })
}

#[test]
fn eight_node_demo_converges_on_a_release_and_then_on_a_delta() {
    let o = run(&["demo", "--nodes", "8", "--size", "4", "--json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["converged"], true);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 8);
    for n in nodes {
        assert_eq!(n["slot_state"], "confirmed", "{n}");
        assert_eq!(n["installed_version"], nodes[0]["installed_version"]);
    }
    let savings = v["delta_savings"].as_f64().unwrap();
    assert!(savings > 0.5, "delta savings {savings}");
}

#[test]
fn node_killed_mid_download_resumes_without_refetching_verified_chunks() {
    let tmp = testnet(2, 8);
    let dir = tmp.path().join("tn");
    cap_upload(&dir, 0, 1 << 20);
    let _n0 = daemon(&dir, 0);
    let mut n1 = daemon(&dir, 1);
    wait_for("both daemons", Duration::from_secs(30), || {
        status(&dir, 0).is_some() && status(&dir, 1).is_some()
    });
    let img = dir.join("v1.img");
    let size = 6 << 20;
    image(&img, size, 11);
    let m = release(&dir, &img, "1.0.0", 10);
    ok(&[
        "node",
        "publish",
        "--config",
        dir.join("node-0/node.toml").to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    // Let node 1 get about half of it, then kill it without warning.
    wait_for("node 1 half way", Duration::from_secs(60), || {
        status(&dir, 1).is_some_and(|s| {
            let have = s["wanted"]["have_chunks"].as_u64().unwrap_or(0);
            let total = s["wanted"]["total_chunks"].as_u64().unwrap_or(u64::MAX);
            have * 2 >= total
        })
    });
    let _ = n1.0.kill();
    let _ = n1.0.wait();
    // Restarted, it must finish fetching only what it had not written.
    let _n1 = daemon(&dir, 1);
    wait_for(
        "node 1 confirmed on 1.0.0",
        Duration::from_secs(120),
        || confirmed_on(&status(&dir, 1), "1.0.0"),
    );
    let after = status(&dir, 1).unwrap()["chunk_bytes_fetched"]
        .as_u64()
        .unwrap();
    assert!(
        after < (size as u64) * 7 / 10,
        "after the restart node 1 fetched {after} of {size} bytes: it re-fetched what it had"
    );
    assert!(after > 0);
}

#[test]
fn adversary_serving_corrupt_chunks_is_banned_while_the_rest_converge() {
    let tmp = testnet(3, 4);
    let dir = tmp.path().join("tn");
    // The honest seed is slow, so the fetching nodes also ask the adversary.
    cap_upload(&dir, 0, 512 * 1024);
    let _n: Vec<Guard> = (0..3).map(|i| daemon(&dir, i)).collect();
    wait_for("three daemons", Duration::from_secs(30), || {
        (0..3).all(|i| status(&dir, i).is_some())
    });
    let listen: Vec<String> = (1..3)
        .map(|i| {
            status(&dir, i).unwrap()["listen"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let img = dir.join("v1.img");
    image(&img, 2 << 20, 12);
    let m = release(&dir, &img, "1.0.0", 10);
    ok(&[
        "node",
        "publish",
        "--config",
        dir.join("node-0/node.toml").to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    let adversary = Command::new(env!("CARGO_BIN_EXE_meshota-adversary"))
        .arg(dir.join("trust.mota"))
        .arg(&m)
        .arg(&img)
        .args(&listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let adversary = Guard(adversary);
    wait_for(
        "nodes 1 and 2 confirmed on 1.0.0",
        Duration::from_secs(120),
        || (1..3).all(|i| confirmed_on(&status(&dir, i), "1.0.0")),
    );
    let bans: u64 = (1..3)
        .map(|i| status(&dir, i).unwrap()["bans"].as_u64().unwrap())
        .sum();
    assert!(bans >= 1, "no node banned the adversary");
    // Every node's image verified: the slots hold the signed image.
    for i in 1..3 {
        let s = status(&dir, i).unwrap();
        assert_eq!(s["last_failure"], Value::Null, "node {i}: {s}");
    }
    drop(adversary);
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    use std::io::{Read, Write};
    let tmp = testnet(1, 1);
    let dir = tmp.path().join("tn");
    let cfg = dir.join("node-0/node.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("metrics_listen = \"127.0.0.1:0\"\n");
    std::fs::write(&cfg, text).unwrap();
    let _n = daemon(&dir, 0);
    wait_for("the daemon", Duration::from_secs(30), || {
        status(&dir, 0).is_some()
    });
    let addr = status(&dir, 0).unwrap()["metrics_listen"]
        .as_str()
        .unwrap()
        .to_string();
    let body = meshota_testkit::get_metrics(&addr);
    assert!(body.contains("# TYPE meshota_peers gauge"), "{body}");
    assert!(
        body.contains("\nmeshota_chunk_requests_deferred_total 0\n"),
        "{body}"
    );
    assert!(
        body.contains("meshota_state{state=\"confirmed\"} 1"),
        "{body}"
    );
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /other HTTP/1.1\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 404"));
}
