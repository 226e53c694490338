//! `meshota radio plan`: which radio nodes must relay and which can be
//! leaves (`[radio] relay = false`), from the links the nodes measured.
//!
//! Input: each node's `meshota node status --json` (its `radio.short_id`
//! and `radio.neighbour_links`). A link counts when both of its ends
//! report the other strong. The plan is `meshota_radios::backbone::plan`
//! (a greedy connected dominating set grown from the node releases enter
//! at, the set the simulator's broadcast bound counts, plus the relays
//! that keep every node within `--max-detour` hops of its shortest path).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use meshota_radios::backbone;
use serde_json::{Value, json};

use crate::failure::{AtPath, CmdResult, Failure};

/// Largest status file read (bytes).
const STATUS_BYTES_MAX: usize = 4 << 20;

/// Planning the radio mesh.
#[derive(Debug, Subcommand)]
pub(crate) enum RadioCmd {
    /// Which nodes must relay and which can be leaves, from the nodes' status (exit 1 if the links leave a node unreachable).
    Plan(PlanArgs),
}

/// Arguments of `radio plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// `meshota node status --json` of each node to plan, one file per node.
    #[arg(long = "status", required = true, num_args = 1..)]
    status: Vec<PathBuf>,
    /// Short id (4 hex digits, as `radio.short_id` shows it) of the node
    /// releases enter at: the gateway, or where a USB bundle is imported.
    #[arg(long)]
    source: String,
    /// Most hops a node may be from the source over relays beyond its
    /// shortest path: relays are added to the greedy set until it holds
    /// (lower: faster convergence, more relays).
    #[arg(long, default_value_t = 2)]
    max_detour: usize,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `radio` subcommand.
pub(crate) fn run(cmd: RadioCmd) -> CmdResult {
    match cmd {
        RadioCmd::Plan(a) => plan(&a),
    }
}

/// One node's side of its links, from its status.
struct Measured {
    /// Neighbours it reports strong.
    strong: BTreeSet<u16>,
    /// Every neighbour it reports.
    heard: BTreeSet<u16>,
}

fn short_id(s: &str) -> Option<u16> {
    (s.len() == 4)
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

/// The node's short id and links from one status file.
fn read_status(path: &Path) -> CmdResult<(u16, Measured)> {
    let bytes = meshota_manifest::fs::read_limited(path, STATUS_BYTES_MAX)?;
    let v: Value = serde_json::from_slice(&bytes).at(path)?;
    let radio = &v["radio"];
    if !radio.is_object() {
        return Err(Failure::file(
            path,
            "no radio in this status (a node without a [radio] table, or not `node status --json` output)",
        ));
    }
    let id = radio["short_id"]
        .as_str()
        .and_then(short_id)
        .ok_or_else(|| Failure::file(path, "radio.short_id is not 4 hex digits"))?;
    let links = radio["neighbour_links"].as_array().ok_or_else(|| {
        Failure::file(
            path,
            "radio.neighbour_links missing (status from a meshota that does not report link quality)",
        )
    })?;
    let mut m = Measured {
        strong: BTreeSet::new(),
        heard: BTreeSet::new(),
    };
    for l in links {
        let n = l["short_id"].as_str().and_then(short_id).ok_or_else(|| {
            Failure::file(
                path,
                format!("a neighbour_links entry has no valid short_id: {l}"),
            )
        })?;
        let strong = l["strong"].as_bool().ok_or_else(|| {
            Failure::file(
                path,
                format!("neighbour {n:04x}: strong is not true or false"),
            )
        })?;
        m.heard.insert(n);
        if strong {
            m.strong.insert(n);
        }
    }
    Ok((id, m))
}

/// The planned nodes and the links both ends of which report strong.
struct Graph {
    /// Short ids in ascending order; a node's index is its position.
    ids: Vec<u16>,
    /// Adjacency lists by index, each link at both ends.
    adj: Vec<Vec<usize>>,
    /// Links (counted once).
    links: usize,
}

fn graph(nodes: &BTreeMap<u16, Measured>) -> Graph {
    let ids: Vec<u16> = nodes.keys().copied().collect();
    let mut adj = vec![Vec::new(); ids.len()];
    let mut links = 0usize;
    for (i, (id, m)) in nodes.iter().enumerate() {
        for n in &m.strong {
            let mutual = nodes.get(n).is_some_and(|o| o.strong.contains(id));
            if let (true, Ok(j)) = (mutual, ids.binary_search(n)) {
                adj[i].push(j);
                if i < j {
                    links += 1;
                }
            }
        }
    }
    Graph { ids, adj, links }
}

fn hex(ids: impl IntoIterator<Item = u16>) -> Vec<String> {
    ids.into_iter().map(|i| format!("{i:04x}")).collect()
}

fn plan(a: &PlanArgs) -> CmdResult {
    let source = short_id(&a.source).ok_or_else(|| {
        Failure::usage(format!(
            "--source {}: a short id is 4 hex digits, as `node status` shows it",
            a.source
        ))
    })?;
    let mut nodes: BTreeMap<u16, Measured> = BTreeMap::new();
    let mut from: BTreeMap<u16, &Path> = BTreeMap::new();
    for path in &a.status {
        let (id, m) = read_status(path)?;
        if let Some(first) = from.insert(id, path) {
            return Err(Failure::rejected(format!(
                "short id {id:04x} is in both {} and {}: the same status twice, or two nodes \
                 sharing a short id (their neighbours take them for one node: give one \
                 another `short_id` in its [radio] table)",
                first.display(),
                path.display()
            )));
        }
        nodes.insert(id, m);
    }
    if !nodes.contains_key(&source) {
        return Err(Failure::usage(format!(
            "--source {source:04x}: no status file is of that node"
        )));
    }
    let Graph { ids, adj, links } = graph(&nodes);
    let index: BTreeMap<u16, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let not_planned: BTreeSet<u16> = nodes
        .values()
        .flat_map(|m| m.heard.iter().copied())
        .filter(|n| !nodes.contains_key(n))
        .collect();
    let src = index[&source];
    let b = backbone::plan(&adj, src, a.max_detour);
    let all: Vec<usize> = (0..ids.len()).collect();
    let (depth, shortest) = (
        backbone::depth(&adj, src, &b.relays),
        backbone::depth(&adj, src, &all),
    );
    let name = |v: &[usize]| hex(v.iter().map(|&i| ids[i]));
    let (relays, leaves, unreachable) = (name(&b.relays), name(&b.leaves), name(&b.unreachable));
    if a.json {
        println!(
            "{}",
            json!({
                "source": format!("{source:04x}"),
                "nodes": ids.len(),
                "links": links,
                "max_detour": a.max_detour,
                "depth": depth,
                "shortest_depth": shortest,
                "relays": relays,
                "leaves": leaves,
                "unreachable": unreachable,
                "not_planned": hex(not_planned.iter().copied()),
            })
        );
    } else {
        println!(
            "backbone from {source:04x}: {} relays and {} leaves of {} nodes ({links} strong links both ways)",
            relays.len(),
            leaves.len(),
            ids.len()
        );
        println!(
            "the farthest node is {depth} relay hops from {source:04x} ({shortest} on shortest paths)"
        );
        println!("relays: {}", relays.join(" "));
        println!(
            "leaves (set `relay = false` in their [radio] table): {}",
            leaves.join(" ")
        );
        if !unreachable.is_empty() {
            println!(
                "unreachable (no path of strong links from {source:04x}): {}",
                unreachable.join(" ")
            );
        }
        if !not_planned.is_empty() {
            println!(
                "heard but not planned (no status given; keep them relays): {}",
                hex(not_planned.iter().copied()).join(" ")
            );
        }
    }
    if b.unreachable.is_empty() {
        Ok(())
    } else {
        Err(Failure::rejected(format!(
            "{} node(s) have no path of strong links from {source:04x}: {}; keep every node a relay until their links are measured",
            unreachable.len(),
            unreachable.join(" ")
        )))
    }
}
