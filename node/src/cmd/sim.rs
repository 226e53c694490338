//! `meshota sim`: runs the deterministic simulator (`meshota-sim`) and
//! reports convergence time, bytes and messages. The report is a function
//! of the arguments only; wall time is measured here, outside the sans-IO
//! simulator, and printed only in the human output or on stderr.

use std::time::Instant;

use clap::Args;
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
    /// Graph of links: line, ring, grid or random.
    #[arg(long, default_value = "random")]
    topology: String,
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
