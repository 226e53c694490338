//! `meshota testnet up --lora`: real daemons on the simulated LoRa medium
//! (a medium server process over a Unix socket), radio only and mixed with
//! QUIC; the radio's start-up errors. Every wait is bounded (the commands'
//! own timeouts, or a counted loop); a guard stops the testnet if an
//! assertion fails midway.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The medium and the nodes' links run this many times faster than the
/// wall clock (airtime, duty cycle and timers alike).
const TIME_SCALE: &str = "10";
/// Longest wait for a release to converge (wall seconds).
const CONVERGE_S: &str = "150";

mod common;
use common::{
    Down, alive, meshota, ok_here as ok, run_here as run, testnet_release_create, testnet_up, text,
};

fn up_lora(dir: &Path, nodes: usize, extra: &[&str]) -> Down {
    let mut args = vec!["--lora", "--lora-time-scale", TIME_SCALE];
    args.extend_from_slice(extra);
    let (out, down) = testnet_up(dir, nodes, &args);
    assert!(out.contains("on the medium"), "{out}");
    down
}

fn write_image(path: &Path, len: u32, mul: u32) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(mul) >> 7) as u8 ^ (i as u8))
        .collect();
    std::fs::write(path, bytes).unwrap();
}

fn publish_at(ds: &str, img: &Path, version: &str, node: usize) -> String {
    common::testnet_publish(ds, img, version, &["--node", &node.to_string()])
}

/// `testnet status --watch --json` until every node runs the newest
/// release confirmed; the JSON.
fn watch(ds: &str) -> Value {
    let o = run(&[
        "testnet",
        "status",
        "--dir",
        ds,
        "--watch",
        "--json",
        "--timeout",
        CONVERGE_S,
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        o.status.success(),
        "not converged: {:#}\nstderr {}",
        v,
        text(&o.stderr)
    );
    v
}

fn state(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap()
}

/// The medium's status file (null until the server wrote one).
fn medium_status(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("medium-status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn node_status(dir: &Path, i: usize) -> Value {
    let config = dir.join(format!("node-{i}/node.toml"));
    let o = run(&[
        "node",
        "status",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Waits (bounded) until the medium's status file says more than `frames`
/// frames went on air; the status.
fn wait_frames(dir: &Path, frames: u64, timeout: Duration) -> Value {
    let start = Instant::now();
    for _ in 0..10_000 {
        let m = medium_status(dir);
        if m["frames"].as_u64().unwrap_or(0) > frames || start.elapsed() > timeout {
            return m;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    medium_status(dir)
}

#[test]
fn a_lora_line_of_three_converges_with_no_duty_cycle_violation() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    let guard = up_lora(&dir, 3, &["--lora-topology", "line"]);
    let s = state(&dir);
    let medium_pid = s["lora"]["pid"].as_u64().unwrap();
    assert!(alive(medium_pid));
    assert_eq!(s["lora"]["radio_nodes"], serde_json::json!([0, 1, 2]));
    // Radio only: no QUIC peers anywhere.
    for n in s["nodes"].as_array().unwrap() {
        assert!(n["peers"].as_array().unwrap().is_empty());
    }
    let img = t.path().join("v1.img");
    write_image(&img, 3_000, 2_654_435_761);
    publish_at(ds, &img, "1.0.0", 0);
    let v = watch(ds);
    assert_eq!(v["converged"], true);
    // Every node got it over the radio; node 2 only through node 1.
    for i in 1..3 {
        let st = node_status(&dir, i);
        assert_eq!(st["peers"], 0, "node {i} has QUIC peers");
        let r = &st["radio"];
        assert_eq!(r["complete"], true, "node {i}: {r:#}");
        assert!(
            r["to_core"].as_array().unwrap().len() == 1,
            "node {i}: {r:#}"
        );
        assert!(r["frames_heard"].as_u64().unwrap() > 0);
        assert!(r["airtime_us"].as_u64().unwrap() <= r["budget_per_hour_us"].as_u64().unwrap());
    }
    let n1 = node_status(&dir, 1);
    assert_eq!(n1["radio"]["neighbours"].as_array().unwrap().len(), 2);
    let human = ok(&[
        "node",
        "status",
        "--config",
        dir.join("node-1/node.toml").to_str().unwrap(),
    ]);
    assert!(
        human.contains("radio      medium EU868 869.525 MHz SF7/125 kHz"),
        "{human}"
    );
    // The medium's checker saw no duty-cycle violation; `testnet status`
    // shows the medium.
    std::thread::sleep(Duration::from_millis(700));
    let m = medium_status(&dir);
    assert_eq!(m["duty_cycle_violations"], 0, "{m:#}");
    assert!(m["frames"].as_u64().unwrap() > 10, "{m:#}");
    assert_eq!(m["refused"], 0, "{m:#}");
    let human = ok(&["testnet", "status", "--dir", ds]);
    assert!(human.contains("duty-cycle violations"), "{human}");
    // Bad input on the medium socket is refused, not a crash: an unknown
    // kind, a node index off the medium, a node already connected.
    let sock = dir.join("medium.sock");
    for (hello, want) in [
        (vec![0x7f, 0, 0], "unknown message kind"),
        (vec![0x01, 3, 0, 1, 99, 0], "not on the medium"),
        (vec![0x01, 3, 0, 1, 1, 0], "already connected"),
        (vec![0x01, 3, 0, 9, 0, 0], "protocol version 9"),
    ] {
        let reason = refused(&sock, &hello);
        assert!(reason.contains(want), "{hello:?}: {reason}");
    }
    assert!(alive(medium_pid), "the medium server died on bad input");
    assert!(human.contains("radio "), "{human}");
    // `down` stops the medium too.
    ok(&["testnet", "down", "--dir", ds]);
    assert!(
        !alive(medium_pid),
        "the medium server outlived `testnet down`"
    );
    assert!(state(&dir)["lora"]["pid"].is_null());
    drop(guard);
}

/// Publishes at node 0 release 1.0.0: the nodes' initial image with 16
/// bytes changed in the middle, its manifest listing a patch from the
/// initial image (`node publish --patch-store`). With `patch_late`, first
/// without the patch, until node 0's radio defers the release for want of
/// it, and then again with it. Waits (bounded) until nodes 1 and 2 confirm
/// it; returns 1.0.0's manifest file.
fn publish_patch_release_and_wait(t: &Path, dir: &Path, patch_late: bool) -> std::path::PathBuf {
    let s = state(dir);
    // The publisher's store: the nodes' initial image as a release, then
    // 1.0.0 (16 bytes changed in the middle) with a patch from it.
    let store = t.join("pub-store");
    let base = std::fs::read(s["initial"]["image"].as_str().unwrap()).unwrap();
    let mut next = base.clone();
    let mid = next.len() / 2;
    for b in &mut next[mid..mid + 16] {
        *b = b.wrapping_add(0x40);
    }
    let (base_img, next_img) = (t.join("base.img"), t.join("next.img"));
    std::fs::write(&base_img, &base).unwrap();
    std::fs::write(&next_img, &next).unwrap();
    let sv = s["initial"]["security_version"].as_u64().unwrap();
    let create = |img: &Path, version: &str, sv: u64, out: &Path, previous: Option<&Path>| {
        testnet_release_create(&s, &store, img, version, sv, out, previous);
    };
    let (base_m, next_m) = (t.join("base.mota"), t.join("next.mota"));
    create(&base_img, "0.1.0", sv, &base_m, None);
    create(&next_img, "1.0.0", sv + 1, &next_m, Some(&base_m));
    let config = dir.join("node-0/node.toml");
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "node",
            "publish",
            "--config",
            config.to_str().unwrap(),
            "--manifest",
            next_m.to_str().unwrap(),
            "--image",
            next_img.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(&args);
    };
    if patch_late {
        publish(&[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = node_status(dir, 0)["radio"].clone();
            if !r["to_radio_deferred"].as_array().unwrap().is_empty() {
                // Not on the air: nothing for the neighbours to fetch.
                assert!(r["release"].is_null(), "{r:#}");
                break;
            }
            assert!(Instant::now() < deadline, "never deferred: {r:#}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    publish(&["--patch-store", store.to_str().unwrap()]);
    // (`testnet status --watch` knows only `testnet publish`ed releases.)
    let deadline = Instant::now() + Duration::from_secs(150);
    for i in 1..3 {
        loop {
            let st = node_status(dir, i);
            if st["installed"]["version"] == "1.0.0" && st["slot"]["state"] == "confirmed" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not confirm 1.0.0: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    next_m
}

#[test]
fn radio_nodes_on_the_base_install_a_patch_release_from_pieces() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let _guard = up_lora(&dir, 3, &["--lora-topology", "line"]);
    let next_m = publish_patch_release_and_wait(t.path(), &dir, false);
    // Nodes 1 and 2 (node 2 only through node 1) built the changed chunk
    // from a patch piece applied to their confirmed slot, and took every
    // other chunk from what they held: no chunk crossed the radio.
    for i in 1..3 {
        let st = node_status(&dir, i);
        assert_eq!(st["installed"]["version"], "1.0.0", "node {i}: {st:#}");
        let r = &st["radio"];
        assert!(
            r["pieces_applied"].as_u64().unwrap() >= 1,
            "node {i}: {r:#}"
        );
        assert!(
            r["chunks_from_pieces"].as_u64().unwrap() >= 1,
            "node {i}: {r:#}"
        );
        assert!(
            r["chunks_supplied"].as_u64().unwrap() >= 1,
            "node {i}: {r:#}"
        );
        assert_eq!(r["chunks_decoded"], 0, "node {i}: {r:#}");
        assert_eq!(r["piece_failures"], 0, "node {i}: {r:#}");
        // Under the whole-release limit: the index came whole, and the
        // link holds every chunk in memory (to serve any neighbour).
        assert_eq!(r["index_delta"], false, "node {i}: {r:#}");
        assert_eq!(r["chunks_in_memory"], r["have_chunks"], "node {i}: {r:#}");
    }
    assert_eq!(medium_status(&dir)["duty_cycle_violations"], 0);
    // The relay kept the patch it fetched over the radio in its store,
    // pinned under the release, and so did the publisher (`--patch-store`):
    // a store GC leaves it, so after a restart they serve the pieces again
    // rather than the chunks.
    let inspect = ok(&["release", "inspect", "--json", next_m.to_str().unwrap()]);
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    let patch_id = inspect["patches"][0]["patch"].as_str().unwrap().to_string();
    ok(&["testnet", "down", "--dir", dir.to_str().unwrap()]);
    for i in [0, 1] {
        let node_store = dir.join(format!("node-{i}/store"));
        let node_store = node_store.to_str().unwrap();
        ok(&["store", "gc", "--store", node_store]);
        let ls = ok(&["store", "ls", "--chunks", "--json", "--store", node_store]);
        let ls: Value = serde_json::from_str(&ls).unwrap();
        let held: Vec<&str> = ls["chunk_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert!(
            held.contains(&patch_id.as_str()),
            "node {i}: patch {patch_id} gone after gc: {ls:#}"
        );
    }
}

/// Above `[radio] whole_release_bytes_max` a release crosses the radio by
/// patch only: its bundle carries the chunk index as a delta against the
/// patch's base, and every node, the publisher included, keeps in memory
/// only the chunks the pieces make; the rest stay in the store.
#[test]
fn a_release_above_the_whole_release_limit_crosses_by_patch_with_its_chunks_left_in_the_store() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    // The initial image is 256 KiB: make 64 KiB the nodes' limit.
    let _guard = up_lora(
        &dir,
        3,
        &[
            "--lora-topology",
            "line",
            "--lora-whole-release-bytes-max",
            "65536",
        ],
    );
    // Published first without its patch: node 0 holds it, but the radio
    // cannot carry it until the patch is in the store too.
    publish_patch_release_and_wait(t.path(), &dir, true);
    assert_eq!(
        node_status(&dir, 0)["radio"]["to_radio_deferred"],
        serde_json::json!([])
    );
    for i in 0..3 {
        let st = node_status(&dir, i);
        let r = &st["radio"];
        assert_eq!(r["whole_release_bytes_max"], 65536, "node {i}: {r:#}");
        assert_eq!(r["index_delta"], true, "node {i}: {r:#}");
        assert_eq!(r["complete"], true, "node {i}: {r:#}");
        let (mem, total) = (
            r["chunks_in_memory"].as_u64().unwrap(),
            r["total_chunks"].as_u64().unwrap(),
        );
        assert!(mem >= 1 && mem * 2 < total, "node {i}: {r:#}");
        assert_eq!(r["chunk_failures"], 0, "node {i}: {r:#}");
        if i > 0 {
            // Every chunk in memory was made by a piece; none crossed.
            assert_eq!(st["installed"]["version"], "1.0.0", "node {i}: {st:#}");
            assert_eq!(r["chunks_decoded"], 0, "node {i}: {r:#}");
            assert_eq!(r["chunks_from_pieces"], mem, "node {i}: {r:#}");
            assert_eq!(r["bundle_failures"], 0, "node {i}: {r:#}");
        }
    }
    assert_eq!(medium_status(&dir)["duty_cycle_violations"], 0);
    // Restarted, the publisher runs 1.0.0 and no longer seeds the base, yet
    // it still writes the delta against the base's index (remembered on
    // disk) and puts the release back on the air.
    let release = node_status(&dir, 0)["radio"]["release"].clone();
    ok(&["testnet", "down", "--dir", ds]);
    ok(&["testnet", "up", "--dir", ds]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = node_status(&dir, 0)["radio"].clone();
        if r["release"] == release && r["complete"] == true {
            assert_eq!(r["index_delta"], true, "{r:#}");
            assert_eq!(r["to_radio_deferred"], serde_json::json!([]), "{r:#}");
            break;
        }
        assert!(Instant::now() < deadline, "not back on the air: {r:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Node 1 is configured with the short id node 0 derived: the two clash.
/// Node 0's id was derived, so it derives another; node 1's was set, so
/// it keeps it (warning, if it heard the clash first). The release then
/// crosses both.
#[test]
fn a_derived_short_id_that_a_neighbour_shares_is_derived_again() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    let _guard = up_lora(&dir, 3, &["--lora-topology", "line"]);
    let clash = node_status(&dir, 0)["radio"]["short_id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["testnet", "down", "--dir", ds]);
    let path = dir.join("node-1/node.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(!toml.contains("short_id"), "{toml}");
    let toml = toml.replace(
        "\n[radio]\n",
        &format!(
            "\n[radio]\nshort_id = {}\n",
            u16::from_str_radix(&clash, 16).unwrap()
        ),
    );
    std::fs::write(&path, toml).unwrap();
    ok(&["testnet", "up", "--dir", ds]);
    let v1 = t.path().join("v1.img");
    write_image(&v1, 3_000, 2_654_435_761);
    publish_at(ds, &v1, "1.0.0", 0);
    watch(ds);
    let (n0, n1) = (node_status(&dir, 0), node_status(&dir, 1));
    let (r0, r1) = (&n0["radio"], &n1["radio"]);
    assert_eq!(r0["short_id_changes"], 1, "{r0:#}");
    assert_ne!(r0["short_id"], clash.as_str(), "{r0:#}");
    assert_eq!(r1["short_id"], clash.as_str(), "{r1:#}");
    assert_eq!(r1["short_id_changes"], 0, "{r1:#}");
    // Each knows the other under its id now.
    let neighbours = |r: &Value| r["neighbours"].as_array().unwrap().clone();
    assert!(neighbours(r1).contains(&r0["short_id"]), "{r1:#}");
    assert!(
        neighbours(r0).contains(&Value::from(clash.as_str())),
        "{r0:#}"
    );
    // Node 0 heard the clash (node 1 may not have: node 0 can move first).
    assert!(r0["frames_own_id"].as_u64().unwrap() > 0, "{r0:#}");
    let log = std::fs::read_to_string(dir.join("node-0/node.log")).unwrap();
    assert!(log.contains("derived again from its key"), "{log}");
    assert_eq!(medium_status(&dir)["duty_cycle_violations"], 0);
    // Restarted, node 0 keeps the id it moved to (its salt is saved), so
    // the clash does not come back.
    let moved = r0["short_id"].clone();
    ok(&["testnet", "down", "--dir", ds]);
    ok(&["testnet", "up", "--dir", ds]);
    std::thread::sleep(Duration::from_secs(3));
    let r0 = node_status(&dir, 0)["radio"].clone();
    assert_eq!(r0["short_id"], moved, "{r0:#}");
    assert_eq!(r0["short_id_changes"], 0, "{r0:#}");
    assert_eq!(r0["frames_own_id"], 0, "{r0:#}");
}

#[test]
fn a_mixed_net_forwards_between_quic_and_lora_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    // Node 0: QUIC only; node 1: QUIC and radio; node 2: radio only.
    let _guard = up_lora(&dir, 3, &["--mixed", "2"]);
    let s = state(&dir);
    assert_eq!(s["lora"]["radio_nodes"], serde_json::json!([1, 2]));
    assert!(s["nodes"][2]["peers"].as_array().unwrap().is_empty());
    // QUIC -> LoRa: published at the QUIC-only node.
    let v1 = t.path().join("v1.img");
    write_image(&v1, 3_000, 2_654_435_761);
    publish_at(ds, &v1, "1.0.0", 0);
    watch(ds);
    let n2 = node_status(&dir, 2);
    assert_eq!(n2["peers"], 0);
    assert_eq!(n2["radio"]["to_core"].as_array().unwrap().len(), 1);
    let n1 = node_status(&dir, 1);
    assert!(
        !n1["radio"]["to_radio"].as_array().unwrap().is_empty(),
        "{n1:#}"
    );
    // LoRa -> QUIC: injected at the radio-only node.
    let v2 = t.path().join("v2.img");
    write_image(&v2, 3_500, 40_503);
    publish_at(ds, &v2, "2.0.0", 2);
    let v = watch(ds);
    let n0 = node_status(&dir, 0);
    assert!(n0["radio"].is_null(), "node 0 has no radio");
    assert!(n0["chunk_bytes_fetched"].as_u64().unwrap() > 0);
    let n1 = node_status(&dir, 1);
    assert!(
        n1["radio"]["to_core"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| v["target"]["release"] == *r),
        "{n1:#}"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(medium_status(&dir)["duty_cycle_violations"], 0);
}

/// `testnet up --lora --leaves 2` writes `relay = false` in node 2's
/// `[radio]`, which makes it a leaf. A release
/// published at the leaf (the end of a line) stays there: its neighbour
/// hears it announced and never asks, the leaf sends no bundle fragment
/// and no symbol. A newer release published at the other end reaches
/// every node, the leaf included, through the relays.
#[test]
fn a_leaf_daemon_serves_nothing_and_still_installs_over_the_radio() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    // A leaf off the radio is refused before anything is written.
    let bad = run(&[
        "testnet", "up", "--lora", "--nodes", "3", "--dir", ds, "--leaves", "5",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("not on the radio"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!dir.exists(), "a refused testnet left files behind");
    // Leaves named and a planned backbone do not go together.
    let both = run(&[
        "testnet",
        "up",
        "--lora",
        "--nodes",
        "3",
        "--dir",
        ds,
        "--leaves",
        "2",
        "--plan-backbone",
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
    assert!(!dir.exists(), "a refused testnet left files behind");
    let guard = up_lora(&dir, 3, &["--lora-topology", "line", "--leaves", "2"]);
    assert_eq!(state(&dir)["lora"]["leaves"], serde_json::json!([2]));
    ok(&["testnet", "down", "--dir", ds]);
    // The leaf's metrics endpoint, for the end of the test.
    let cfg = dir.join("node-2/node.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        toml.contains("relay = false") && toml.contains("[mesh]\n"),
        "{toml}"
    );
    let toml = toml.replace("[mesh]\n", "[mesh]\nmetrics_listen = \"127.0.0.1:0\"\n");
    std::fs::write(&cfg, toml).unwrap();
    std::fs::remove_file(dir.join("medium-status.json")).unwrap();
    ok(&["testnet", "up", "--dir", ds]);
    let img = t.path().join("v1.img");
    write_image(&img, 3_000, 2_654_435_761);
    publish_at(ds, &img, "1.0.0", 2);
    // At 10x, 20 s is over three minutes of radio time: Trickle
    // announcements and a lone asker's longest election (128 s) fit in it.
    let m = wait_frames(&dir, 8, Duration::from_secs(30));
    assert!(m["delivered"].as_u64().unwrap() > 0, "{m:#}");
    std::thread::sleep(Duration::from_secs(20));
    let leaf = node_status(&dir, 2)["radio"].clone();
    assert_eq!(leaf["relay"], false, "{leaf:#}");
    assert_eq!(leaf["complete"], true, "{leaf:#}");
    let n1 = node_status(&dir, 1)["radio"].clone();
    assert!(!n1["neighbours"].as_array().unwrap().is_empty(), "{n1:#}");
    assert!(n1["release"].is_null(), "fetched from a leaf: {n1:#}");
    assert_eq!(n1["requests"], 0, "asked a leaf: {n1:#}");
    for field in ["symbols", "pieces"] {
        assert_eq!(leaf[field], 0, "{field}: {leaf:#}");
    }
    let v2 = t.path().join("v2.img");
    write_image(&v2, 3_000, 40_503);
    publish_at(ds, &v2, "1.1.0", 0);
    let v = watch(ds);
    assert_eq!(v["converged"], true);
    let leaf = node_status(&dir, 2)["radio"].clone();
    assert_eq!(leaf["complete"], true, "{leaf:#}");
    assert_eq!(leaf["symbols"], 0, "{leaf:#}");
    let relay = node_status(&dir, 1)["radio"].clone();
    assert!(relay["symbols"].as_u64().unwrap() > 0, "{relay:#}");
    // The leaf's Prometheus endpoint carries the radio's series.
    let addr = node_status(&dir, 2)["metrics_listen"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics = meshota_testkit::get_metrics(&addr);
    for line in [
        "\nmeshota_radio_relay 0\n",
        "\nmeshota_radio_symbols_sent_total 0\n",
        "\nmeshota_radio_release_complete 1\n",
        "\nmeshota_radio_airtime_budget_per_hour_seconds 360\n",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    assert!(
        metrics.contains("\nmeshota_radio_chunks_decoded_total ")
            && !metrics.contains("\nmeshota_radio_chunks_decoded_total 0\n"),
        "{metrics}"
    );
    // The links the daemons measured plan the backbone the testnet was
    // given: on the line 0 - 1 - 2, from node 0, nodes 0 and 1 relay and
    // node 2 can be a leaf (which it announces: node 1 sees it so).
    let statuses: Vec<Value> = (0..3).map(|i| node_status(&dir, i)).collect();
    let id = |i: usize| {
        statuses[i]["radio"]["short_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let to_2 = statuses[1]["radio"]["neighbour_links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["short_id"] == id(2).as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(to_2["leaf"], true, "{:#}", statuses[1]["radio"]);
    let files: Vec<String> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = t.path().join(format!("status-{i}.json"));
            std::fs::write(&p, s.to_string()).unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect();
    let mut args = vec!["radio", "plan", "--json", "--source"];
    let src = id(0);
    args.push(&src);
    args.push("--status");
    args.extend(files.iter().map(String::as_str));
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["relays"], serde_json::json!([id(0), id(1)]), "{plan}");
    assert_eq!(plan["leaves"], serde_json::json!([id(2)]), "{plan}");
    drop(guard);
}

#[test]
fn a_node_with_another_mesh_key_is_not_acted_upon() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    let guard = up_lora(&dir, 2, &[]);
    ok(&["testnet", "down", "--dir", ds]);
    // Node 1 gets a mesh key of its own.
    let other = dir.join("node-1/other.key");
    std::fs::write(&other, "66".repeat(32)).unwrap();
    let cfg = dir.join("node-1/node.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "mesh_key_file = \"../radio.key\"",
            "mesh_key_file = \"other.key\"",
        ),
    )
    .unwrap();
    std::fs::remove_file(dir.join("medium-status.json")).unwrap();
    ok(&["testnet", "up", "--dir", ds]);
    let img = t.path().join("v1.img");
    write_image(&img, 3_000, 2_654_435_761);
    publish_at(ds, &img, "1.0.0", 0);
    // Long enough for node 0 to announce and for node 1 to act if it would
    // (at 10x: several Trickle intervals).
    let m = wait_frames(&dir, 6, Duration::from_secs(30));
    assert!(m["delivered"].as_u64().unwrap() > 0, "{m:#}");
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..2 {
        let r = node_status(&dir, i)["radio"].clone();
        assert!(
            r["frames_bad_mac"].as_u64().unwrap() > 0 || i == 1,
            "node {i}: {r:#}"
        );
        assert!(
            r["neighbours"].as_array().unwrap().is_empty(),
            "node {i}: {r:#}"
        );
    }
    let n1 = node_status(&dir, 1);
    assert!(
        n1["radio"]["frames_bad_mac"].as_u64().unwrap() > 0,
        "{n1:#}"
    );
    assert!(n1["radio"]["release"].is_null(), "{n1:#}");
    assert_eq!(n1["radio"]["requests"], 0, "{n1:#}");
    assert_eq!(n1["installed"]["version"], "0.1.0");
    assert!(n1["releases"].as_array().unwrap().is_empty(), "{n1:#}");
    drop(guard);
}

/// Sends `bytes` on a new connection to the medium socket and returns
/// the reason of the Refused answer (bounded by a 5 s read timeout).
fn refused(sock: &Path, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut c = std::os::unix::net::UnixStream::connect(sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(bytes).unwrap();
    let mut header = [0u8; 3];
    c.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x83, "not a Refused message");
    let mut body = vec![0u8; usize::from(u16::from_le_bytes([header[1], header[2]]))];
    c.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// `node run` with `[radio]` appended to a plain testnet node's config:
/// exit status and stderr, bounded.
fn run_with_radio(dir: &Path, radio: &str, features_note: &str) -> (bool, String) {
    let cfg = dir.join("node-0/node.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    let base = base.split("\n[radio]").next().unwrap().to_string();
    std::fs::write(&cfg, format!("{base}{radio}")).unwrap();
    let mut child = Command::new(meshota())
        .args(["node", "run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), err);
        }
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("node run with a bad [radio] ({features_note}) did not exit within 20 s");
}

#[test]
fn a_bad_radio_config_stops_the_daemon_at_start_with_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tn");
    let ds = dir.to_str().unwrap();
    let (_, guard) = testnet_up(&dir, 1, &[]);
    ok(&["testnet", "down", "--dir", ds]);
    std::fs::write(dir.join("node-0/mesh.key"), "4d".repeat(32)).unwrap();
    let missing = dir.join("no-such-medium.sock");
    let (ok_exit, err) = run_with_radio(
        &dir,
        &format!(
            "\n[radio]\nbackend = \"medium\"\nmesh_key_file = \"mesh.key\"\n\n[radio.medium]\nsocket = \"{}\"\nnode = 0\n",
            missing.display()
        ),
        "missing socket",
    );
    assert!(!ok_exit);
    assert!(
        err.contains("medium socket") && err.contains("no-such-medium.sock"),
        "{err}"
    );
    let (ok_exit, err) = run_with_radio(
        &dir,
        "\n[radio]\nbackend = \"carrier-pigeon\"\nmesh_key_file = \"mesh.key\"\n",
        "unknown backend",
    );
    assert!(!ok_exit);
    assert!(
        err.contains("carrier-pigeon") && err.contains("medium"),
        "{err}"
    );
    let sx = "\n[radio]\nbackend = \"sx126x\"\nmesh_key_file = \"mesh.key\"\n\n[radio.sx126x]\nspidev = \"/dev/null-spidev\"\ngpio_chip = \"/dev/null-gpiochip\"\nreset_line = 18\nbusy_line = 20\ndio1_line = 16\n";
    let (ok_exit, err) = run_with_radio(&dir, sx, "sx126x");
    assert!(!ok_exit);
    if cfg!(feature = "sx126x") {
        assert!(err.contains("sx126x radio"), "{err}");
    } else {
        assert!(err.contains("without the `sx126x` feature"), "{err}");
    }
    let (ok_exit, err) = run_with_radio(
        &dir,
        "\n[radio]\nbackend = \"medium\"\nmesh_key_file = \"no-such.key\"\n\n[radio.medium]\nsocket = \"x.sock\"\nnode = 0\n",
        "missing key",
    );
    assert!(!ok_exit);
    assert!(err.contains("mesh key file"), "{err}");
    drop(guard);
}
