//! `meshota sim --lora`: the LoRa scenarios from the command line.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

mod common;
use common::*;

fn sim_lora(args: &[&str]) -> std::process::Output {
    Command::new(meshota())
        .args(["sim", "--lora"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sim_lora_json_reports_airtime_bound_baseline_and_duty_cycle_and_is_deterministic() {
    let args = [
        "--topology",
        "line:3",
        "--payload-bytes",
        "8192",
        "--seed",
        "5",
        "--json",
        "--baseline",
    ];
    let a = sim_lora(&args);
    assert!(a.status.success(), "{}", stderr(&a));
    let b = sim_lora(&args);
    assert_eq!(a.stdout, b.stdout, "same arguments, same output");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["converged"], true);
    assert_eq!(v["duty_cycle_violations"], 0);
    let airtime = v["airtime_total_s"].as_f64().unwrap();
    let bound = v["bound_airtime_s"].as_f64().unwrap();
    let baseline = v["baseline_airtime_s"].as_f64().unwrap();
    assert!(
        bound > 0.0 && airtime >= bound,
        "{airtime} vs bound {bound}"
    );
    assert!(baseline > 0.0);
    assert!(v["virtual_seconds"].as_f64().unwrap() > 0.0);
    // Airtime and frames by kind, summing to the total; the bundle's share
    // of a broadcast bound beside the bound.
    let kinds = v["airtime_by_kind_s"].as_object().unwrap();
    let frames = v["frames_by_kind"].as_object().unwrap();
    for k in [
        "announce", "request", "bundle", "symbol", "progress", "repair", "other",
    ] {
        assert!(kinds[k].as_f64().is_some(), "{k}: {v}");
        assert!(frames[k].as_u64().is_some(), "{k}: {v}");
        assert!(v["baseline_airtime_by_kind_s"][k].as_f64().is_some(), "{k}");
        assert!(v["baseline_frames_by_kind"][k].as_u64().is_some(), "{k}");
    }
    let sum: f64 = kinds.values().map(|s| s.as_f64().unwrap()).sum();
    assert!((sum - airtime).abs() < 1e-6 * airtime, "{sum} vs {airtime}");
    for k in ["announce", "bundle", "symbol"] {
        assert!(kinds[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    let bundle_bound = v["bundle_bound_airtime_s"].as_f64().unwrap();
    assert!(bundle_bound > 0.0 && bundle_bound < bound, "{v}");
}

#[test]
fn sim_lora_without_baseline_omits_its_airtime_and_refuses_a_bad_topology() {
    let out = sim_lora(&["--topology", "line:2", "--payload-bytes", "4096", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("baseline_airtime_s").is_none());
    assert!(v.get("baseline_airtime_by_kind_s").is_none());
    assert!(v.get("airtime_by_kind_s").is_some());
    let bad = sim_lora(&["--topology", "ring:5"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("line:HOPS"), "{}", stderr(&bad));
}

#[test]
fn sim_lora_relays_cds_makes_every_node_off_the_dominating_set_a_leaf() {
    let args = ["--topology", "line:3", "--payload-bytes", "4096", "--json"];
    let all: serde_json::Value = serde_json::from_slice(&sim_lora(&args).stdout).unwrap();
    assert_eq!(
        (all["relays"].as_str(), all["relay_nodes"].as_u64()),
        (Some("all"), Some(4))
    );
    let out = sim_lora(&[&args[..], &["--relays", "cds"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["converged"], true, "{v}");
    // A line's dominating set from node 0: every node but the last.
    assert_eq!(
        (v["relays"].as_str(), v["relay_nodes"].as_u64()),
        (Some("cds"), Some(3))
    );
    assert_eq!(v["cds_nodes"], 3);
    let bad = sim_lora(&[&args[..], &["--relays", "some"]].concat());
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("all, cds or plan"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn sim_lora_patch_json_says_how_many_nodes_installed_by_patch_and_by_chunks() {
    let args = [
        "--topology",
        "line:3",
        "--payload-bytes",
        "20480",
        "--seed",
        "5",
        "--json",
        "--patch",
        "--other-base",
        "3",
    ];
    let out = sim_lora(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["converged"], true);
    assert_eq!(v["duty_cycle_violations"], 0);
    // Nodes 1 and 2 run v1 (the patch's base), node 3 another image.
    assert_eq!(v["installed_by_chunks"], 1, "{v}");
    let on_base =
        v["installed_by_patch"].as_u64().unwrap() + v["installed_mixed"].as_u64().unwrap();
    assert_eq!(on_base, 2, "{v}");
    assert!(v["pieces_applied"].as_u64().unwrap() > 0, "{v}");
    let patch = v["patch_bytes"].as_u64().unwrap();
    assert!(patch > 16 * 1024 && patch < v["image_bytes"].as_u64().unwrap());
    // Without --patch the fields are absent; --other-base needs --patch.
    let plain = sim_lora(&["--topology", "line:2", "--payload-bytes", "4096", "--json"]);
    let p: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(p.get("installed_by_patch").is_none());
    let bad = sim_lora(&["--topology", "line:2", "--other-base", "1"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn sim_lora_image_bytes_above_a_mebibyte_sends_the_index_as_a_delta() {
    let args = [
        "--topology",
        "line:3",
        "--payload-bytes",
        "20480",
        "--seed",
        "5",
        "--json",
        "--patch",
        "--image-bytes",
        "4194304",
    ];
    let out = sim_lora(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["converged"], true, "{v}");
    assert_eq!(v["index_delta"], true, "{v}");
    assert!(v["image_bytes"].as_u64().unwrap() > 4 << 20, "{v}");
    let in_memory = v["chunks_in_memory_max"].as_u64().unwrap();
    assert!(in_memory * 10 < v["chunks"].as_u64().unwrap(), "{v}");
    // Under a mebibyte the index comes whole and the field is absent.
    let small = sim_lora(&[
        "--topology",
        "line:2",
        "--payload-bytes",
        "20480",
        "--json",
        "--patch",
    ]);
    let s: serde_json::Value = serde_json::from_slice(&small.stdout).unwrap();
    assert!(s.get("index_delta").is_none(), "{s}");
    // A large release crosses by patch only: --other-base is refused, as
    // is an image outside 64 KiB ..= 64 MiB (usage errors, exit 2).
    let refused = sim_lora(&[
        "--topology",
        "line:3",
        "--patch",
        "--image-bytes",
        "4194304",
        "--other-base",
        "2",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("by patch only"),
        "{}",
        stderr(&refused)
    );
    let tiny = sim_lora(&["--topology", "line:2", "--patch", "--image-bytes", "1000"]);
    assert_eq!(tiny.status.code(), Some(2), "{}", stderr(&tiny));
    assert!(stderr(&tiny).contains("image bytes"), "{}", stderr(&tiny));
}
