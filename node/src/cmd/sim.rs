//! `meshota sim`: runs the deterministic simulator (`meshota-sim`) and
//! reports convergence time, bytes and messages; with `--lora`, the LoRa
//! scenarios (coded broadcast over the simulated EU868 medium, the
//! broadcast bound and, with `--baseline`, the unicast baseline). The report is a function
//! of the arguments only; wall time is measured here, outside the sans-IO
//! simulator, and printed only in the human output or on stderr.

use std::time::Instant;

use clap::Args;
use meshota_sim::lora::{LoraOptions, LoraReport, LoraTopology, PatchRun, Relays};
use meshota_sim::{Options, Report, Topology};

use crate::failure::{CmdResult, Failure};

/// Arguments of `sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Number of nodes (node 0 is the honest seed).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// The one seed of every random choice: the same arguments replay the
    /// same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Graph of links: line, ring, grid or random; with `--lora`:
    /// line:HOPS, random:NODES or grid:NODES.
    #[arg(long, default_value = "random")]
    topology: String,
    /// Simulate LoRa radio links (EU868, 10 % frame loss, collisions) with
    /// coded broadcast instead of IP links.
    #[arg(long)]
    lora: bool,
    /// `--lora`: size of the release's payload (image) in bytes.
    #[arg(long, default_value_t = 20 * 1024, requires = "lora")]
    payload_bytes: usize,
    /// `--lora`: also run the unicast baseline (per-neighbour transfers with
    /// acknowledgements) and report its airtime.
    #[arg(long, requires = "lora")]
    baseline: bool,
    /// `--lora`: add a node with another mesh key beside node 0 (it must be
    /// ignored).
    #[arg(long, requires = "lora")]
    intruder: bool,
    /// `--lora`: the last node joins this many seconds into the run.
    #[arg(long, requires = "lora")]
    late_join: Option<u64>,
    /// `--lora`: a patch release. Every node runs v1; node 0 holds v2 and
    /// a patch from v1 of about `--payload-bytes` (v2's image is ten times
    /// larger); nodes fetch the patch pieces over radio and apply them.
    /// (The unicast baseline sends whole images: not with `--baseline`.)
    #[arg(long, requires = "lora", conflicts_with = "baseline")]
    patch: bool,
    /// `--patch`: this node runs another image (no patch from it) and
    /// fetches chunks.
    #[arg(long, requires = "patch")]
    other_base: Option<usize>,
    /// `--patch`: one piece of the patch is corrupt (its chunks are then
    /// fetched plainly).
    #[arg(long, requires = "patch")]
    corrupt_piece: bool,
    /// `--patch`: nodes ignore the patch and fetch the chunks of v2 they
    /// lack (the yardstick for the patch's airtime).
    #[arg(long, requires = "patch")]
    patch_as_chunks: bool,
    /// `--patch`: bytes of the installed image v1 (64 KiB to 64 MiB;
    /// default ten times `--payload-bytes`). Above 1 MiB the release
    /// crosses as a large one, as daemons send it: by patch only, its
    /// bundle carrying the chunk index as a delta against v1's, unchanged
    /// chunks left in the nodes' stores (not with `--other-base` or
    /// `--patch-as-chunks`).
    #[arg(long, requires = "patch")]
    image_bytes: Option<usize>,
    /// `--lora`: which nodes serve their neighbours. `all` (default):
    /// senders are elected on the air. `cds`: only the broadcast bound's
    /// connected dominating set, a backbone planned from the topology; the
    /// other nodes are leaves (`relay = false` in a node's `[radio]`).
    /// `plan`: the backbone `meshota radio plan` gives (that set plus the
    /// relays that keep every node within 2 hops of its shortest path).
    #[arg(long, requires = "lora", default_value = "all")]
    relays: String,
    /// Percent of malicious nodes (corrupt chunks, forged and replayed
    /// manifests, floods).
    #[arg(long, default_value_t = 0)]
    malicious: u32,
    /// Percent chance that a transmission is lost (costs a retransmission).
    #[arg(long, default_value_t = 0)]
    loss: u32,
    /// Percent of honest nodes that crash once and restart from their store.
    #[arg(long, default_value_t = 0)]
    crash: u32,
    /// Partition the two halves of the fleet for a while, then heal.
    #[arg(long)]
    partition: bool,
    /// Image size in KiB.
    #[arg(long, default_value_t = meshota_sim::options::SIZE_KIB_DEFAULT)]
    size: u64,
    /// Print one JSON object (identical for identical arguments).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &SimArgs) -> CmdResult {
    if a.lora {
        return run_lora(a);
    }
    let topology: Topology = a.topology.parse().map_err(Failure::usage)?;
    let options = Options {
        topology,
        malicious_percent: a.malicious,
        loss_percent: a.loss,
        crash_percent: a.crash,
        partition: a.partition,
        size_kib: a.size,
        ..Options::new(a.nodes, a.seed)
    };
    options.validate().map_err(Failure::usage)?;
    let started = Instant::now();
    let report = meshota_sim::run(&options).map_err(Failure::rejected)?;
    let wall = started.elapsed();
    if a.json {
        println!("{}", report.to_json());
        eprintln!("wall time: {:.2} s", wall.as_secs_f64());
    } else {
        print_human(&report, wall.as_secs_f64());
    }
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::rejected(format!(
            "simulation failed (converged: {}, {} of {} nodes, invalid installs: {}, corrupt stores: {}); replay with: {}",
            report.converged,
            report.converged_nodes,
            report.required_nodes,
            report.invalid_installs,
            report.corrupt_stores,
            report.replay
        )))
    }
}

fn print_human(r: &Report, wall_secs: f64) {
    let verdict = if r.ok() { "converged" } else { "FAILED" };
    println!(
        "{verdict}: {} of {} required nodes installed the release in {:.3} virtual seconds ({:?})",
        r.converged_nodes, r.required_nodes, r.virtual_seconds, r.stop
    );
    println!(
        "fleet: {} nodes ({} malicious), {} links, topology {}; image {} KiB in {} chunks",
        r.nodes, r.malicious_nodes, r.links, r.topology, r.size_kib, r.chunks
    );
    println!(
        "traffic: {} bytes in {} messages ({} chunk bytes fetched, {:.2}x the image per node)",
        r.bytes,
        r.messages,
        r.chunk_bytes_fetched,
        if r.nodes > 1 && r.image_bytes > 0 {
            r.bytes as f64 / ((r.nodes - 1) as f64 * r.image_bytes as f64)
        } else {
            0.0
        }
    );
    println!(
        "faults: {} crashes, {} restarts, {} link failures, {} messages dropped; \
         defence: {} bans, {} corrupt chunks and {} manifests rejected",
        r.crashes,
        r.restarts,
        r.link_failures,
        r.messages_dropped,
        r.bans,
        r.corrupt_chunks_rejected,
        r.rejected_manifests
    );
    println!(
        "safety: {} invalid installs, {} corrupt stores",
        r.invalid_installs, r.corrupt_stores
    );
    for v in &r.violations {
        println!("  violation: {v}");
    }
    for s in &r.stuck {
        println!("  not converged: {s}");
    }
    println!(
        "events: {}; trace {}; wall time {wall_secs:.2} s",
        r.events, r.trace_hash
    );
    println!("replay: {}", r.replay);
}

fn run_lora(a: &SimArgs) -> CmdResult {
    let topology: LoraTopology = a.topology.parse().map_err(|e| {
        Failure::usage(format!(
            "{e}; with --lora the topology is line:HOPS, random:NODES or grid:NODES"
        ))
    })?;
    let relays: Relays = a.relays.parse().map_err(Failure::usage)?;
    let options = LoraOptions {
        relays,
        intruder: a.intruder,
        late_join_s: a.late_join,
        baseline: a.baseline,
        patch: a.patch.then_some(PatchRun {
            other_base: a.other_base,
            corrupt_piece: a.corrupt_piece,
            chunks_only: a.patch_as_chunks,
            image_bytes: a.image_bytes,
        }),
        ..LoraOptions::new(topology, a.payload_bytes, a.seed)
    };
    let started = Instant::now();
    let report = meshota_sim::lora::run(&options).map_err(Failure::usage)?;
    let wall = started.elapsed();
    if a.json {
        println!("{}", report.to_json());
        eprintln!("wall time: {:.2} s", wall.as_secs_f64());
    } else {
        print_lora(&report, wall.as_secs_f64());
    }
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::rejected(format!(
            "LoRa simulation failed (converged: {}, {} of {} nodes, duty-cycle violations: {}, corrupt payloads: {}, intruder accepted by {} nodes); replay with: meshota sim --lora --topology {} --payload-bytes {} --seed {} --relays {}{}",
            report.converged,
            report.converged_nodes,
            report.honest_nodes,
            report.duty_cycle_violations,
            report.corrupt_payloads,
            report.intruder_accepted,
            report.topology,
            report.payload_bytes,
            report.seed,
            report.relays,
            patch_flags(a)
        )))
    }
}

/// The patch flags of a replay line (empty without `--patch`).
fn patch_flags(a: &SimArgs) -> String {
    if !a.patch {
        return String::new();
    }
    let mut out = String::from(" --patch");
    if let Some(n) = a.other_base {
        out.push_str(&format!(" --other-base {n}"));
    }
    if a.corrupt_piece {
        out.push_str(" --corrupt-piece");
    }
    if a.patch_as_chunks {
        out.push_str(" --patch-as-chunks");
    }
    if let Some(n) = a.image_bytes {
        out.push_str(&format!(" --image-bytes {n}"));
    }
    out
}

fn print_lora(r: &LoraReport, wall_secs: f64) {
    let verdict = if r.ok() { "converged" } else { "FAILED" };
    println!(
        "{verdict}: {} of {} nodes hold the release after {:.1} virtual seconds ({})",
        r.converged_nodes, r.honest_nodes, r.virtual_seconds, r.stop
    );
    println!(
        "scenario {}: {} usable links; payload {} bytes in {} chunks, bundle {} bytes; relays: {} ({} nodes)",
        r.topology, r.links, r.payload_bytes, r.chunks, r.bundle_bytes, r.relays, r.relay_nodes
    );
    println!(
        "airtime: {:.1} s total, {:.2} s per node (max {:.1} s); bound {:.1} s ({} CDS nodes): {:.2}x",
        r.airtime_total_s,
        r.airtime_per_node_s,
        r.airtime_max_node_s,
        r.bound_airtime_s,
        r.cds_nodes,
        r.airtime_vs_bound
    );
    if let (Some(p), Some(img)) = (r.patch_bytes, r.image_bytes) {
        println!(
            "patch release: patch {p} bytes for a {img}-byte image; installed by patch {}, by chunks {}, both {}; pieces applied {}, failed {}, piece symbols sent {}",
            r.installed_by_patch.unwrap_or(0),
            r.installed_by_chunks.unwrap_or(0),
            r.installed_mixed.unwrap_or(0),
            r.pieces_applied.unwrap_or(0),
            r.piece_failures.unwrap_or(0),
            r.piece_symbols.unwrap_or(0)
        );
        if r.index_delta {
            println!(
                "large release: the bundle carried the chunk index as a delta; at most {} chunks in a node's radio memory, the rest left in its store",
                r.chunks_in_memory_max.unwrap_or(0)
            );
        }
    }
    if let (Some(b), Some(ratio)) = (r.baseline_airtime_s, r.baseline_vs_coded) {
        println!(
            "unicast baseline: {b:.1} s airtime ({ratio:.2}x the coded broadcast), converged: {}",
            r.baseline_converged.unwrap_or(false)
        );
    }
    println!(
        "frames: {} ({} announcements, {} requests, {} bundle fragments, {} symbols in {} bursts, {} bursts suppressed)",
        r.frames, r.announces, r.requests, r.pieces, r.symbols, r.bursts, r.bursts_suppressed
    );
    println!(
        "duty-cycle violations: {}; bad-MAC frames dropped: {}; wall time {wall_secs:.2} s",
        r.duty_cycle_violations, r.bad_mac_frames
    );
    for s in &r.stuck {
        println!("  not converged: {s}");
    }
}
