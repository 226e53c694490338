//! `meshota demo`: the whole story on one machine. A testnet of N node
//! daemons on loopback, release v1 (a pseudo-random image) published at
//! node 0 and spread over the mesh until every node has installed it,
//! rebooted into it and confirmed it; then v2, the same image with a few
//! regions changed, which travels as a delta (only the changed chunks);
//! then a summary and the testnet stopped. Every wait is bounded and the
//! daemons are stopped on every exit path (unless `--keep`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{Value, json};

use crate::cmd::testnet::{publish_release, start};
use crate::failure::{CmdResult, Failure};
use crate::testnet::create::{self, MAX_NODES, Plan};
use crate::testnet::fleet::Fleet;
use crate::testnet::image::{self, Pattern};
use crate::testnet::state::TestnetState;
use crate::testnet::topology;
use crate::testnet::view::{self, NodeView, human_bytes};

/// Seed of the v1 image.
const V1_SEED: u64 = 0x6d65_7368_6f74_6131;
/// Regions of v1 changed in v2, and the percentage of the image each is.
const V2_REGIONS: u64 = 4;
/// See [`V2_REGIONS`].
const V2_PERCENT_EACH: u64 = 2;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Image size in MiB.
    #[arg(long, default_value_t = 32)]
    size: u64,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Testnet directory (default: a new temporary one, deleted after a
    /// successful run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Leave the testnet running (and its directory) afterwards.
    #[arg(long)]
    keep: bool,
    /// Seconds each release may take to reach every node.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// UDP port of node 0 (node i uses base + i); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
}

/// One release's journey through the fleet.
#[derive(Debug, Clone)]
struct Phase {
    version: String,
    release: String,
    security_version: u64,
    converged: bool,
    seconds: f64,
    /// Chunk bytes each node fetched during this phase.
    fetched: Vec<u64>,
}

/// Everything the summary reports.
#[derive(Debug, Default)]
struct Outcome {
    phases: Vec<Phase>,
    last: Vec<NodeView>,
    error: Option<String>,
}

/// A started testnet and the daemons this process spawned.
struct Running {
    state: TestnetState,
    fleet: Fleet,
}

fn temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("meshota-demo-{}-{nanos:x}", std::process::id()))
}

/// Progress messages on stderr.
fn say(msg: &str) {
    eprintln!("demo: {msg}");
}

pub(crate) fn run(a: &DemoArgs) -> CmdResult {
    if a.nodes == 0 || a.nodes > MAX_NODES {
        return Err(Failure::usage(format!(
            "--nodes {} must be 1 to {MAX_NODES}",
            a.nodes
        )));
    }
    if a.size == 0 || a.size > 1024 {
        return Err(Failure::usage(format!(
            "--size {} MiB must be 1 to 1024",
            a.size
        )));
    }
    let (dir, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (temp_dir(), true),
    };
    let started = Instant::now();
    let mut running: Option<Running> = None;
    let mut out = Outcome::default();
    if let Err(e) = phases(a, &dir, &mut running, &mut out) {
        out.error = Some(e.message);
    }
    let seconds = started.elapsed().as_secs_f64();
    let converged =
        out.error.is_none() && out.phases.len() == 2 && out.phases.iter().all(|p| p.converged);
    // Clean up: stop the daemons, then delete a temporary directory after
    // a success (after a failure it is kept for its logs).
    let mut kept_dir = Some(dir.clone());
    if let Some(mut r) = running.take() {
        if a.keep {
            r.fleet.detach();
            say(&format!(
                "--keep: the testnet runs on; stop it with `meshota testnet down --dir {}`",
                r.state.dir.display()
            ));
        } else {
            let left = r.fleet.stop(&mut r.state);
            let _ = r.state.save();
            if !left.is_empty() && out.error.is_none() {
                out.error = Some(format!("daemons still running after SIGKILL: {left:?}"));
            }
        }
    }
    if temporary && converged && !a.keep && std::fs::remove_dir_all(&dir).is_ok() {
        kept_dir = None;
    }
    let summary = summary_json(a, converged, seconds, &out, kept_dir.as_deref());
    if a.json {
        println!("{summary}");
    } else {
        print_text(a, converged, seconds, &out, kept_dir.as_deref());
    }
    match (&out.error, converged) {
        (None, true) => Ok(()),
        (Some(e), _) => Err(Failure::rejected(format!(
            "demo failed: {e}{}",
            kept_dir.map_or_else(String::new, |d| format!(" (logs in {})", d.display()))
        ))),
        (None, false) => Err(Failure::rejected("demo: the fleet did not converge")),
    }
}

/// Builds and starts the testnet, then publishes v1 and v2 and waits for
/// each; records what happened in `out`.
fn phases(a: &DemoArgs, dir: &Path, running: &mut Option<Running>, out: &mut Outcome) -> CmdResult {
    say(&format!(
        "building a testnet of {} nodes in {}",
        a.nodes,
        dir.display()
    ));
    let mut state = create::create(&Plan {
        nodes: a.nodes,
        dir: dir.to_path_buf(),
        base_port: a.base_port,
        image_size_mib: a.size,
        lora: None,
    })?;
    say("starting the daemons");
    let fleet = start(&mut state, false)?;
    let r = running.insert(Running { state, fleet });
    let size = a.size << 20;
    let images = r.state.dir.join("images");
    let v1 = Pattern::base(V1_SEED);
    let v2 = v1.changed(size, V2_REGIONS, V2_PERCENT_EACH, 2);
    let v1_path = images.join("1.0.0.img");
    let v2_path = images.join("2.0.0.img");
    image::write(&v1_path, size, &v1)?;
    image::write(&v2_path, size, &v2)?;
    let mut before = vec![0u64; a.nodes];
    for (version, path, what) in [
        ("1.0.0", &v1_path, "full image"),
        ("2.0.0", &v2_path, "delta: 4 regions changed"),
    ] {
        say(&format!(
            "publishing {version} ({}, {what}) at node 0",
            human_bytes(size)
        ));
        let t0 = Instant::now();
        let rec = publish_release(&mut r.state, path, version, None, 0)?;
        let mut err = std::io::stderr();
        let tty = err.is_terminal() && !a.json;
        let w = view::watch(
            &r.state,
            &rec,
            Duration::from_secs(a.timeout),
            &mut err,
            tty,
            &format!("demo: waiting for every node to confirm {version}"),
        );
        let after: Vec<u64> = w.views.iter().map(|v| v.chunk_bytes_fetched).collect();
        let fetched = after
            .iter()
            .zip(&before)
            .map(|(x, y)| x.saturating_sub(*y))
            .collect();
        before = after;
        out.phases.push(Phase {
            version: version.to_string(),
            release: rec.release.clone(),
            security_version: rec.security_version,
            converged: w.converged,
            seconds: t0.elapsed().as_secs_f64(),
            fetched,
        });
        out.last = w.views;
        if !w.converged {
            return Err(Failure::rejected(format!(
                "not every node confirmed {version} within {} s",
                a.timeout
            )));
        }
        say(&format!(
            "every node confirmed {version} in {:.1} s",
            t0.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// 1 − (mean chunk bytes fetched for v2 by the nodes that fetched over the
/// mesh, i.e. all but node 0 where it was published) / image size; `None`
/// without a v2 phase.
fn delta_savings(out: &Outcome, size: u64) -> Option<f64> {
    let p = out.phases.get(1)?;
    let fetchers: &[u64] = if p.fetched.len() > 1 {
        &p.fetched[1..]
    } else {
        &p.fetched
    };
    if fetchers.is_empty() || size == 0 {
        return None;
    }
    let mean = fetchers.iter().sum::<u64>() as f64 / fetchers.len() as f64;
    Some(1.0 - mean / size as f64)
}

/// Chunk bytes node `i` fetched over all phases.
fn node_bytes(out: &Outcome, i: usize) -> u64 {
    out.phases
        .iter()
        .map(|p| p.fetched.get(i).copied().unwrap_or(0))
        .sum()
}

fn summary_json(
    a: &DemoArgs,
    converged: bool,
    seconds: f64,
    out: &Outcome,
    dir: Option<&Path>,
) -> Value {
    let size = a.size << 20;
    let links = topology::links(a.nodes);
    let phases: Vec<Value> = out
        .phases
        .iter()
        .map(|p| {
            json!({
                "version": p.version,
                "release": p.release,
                "security_version": p.security_version,
                "converged": p.converged,
                "seconds": p.seconds,
                "bytes_moved": p.fetched.iter().sum::<u64>(),
            })
        })
        .collect();
    let nodes: Vec<Value> = out
        .last
        .iter()
        .map(|v| {
            let mut j = v.summary_json();
            if let Some(o) = j.as_object_mut() {
                o.insert("bytes_moved".into(), json!(node_bytes(out, v.id)));
                let per: Vec<u64> = out
                    .phases
                    .iter()
                    .map(|p| p.fetched.get(v.id).copied().unwrap_or(0))
                    .collect();
                o.insert("bytes_moved_per_phase".into(), json!(per));
            }
            j
        })
        .collect();
    json!({
        "converged": converged,
        "seconds": seconds,
        "node_count": a.nodes,
        "image_bytes": size,
        "v2_changed_bytes": Pattern::base(V1_SEED)
            .changed(size, V2_REGIONS, V2_PERCENT_EACH, 2)
            .changed_bytes(),
        "bytes_moved": (0..a.nodes).map(|i| node_bytes(out, i)).sum::<u64>(),
        "delta_savings": delta_savings(out, size),
        "phases": phases,
        "topology": {
            "links": links.len(),
            "diameter": topology::diameter(a.nodes, &links),
        },
        "nodes": nodes,
        "dir": dir.map(|d| d.display().to_string()),
        "error": out.error,
    })
}

fn print_text(a: &DemoArgs, converged: bool, seconds: f64, out: &Outcome, dir: Option<&Path>) {
    let size = a.size << 20;
    let links = topology::links(a.nodes);
    println!();
    println!(
        "meshota demo: {} nodes on loopback, {} image, {} links (ring + chords, {} hops across)",
        a.nodes,
        human_bytes(size),
        links.len(),
        topology::diameter(a.nodes, &links).map_or_else(|| "?".to_string(), |d| d.to_string())
    );
    println!();
    println!("release  converged  seconds  bytes moved (fleet)");
    for p in &out.phases {
        println!(
            "{:<8} {:<10} {:>7.1}  {}",
            p.version,
            if p.converged { "yes" } else { "NO" },
            p.seconds,
            human_bytes(p.fetched.iter().sum())
        );
    }
    if let Some(s) = delta_savings(out, size) {
        println!();
        println!(
            "delta savings  {:.1}% (2.0.0 fetched {} per node on average instead of {})",
            s * 100.0,
            human_bytes(((1.0 - s) * size as f64) as u64),
            human_bytes(size)
        );
    }
    println!();
    println!("node     installed  slot  slot state  state       bytes moved");
    for v in &out.last {
        println!(
            "node-{:<3} {:<10} {:<5} {:<11} {:<11} {}",
            v.id,
            v.installed_version.as_deref().unwrap_or("-"),
            v.booted.as_deref().unwrap_or("-"),
            v.slot_state.as_deref().unwrap_or("-"),
            v.state,
            human_bytes(node_bytes(out, v.id))
        );
    }
    println!();
    if converged {
        println!("converged: every node runs 2.0.0 from a confirmed slot ({seconds:.1} s in all)");
    } else {
        println!(
            "NOT converged: {}",
            out.error.as_deref().unwrap_or("see above")
        );
    }
    if let Some(d) = dir {
        println!("testnet directory: {}", d.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(v2: Vec<u64>) -> Outcome {
        Outcome {
            phases: vec![
                Phase {
                    version: "1.0.0".to_string(),
                    release: String::new(),
                    security_version: 2,
                    converged: true,
                    seconds: 1.0,
                    fetched: vec![0, 100, 100],
                },
                Phase {
                    version: "2.0.0".to_string(),
                    release: String::new(),
                    security_version: 3,
                    converged: true,
                    seconds: 1.0,
                    fetched: v2,
                },
            ],
            last: vec![],
            error: None,
        }
    }

    #[test]
    fn delta_savings_average_the_nodes_that_fetched_over_the_mesh() {
        let s = delta_savings(&outcome(vec![0, 10, 30]), 100).unwrap_or(0.0);
        assert!((s - 0.8).abs() < 1e-9, "{s}");
        assert!(delta_savings(&Outcome::default(), 100).is_none());
        assert_eq!(node_bytes(&outcome(vec![0, 10, 30]), 2), 130);
    }

    #[test]
    fn the_json_summary_has_the_documented_fields() {
        let a = DemoArgs {
            nodes: 3,
            size: 1,
            json: true,
            dir: None,
            keep: false,
            timeout: 1,
            base_port: 0,
        };
        let mut out = outcome(vec![0, 10, 30]);
        out.last = (0..3)
            .map(|i| {
                NodeView::from_status(
                    i,
                    json!({"state": "confirmed", "installed": {"version": "2.0.0"},
                           "slot": {"booted": "B", "state": "confirmed"}}),
                )
            })
            .collect();
        let j = summary_json(&a, true, 2.5, &out, None);
        assert_eq!(j["converged"], true);
        assert_eq!(j["bytes_moved"], 240);
        assert!(j["delta_savings"].as_f64().unwrap_or(0.0) > 0.99);
        let nodes = j["nodes"].as_array().cloned().unwrap_or_default();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2]["id"], 2);
        assert_eq!(nodes[2]["installed_version"], "2.0.0");
        assert_eq!(nodes[2]["slot_state"], "confirmed");
        assert_eq!(nodes[2]["bytes_moved"], 130);
        assert!(j["seconds"].is_number());
    }
}
