//! Scenario tests of the simulator: each is a specification of the fleet's
//! behaviour under one set of faults. A failure prints the replay command.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_sim::net::PARTITION_HEAL_MS;
use meshota_sim::{Options, Report, Topology, run};

fn sim(options: &Options) -> Report {
    let r = run(options).unwrap();
    eprintln!("{}", r.to_json());
    r
}

fn assert_ok(r: &Report) {
    assert!(
        r.ok(),
        "run failed (converged {}, {}/{} nodes, invalid installs {}, corrupt stores {}, stop {:?}); \
         violations {:?}; stuck {:?}; replay with: {}",
        r.converged,
        r.converged_nodes,
        r.required_nodes,
        r.invalid_installs,
        r.corrupt_stores,
        r.stop,
        r.violations,
        r.stuck,
        r.replay
    );
}

#[test]
fn two_hundred_nodes_on_a_random_topology_converge() {
    let r = sim(&Options {
        size_kib: 128,
        ..Options::new(200, 1)
    });
    assert_ok(&r);
    assert_eq!(r.converged_nodes, 200);
}

#[test]
fn a_partition_heals_and_the_far_half_converges_after_it() {
    let r = sim(&Options {
        topology: Topology::Grid,
        partition: true,
        size_kib: 128,
        ..Options::new(100, 2)
    });
    assert_ok(&r);
    assert!(
        r.virtual_seconds * 1000.0 >= PARTITION_HEAL_MS as f64,
        "the far half converged at {} s, before the partition healed; replay with: {}",
        r.virtual_seconds,
        r.replay
    );
}

#[test]
fn ten_percent_malicious_nodes_cause_no_invalid_install_and_do_not_stop_convergence() {
    let r = sim(&Options {
        malicious_percent: 10,
        size_kib: 128,
        ..Options::new(200, 3)
    });
    assert_ok(&r);
    assert_eq!(r.malicious_nodes, 19);
    assert!(
        r.corrupt_chunks_rejected > 0,
        "corrupt chunks were served and caught"
    );
    assert!(
        r.rejected_manifests > 0,
        "forged manifests were pushed and caught"
    );
    assert!(r.bans > 0, "attackers were banned");
}

#[test]
fn crashed_nodes_restart_from_their_store_and_converge_without_refetching() {
    let r = sim(&Options {
        crash_percent: 20,
        topology: Topology::Ring,
        size_kib: 256,
        ..Options::new(60, 4)
    });
    assert_ok(&r);
    assert!(
        r.crashes >= 10 && r.restarts >= 1,
        "crashes {} restarts {}",
        r.crashes,
        r.restarts
    );
    assert_eq!(r.duplicate_chunk_stores, 0, "no chunk is stored twice");
}

#[test]
fn lossy_links_with_every_fault_still_converge_safely() {
    let r = sim(&Options {
        malicious_percent: 10,
        loss_percent: 10,
        crash_percent: 10,
        partition: true,
        size_kib: 64,
        ..Options::new(80, 5)
    });
    assert_ok(&r);
}

#[test]
fn every_topology_converges() {
    for topology in [
        Topology::Line,
        Topology::Ring,
        Topology::Grid,
        Topology::Random,
    ] {
        let r = sim(&Options {
            topology,
            size_kib: 64,
            ..Options::new(30, 6)
        });
        assert_ok(&r);
    }
}

#[test]
fn same_seed_gives_the_same_trace_and_another_seed_another() {
    let o = Options {
        malicious_percent: 10,
        loss_percent: 5,
        crash_percent: 10,
        size_kib: 64,
        ..Options::new(60, 7)
    };
    let (a, b) = (sim(&o), sim(&o));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.to_json(), b.to_json(), "the whole report is equal");
    let c = sim(&Options { seed: 8, ..o });
    assert_ne!(a.trace_hash, c.trace_hash);
}
