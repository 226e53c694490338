//! LoRa scenario tests (issue #8): coded broadcast over the simulated
//! EU868 medium with 10 % frame loss and collisions. Each prints its report.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_sim::lora::{LoraOptions, LoraReport, LoraTopology, run};

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
