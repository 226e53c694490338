//! `meshota radio plan`: a backbone from the nodes' measured links, as an
//! operator runs it on the `node status --json` files of a deployment.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

mod common;
use common::*;

/// A status file of node `id` reporting `links` (short id, strong).
fn status(dir: &Path, id: u16, links: &[(u16, bool)]) -> PathBuf {
    let v = json!({
        "node_id": format!("node-{id}"),
        "radio": {
            "short_id": format!("{id:04x}"),
            "relay": true,
            "neighbours": links.iter().map(|(n, _)| format!("{n:04x}")).collect::<Vec<_>>(),
            "neighbour_links": links.iter().map(|(n, strong)| json!({
                "short_id": format!("{n:04x}"),
                "heard_percent": if *strong { 90 } else { 30 },
                "strong": strong,
                "leaf": false,
            })).collect::<Vec<_>>(),
        }
    });
    let p = dir.join(format!("status-{id:04x}.json"));
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// Statuses of a `w` × `h` grid of nodes 1.., four strong links each.
fn grid(dir: &Path, w: u16, h: u16) -> Vec<PathBuf> {
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let mut links = Vec::new();
            if x > 0 {
                links.push((i, true));
            }
            if x + 1 < w {
                links.push((i + 2, true));
            }
            if y > 0 {
                links.push((i + 1 - w, true));
            }
            if y + 1 < h {
                links.push((i + 1 + w, true));
            }
            status(dir, i + 1, &links)
        })
        .collect()
}

fn plan(dir: &Path, source: &str, files: &[PathBuf], json: bool) -> std::process::Output {
    let mut args = vec!["radio", "plan", "--source", source];
    if json {
        args.push("--json");
    }
    args.push("--status");
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    run(dir, &args)
}

#[test]
fn a_grid_plan_names_relays_that_reach_every_node_and_no_more_relays_than_leaves() {
    let t = tempfile::tempdir().unwrap();
    let files = grid(t.path(), 10, 6);
    let out = plan(t.path(), "0001", &files, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "0001");
    assert_eq!(v["nodes"], 60);
    assert_eq!(v["links"], 104, "10x6 grid: 9*6 + 10*5 links");
    let ids = |k: &str| -> Vec<u16> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| u16::from_str_radix(s.as_str().unwrap(), 16).unwrap())
            .collect()
    };
    let (relays, leaves) = (ids("relays"), ids("leaves"));
    assert_eq!(relays[0], 1, "the source relays");
    assert!(relays.len() <= leaves.len(), "{v}");
    assert_eq!(relays.len() + leaves.len(), 60);
    assert!(ids("unreachable").is_empty());
    // No node waits on a branch more than two hops longer than its
    // shortest path (the default --max-detour).
    assert_eq!(v["max_detour"], 2);
    assert_eq!(v["shortest_depth"], 14, "10x6 grid from a corner");
    assert!(v["depth"].as_u64().unwrap() <= 16, "{v}");
    // Every leaf has a relay among its grid neighbours.
    for leaf in leaves {
        let (x, y) = ((leaf - 1) % 10, (leaf - 1) / 10);
        let near = [
            (x > 0).then(|| leaf - 1),
            (x < 9).then(|| leaf + 1),
            (y > 0).then(|| leaf - 10),
            (y < 5).then(|| leaf + 10),
        ];
        assert!(
            near.iter().flatten().any(|n| relays.contains(n)),
            "leaf {leaf:04x} has no relay next to it: {v}"
        );
    }
    // The same plan for a human.
    let out = plan(t.path(), "0001", &files, false);
    let text = text(&out.stdout);
    assert!(text.starts_with("backbone from 0001: "), "{text}");
    assert!(text.contains("relay = false"), "{text}");
}

/// Without a detour bound the plan is the greedy set alone, whose tree
/// detours; the default bound buys a shallower backbone with a few relays.
#[test]
fn a_detour_bound_trades_a_few_relays_for_a_shallower_backbone() {
    let t = tempfile::tempdir().unwrap();
    let files = grid(t.path(), 15, 13);
    let with = |detour: &str| -> Value {
        let mut args = vec![
            "radio",
            "plan",
            "--source",
            "0001",
            "--json",
            "--max-detour",
            detour,
            "--status",
        ];
        args.extend(files.iter().map(|p| p.to_str().unwrap()));
        let out = run(t.path(), &args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (loose, bound) = (with("1000"), with("2"));
    let count = |v: &Value| v["relays"].as_array().unwrap().len();
    let depth = |v: &Value| v["depth"].as_u64().unwrap();
    assert_eq!(loose["shortest_depth"], 26);
    assert!(depth(&loose) > 36, "the greedy tree detours: {loose}");
    assert!(depth(&bound) <= 28, "{bound}");
    assert!(count(&bound) > count(&loose));
    assert!(
        count(&bound) * 10 <= count(&loose) * 11,
        "a few more relays"
    );
}

#[test]
fn a_link_only_one_end_reports_strong_does_not_count() {
    let t = tempfile::tempdir().unwrap();
    // 1 - 2 strong both ways; 2 hears 3 strongly but 3 hears 2 weakly.
    let files = [
        status(t.path(), 1, &[(2, true)]),
        status(t.path(), 2, &[(1, true), (3, true)]),
        status(t.path(), 3, &[(2, false)]),
    ];
    let out = plan(t.path(), "0001", &files, true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["relays"], json!(["0001"]));
    assert_eq!(v["leaves"], json!(["0002"]));
    assert_eq!(v["unreachable"], json!(["0003"]));
    assert!(stderr(&out).contains("0003"), "{}", stderr(&out));
}

#[test]
fn neighbours_without_a_status_are_listed_as_not_planned() {
    let t = tempfile::tempdir().unwrap();
    let files = [
        status(t.path(), 1, &[(2, true), (9, true)]),
        status(t.path(), 2, &[(1, true)]),
    ];
    let out = plan(t.path(), "0001", &files, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["not_planned"], json!(["0009"]));
    assert_eq!(v["leaves"], json!(["0002"]));
}

#[test]
fn bad_inputs_are_refused_with_the_file_or_flag_named() {
    let t = tempfile::tempdir().unwrap();
    let good = status(t.path(), 1, &[]);
    // A source no status file is of, or not a short id: usage (exit 2).
    for source in ["00ff", "node-1"] {
        let out = plan(t.path(), source, std::slice::from_ref(&good), false);
        assert_eq!(out.status.code(), Some(2), "{source}: {}", stderr(&out));
        assert!(stderr(&out).contains("--source"), "{}", stderr(&out));
    }
    // A node status without a radio, a status without link quality, a
    // file that is not JSON, the same node twice: rejected (exit 1).
    let no_radio = t.path().join("no-radio.json");
    std::fs::write(&no_radio, r#"{"node_id":"x","radio":null}"#).unwrap();
    let old = t.path().join("old.json");
    std::fs::write(&old, r#"{"radio":{"short_id":"0002","neighbours":[]}}"#).unwrap();
    let garbage = t.path().join("garbage.json");
    std::fs::write(&garbage, b"\x00\xffnot json").unwrap();
    let twin = t.path().join("twin.json");
    std::fs::copy(&good, &twin).unwrap();
    for (bad, says) in [
        (&no_radio, "no radio"),
        (&old, "neighbour_links"),
        (&garbage, "garbage.json"),
        (&twin, "0001"),
    ] {
        let out = plan(t.path(), "0001", &[good.clone(), bad.clone()], false);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "no plan printed from bad input");
    }
}
