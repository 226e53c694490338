//! `meshota delta plan`: what a node holding OLD must fetch for a target.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use meshota_blobstore::patch::PatchOptions;
use meshota_blobstore::{DEFAULT_PARAMS, DeltaPlan, ops};

use crate::cmd::release::read_manifest;
use crate::failure::{AtPath, CmdResult, Failure};

/// Delta planning.
#[derive(Debug, Subcommand)]
pub(crate) enum DeltaCmd {
    /// Plan the chunks and bytes (compressed, as sent) to fetch for a target.
    Plan(PlanArgs),
}

/// Arguments of `delta plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Image(s) the node already has (e.g. its active slot); repeatable.
    #[arg(long, required = true)]
    from: Vec<PathBuf>,
    /// The target: an image file, or a release manifest (then --store must
    /// hold the release's chunk index and chunks).
    #[arg(long)]
    to: PathBuf,
    /// A chunk store: the node's own (for an image target) or the origin's
    /// (for a manifest target).
    #[arg(long)]
    store: Option<PathBuf>,
    /// For an image target: also make a patch from the first --from image
    /// (as `release create --previous` would) and price it.
    #[arg(long)]
    make_patch: bool,
    /// Print JSON (`fetch_bytes`, `full_bytes`, `chunks_to_fetch`, `plan`,
    /// `chunk_plan_bytes`, `patch`, …).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: DeltaCmd) -> CmdResult {
    match cmd {
        DeltaCmd::Plan(a) => plan(&a),
    }
}

/// Whether `path` starts with a release manifest's header (any other
/// file is taken for an image).
fn is_manifest(path: &Path) -> CmdResult<bool> {
    let mut header = [0u8; meshota_manifest::frame::HEADER_LEN];
    let mut f = std::fs::File::open(path).at(path)?;
    let n = f.read(&mut header).at(path)?;
    Ok(meshota_manifest::frame::peek_kind(&header[..n])
        == Ok(meshota_manifest::Kind::ReleaseManifest as u8))
}

fn plan(a: &PlanArgs) -> CmdResult {
    let plan: DeltaPlan = if is_manifest(&a.to)? {
        let Some(store) = &a.store else {
            return Err(Failure::usage(format!(
                "{} is a release manifest: pass --store DIR holding its chunk index",
                a.to.display()
            )));
        };
        let doc = read_manifest(&a.to)?;
        let Some(c) = doc.unverified_body().components.first() else {
            return Err(Failure::rejected(format!(
                "{}: manifest has no component",
                a.to.display()
            )));
        };
        let patches: Vec<_> = doc
            .unverified_body()
            .patches
            .iter()
            .filter(|p| p.component == c.name)
            .cloned()
            .collect();
        ops::delta_plan_release(&a.from, &c.chunk_index, &patches, store).at(store)?
    } else if a.make_patch {
        if a.store.is_some() {
            return Err(Failure::usage(
                "--make-patch plans for a node holding only the --from images: drop --store",
            ));
        }
        ops::delta_plan_image_patched(&a.from, &a.to, &DEFAULT_PARAMS, &PatchOptions::default())
            .at(&a.to)?
            .0
    } else {
        ops::delta_plan_image(&a.from, &a.to, a.store.as_deref(), &DEFAULT_PARAMS).at(&a.to)?
    };
    if a.json {
        println!("{}", plan.to_json());
    } else {
        let pct = |n: u64| {
            if plan.full_bytes == 0 {
                0.0
            } else {
                100.0 * n as f64 / plan.full_bytes as f64
            }
        };
        println!(
            "target       {} ({} bytes, {} distinct chunks)",
            plan.target.short(),
            plan.target_size,
            plan.target_chunks
        );
        println!(
            "fetch        {} bytes ({:.1}% of full) by {}",
            plan.fetch_bytes,
            pct(plan.fetch_bytes),
            if plan.uses_patch { "patch" } else { "chunks" }
        );
        println!(
            "  chunks     {} bytes for every missing chunk",
            plan.chunk_plan_bytes
        );
        match &plan.patch {
            Some(p) => println!(
                "  patch      {} bytes: index {} + {} pieces {} + {} chunks {}",
                p.total_bytes(),
                p.index_bytes,
                p.pieces_to_fetch.len(),
                p.piece_bytes,
                p.chunks_to_fetch.len(),
                p.chunk_bytes
            ),
            None => println!("  patch      none for this base"),
        }
        println!(
            "to fetch     {} chunks{}",
            plan.chunks_to_fetch.len(),
            plan.patch
                .as_ref()
                .filter(|_| plan.uses_patch)
                .map_or(String::new(), |p| format!(
                    ", {} pieces",
                    p.pieces_to_fetch.len()
                ))
        );
        println!("full         {} bytes as sent", plan.full_bytes);
        println!("reused       {} bytes already present", plan.reused_bytes);
    }
    Ok(())
}
