//! `meshota node …`: run the mesh daemon and talk to a running one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::config::NodeConfig;
use crate::daemon::control::{Request, call};
use crate::failure::{CmdResult, Failure};

/// The mesh node daemon.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCmd {
    /// Run the daemon in the foreground until `node stop`, SIGTERM or Ctrl-C.
    Run(ConfigArg),
    /// Print a running daemon's status.
    Status(StatusArgs),
    /// Hand a signed release and its image to a running daemon, which
    /// verifies it, stores it and announces it to the mesh.
    Publish(PublishArgs),
    /// Ask a running daemon to shut down gracefully.
    Stop(ConfigArg),
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The node config file (TOML, with a [mesh] table).
    #[arg(long)]
    pub(crate) config: PathBuf,
}

/// Arguments of `node status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
    /// Print the status object as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `node publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
    /// The signed release manifest.
    #[arg(long)]
    manifest: PathBuf,
    /// The image it describes.
    #[arg(long)]
    image: PathBuf,
    /// A store holding the patch blobs the manifest lists (the `--store`
    /// of `release create --previous`): they are copied into the node's
    /// store and served to nodes on those bases.
    #[arg(long)]
    patch_store: Option<PathBuf>,
}

/// How long `node stop` waits for the daemon to exit after it accepted.
const STOP_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn run(cmd: NodeCmd) -> CmdResult {
    match cmd {
        NodeCmd::Run(a) => {
            init_logging();
            crate::daemon::run(&a.config, false)
        }
        NodeCmd::Status(a) => status(&a),
        NodeCmd::Publish(a) => publish(&a),
        NodeCmd::Stop(a) => {
            // Returns once the daemon is gone (store, ports and socket
            // released), so `node stop && node run` works.
            let cfg = NodeConfig::load(&a.config)?;
            let answer = crate::daemon::control::shutdown_and_wait(
                &cfg.control_socket(),
                Duration::from_secs(10),
                STOP_WAIT,
            )
            .map_err(Failure::rejected)?;
            println!("{answer}");
            Ok(())
        }
    }
}

pub(crate) fn init_logging() {
    let level = std::env::var("MESHOTA_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}

fn ask(config: &std::path::Path, req: &Request, timeout: Duration) -> CmdResult<serde_json::Value> {
    let cfg = NodeConfig::load(config)?;
    call(&cfg.control_socket(), req, timeout).map_err(Failure::rejected)
}

fn absolute(p: &std::path::Path) -> CmdResult<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| Failure::file(p, e))
}

fn publish(a: &PublishArgs) -> CmdResult {
    let req = Request::Publish {
        manifest: absolute(&a.manifest)?,
        image: absolute(&a.image)?,
        patch_store: a.patch_store.as_deref().map(absolute).transpose()?,
    };
    let answer = ask(&a.config, &req, Duration::from_secs(600))?;
    if answer["ok"] == true {
        println!(
            "published release {}",
            answer["release"].as_str().unwrap_or("?")
        );
        Ok(())
    } else {
        Err(Failure::rejected(format!(
            "the node refused the release: {}",
            answer["error"].as_str().unwrap_or("no reason given")
        )))
    }
}

fn status(a: &StatusArgs) -> CmdResult {
    let s = ask(&a.config, &Request::Status, Duration::from_secs(10))?;
    if a.json {
        println!("{s}");
        return Ok(());
    }
    let str_of =
        |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
    println!("node       {}", str_of(&s["node_id"]));
    println!("listen     {}   peers {}", str_of(&s["listen"]), s["peers"]);
    println!("state      {}", str_of(&s["state"]));
    println!(
        "installed  {} (security version {})",
        str_of(&s["installed"]["version"]),
        s["installed"]["security_version"]
    );
    println!(
        "slot       {} {}",
        str_of(&s["slot"]["booted"]),
        str_of(&s["slot"]["state"])
    );
    if s["wanted"].is_object() {
        println!(
            "fetching   {} {}/{} chunks",
            str_of(&s["wanted"]["version"]),
            s["wanted"]["have_chunks"],
            s["wanted"]["total_chunks"]
        );
    }
    if let Some(f) = s["last_failure"].as_str() {
        println!("failure    {f}");
    }
    println!(
        "traffic    in {} B, out {} B, chunks fetched {} ({} B), served {}",
        s["bytes_in"],
        s["bytes_out"],
        s["chunks_fetched"],
        s["chunk_bytes_fetched"],
        s["chunks_served"]
    );
    let r = &s["radio"];
    if r.is_object() {
        println!(
            "radio      {} {} {} MHz SF{}/{} kHz, short id {}, {}",
            str_of(&r["backend"]),
            str_of(&r["region"]),
            r["frequency_hz"].as_u64().unwrap_or(0) as f64 / 1e6,
            r["sf"],
            r["bw_khz"],
            str_of(&r["short_id"]),
            if r["connected"] == true {
                "connected".to_string()
            } else {
                format!("down: {}", str_of(&r["down_reason"]))
            }
        );
        println!(
            "radio      neighbours {}, release {} {}/{} chunks, airtime {:.1} s ({:.1} s of {:.0} s in the last hour, sub-band {})",
            r["neighbours"].as_array().map_or(0, Vec::len),
            r["release"]
                .as_str()
                .map_or("-", |h| h.get(..16).unwrap_or(h)),
            r["have_chunks"],
            r["total_chunks"],
            r["airtime_us"].as_u64().unwrap_or(0) as f64 / 1e6,
            r["airtime_last_hour_us"].as_u64().unwrap_or(0) as f64 / 1e6,
            r["budget_per_hour_us"].as_u64().unwrap_or(0) as f64 / 1e6,
            str_of(&r["sub_band"]),
        );
    }
    Ok(())
}
