//! Runs LoRa scenarios and prints one summary line each (a quicker loop
//! than the `meshota` binary for protocol work: this crate's dependencies
//! only). Usage: `lora_sweep [--baseline] [--json] [--lone-wait=F]
//! [--margin-div-shared=D] [--relays=all|cds|plan] [--patch [--image-bytes=N]]
//! SEED TOPOLOGY:PAYLOAD ...`,
//! e.g. `lora_sweep 1
//! random:50:20480 grid:200:102400`; the `=` options set the links'
//! `RadioTiming` fields of those names, and `--patch` runs the patch
//! release of `meshota sim --lora --patch` (the payload size is then
//! the patch's), `--image-bytes` with v1 of that size.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_mesh::radio::RadioTiming;
use meshota_sim::lora::{LoraOptions, LoraTopology, PatchRun, Relays, run};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let baseline = args.iter().any(|a| a == "--baseline");
    let json = args.iter().any(|a| a == "--json");
    let patch = args.iter().any(|a| a == "--patch");
    let value = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(name))
            .map(|v| v.parse::<u64>().expect("a number"))
    };
    let mut timing = RadioTiming::LORA;
    if let Some(f) = value("--lone-wait=") {
        timing.lone_wait_factor = f;
    }
    if let Some(d) = value("--margin-div-shared=") {
        timing.margin_div_shared = u32::try_from(d).expect("a divisor");
    }
    let relays: Relays = args
        .iter()
        .find_map(|a| a.strip_prefix("--relays="))
        .map_or(Relays::All, |r| r.parse().expect("all, cds or plan"));
    let image_bytes = value("--image-bytes=").map(|n| usize::try_from(n).expect("a size"));
    args.retain(|a| !a.starts_with("--"));
    let seed: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    for spec in args.iter().skip(1) {
        let (topo, payload) = spec.rsplit_once(':').expect("TOPOLOGY:PAYLOAD");
        let topology: LoraTopology = topo.parse().expect("topology");
        let o = LoraOptions {
            baseline,
            timing,
            relays,
            patch: patch.then_some(PatchRun {
                image_bytes,
                ..PatchRun::default()
            }),
            ..LoraOptions::new(topology, payload.parse().expect("payload"), seed)
        };
        let r = run(&o).expect("run");
        if json {
            println!("{}", r.to_json());
        }
        println!(
            "{topo} {payload} seed {seed}: converged {} in {:.0} s, airtime {:.1} s, bound {:.1} s ({} cds, bundle {:.1} s more), x{:.2}; airtime by kind: {}; baseline/coded {:?}; frames {} ann {} req {} pieces {} symbols {} bursts {} suppressed {} senders {} viol {} losses {:?}",
            r.converged,
            r.virtual_seconds,
            r.airtime_total_s,
            r.bound_airtime_s,
            r.cds_nodes,
            r.bundle_bound_airtime_s,
            r.airtime_vs_bound,
            r.airtime_by_kind.summary(),
            r.baseline_vs_coded.map(|x| (x * 100.0).round() / 100.0),
            r.frames,
            r.announces,
            r.requests,
            r.pieces,
            r.symbols,
            r.bursts,
            r.bursts_suppressed,
            r.symbols_per_node.len(),
            r.duty_cycle_violations,
            r.losses,
        );
    }
}
