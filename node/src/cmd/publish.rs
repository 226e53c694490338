//! `meshota publish`: write a release into a static origin directory that
//! any web server, S3 bucket or CDN can host (layout: ARCHITECTURE.md,
//! "Origin layout"; code: the gateway crate's `origin::publish`).

use std::path::PathBuf;

use clap::Args;
use meshota_blobstore::FsStore;
use meshota_manifest::fs::read_limited;
use meshota_manifest::limits::MAX_MANIFEST_BYTES;
use serde_json::json;

use crate::cmd::trust::{expiration_from, load_trust};
use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::load_secret;
use crate::timefmt::now;

/// Arguments of `publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The chunk store holding the release's chunks, indexes and patches
    /// (as `release create --store` left it).
    #[arg(long)]
    store: PathBuf,
    /// The signed release manifest.
    #[arg(long)]
    release: PathBuf,
    /// The origin directory (created when missing).
    #[arg(long)]
    to: PathBuf,
    /// The trust root the manifest and the catalog must satisfy.
    #[arg(long)]
    trust: PathBuf,
    /// The release key that signs the catalog (its scope must cover every
    /// release the catalog lists).
    #[arg(long)]
    key: PathBuf,
    /// Do not enforce expiry.
    #[arg(long)]
    ignore_expiry: bool,
    /// Print JSON (`release`, `version`, `objects_written`, `bytes_written`,
    /// `objects_present`, `catalog_sequence`, `catalog_written`).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &PublishArgs) -> CmdResult {
    let expiration = expiration_from(None, a.ignore_expiry)?;
    let trust = load_trust(&a.trust, expiration)?;
    let key = load_secret(&a.key)?;
    let manifest = read_limited(&a.release, MAX_MANIFEST_BYTES)?;
    let store = FsStore::open(&a.store).at(&a.store)?;
    let r =
        meshota_gateway::origin::publish(&store, &manifest, &trust, &key, &a.to, now(), expiration)
            .map_err(|e| match e {
                meshota_gateway::Error::Document { .. } => Failure::file(&a.release, e),
                meshota_gateway::Error::NotInStore { .. } | meshota_gateway::Error::Store(_) => {
                    Failure::file(&a.store, e)
                }
                other => Failure::file(&a.to, other),
            })?;
    if a.json {
        println!(
            "{}",
            json!({
                "release": r.release.to_hex(),
                "version": r.version,
                "objects_written": r.objects_written,
                "bytes_written": r.bytes_written,
                "objects_present": r.objects_present,
                "catalog_sequence": r.catalog_sequence,
                "catalog_written": r.catalog_written,
            })
        );
    } else {
        println!(
            "published {} ({}) to {}: {} objects written ({} bytes), {} already there; catalog sequence {}{}",
            r.version,
            r.release.short(),
            a.to.display(),
            r.objects_written,
            r.bytes_written,
            r.objects_present,
            r.catalog_sequence,
            if r.catalog_written {
                ""
            } else {
                " (unchanged: the release was already listed)"
            }
        );
    }
    Ok(())
}
