//! `meshota testnet up|publish|status|down`: a developers' testnet of real
//! node daemons on loopback (file slots, simulated bootloader, dev keys).
//! The pieces live in `crate::testnet`; the daemon contract is
//! docs/daemon.md.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::failure::{AtPath, CmdResult, Failure};
use crate::testnet::create::{self, LoraLayout, LoraPlan, Plan, sign_release};
use crate::testnet::fleet::{Fleet, is_daemon_of, stop_nodes};
use crate::testnet::state::{ReleaseRecord, TestnetState};
use crate::testnet::{control, view};

/// How long `up` waits for every control socket to answer (generous: a
/// loaded machine starts many daemons slowly; a daemon that exits is seen
/// at once).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `publish` request may take (the daemon ingests the image).
pub(crate) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);
/// Nodes of a new testnet when `--nodes` is not given.
const DEFAULT_NODES: usize = 4;

/// Developers' testnet.
#[derive(Debug, Subcommand)]
pub(crate) enum TestnetCmd {
    /// Build a testnet directory (dev keys, trust root, provisioned nodes)
    /// and start a daemon per node; on a stopped testnet, start it again.
    Up(UpArgs),
    /// Sign an image with the testnet's dev release key and inject it at
    /// node 0.
    Publish(PublishArgs),
    /// Every node's status; `--watch` shows live progress until all run
    /// the newest release confirmed.
    Status(StatusArgs),
    /// Stop every daemon (the directory is kept unless `--clean`).
    Down(DownArgs),
    /// Run the simulated LoRa medium of a `--lora` testnet (started by
    /// `testnet up`; not for people).
    #[command(hide = true)]
    Medium(MediumArgs),
}

/// Arguments of the hidden `testnet medium`.
#[derive(Debug, Args)]
pub(crate) struct MediumArgs {
    /// The testnet directory (its `medium.json`).
    #[arg(long)]
    dir: PathBuf,
}

/// `--lora-topology`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LoraTopologyArg {
    /// Neighbours 3 km apart in a line: every hop a radio hop.
    Line,
    /// A square-ish grid, 3 km pitch.
    Grid,
}

/// Arguments of `testnet up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Number of nodes (default 4; an existing testnet keeps its own).
    #[arg(long)]
    nodes: Option<usize>,
    /// The testnet directory: missing or empty (a new testnet), or a
    /// stopped testnet.
    #[arg(long)]
    dir: PathBuf,
    /// UDP port of node 0; node i listens on base + i. 0 picks free ports.
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// Largest image the slots must hold, in MiB.
    #[arg(long, default_value_t = 64)]
    image_size: u64,
    /// Put the nodes on a simulated LoRa medium (a medium server process
    /// over a Unix socket, EU868 g3, SF7/125 kHz), radio only unless
    /// `--mixed`.
    #[arg(long)]
    lora: bool,
    /// Where the radio nodes sit (with `--lora`).
    #[arg(long, value_enum, default_value_t = LoraTopologyArg::Line, requires = "lora")]
    lora_topology: LoraTopologyArg,
    /// Nodes 0..K are on QUIC and K-1..N on the radio: node K-1 has both
    /// and forwards between them (with `--lora`).
    #[arg(long, value_name = "K", requires = "lora")]
    mixed: Option<usize>,
    /// The medium runs this many times faster than the wall clock, and so
    /// do the nodes' radio links (airtime, duty cycle, timers alike).
    #[arg(long, default_value_t = 1, requires = "lora")]
    lora_time_scale: u32,
    /// These radio nodes are leaves (`relay = false` in their `[radio]`):
    /// they receive and install but never serve (with `--lora`).
    #[arg(long, value_name = "I,J,...", value_delimiter = ',', requires = "lora")]
    leaves: Vec<usize>,
    /// Every radio node off the backbone `meshota radio plan` would give
    /// this medium (from the first radio node) is a leaf (with `--lora`).
    #[arg(long, requires = "lora", conflicts_with = "leaves")]
    plan_backbone: bool,
    /// `[radio] whole_release_bytes_max` of every radio node: releases
    /// with a larger image cross the radio by patch only, their chunks
    /// left in the stores (with `--lora`; default 1 MiB).
    #[arg(long, value_name = "BYTES", requires = "lora")]
    lora_whole_release_bytes_max: Option<u64>,
}

/// Arguments of `testnet publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The testnet directory.
    #[arg(long)]
    dir: PathBuf,
    /// The image file.
    image: PathBuf,
    /// Version (semver).
    #[arg(long)]
    version: String,
    /// Security version (default: the previous one plus 1).
    #[arg(long)]
    security_version: Option<u64>,
    /// The node to inject at (default 0).
    #[arg(long, default_value_t = 0)]
    node: usize,
}

/// Arguments of `testnet status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The testnet directory.
    #[arg(long)]
    dir: PathBuf,
    /// Print JSON (with `--watch`: once, at the end).
    #[arg(long)]
    json: bool,
    /// Show live progress until every node runs the newest release
    /// confirmed (exit 1 if the timeout passes first).
    #[arg(long)]
    watch: bool,
    /// Seconds `--watch` waits at most.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Arguments of `testnet down`.
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The testnet directory.
    #[arg(long)]
    dir: PathBuf,
    /// Delete the directory afterwards.
    #[arg(long)]
    clean: bool,
}

pub(crate) fn run(cmd: TestnetCmd) -> CmdResult {
    match cmd {
        TestnetCmd::Up(a) => up(&a),
        TestnetCmd::Publish(a) => publish(&a),
        TestnetCmd::Status(a) => status(&a),
        TestnetCmd::Down(a) => down(&a),
        TestnetCmd::Medium(a) => {
            crate::cmd::node::init_logging();
            crate::radio::medium::serve(&a.dir)
        }
    }
}

/// A new testnet built from `plan`, or the stopped testnet already in
/// `plan.dir` (refused when it is running or has another node count).
pub(crate) fn prepare(plan: &Plan, nodes_given: bool) -> CmdResult<TestnetState> {
    if !TestnetState::path_in(&plan.dir).exists() {
        return create::create(plan);
    }
    let state = TestnetState::load(&plan.dir)?;
    if let Some(n) = state
        .nodes
        .iter()
        .find(|n| n.pid.is_some_and(|p| is_daemon_of(p, n)))
    {
        return Err(Failure::file(
            &plan.dir,
            format!(
                "the testnet is already up (node {} runs as pid {}); `meshota testnet down --dir {}` first",
                n.id,
                n.pid.unwrap_or_default(),
                plan.dir.display()
            ),
        ));
    }
    if nodes_given && plan.nodes != state.nodes.len() {
        return Err(Failure::usage(format!(
            "{} is a testnet of {} nodes, not {}; use another directory for a new testnet",
            plan.dir.display(),
            state.nodes.len(),
            plan.nodes
        )));
    }
    Ok(state)
}

/// Starts every daemon of `state` and waits until all answer; on failure
/// stops the ones started. The pids are saved in the state file.
pub(crate) fn start(state: &mut TestnetState, own_group: bool) -> CmdResult<Fleet> {
    let mut fleet = Fleet::spawn(state, own_group)?;
    let saved = state.save();
    let ready = saved.and_then(|()| fleet.wait_ready(state, READY_TIMEOUT));
    if let Err(e) = ready {
        fleet.stop(state);
        let _ = state.save();
        return Err(e);
    }
    Ok(fleet)
}

fn up(a: &UpArgs) -> CmdResult {
    if !(1..=crate::radio::medium::TIME_SCALE_MAX).contains(&a.lora_time_scale) {
        return Err(Failure::usage(format!(
            "--lora-time-scale {} must be 1 to {}",
            a.lora_time_scale,
            crate::radio::medium::TIME_SCALE_MAX
        )));
    }
    let mut lora = a.lora.then(|| LoraPlan {
        layout: match a.lora_topology {
            LoraTopologyArg::Line => LoraLayout::Line,
            LoraTopologyArg::Grid => LoraLayout::Grid,
        },
        mixed: a.mixed,
        time_scale: a.lora_time_scale,
        seed: u64::from(std::process::id()),
        leaves: a.leaves.clone(),
        whole_release_bytes_max: a.lora_whole_release_bytes_max,
    });
    if let Some(l) = lora.as_mut().filter(|_| a.plan_backbone) {
        l.leaves = l.planned_leaves(a.nodes.unwrap_or(DEFAULT_NODES))?;
    }
    let plan = Plan {
        nodes: a.nodes.unwrap_or(DEFAULT_NODES),
        dir: a.dir.clone(),
        base_port: a.base_port,
        image_size_mib: a.image_size,
        lora,
    };
    if let Some(l) = &plan.lora {
        // Refused before anything is written.
        l.split(plan.nodes)?;
    }
    let mut state = prepare(&plan, a.nodes.is_some())?;
    let fleet = start(&mut state, true)?;
    fleet.detach();
    println!(
        "testnet up: {} nodes in {} (hardware {}, channel {}, slots for {} MiB images)",
        state.nodes.len(),
        state.dir.display(),
        state.hardware,
        state.channel,
        state.image_size_mib
    );
    for n in &state.nodes {
        println!(
            "node-{:<3} {:<21} pid {:<8} id {}…  dials {}",
            n.id,
            n.listen,
            n.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            n.node_id.get(..16).unwrap_or(&n.node_id),
            if n.peers.is_empty() {
                "-".to_string()
            } else {
                n.peers.join(", ")
            }
        );
    }
    if let Some(l) = &state.lora {
        println!(
            "radio     {} nodes {:?} on the medium ({}, time scale {}x, socket {}){}{}",
            l.radio_nodes.len(),
            l.radio_nodes,
            l.topology,
            l.time_scale,
            l.socket.display(),
            l.mixed.map_or_else(String::new, |k| format!(
                "; nodes 0..{k} on QUIC, node {} on both",
                k - 1
            )),
            if l.leaves.is_empty() {
                String::new()
            } else {
                format!("; leaves {:?} (serve nothing)", l.leaves)
            }
        );
    }
    let d = state.dir.display();
    println!("publish   meshota testnet publish --dir {d} IMAGE --version 1.0.0");
    println!("watch     meshota testnet status --dir {d} --watch");
    println!("stop      meshota testnet down --dir {d}");
    Ok(())
}

/// Signs `image` as `version` (security version: given, else the previous
/// plus 1) with the testnet's dev key, injects it at node 0 and records it.
pub(crate) fn publish_release(
    state: &mut TestnetState,
    image: &Path,
    version: &str,
    security_version: Option<u64>,
    at: usize,
) -> CmdResult<ReleaseRecord> {
    let image = std::fs::canonicalize(image).at(image)?;
    let size = std::fs::metadata(&image).at(&image)?.len();
    if size > state.slot_bytes {
        return Err(Failure::file(
            &image,
            format!(
                "{size} bytes do not fit the testnet's slots ({} bytes); \
                 make a testnet with a larger --image-size",
                state.slot_bytes
            ),
        ));
    }
    let sv = match security_version {
        Some(sv) => sv,
        None => state
            .last_security_version()
            .checked_add(1)
            .ok_or_else(|| Failure::usage("the security version cannot be increased further"))?,
    };
    let out = state
        .dir
        .join("releases")
        .join(format!("{version}-sv{sv}.mota"));
    let rec = sign_release(
        &state.trust_root,
        &state.release_key,
        &image,
        version,
        sv,
        &out,
    )?;
    let node = state.nodes.get(at).ok_or_else(|| {
        Failure::usage(format!(
            "the testnet has {} nodes; there is no node {at}",
            state.nodes.len()
        ))
    })?;
    let id = control::publish(&node.socket, &rec.manifest, &rec.image, PUBLISH_TIMEOUT).map_err(
        |e| {
            Failure::file(
                &node.socket,
                format!("node {at} refused the release {version}: {e}"),
            )
        },
    )?;
    if !id.is_empty() && !id.eq_ignore_ascii_case(&rec.release) {
        eprintln!(
            "warning: node {at} reports release {id}, the manifest's id is {}",
            rec.release
        );
    }
    state.releases.push(rec.clone());
    state.save()?;
    Ok(rec)
}

fn publish(a: &PublishArgs) -> CmdResult {
    let mut state = TestnetState::load(&a.dir)?;
    let rec = publish_release(&mut state, &a.image, &a.version, a.security_version, a.node)?;
    println!(
        "published {} (security version {}, {} bytes) at node {}",
        rec.version, rec.security_version, rec.size, a.node
    );
    println!("release   {}", rec.release);
    println!("manifest  {}", rec.manifest.display());
    println!(
        "watch     meshota testnet status --dir {} --watch",
        state.dir.display()
    );
    Ok(())
}

/// The status JSON: the target release, whether all converged, every node.
fn status_json(state: &TestnetState, views: &[view::NodeView], seconds: Option<f64>) -> Value {
    let t = state.target();
    let nodes: Vec<Value> = views
        .iter()
        .zip(&state.nodes)
        .map(|(v, n)| {
            let mut j = v.summary_json();
            if let Some(o) = j.as_object_mut() {
                o.insert("pid".into(), json!(n.pid));
                o.insert("listen".into(), json!(n.listen));
                o.insert("status".into(), v.raw.clone());
            }
            j
        })
        .collect();
    json!({
        "dir": state.dir.display().to_string(),
        "target": {
            "version": t.version,
            "release": t.release,
            "security_version": t.security_version,
        },
        "converged": view::all_converged(views, t),
        "seconds": seconds,
        "nodes": nodes,
        "medium": state.lora.as_ref().map(|_| {
            crate::radio::medium::MediumStatus::load(&state.dir)
                .map_or(Value::Null, |m| json!(m))
        }),
    })
}

fn status(a: &StatusArgs) -> CmdResult {
    let state = TestnetState::load(&a.dir)?;
    let target = state.target().clone();
    if a.watch {
        let mut out = std::io::stdout();
        let tty = out.is_terminal() && !a.json;
        let header = format!(
            "waiting for {} nodes to run {} (release {}…) confirmed",
            state.nodes.len(),
            target.version,
            target.release.get(..16).unwrap_or(&target.release)
        );
        let w = if a.json {
            view::watch(
                &state,
                &target,
                Duration::from_secs(a.timeout),
                &mut std::io::sink(),
                false,
                &header,
            )
        } else {
            view::watch(
                &state,
                &target,
                Duration::from_secs(a.timeout),
                &mut out,
                tty,
                &header,
            )
        };
        if a.json {
            println!(
                "{:#}",
                status_json(&state, &w.views, Some(w.elapsed.as_secs_f64()))
            );
        } else if w.converged {
            println!(
                "all {} nodes confirmed on {} after {:.1} s",
                w.views.len(),
                target.version,
                w.elapsed.as_secs_f64()
            );
        }
        if !w.converged {
            return Err(Failure::rejected(format!(
                "not every node runs {} confirmed after {} s",
                target.version, a.timeout
            )));
        }
        return Ok(());
    }
    let views = view::poll(&state, view::STATUS_TIMEOUT);
    if a.json {
        println!("{:#}", status_json(&state, &views, None));
        return Ok(());
    }
    println!(
        "testnet {}: target {} (security version {})",
        state.dir.display(),
        target.version,
        target.security_version
    );
    for v in &views {
        println!("{}", v.line(&target));
    }
    println!(
        "{} of {} confirmed on {}",
        views.iter().filter(|v| v.converged_on(&target)).count(),
        views.len(),
        target.version
    );
    if state.lora.is_some() {
        match crate::radio::medium::MediumStatus::load(&state.dir) {
            Some(m) => println!(
                "medium: {:.0} s virtual ({}x), {} frames, {} delivered, lost {} collision / {} half duplex / {} noise, {} duty-cycle violations",
                m.virtual_seconds,
                m.time_scale,
                m.frames,
                m.delivered,
                m.losses[0],
                m.losses[1],
                m.losses[2],
                m.duty_cycle_violations
            ),
            None => println!("medium: no status yet"),
        }
    }
    Ok(())
}

fn down(a: &DownArgs) -> CmdResult {
    let mut state = TestnetState::load(&a.dir)?;
    let running = state.nodes.iter().filter(|n| n.pid.is_some()).count()
        + state
            .lora
            .as_ref()
            .map_or(0, |l| usize::from(l.pid.is_some()));
    let left = stop_nodes(&mut state, &mut || {});
    state.save()?;
    if !left.is_empty() {
        return Err(Failure::file(
            &a.dir,
            format!("processes still running after SIGKILL: {left:?}"),
        ));
    }
    println!(
        "testnet down: {running} daemon(s) stopped; {} {}",
        state.dir.display(),
        if a.clean { "deleted" } else { "kept" }
    );
    if a.clean {
        std::fs::remove_dir_all(&state.dir).at(&state.dir)?;
    }
    Ok(())
}
