//! `meshota release …`: create, verify and inspect release manifests.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use meshota_blobstore::patch::{PatchOptions, create_patch};
use meshota_blobstore::{
    ChunkIndex, ChunkStore, DEFAULT_PARAMS, FsStore, assemble, index_reader, ops,
};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::limits::MAX_MANIFEST_BYTES;
use meshota_manifest::{
    Component, Hash, InstallPolicy, PatchRef, ReleaseManifest, RolloutPolicy, RolloutStage,
    SecretKey, SignedDocument, UnixTime,
};

use crate::cmd::trust::{expiration_from, load_trust};
use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::load_secret;
use crate::timefmt::{now, parse_time};

/// Release manifests.
#[derive(Debug, Subcommand)]
pub(crate) enum ReleaseCmd {
    /// Chunk an image and write a signed release manifest for it.
    Create(Box<CreateArgs>),
    /// Check a manifest against a trust root (exit 0 valid, 1 rejected).
    Verify(VerifyArgs),
    /// Print a manifest's contents (without trusting it).
    Inspect(InspectArgs),
}

/// Arguments of `release create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The trust root the manifest must verify under.
    #[arg(long)]
    trust: PathBuf,
    /// Secret release keys to sign with (the trust root's release threshold).
    #[arg(long = "key", required = true, num_args = 1..)]
    keys: Vec<PathBuf>,
    /// The image file.
    #[arg(long)]
    image: PathBuf,
    /// Hardware class the release is for.
    #[arg(long)]
    hardware: String,
    /// Human version (semver, e.g. 1.4.2).
    #[arg(long)]
    version: String,
    /// Anti-rollback security version (strictly increasing per hardware and channel).
    #[arg(long)]
    security_version: u64,
    /// Channel.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// Product name.
    #[arg(long, default_value = "meshota")]
    product: String,
    /// Component name.
    #[arg(long, default_value = "rootfs")]
    component: String,
    /// Slot group the image is written to.
    #[arg(long, default_value = "rootfs")]
    slot: String,
    /// Rollout stages as PERCENT:SOAK pairs, e.g. `10:1h,50:1d,100:0`.
    #[arg(long)]
    rollout: Option<String>,
    /// Ingest the image's chunks and index into this store and pin them for
    /// the release.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Earlier releases to ship binary patches from (needs --store, which
    /// must hold each one's chunk index and chunks, as `release create
    /// --store` left them). A patch is recorded only when it is smaller than
    /// fetching the chunks it rebuilds.
    #[arg(long = "previous", num_args = 1.., requires = "store")]
    previous: Vec<PathBuf>,
    /// Creation time to record (default: now).
    #[arg(long)]
    created: Option<String>,
    /// Output manifest file.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `release verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The trust root to verify against.
    #[arg(long)]
    trust: PathBuf,
    /// The manifest file.
    manifest: PathBuf,
    /// The device's hardware class: reject releases for another class.
    #[arg(long)]
    hardware: Option<String>,
    /// The installed security version: reject releases not above it.
    #[arg(long)]
    installed_security_version: Option<u64>,
    /// Verify as of this time instead of the system clock.
    #[arg(long, conflicts_with = "ignore_expiry")]
    now: Option<String>,
    /// Do not enforce expiry (for devices without a clock).
    #[arg(long)]
    ignore_expiry: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `release inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The manifest file.
    manifest: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: ReleaseCmd) -> CmdResult {
    match cmd {
        ReleaseCmd::Create(a) => create(&a),
        ReleaseCmd::Verify(a) => verify(&a),
        ReleaseCmd::Inspect(a) => inspect(&a),
    }
}

/// Decodes a manifest file without verifying it.
pub(crate) fn read_manifest(path: &Path) -> CmdResult<SignedDocument<ReleaseManifest>> {
    let bytes = read_limited(path, MAX_MANIFEST_BYTES)?;
    SignedDocument::decode(&bytes).at(path)
}

fn parse_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return s.parse().ok(),
    };
    n.checked_mul(mult)
}

fn parse_rollout(spec: &str) -> CmdResult<RolloutPolicy> {
    let mut stages = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let bad = || {
            Failure::usage(format!(
                "rollout stage {part:?} is not PERCENT:SOAK (e.g. 10:1h; soak in s, m, h or d)"
            ))
        };
        let (p, soak) = part.split_once(':').ok_or_else(bad)?;
        let cohort_percent: u8 = p.trim_end_matches('%').parse().map_err(|_| bad())?;
        let min_soak_secs = parse_duration(soak).ok_or_else(bad)?;
        stages.push(RolloutStage {
            cohort_percent,
            min_soak_secs,
        });
    }
    Ok(RolloutPolicy { stages })
}

fn create(a: &CreateArgs) -> CmdResult {
    let enforce = expiration_from(None, false)?;
    let trust = load_trust(&a.trust, enforce)?;
    let keys: Vec<SecretKey> = a
        .keys
        .iter()
        .map(|p| load_secret(p))
        .collect::<CmdResult<_>>()?;
    let rollout = a
        .rollout
        .as_deref()
        .map(parse_rollout)
        .transpose()?
        .unwrap_or_default();
    let created = match &a.created {
        Some(s) => parse_time(s, now())?,
        None => now(),
    };
    let params = DEFAULT_PARAMS;
    let (index, index_id) = match &a.store {
        Some(store) => {
            let report = ops::store_ingest(store, &a.image, &params, &mut |_, _| {}).at(store)?;
            (report.index, report.index_id)
        }
        None => {
            let f = File::open(&a.image).at(&a.image)?;
            let index = index_reader(BufReader::with_capacity(1 << 20, f), &params).at(&a.image)?;
            let id = index.id().at(&a.image)?;
            (index, id)
        }
    };
    let patches = match &a.store {
        Some(store) if !a.previous.is_empty() => make_patches(a, store, &index)?,
        _ => Vec::new(),
    };
    let body = ReleaseManifest {
        product: a.product.clone(),
        hardware: a.hardware.clone(),
        channel: a.channel.clone(),
        version: a.version.clone(),
        security_version: a.security_version,
        created,
        components: vec![Component {
            name: a.component.clone(),
            slot: a.slot.clone(),
            size: index.total_size(),
            image_hash: index.image_hash(),
            chunk_index: index_id,
            chunking: *index.params(),
        }],
        patches: patches.iter().map(|(r, _, _)| r.clone()).collect(),
        rollout,
    };
    let refs: Vec<&SecretKey> = keys.iter().collect();
    let doc = SignedDocument::sign(body, &refs).map_err(Failure::usage)?;
    // Refuse to write a manifest that its own trust root would reject.
    let policy = InstallPolicy {
        hardware: None,
        installed_security_version: None,
        expiration: enforce,
    };
    trust
        .verify_manifest(&doc, &policy)
        .map_err(|e| Failure::file(&a.out, format!("not written: {e}")))?;
    if let Some(store) = &a.store {
        let s = FsStore::open(store).at(store)?;
        s.pin(doc.id(), index_id).at(store)?;
        for (_, pin, _) in &patches {
            s.pin(doc.id(), *pin).at(store)?;
        }
    }
    write_atomic(&a.out, &doc.encode().at(&a.out)?, 0o644)?;
    println!(
        "release {} {} ({}/{})",
        a.product, a.version, a.hardware, a.channel
    );
    println!("manifest     {}", a.out.display());
    println!("id           {}", doc.id());
    println!(
        "image        {} bytes, blake3 {}",
        index.total_size(),
        index.image_hash()
    );
    println!(
        "chunk index  {} ({} chunks)",
        index_id,
        index.chunks().len()
    );
    for (p, _, from) in &patches {
        println!(
            "patch        from {} ({} bytes index, {})",
            p.base_image_hash.short(),
            p.size,
            from
        );
    }
    Ok(())
}

/// A patch recorded in the manifest, the id of its pin index, and a line
/// saying what it saves.
type MadePatch = (PatchRef, Hash, String);

/// Makes a patch from each `--previous` release to the new image (already
/// ingested into `store`). The old image is assembled from the store by the
/// previous release's chunk index into a temporary file beside the store
/// (checked against its image hash on the way), then diffed. Patch blobs
/// go into the store; their pin indexes are returned for pinning under
/// the new release.
fn make_patches(a: &CreateArgs, store: &Path, index: &ChunkIndex) -> CmdResult<Vec<MadePatch>> {
    let s = FsStore::open(store).at(store)?;
    let new_file = File::open(&a.image).at(&a.image)?;
    let mut out: Vec<MadePatch> = Vec::new();
    for prev in &a.previous {
        let doc = read_manifest(prev)?;
        let m = doc.unverified_body();
        let Some(c) = m.components.iter().find(|c| c.name == a.component) else {
            return Err(Failure::file(
                prev,
                format!("has no component {:?} to patch from", a.component),
            ));
        };
        if out
            .iter()
            .any(|(p, _, _)| p.base_image_hash == c.image_hash)
            || c.image_hash == index.image_hash()
        {
            continue;
        }
        let old_index = s.get_index(&c.chunk_index).map_err(|e| {
            Failure::file(
                prev,
                format!(
                    "{e}; the store {} must hold this release's chunks (create it with `release create --store` into the same store)",
                    store.display()
                ),
            )
        })?;
        let tmp = TempFile::new(store, &c.image_hash)?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.create()?);
            assemble(&s, &old_index, &mut w, &mut |_| {}).map_err(|e| {
                Failure::file(
                    prev,
                    format!("assembling its image from {}: {e}", store.display()),
                )
            })?;
        }
        let old_file = File::open(&tmp.path).at(&tmp.path)?;
        let build = create_patch(
            &s,
            &old_file,
            &old_index,
            &new_file,
            index,
            &PatchOptions::default(),
        )
        .at(store)?;
        let Some(b) = build else {
            println!(
                "no patch     from {} {}: not smaller than fetching its chunks",
                m.version,
                c.image_hash.short()
            );
            continue;
        };
        let pin = s.put_index(&b.pin).at(store)?;
        let saving = format!(
            "{} {}: {} pieces, {} bytes instead of {} as chunks",
            m.version,
            prev.display(),
            b.index.pieces().len(),
            b.patch_bytes,
            b.replaced_bytes
        );
        out.push((
            PatchRef {
                component: a.component.clone(),
                base_image_hash: c.image_hash,
                patch: b.id,
                size: b.encoded.len() as u64,
            },
            pin,
            saving,
        ));
    }
    Ok(out)
}

/// A scratch file beside the store, removed when dropped.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn new(store: &Path, image: &Hash) -> CmdResult<Self> {
        let path = store.join(format!(
            ".base-{}-{}.tmp",
            std::process::id(),
            image.short()
        ));
        Ok(Self { path })
    }

    fn create(&self) -> CmdResult<File> {
        File::create(&self.path).at(&self.path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let expiration = expiration_from(a.now.as_deref(), a.ignore_expiry)?;
    let trust = load_trust(&a.trust, expiration)?;
    let doc = read_manifest(&a.manifest)?;
    let policy = InstallPolicy {
        hardware: a.hardware.as_deref(),
        installed_security_version: a.installed_security_version,
        expiration,
    };
    match trust.verify_manifest(&doc, &policy) {
        Ok(v) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "valid": true,
                        "id": v.id().to_hex(),
                        "trust_version": trust.version,
                        "version": v.version,
                        "security_version": v.security_version,
                    })
                );
            } else {
                println!(
                    "{}: valid: {} {} for {}/{}, security version {}, trust root version {}",
                    a.manifest.display(),
                    v.product,
                    v.version,
                    v.hardware,
                    v.channel,
                    v.security_version,
                    trust.version
                );
            }
            Ok(())
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({ "valid": false, "error": e.to_string() })
                );
            }
            Err(Failure::file(&a.manifest, format!("rejected: {e}")))
        }
    }
}

fn time_text(t: UnixTime) -> String {
    t.to_string()
}

fn inspect(a: &InspectArgs) -> CmdResult {
    let doc = read_manifest(&a.manifest)?;
    let m = doc.unverified_body();
    if a.json {
        let v = serde_json::json!({
            "id": doc.id().to_hex(),
            "product": m.product,
            "hardware": m.hardware,
            "channel": m.channel,
            "version": m.version,
            "security_version": m.security_version,
            "created": m.created.0,
            "components": m.components.iter().map(|c| serde_json::json!({
                "name": c.name,
                "slot": c.slot,
                "size": c.size,
                "image_hash": c.image_hash.to_hex(),
                "chunk_index": c.chunk_index.to_hex(),
                "chunking": {
                    "algorithm": "fastcdc-2020",
                    "min_size": c.chunking.min_size,
                    "avg_size": c.chunking.avg_size,
                    "max_size": c.chunking.max_size,
                },
            })).collect::<Vec<_>>(),
            "patches": m.patches.iter().map(|p| serde_json::json!({
                "component": p.component,
                "base_image_hash": p.base_image_hash.to_hex(),
                "patch": p.patch.to_hex(),
                "size": p.size,
            })).collect::<Vec<_>>(),
            "rollout": m.rollout.stages.iter().map(|s| serde_json::json!({
                "cohort_percent": s.cohort_percent,
                "min_soak_secs": s.min_soak_secs,
            })).collect::<Vec<_>>(),
            "signatures": doc.signatures().iter().map(|s| s.key_id.to_hex()).collect::<Vec<_>>(),
            "verified": false,
        });
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "release        {} {}  (not verified; use `release verify`)",
        m.product, m.version
    );
    println!("id             {}", doc.id());
    println!("hardware       {}", m.hardware);
    println!("channel        {}", m.channel);
    println!("security ver.  {}", m.security_version);
    println!("created        {}", time_text(m.created));
    for c in &m.components {
        println!("component      {} -> slot {}", c.name, c.slot);
        println!("  size         {} bytes", c.size);
        println!("  image        {}", c.image_hash);
        println!("  chunk index  {}", c.chunk_index);
        println!(
            "  chunking     fastcdc-2020 min {} avg {} max {}",
            c.chunking.min_size, c.chunking.avg_size, c.chunking.max_size
        );
    }
    for p in &m.patches {
        println!(
            "patch          {} from {} ({} bytes)",
            p.component,
            p.base_image_hash.short(),
            p.size
        );
    }
    if m.rollout.stages.is_empty() {
        println!("rollout        everyone at once");
    }
    for (i, s) in m.rollout.stages.iter().enumerate() {
        println!(
            "rollout        stage {i}: {}% after {} s soak",
            s.cohort_percent, s.min_soak_secs
        );
    }
    for s in doc.signatures() {
        println!("signature      {}", s.key_id);
    }
    Ok(())
}
