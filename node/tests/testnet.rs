//! `meshota testnet …` and `meshota demo` end to end: real daemon
//! processes on loopback (free ports picked by the system), file slots and
//! the simulated bootloader. Every wait is bounded by the commands' own
//! timeouts; a guard stops the testnet if an assertion fails midway.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use serde_json::Value;

mod common;
use common::{Down, alive, ok_here as ok, run_here as run, text};

/// `testnet up` of `nodes` nodes on free ports with 1 MiB slots; the
/// guard stops it when the test ends.
fn up_small(dir: &Path, nodes: usize) -> Down {
    common::testnet_up(dir, nodes, &[]).1
}

/// Writes `len` bytes of a fixed pseudo-random pattern (`mul` varies it).
fn write_image(path: &Path, len: u32, mul: u32) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(mul) >> 11) as u8)
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// `testnet publish` of `img` as `version`; its output.
fn publish(ds: &str, img: &Path, version: &str) -> String {
    common::testnet_publish(ds, img, version, &[])
}

/// `testnet status --watch` until all `nodes` run `version` confirmed
/// (the command fails after 120 s).
fn watch_until_confirmed(ds: &str, nodes: usize, version: &str) {
    let w = ok(&[
        "testnet",
        "status",
        "--dir",
        ds,
        "--watch",
        "--timeout",
        "120",
    ]);
    let want = format!("all {nodes} nodes confirmed on {version}");
    assert!(w.contains(&want), "{w}");
}

fn pids(dir: &Path) -> Vec<u64> {
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["pid"].as_u64())
        .collect()
}

#[test]
fn the_demo_of_four_nodes_converges_on_v2_as_a_delta_and_reports_one_json_object() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("demo");
    let o = run(&[
        "demo",
        "--nodes",
        "4",
        "--size",
        "2",
        "--json",
        "--timeout",
        "120",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed: stdout {out} stderr {}",
        text(&o.stderr)
    );
    let j: Value = serde_json::from_str(out.trim()).expect("stdout is one JSON object");
    assert_eq!(j["converged"], true, "{j:#}");
    let seconds = j["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds < 300.0, "{seconds}");
    // v1 travels whole to the three nodes that fetch it, v2 as a delta.
    let moved = j["bytes_moved"].as_u64().unwrap();
    assert!(moved >= 3 * (2 << 20), "{moved}");
    let savings = j["delta_savings"].as_f64().unwrap();
    assert!(savings > 0.5 && savings < 1.0, "delta savings {savings}");
    let nodes = j["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["id"], i);
        assert_eq!(n["installed_version"], "2.0.0", "{n}");
        assert_eq!(n["slot_state"], "confirmed", "{n}");
    }
    // The daemons are gone after the demo.
    for pid in pids(&dir) {
        assert!(!alive(pid), "daemon {pid} still running after the demo");
    }
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    assert!(
        state["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["pid"].is_null())
    );
}

#[test]
fn testnet_up_publish_status_down_round_trip_leaves_no_daemon_running() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("tn");
    let ds = dir.to_str().unwrap();
    let _guard = up_small(&dir, 3);
    let started = pids(&dir);
    assert_eq!(started.len(), 3);
    assert!(started.iter().all(|&p| alive(p)), "{started:?}");

    // A running testnet is not started twice.
    let again = run(&["testnet", "up", "--dir", ds, "--base-port", "0"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already up"));

    // Every node booted the provisioned release, confirmed.
    let s: Value =
        serde_json::from_str(&ok(&["testnet", "status", "--dir", ds, "--json"])).unwrap();
    assert_eq!(s["converged"], true, "{s:#}");
    assert_eq!(s["target"]["version"], "0.1.0");

    let img = d.path().join("v1.img");
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&img, bytes).unwrap();
    let p = publish(ds, &img, "1.0.0");
    assert!(p.contains("security version 2"), "{p}");
    watch_until_confirmed(ds, 3, "1.0.0");
    let s: Value =
        serde_json::from_str(&ok(&["testnet", "status", "--dir", ds, "--json"])).unwrap();
    assert_eq!(s["converged"], true);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["installed_version"], "1.0.0", "{n}");
        assert_eq!(n["slot_state"], "confirmed", "{n}");
    }

    let out = ok(&["testnet", "down", "--dir", ds]);
    assert!(out.contains("3 daemon(s) stopped"), "{out}");
    for pid in started {
        assert!(!alive(pid), "daemon {pid} still running after down");
    }
    assert!(pids(&dir).is_empty());
    assert!(
        dir.join("node-0/node.log").exists(),
        "down keeps the directory"
    );
    ok(&["testnet", "down", "--dir", ds, "--clean"]);
    assert!(!dir.exists());
}

#[test]
fn testnet_up_refuses_a_non_empty_directory_that_is_not_a_testnet() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("precious.txt"), b"keep me").unwrap();
    let o = run(&[
        "testnet",
        "up",
        "--nodes",
        "2",
        "--dir",
        d.path().to_str().unwrap(),
        "--base-port",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not empty"), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "nothing was written"
    );
}

#[test]
fn testnet_commands_on_a_directory_that_is_not_a_testnet_exit_1() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().to_str().unwrap();
    for args in [
        vec!["testnet", "status", "--dir", ds],
        vec!["testnet", "down", "--dir", ds],
        vec![
            "testnet",
            "publish",
            "--dir",
            ds,
            "x.img",
            "--version",
            "1.0.0",
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(text(&o.stderr).contains("not a testnet"), "{args:?}");
    }
}

/// A free UDP port on loopback (for the test's own mDNS port, apart from
/// the host's 5353).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn nodes_without_static_peers_find_each_other_over_mdns_and_converge() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("tn");
    let ds = dir.to_str().unwrap();
    let _guard = up_small(&dir, 3);
    ok(&["testnet", "down", "--dir", ds]);
    // Forget the static peers; announce on loopback only, on a port and
    // fleet of this test's own.
    let port = free_udp_port();
    let fleet = format!("test-{}", std::process::id());
    for i in 0..3 {
        let path = dir.join(format!("node-{i}/node.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out: String = text
            .lines()
            .map(|l| {
                if l.starts_with("peers = ") {
                    "peers = []"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(out.contains("peers = []"), "{text}");
        out.push_str(&format!(
            "\n\n[mesh.mdns]\nfleet = \"{fleet}\"\ninterfaces = [\"lo\"]\nport = {port}\n"
        ));
        std::fs::write(&path, out).unwrap();
    }
    ok(&["testnet", "up", "--dir", ds]);

    // Every node finds the other two (the smaller id of each pair dials;
    // bounded generously for a loaded machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let peers: Vec<u64> = (0..3)
            .map(|i| {
                let cfg = dir.join(format!("node-{i}/node.toml"));
                let s: Value = serde_json::from_str(&ok(&[
                    "node",
                    "status",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--json",
                ]))
                .unwrap();
                assert!(
                    s["mdns"]["instance"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("meshota-")),
                    "{s:#}"
                );
                s["peers"].as_u64().unwrap()
            })
            .collect();
        if peers.iter().all(|&p| p == 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "peers per node after 90 s: {peers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let img = d.path().join("v1.img");
    write_image(&img, 200_000, 2_654_435_761);
    publish(ds, &img, "1.0.0");
    watch_until_confirmed(ds, 3, "1.0.0");
}

fn node_status(dir: &Path, i: usize) -> Value {
    let cfg = dir.join(format!("node-{i}/node.toml"));
    serde_json::from_str(&ok(&[
        "node",
        "status",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]))
    .unwrap()
}

#[test]
fn a_late_node_fetches_a_release_its_peers_hold_only_in_their_active_slots() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("tn");
    let ds = dir.to_str().unwrap();
    let _guard = up_small(&dir, 3);
    // Node 2 is away while nodes 0 and 1 install 1.0.0.
    let cfg2 = dir.join("node-2/node.toml");
    ok(&["node", "stop", "--config", cfg2.to_str().unwrap()]);
    let img = d.path().join("v1.img");
    write_image(&img, 400_000, 2_246_822_519);
    publish(ds, &img, "1.0.0");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(0..2).all(|i| {
        let s = node_status(&dir, i);
        s["installed"]["version"] == "1.0.0" && s["slot"]["state"] == "confirmed"
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "nodes 0 and 1 did not confirm 1.0.0"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ok(&["testnet", "down", "--dir", ds]);

    // Destroy every stored chunk of nodes 0 and 1: `store verify`
    // quarantines them all, leaving the indexes.
    for i in 0..2 {
        let store = dir.join(format!("node-{i}/store"));
        for e in std::fs::read_dir(store.join("packs")).unwrap() {
            let p = e.unwrap().path();
            let len = std::fs::metadata(&p).unwrap().len();
            std::fs::write(&p, vec![0u8; len as usize]).unwrap();
        }
        let v = run(&["store", "verify", "--store", store.to_str().unwrap()]);
        assert_eq!(
            v.status.code(),
            Some(1),
            "{} {}",
            text(&v.stdout),
            text(&v.stderr)
        );
        let ls: Value = serde_json::from_str(&ok(&[
            "store",
            "ls",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ]))
        .unwrap();
        assert_eq!(ls["chunks"], 0, "{ls:#}");
    }

    // Back up: nodes 0 and 1 serve 1.0.0 from their slots; node 2 gets it.
    ok(&["testnet", "up", "--dir", ds]);
    watch_until_confirmed(ds, 3, "1.0.0");
    for i in 0..2 {
        let s = node_status(&dir, i);
        assert_eq!(s["store"]["chunks"], 0, "node {i}: {s:#}");
        assert!(
            s["store"]["seeded_chunks"].as_u64().unwrap() > 0,
            "node {i}: {s:#}"
        );
        assert_eq!(s["chunks_fetched"], 0, "node {i} fetched: {s:#}");
    }
    let s2 = node_status(&dir, 2);
    assert!(s2["chunks_fetched"].as_u64().unwrap() > 0, "{s2:#}");
}

#[test]
fn node_stop_returns_once_the_daemon_has_exited_so_the_node_starts_again_at_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("tn");
    let _guard = up_small(&dir, 1);
    let cfg = dir.join("node-0/node.toml");
    let cfg = cfg.to_str().unwrap();
    let answer: Value =
        serde_json::from_str(ok(&["node", "stop", "--config", cfg]).trim()).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    let pid = answer["pid"].as_u64().unwrap();
    assert!(
        !alive(pid),
        "`node stop` returned while pid {pid} still runs"
    );

    // Its store, port and control socket are free: the same config runs
    // again at once and answers.
    let mut again = std::process::Command::new(common::meshota())
        .args(["node", "run", "--config", cfg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if run(&["node", "status", "--config", cfg, "--json"])
            .status
            .success()
        {
            break;
        }
        if let Some(status) = again.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut again.stderr.take().unwrap(), &mut err).unwrap();
            panic!("the restarted daemon exited ({status}): {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted daemon did not answer within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let answer: Value =
        serde_json::from_str(ok(&["node", "stop", "--config", cfg]).trim()).unwrap();
    assert_eq!(answer["pid"].as_u64(), Some(u64::from(again.id())));
    // `node stop` waited for the exit, so the child is already reaped-ready.
    assert!(again.try_wait().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn a_stopped_node_is_dropped_by_its_peers_at_once_not_at_their_idle_timeout() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("tn");
    let _guard = up_small(&dir, 2);
    wait_for_peers(&dir, 0, 1, 60, "nodes 0 and 1 never linked");
    let cfg1 = dir.join("node-1/node.toml");
    ok(&["node", "stop", "--config", cfg1.to_str().unwrap()]);
    // The QUIC idle timeout is 30 s; the close frame tells node 0 now.
    // (Node 0 keeps dialling node 1, which no longer answers.)
    wait_for_peers(
        &dir,
        0,
        0,
        10,
        "node 0 still counts the stopped node 1 as a peer",
    );
}

/// Polls node `i`'s status until it counts `peers` peers; fails with `what`
/// after `secs` seconds.
fn wait_for_peers(dir: &Path, i: usize, peers: u64, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while node_status(dir, i)["peers"] != peers {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} after {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
