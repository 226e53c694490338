//! LoRa scenario tests (issue #8): coded broadcast over the simulated
//! EU868 medium with 10 % frame loss and collisions. Each prints its report.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_sim::lora::{
    AirtimeByKind, LoraOptions, LoraReport, LoraTopology, PatchRun, Relays, run,
};

const PATCH_BYTES: usize = 20 * 1024;

fn lora(o: &LoraOptions) -> LoraReport {
    let r = run(o).unwrap();
    eprintln!("{}", r.to_json());
    r
}

fn assert_converged_within_duty_cycle(r: &LoraReport) {
    assert!(r.converged, "not converged: {}", r.to_json());
    assert_eq!(r.converged_nodes, r.honest_nodes);
    assert_eq!(r.duty_cycle_violations, 0, "{}", r.to_json());
    assert_eq!(r.corrupt_payloads, 0);
}

#[test]
fn five_hop_line_converges_on_a_patch_within_duty_cycle() {
    let r = lora(&LoraOptions::new(LoraTopology::Line(5), PATCH_BYTES, 1));
    assert_converged_within_duty_cycle(&r);
    // Every hop relays: at least one burst of symbols per hop.
    assert!(r.symbols as usize >= 5 * PATCH_BYTES / 200, "{}", r.symbols);
}

#[test]
fn fifty_node_random_geometric_graph_converges_on_a_patch_within_duty_cycle() {
    let r = lora(&LoraOptions::new(LoraTopology::Random(50), PATCH_BYTES, 1));
    assert_converged_within_duty_cycle(&r);
}

#[test]
fn two_hundred_node_grid_converges_on_a_patch_within_duty_cycle() {
    let r = lora(&LoraOptions::new(LoraTopology::Grid(200), PATCH_BYTES, 1));
    assert_converged_within_duty_cycle(&r);
}

/// Only holders that were asked send symbols, askers gather on the holders
/// that cover most, and a holder whose askers all went elsewhere calls its
/// burst off: on random graphs of other seeds, most nodes never send a
/// symbol and some bursts are called off, and every node still converges.
#[test]
fn on_random_graphs_few_elected_holders_send_and_redundant_bursts_stop() {
    for seed in [2, 3] {
        let r = lora(&LoraOptions::new(
            LoraTopology::Random(50),
            PATCH_BYTES,
            seed,
        ));
        assert_converged_within_duty_cycle(&r);
        assert!(
            r.symbols_per_node.len() < r.honest_nodes / 2,
            "{} of {} nodes sent symbols: {}",
            r.symbols_per_node.len(),
            r.honest_nodes,
            r.to_json()
        );
        assert!(r.bursts_suppressed > 0, "{}", r.to_json());
    }
}

/// With the bound's dominating set as the only relays (a planned
/// backbone), leaves never send a symbol: fewer nodes send than there are
/// relays, where elected senders on the same graph outnumber them; every
/// leaf still converges.
#[test]
fn with_a_planned_backbone_only_relays_send_and_every_leaf_converges() {
    let elected = lora(&LoraOptions::new(LoraTopology::Random(50), PATCH_BYTES, 1));
    let planned = lora(&LoraOptions {
        relays: Relays::Cds,
        ..LoraOptions::new(LoraTopology::Random(50), PATCH_BYTES, 1)
    });
    assert_converged_within_duty_cycle(&planned);
    assert_eq!(
        (planned.relays.as_str(), elected.relays.as_str()),
        ("cds", "all")
    );
    assert_eq!(planned.relay_nodes, planned.cds_nodes);
    assert_eq!(elected.relay_nodes, elected.honest_nodes);
    assert!(
        elected.symbols_per_node.len() > elected.cds_nodes,
        "{}",
        elected.to_json()
    );
    assert!(
        planned.symbols_per_node.len() <= planned.relay_nodes,
        "{}",
        planned.to_json()
    );
}

/// The greedy dominating set grows as one tree whose branches detour, so
/// its leaves near the source wait for the longest branch; the plan `meshota
/// radio plan` gives (a few relays more, no node more than two hops past
/// its shortest path) converges sooner on the grid, and still only its
/// relays send.
#[test]
fn a_detour_bounded_backbone_converges_sooner_than_the_bare_dominating_set() {
    let with = |relays| {
        lora(&LoraOptions {
            relays,
            ..LoraOptions::new(LoraTopology::Grid(200), PATCH_BYTES, 1)
        })
    };
    let (cds, plan) = (with(Relays::Cds), with(Relays::Plan));
    assert_converged_within_duty_cycle(&plan);
    assert_eq!(plan.relays, "plan");
    assert!(plan.relay_nodes > cds.relay_nodes);
    assert!(
        plan.relay_nodes * 10 <= cds.relay_nodes * 11,
        "{}",
        plan.to_json()
    );
    assert!(plan.symbols_per_node.len() <= plan.relay_nodes);
    assert!(
        plan.virtual_seconds < cds.virtual_seconds * 0.8,
        "plan {} s, bare set {} s",
        plan.virtual_seconds,
        cds.virtual_seconds
    );
}

#[test]
fn node_with_a_wrong_mesh_key_is_ignored_and_changes_nothing() {
    let plain = LoraOptions::new(LoraTopology::Line(5), PATCH_BYTES, 3);
    let with_intruder = LoraOptions {
        intruder: true,
        ..plain.clone()
    };
    let r = lora(&with_intruder);
    assert_converged_within_duty_cycle(&r);
    // It talked (it holds the release and announces it) ...
    assert!(r.bad_mac_frames > 0, "{}", r.to_json());
    // ... but no honest node used one of its frames or counts it as a neighbour.
    assert_eq!(r.intruder_accepted, 0);
}

#[test]
fn node_that_joins_late_catches_up() {
    let o = LoraOptions {
        late_join_s: Some(1_800),
        ..LoraOptions::new(LoraTopology::Random(50), PATCH_BYTES, 2)
    };
    let r = lora(&o);
    assert_converged_within_duty_cycle(&r);
    let (joined, done) = r.late_join.unwrap();
    let done = done.expect("the late node completed");
    assert!(done > joined, "completed at {done} s, joined at {joined} s");
    // Everyone else had converged long before: the late node was served by
    // neighbours woken by its announcement.
    assert!(r.virtual_seconds >= joined);
}

#[test]
fn same_options_give_the_same_report() {
    let o = LoraOptions::new(LoraTopology::Line(3), PATCH_BYTES, 9);
    assert_eq!(run(&o).unwrap().to_json(), run(&o).unwrap().to_json());
}

#[test]
fn unicast_baseline_converges_and_costs_more_airtime_than_coded_broadcast() {
    let o = LoraOptions {
        baseline: true,
        ..LoraOptions::new(LoraTopology::Random(50), PATCH_BYTES, 1)
    };
    let r = lora(&o);
    assert_converged_within_duty_cycle(&r);
    assert_eq!(r.baseline_converged, Some(true), "{}", r.to_json());
    assert_eq!(r.baseline_duty_cycle_violations, Some(0));
    assert!(
        r.baseline_airtime_s.unwrap() > r.airtime_total_s,
        "{}",
        r.to_json()
    );
}

#[test]
fn under_a_one_percent_duty_cycle_nodes_wait_for_their_budget_and_never_exceed_it() {
    // g1 allows 36 s of airtime per hour; a 20 KiB payload alone is about
    // 36 s at SF7 with 222-byte frames, plus the bundle: every relay must
    // wait for its budget part of the way.
    let o = LoraOptions {
        freq_hz: meshota_sim::lora::scenario::FREQ_G1_HZ,
        ..LoraOptions::new(LoraTopology::Line(2), PATCH_BYTES, 4)
    };
    let r = lora(&o);
    assert_converged_within_duty_cycle(&r);
    assert!(
        r.budget_waits > 0,
        "the budget never bound: {}",
        r.to_json()
    );
    assert!(r.airtime_max_node_s > 36.0, "{}", r.to_json());
    assert!(r.virtual_seconds > 3_600.0, "{}", r.to_json());
}

// Patch releases (issue #8 items 7 and 9): every node runs v1; node 0
// holds v2 and a patch from v1 of about 20 KiB (v2's image is ten times
// larger); nodes fetch the patch index and pieces over radio and apply
// them against their installed image.

fn patch_run(topology: LoraTopology, seed: u64, run: PatchRun) -> LoraReport {
    lora(&LoraOptions {
        patch: Some(run),
        ..LoraOptions::new(topology, PATCH_BYTES, seed)
    })
}

fn assert_converged_by_patch(r: &LoraReport) {
    assert_converged_within_duty_cycle(r);
    let patch = r.patch_bytes.unwrap();
    assert!(
        (16 * 1024..=24 * 1024).contains(&patch),
        "patch of {patch} bytes"
    );
    assert!(r.image_bytes.unwrap() >= 8 * patch);
    // Every node but the origin rebuilt v2 from its base and the patch:
    // at least most of them without a single chunk decoded plainly.
    let fetched = r.honest_nodes - 1;
    let by_patch = r.installed_by_patch.unwrap();
    assert_eq!(r.installed_by_chunks, Some(0), "{}", r.to_json());
    assert!(by_patch * 10 >= fetched * 9, "{}", r.to_json());
    assert_eq!(r.piece_failures, Some(0));
    assert!(r.piece_symbols.unwrap() > 0);
}

#[test]
fn five_hop_line_converges_on_a_20_kib_patch_release() {
    let r = patch_run(LoraTopology::Line(5), 1, PatchRun::default());
    assert_converged_by_patch(&r);
}

#[test]
fn fifty_node_random_graph_converges_on_a_20_kib_patch_release() {
    let r = patch_run(LoraTopology::Random(50), 1, PatchRun::default());
    assert_converged_by_patch(&r);
}

#[test]
fn two_hundred_node_grid_converges_on_a_20_kib_patch_release() {
    let r = patch_run(LoraTopology::Grid(200), 1, PatchRun::default());
    assert_converged_by_patch(&r);
}

#[test]
fn a_patch_release_costs_less_airtime_than_its_chunks() {
    let by_patch = patch_run(LoraTopology::Line(5), 2, PatchRun::default());
    let by_chunks = patch_run(
        LoraTopology::Line(5),
        2,
        PatchRun {
            chunks_only: true,
            ..PatchRun::default()
        },
    );
    assert_converged_within_duty_cycle(&by_chunks);
    assert_eq!(by_chunks.installed_by_patch, Some(0));
    assert_eq!(by_chunks.installed_by_chunks, Some(5));
    assert!(
        by_patch.airtime_total_s < by_chunks.airtime_total_s,
        "patch {} s, chunks {} s",
        by_patch.airtime_total_s,
        by_chunks.airtime_total_s
    );
}

#[test]
fn a_node_on_another_base_converges_by_chunks_beside_patch_nodes() {
    // Node 2 sits mid-line: the nodes past it hear no patch holder until
    // they ask it, so they fall back to chunks too, and still converge.
    let r = patch_run(
        LoraTopology::Line(5),
        3,
        PatchRun {
            other_base: Some(2),
            ..PatchRun::default()
        },
    );
    assert_converged_within_duty_cycle(&r);
    assert!(r.installed_by_chunks.unwrap() >= 1, "{}", r.to_json());
    assert!(r.installed_by_patch.unwrap() >= 1, "{}", r.to_json());
}

#[test]
fn a_corrupt_patch_piece_falls_back_to_chunks_and_installs_no_bad_image() {
    let r = patch_run(
        LoraTopology::Random(50),
        4,
        PatchRun {
            corrupt_piece: true,
            ..PatchRun::default()
        },
    );
    // Converged means every node's assembled image hashes to the manifest's;
    // corrupt_payloads counts any node that completed with another image.
    assert_converged_within_duty_cycle(&r);
    assert!(r.piece_failures.unwrap() > 0, "{}", r.to_json());
    assert_eq!(r.installed_by_patch, Some(0), "{}", r.to_json());
    assert!(r.pieces_applied.unwrap() > 0, "{}", r.to_json());
}

// Large releases: an image above 1 MiB crosses by patch only, its bundle
// carrying the chunk index as a delta, its unchanged chunks left in the
// nodes' stores.

const LARGE_IMAGE: usize = 32 << 20;

fn large(run: PatchRun) -> PatchRun {
    PatchRun {
        image_bytes: Some(LARGE_IMAGE),
        ..run
    }
}

#[test]
fn a_patch_of_a_32_mib_image_converges_with_the_index_as_a_delta_and_chunks_left_in_the_store() {
    let r = patch_run(LoraTopology::Random(50), 1, large(PatchRun::default()));
    assert_converged_by_patch(&r);
    assert!(r.index_delta, "{}", r.to_json());
    // The whole index (34 bytes a chunk) would not fit a 32 KiB bundle;
    // the delta leaves the bundle at the signed manifest plus a few
    // hundred bytes.
    assert!(r.chunks * 34 > 32 * 1024, "{} chunks", r.chunks);
    assert!(r.bundle_bytes < 5 * 1024, "bundle {} bytes", r.bundle_bytes);
    // Each node's link held only what the pieces made.
    let in_memory = r.chunks_in_memory_max.unwrap();
    assert!(
        (1..=r.chunks / 20).contains(&in_memory),
        "{in_memory} of {} chunks in memory",
        r.chunks
    );
}

#[test]
fn a_corrupt_piece_of_a_large_release_is_made_up_by_chunks_from_memory() {
    // The failed piece's chunks are fetched plainly from holders that
    // keep them in memory (the origin: every chunk its pieces make).
    let r = patch_run(
        LoraTopology::Line(5),
        4,
        large(PatchRun {
            corrupt_piece: true,
            ..PatchRun::default()
        }),
    );
    assert_converged_within_duty_cycle(&r);
    assert!(r.index_delta);
    assert!(r.piece_failures.unwrap() > 0, "{}", r.to_json());
    assert_eq!(r.installed_mixed, Some(5), "{}", r.to_json());
}

#[test]
fn a_large_release_refuses_options_that_need_its_chunks_over_the_air() {
    for patch in [
        PatchRun {
            other_base: Some(2),
            ..PatchRun::default()
        },
        PatchRun {
            chunks_only: true,
            ..PatchRun::default()
        },
    ] {
        let o = LoraOptions {
            patch: Some(large(patch)),
            ..LoraOptions::new(LoraTopology::Line(5), PATCH_BYTES, 1)
        };
        assert!(
            matches!(run(&o), Err(meshota_sim::Error::Unsupported(_))),
            "{patch:?}"
        );
    }
    for bytes in [1024, (64 << 20) + 1] {
        let o = LoraOptions {
            patch: Some(PatchRun {
                image_bytes: Some(bytes),
                ..PatchRun::default()
            }),
            ..LoraOptions::new(LoraTopology::Line(5), PATCH_BYTES, 1)
        };
        assert!(
            matches!(
                run(&o),
                Err(meshota_sim::Error::OutOfRange {
                    what: "image bytes",
                    ..
                })
            ),
            "{bytes}"
        );
    }
}

// Airtime by frame kind: every frame an honest node sends is counted once,
// under its kind, with the airtime the medium charged for it.

fn assert_kinds_sum_to(kinds: &AirtimeByKind, total_s: f64, what: &str) {
    let sum: f64 = kinds.fields().iter().map(|(_, k)| k.seconds()).sum();
    assert!(
        (sum - total_s).abs() < 1e-6 * total_s.max(1.0),
        "{what}: kinds sum to {sum} s, total {total_s} s: {kinds:?}"
    );
}

#[test]
fn airtime_by_kind_sums_to_the_total_and_leaves_the_intruder_out() {
    let o = LoraOptions {
        intruder: true,
        baseline: true,
        ..LoraOptions::new(LoraTopology::Line(5), PATCH_BYTES, 3)
    };
    let r = lora(&o);
    assert_converged_within_duty_cycle(&r);
    let k = &r.airtime_by_kind;
    assert_kinds_sum_to(k, r.airtime_total_s, "coded");
    // A converged run announced, sent the bundle and sent symbols; the
    // link's own counters agree with the frames the driver saw.
    for (name, t) in [
        ("announce", k.announce),
        ("bundle", k.bundle),
        ("symbol", k.symbol),
    ] {
        assert!(t.frames > 0 && t.seconds() > 0.0, "{name}: {k:?}");
    }
    assert_eq!(k.announce.frames, r.announces, "{k:?}");
    assert_eq!(k.symbol.frames, r.symbols, "{k:?}");
    assert_eq!(k.total().frames, r.frames, "{k:?}");
    assert_eq!(k.other.frames, 0, "{k:?}");
    // The baseline's kinds sum to its own total.
    let b = r.baseline_airtime_by_kind.unwrap().0;
    assert_kinds_sum_to(&b, r.baseline_airtime_s.unwrap(), "baseline");
    assert!(b.bundle.frames > 0 && b.progress.frames > 0, "{b:?}");
    assert_eq!(b.symbol.frames, 0, "{b:?}");
    // In the JSON, beside every field that was there before.
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let json_sum: f64 = v["airtime_by_kind_s"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s.as_f64().unwrap())
        .sum();
    assert!((json_sum - r.airtime_total_s).abs() < 1e-6 * r.airtime_total_s);
    assert_eq!(v["frames_by_kind"]["symbol"], r.symbols);
    assert!(v["baseline_airtime_by_kind_s"]["bundle"].as_f64().unwrap() > 0.0);
    assert!(v["airtime_vs_bound"].as_f64().unwrap() > 0.0);
}

#[test]
fn bundle_bound_is_the_bundle_once_per_cds_node_and_leaves_the_bound_alone() {
    use meshota_sim::lora::bound::bound_airtime_us;
    use meshota_sim::lora::scenario::seconds;
    let r = lora(&LoraOptions::new(LoraTopology::Line(3), PATCH_BYTES, 9));
    let want = seconds(bound_airtime_us(r.bundle_bytes, r.cds_nodes));
    assert!(want > 0.0);
    assert!(
        (r.bundle_bound_airtime_s - want).abs() < 1e-9,
        "{}",
        r.to_json()
    );
    let bound = seconds(bound_airtime_us(r.payload_bytes, r.cds_nodes));
    assert!((r.bound_airtime_s - bound).abs() < 1e-9, "{}", r.to_json());
    assert!((r.airtime_vs_bound - r.airtime_total_s / r.bound_airtime_s).abs() < 1e-6);
}
