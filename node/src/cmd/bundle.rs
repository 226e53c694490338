//! `meshota bundle …`: USB sneakernet bundles (export, import, inspect,
//! verify, want lists, merge). The format and its guarantees are the
//! sneakernet crate's; this module reads the files and configs, asks a
//! running daemon to do the import or want list (it owns the store), and
//! does them itself when no daemon runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use meshota_blobstore::{ChunkStore, FsStore};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::limits::{MAX_MANIFEST_BYTES, MAX_TRUST_ROOT_BYTES};
use meshota_manifest::release::InstallPolicy;
use meshota_manifest::{Expiration, Hash, ReleaseManifest, SignedDocument, TrustRoot, Verified};
use meshota_sneakernet::{
    DecryptionKey, ExportSpec, Imported, Installed, Limits, Pass, Policy, RecipientKey, Summary,
    Target, WantList, WantRelease,
};
use serde_json::json;

use crate::config::NodeConfig;
use crate::daemon::control::{Request, call};
use crate::device::Node;
use crate::failure::{AtPath, CmdResult, Failure};
use crate::timefmt::now;

/// Sneakernet bundles.
#[derive(Debug, Subcommand)]
pub(crate) enum BundleCmd {
    /// Write releases from a store into one bundle file (temp file, fsync, rename).
    Export(ExportArgs),
    /// Verify a bundle completely under the node's trust root, then commit it to the node's store.
    Import(ImportArgs),
    /// Show what a bundle (or a want list) holds.
    Inspect(InspectArgs),
    /// Run every check import runs, without a node: exit 0 valid, 1 rejected.
    Verify(VerifyArgs),
    /// Write what this node and the mesh it hears hold, plus queued node reports.
    Want(WantArgs),
    /// Join bundles into one, each record once.
    Merge(MergeArgs),
}

/// Arguments of `bundle export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The store holding the releases' indexes and chunks.
    #[arg(long)]
    store: PathBuf,
    /// Signed release manifests to carry.
    #[arg(long = "release", required = true, num_args = 1..)]
    releases: Vec<PathBuf>,
    /// A want list from the field: leave out what it holds.
    #[arg(long)]
    want: Option<PathBuf>,
    /// Encrypt to these ML-KEM-768 public keys (PEM, from `keys generate --kem`).
    #[arg(long = "encrypt-to", num_args = 1..)]
    encrypt_to: Vec<PathBuf>,
    /// Trust root to carry; the manifests are checked against it first.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// The bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bundle import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The node's config file.
    #[arg(long)]
    config: PathBuf,
    /// The bundle file.
    bundle: PathBuf,
    /// ML-KEM-768 private key for an encrypted bundle (default: `[bundle] kem_key`).
    #[arg(long)]
    kem_key: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bundle inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A bundle or a want list.
    file: PathBuf,
    /// ML-KEM-768 private key, to look inside an encrypted bundle.
    #[arg(long)]
    kem_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bundle verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The trust root the field nodes hold.
    #[arg(long)]
    trust: PathBuf,
    /// The bundle file.
    bundle: PathBuf,
    /// ML-KEM-768 private key for an encrypted bundle.
    #[arg(long)]
    kem_key: Option<PathBuf>,
    /// Size limit, as the nodes' `[bundle] max_bytes`.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    max_bytes: u64,
    /// Accept expired trust roots and keys (nodes without a clock).
    #[arg(long)]
    ignore_expiry: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bundle want`.
#[derive(Debug, Args)]
pub(crate) struct WantArgs {
    /// The node's config file.
    #[arg(long)]
    config: PathBuf,
    /// The want list file to write.
    #[arg(long)]
    out: PathBuf,
    /// Print a summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `bundle merge`.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Bundles to join.
    #[arg(required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The bundle file to write.
    #[arg(long)]
    out: PathBuf,
    /// ML-KEM-768 private key, for encrypted inputs.
    #[arg(long)]
    kem_key: Option<PathBuf>,
    /// Encrypt the result to these public keys.
    #[arg(long = "encrypt-to", num_args = 1..)]
    encrypt_to: Vec<PathBuf>,
}

pub(crate) fn run(cmd: BundleCmd) -> CmdResult {
    match cmd {
        BundleCmd::Export(a) => export(&a),
        BundleCmd::Import(a) => import(&a),
        BundleCmd::Inspect(a) => inspect(&a),
        BundleCmd::Verify(a) => verify(&a),
        BundleCmd::Want(a) => want(&a),
        BundleCmd::Merge(a) => merge(&a),
    }
}

fn rejected(e: impl std::fmt::Display) -> Failure {
    Failure::rejected(e)
}

/// Reads an ML-KEM-768 private key (PKCS#8 PEM, seed form).
pub(crate) fn load_kem_key(path: &Path) -> CmdResult<DecryptionKey> {
    let pem = read_limited(path, 4096)?;
    let pem = String::from_utf8(pem).map_err(|_| Failure::file(path, "not a PEM file"))?;
    let kp = meshota_provision::alg::KemKeyPair::from_pkcs8_pem(&pem).at(path)?;
    Ok(DecryptionKey::from_seed(kp.seed()))
}

fn load_recipient(path: &Path) -> CmdResult<RecipientKey> {
    let pem = read_limited(path, 8192)?;
    let pem = String::from_utf8(pem).map_err(|_| Failure::file(path, "not a PEM file"))?;
    let ek = meshota_provision::alg::kem_public_key_from_pem(&pem).at(path)?;
    RecipientKey::from_bytes(&ek).at(path)
}

fn load_trust(path: &Path, expiration: Expiration) -> CmdResult<(Verified<TrustRoot>, Vec<u8>)> {
    let bytes = read_limited(path, MAX_TRUST_ROOT_BYTES)?;
    let doc = SignedDocument::<TrustRoot>::decode(&bytes).at(path)?;
    let trust = TrustRoot::verify_initial(&doc, expiration).at(path)?;
    Ok((trust, bytes))
}

fn bar(total: u64, what: &str) -> indicatif::ProgressBar {
    if std::env::var_os("MESHOTA_NO_PROGRESS").is_some() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(what.to_string());
    b
}

fn export(a: &ExportArgs) -> CmdResult {
    let store = FsStore::open(&a.store).at(&a.store)?;
    let mut manifests = Vec::new();
    for p in &a.releases {
        manifests.push(read_limited(p, MAX_MANIFEST_BYTES)?);
    }
    let trust = match &a.trust {
        Some(p) => {
            let (trust, bytes) = load_trust(p, Expiration::Enforce { now: now() })?;
            for (m, p) in manifests.iter().zip(&a.releases) {
                let doc = SignedDocument::<ReleaseManifest>::decode(m).at(p)?;
                trust
                    .verify_manifest(
                        &doc,
                        &InstallPolicy {
                            hardware: None,
                            installed_security_version: None,
                            expiration: Expiration::Enforce { now: now() },
                        },
                    )
                    .map_err(|e| {
                        Failure::file(p, format!("does not verify under the trust root: {e}"))
                    })?;
            }
            Some(bytes)
        }
        None => None,
    };
    let want = match &a.want {
        Some(p) => Some(
            WantList::decode(&read_limited(p, meshota_sneakernet::want::MAX_WANT_BYTES)?).at(p)?,
        ),
        None => None,
    };
    let recipients = a
        .encrypt_to
        .iter()
        .map(|p| load_recipient(p))
        .collect::<CmdResult<Vec<_>>>()?;
    let spec = ExportSpec {
        trust_root: trust.as_deref(),
        manifests,
        want: want.as_ref(),
        recipients,
    };
    let b = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        bar(0, "export")
    };
    let report = meshota_sneakernet::export(&store, &spec, &a.out, &mut |n| {
        b.set_length(n);
        b.set_position(n);
    })
    .at(&a.out)?;
    b.finish_and_clear();
    if a.json {
        println!("{}", json!(report));
    } else {
        println!(
            "wrote {} ({} bytes{}): {} release(s), {} chunk(s), {} patch(es){}",
            a.out.display(),
            report.bytes,
            if report.encrypted { ", encrypted" } else { "" },
            report.releases,
            report.chunks,
            report.patches,
            if report.chunks_skipped > 0 {
                format!(
                    ", {} chunk(s) left out: the want list says the field holds them",
                    report.chunks_skipped
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// What the node runs, from its device record and saved slot manifest.
struct InstalledState {
    security_version: u64,
    release: Option<Hash>,
    /// The installed component's image hash and chunk index.
    component: Option<(Hash, Hash)>,
}

fn installed_state(node: &Node) -> CmdResult<InstalledState> {
    let mut dev = node.open_device()?;
    let record = dev
        .record()
        .map_err(|e| node.device_failure("read the install record", &e))?;
    let path = node.config.slot_manifest_path(record.confirmed);
    let doc = read_limited(&path, MAX_MANIFEST_BYTES)
        .ok()
        .and_then(|b| SignedDocument::<ReleaseManifest>::decode(&b).ok());
    let release = doc.as_ref().map(SignedDocument::id);
    let image = doc.as_ref().and_then(|d| {
        let body = d.unverified_body();
        body.components
            .iter()
            .find(|c| c.name == node.config.component)
            .or_else(|| body.components.first())
            .map(|c| (c.image_hash, c.chunk_index))
    });
    Ok(InstalledState {
        security_version: record.security_counter,
        release,
        component: image,
    })
}

/// Imports `bundle` into `store`: what both the daemon and the offline
/// command run. `installed_sv` is the node's security version.
pub(crate) fn import_into<S: ChunkStore + ?Sized>(
    config: &NodeConfig,
    trust: &Verified<TrustRoot>,
    installed_sv: u64,
    key: Option<&DecryptionKey>,
    store: &S,
    bundle: &Path,
    progress: &mut dyn FnMut(Pass, u64, u64),
) -> Result<Imported, meshota_sneakernet::Error> {
    let manifests_dir = config.data_dir.join("manifests");
    let policy = Policy {
        trust,
        expiration: config.expiration(),
        installed: Some(Installed {
            hardware: &config.hardware,
            channel: &config.channel,
            security_version: installed_sv,
        }),
    };
    meshota_sneakernet::import(
        bundle,
        key,
        policy,
        Limits {
            max_bytes: config.bundle.max_bytes,
        },
        &Target {
            store,
            manifests_dir: &manifests_dir,
        },
        progress,
    )
}

/// The JSON object an import answers with.
pub(crate) fn imported_json(i: &Imported) -> serde_json::Value {
    json!({
        "ok": true,
        "releases": i.releases.iter().map(|r| json!({"id": r.id.to_hex(), "version": r.version})).collect::<Vec<_>>(),
        "chunks": i.chunks.len(),
        "new_chunks": i.new_chunks,
        "summary": i.summary,
    })
}

fn import(a: &ImportArgs) -> CmdResult {
    let node = Node::load(&a.config)?;
    let bundle = std::fs::canonicalize(&a.bundle).at(&a.bundle)?;
    let kem_key = a
        .kem_key
        .clone()
        .or_else(|| node.config.bundle.kem_key.clone())
        .map(|p| std::fs::canonicalize(&p).at(&p))
        .transpose()?;
    // A running daemon owns the store: it imports and announces.
    if node.config.mesh.is_some() {
        let req = Request::ImportBundle {
            bundle: bundle.clone(),
            kem_key: kem_key.clone(),
        };
        if let Ok(answer) = call(
            &node.config.control_socket(),
            &req,
            Duration::from_secs(3600),
        ) {
            return print_import(a.json, &answer, "the node");
        }
    }
    let trust = node.trust()?;
    let sv = installed_state(&node)?.security_version;
    let key = kem_key.as_deref().map(load_kem_key).transpose()?;
    let store_dir = node.config.store_dir_or_default();
    let store = FsStore::open_or_create(&store_dir).at(&store_dir)?;
    let size = std::fs::metadata(&bundle).at(&bundle)?.len();
    let b = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        bar(size, "verify")
    };
    let result = import_into(
        &node.config,
        &trust,
        sv,
        key.as_ref(),
        &store,
        &bundle,
        &mut |pass, done, _| {
            if pass == Pass::Commit && b.message() != "commit" {
                b.set_message("commit");
            }
            b.set_position(done);
        },
    );
    b.finish_and_clear();
    let mut answer = match result {
        Ok(i) => imported_json(&i),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    if answer["ok"] == true {
        // A lean bundle (made from this node's want list) leaves out what
        // the confirmed slot holds: serve it from there, as the daemon does.
        let seeded = node.seed_confirmed_slot(&store).unwrap_or_else(|e| {
            eprintln!("note: the confirmed slot was not seeded: {}", e.message);
            None
        });
        answer["seeded_chunks"] = json!(seeded.map_or(0, |s| s.chunks));
    }
    print_import(a.json, &answer, "import")
}

fn print_import(as_json: bool, answer: &serde_json::Value, who: &str) -> CmdResult {
    if answer["ok"] != true {
        let reason = answer["error"].as_str().unwrap_or("no reason given");
        if as_json {
            println!("{answer}");
        }
        return Err(Failure::rejected(format!(
            "bundle rejected, nothing imported: {reason}"
        )));
    }
    if as_json {
        println!("{answer}");
        return Ok(());
    }
    for r in answer["releases"].as_array().into_iter().flatten() {
        println!(
            "release  {} {}",
            r["version"].as_str().unwrap_or("?"),
            r["id"].as_str().unwrap_or("?")
        );
    }
    println!(
        "imported by {who}: {} chunk(s), {} new",
        answer["chunks"], answer["new_chunks"]
    );
    Ok(())
}

fn summary_text(s: &Summary) {
    println!(
        "bundle   {} bytes, {}",
        s.file_bytes,
        if s.encrypted {
            format!("encrypted to {} recipient(s)", s.recipients.len())
        } else {
            "plain".into()
        }
    );
    if !s.trust_roots.is_empty() {
        println!("trust    version(s) {:?}", s.trust_roots);
    }
    for r in &s.releases {
        println!(
            "release  {} {} ({}/{}, security version {}): {}/{} chunks carried, {} patch(es), {}",
            r.product,
            r.version,
            r.hardware,
            r.channel,
            r.security_version,
            r.chunks_carried,
            r.chunks_total,
            r.patches_carried,
            r.id
        );
    }
    println!("chunks   {} bytes of content", s.chunk_bytes);
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let expiration = if a.ignore_expiry {
        Expiration::dangerous_ignore()
    } else {
        Expiration::Enforce { now: now() }
    };
    let (trust, _) = load_trust(&a.trust, expiration)?;
    let key = a.kem_key.as_deref().map(load_kem_key).transpose()?;
    let policy = Policy {
        trust: &trust,
        expiration,
        installed: None,
    };
    match meshota_sneakernet::verify_file(
        &a.bundle,
        key.as_ref(),
        policy,
        Limits {
            max_bytes: a.max_bytes,
        },
        &mut |_, _, _| {},
    ) {
        Ok(s) => {
            if a.json {
                println!("{}", json!({"valid": true, "summary": s}));
            } else {
                summary_text(&s);
                println!("valid: every record, signature and reference checks out");
            }
            Ok(())
        }
        Err(e) => {
            if a.json {
                println!("{}", json!({"valid": false, "error": e.to_string()}));
            }
            Err(Failure::file(&a.bundle, format!("rejected: {e}")))
        }
    }
}

fn inspect(a: &InspectArgs) -> CmdResult {
    let mut head = [0u8; 6];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&a.file).at(&a.file)?;
        f.read_exact(&mut head).at(&a.file)?;
    }
    if head[5] == meshota_manifest::Kind::WantList as u8 {
        let w = WantList::decode(&read_limited(
            &a.file,
            meshota_sneakernet::want::MAX_WANT_BYTES,
        )?)
        .at(&a.file)?;
        return inspect_want(&w, a.json);
    }
    let file = std::fs::File::open(&a.file).at(&a.file)?;
    let size = file.metadata().at(&a.file)?.len();
    let (header, _) =
        meshota_sneakernet::read_header(&mut std::io::BufReader::new(file)).at(&a.file)?;
    if header.encrypted && a.kem_key.is_none() {
        let recipients: Vec<String> = header.recipients.iter().map(Hash::to_hex).collect();
        if a.json {
            println!(
                "{}",
                json!({"encrypted": true, "recipients": recipients, "file_bytes": size})
            );
        } else {
            println!("bundle   {size} bytes, encrypted; give --kem-key to look inside");
            for r in recipients {
                println!("to       {r}");
            }
        }
        return Ok(());
    }
    let key = a.kem_key.as_deref().map(load_kem_key).transpose()?;
    // Inspect reads everything the reader checks, but trusts no root: it
    // lists what is inside, it does not vouch for it (`bundle verify` does).
    let file = std::fs::File::open(&a.file).at(&a.file)?;
    let mut r = meshota_sneakernet::BundleReader::open(
        std::io::BufReader::with_capacity(1 << 20, file),
        key.as_ref(),
    )
    .at(&a.file)?;
    let mut releases = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    let mut chunk_bytes = 0u64;
    let mut trust_roots = Vec::new();
    while let Some(rec) = r.next_record().at(&a.file)? {
        *counts.entry(rec.kind().name()).or_default() += 1;
        match &rec.item {
            meshota_sneakernet::Item::Manifest(b) => {
                if let Ok(d) = SignedDocument::<ReleaseManifest>::decode(b) {
                    let m = d.unverified_body();
                    releases.push(json!({
                        "id": d.id().to_hex(), "product": m.product, "hardware": m.hardware,
                        "channel": m.channel, "version": m.version,
                        "security_version": m.security_version,
                    }));
                }
            }
            meshota_sneakernet::Item::TrustRoot(b) => {
                if let Ok(d) = SignedDocument::<TrustRoot>::decode(b) {
                    trust_roots.push(d.unverified_body().version);
                }
            }
            meshota_sneakernet::Item::Chunk(raw) => chunk_bytes += raw.len() as u64,
            meshota_sneakernet::Item::Index(_) => {}
        }
    }
    let out = json!({
        "encrypted": header.encrypted,
        "recipients": header.recipients.iter().map(Hash::to_hex).collect::<Vec<_>>(),
        "file_bytes": size,
        "trust_roots": trust_roots,
        "releases": releases,
        "records": counts,
        "chunk_bytes": chunk_bytes,
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "bundle   {size} bytes, {}",
            if header.encrypted {
                "encrypted"
            } else {
                "plain"
            }
        );
        println!("trust    version(s) {trust_roots:?}");
        for r in &releases {
            println!(
                "release  {} {} ({}/{}, security version {}) {}",
                r["product"].as_str().unwrap_or("?"),
                r["version"].as_str().unwrap_or("?"),
                r["hardware"].as_str().unwrap_or("?"),
                r["channel"].as_str().unwrap_or("?"),
                r["security_version"],
                r["id"].as_str().unwrap_or("?"),
            );
        }
        for (k, n) in &counts {
            println!("records  {n} {k}");
        }
        println!("chunks   {chunk_bytes} bytes of content");
        println!("(not checked against a trust root: use `meshota bundle verify`)");
    }
    Ok(())
}

fn want_json(w: &WantList) -> serde_json::Value {
    json!({
        "node": w.node,
        "hardware": w.hardware,
        "channel": w.channel,
        "installed_release": w.installed_release.map(|h| h.to_hex()),
        "security_version": w.security_version,
        "releases": w.releases.iter().map(|r| json!({
            "id": r.id.to_hex(), "chunks": r.chunks, "held": r.count(),
        })).collect::<Vec<_>>(),
        "reports": w.reports.len(),
    })
}

fn inspect_want(w: &WantList, as_json: bool) -> CmdResult {
    if as_json {
        println!("{}", want_json(w));
        return Ok(());
    }
    println!(
        "want list of node {} ({}/{})",
        w.node, w.hardware, w.channel
    );
    println!(
        "installed {} (security version {})",
        w.installed_release
            .map_or_else(|| "-".into(), |h| h.to_hex()),
        w.security_version
    );
    for r in &w.releases {
        println!(
            "release  {}: {}/{} chunks held",
            r.id.to_hex(),
            r.count(),
            r.chunks
        );
    }
    println!("reports  {}", w.reports.len());
    Ok(())
}

/// A want list's fixed part for this node.
pub(crate) struct WantHead {
    pub(crate) node: String,
    pub(crate) trust_version: u64,
    pub(crate) installed_release: Option<Hash>,
    pub(crate) installed_image: Option<Hash>,
    pub(crate) installed_index: Option<Hash>,
    pub(crate) security_version: u64,
}

/// Builds a want list from per-release holdings (`held(i)` per ordinal).
pub(crate) fn want_list(
    config: &NodeConfig,
    head: WantHead,
    releases: Vec<WantRelease>,
    reports: Vec<Vec<u8>>,
) -> WantList {
    WantList {
        node: head.node,
        hardware: config.hardware.clone(),
        channel: config.channel.clone(),
        created: now(),
        trust_version: head.trust_version,
        installed_release: head.installed_release,
        installed_image: head.installed_image,
        installed_index: head.installed_index,
        security_version: head.security_version,
        releases,
        reports,
    }
}

fn want(a: &WantArgs) -> CmdResult {
    let node = Node::load(&a.config)?;
    let out = if a.out.is_absolute() {
        a.out.clone()
    } else {
        std::env::current_dir().map_err(rejected)?.join(&a.out)
    };
    if node.config.mesh.is_some() {
        let req = Request::Want { out: out.clone() };
        if let Ok(answer) = call(&node.config.control_socket(), &req, Duration::from_secs(60)) {
            if answer["ok"] != true {
                return Err(Failure::rejected(format!(
                    "the node could not write its want list: {}",
                    answer["error"].as_str().unwrap_or("no reason given")
                )));
            }
            return report_want(&out, a.json);
        }
    }
    // Offline: what this node's own store holds (no peers, no reports).
    let trust = node.trust()?;
    let InstalledState {
        security_version: sv,
        release: installed_release,
        component: installed,
    } = installed_state(&node)?;
    let store_dir = node.config.store_dir_or_default();
    let store = FsStore::open_or_create(&store_dir).at(&store_dir)?;
    let manifests_dir = node.config.data_dir.join("manifests");
    let mut releases = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&manifests_dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Ok(bytes) = read_limited(&p, MAX_MANIFEST_BYTES) else {
                continue;
            };
            let Ok(doc) = SignedDocument::<ReleaseManifest>::decode(&bytes) else {
                continue;
            };
            let Some(c) = doc.unverified_body().components.first() else {
                continue;
            };
            let Ok(index) = store.get_index(&c.chunk_index) else {
                continue;
            };
            let n = u32::try_from(index.chunks().len()).unwrap_or(u32::MAX);
            let mut r = WantRelease::new(doc.id(), c.chunk_index, n);
            for (i, ch) in index.chunks().iter().enumerate() {
                if store.has(&ch.hash).at(&store_dir)? {
                    r.set(i);
                }
            }
            releases.push(r);
        }
    }
    let node_id = node
        .config
        .mesh
        .as_ref()
        .and_then(|m| crate::keyio::load_public(&m.device_key.with_extension("pub")).ok())
        .map_or_else(String::new, |(_, k)| k.id().to_hex());
    let w = want_list(
        &node.config,
        WantHead {
            node: node_id,
            trust_version: trust.body().version,
            installed_release,
            installed_image: installed.map(|(image, _)| image),
            installed_index: installed.map(|(_, index)| index),
            security_version: sv,
        },
        releases,
        Vec::new(),
    );
    write_atomic(&out, &w.encode().at(&out)?, 0o644)?;
    report_want(&out, a.json)
}

fn report_want(out: &Path, as_json: bool) -> CmdResult {
    let w = WantList::decode(&read_limited(
        out,
        meshota_sneakernet::want::MAX_WANT_BYTES,
    )?)
    .at(out)?;
    if as_json {
        println!("{}", want_json(&w));
    } else {
        println!(
            "wrote {}: {} release(s) known, {} report(s) to carry back",
            out.display(),
            w.releases.len(),
            w.reports.len()
        );
    }
    Ok(())
}

fn merge(a: &MergeArgs) -> CmdResult {
    let key = a.kem_key.as_deref().map(load_kem_key).transpose()?;
    let recipients = a
        .encrypt_to
        .iter()
        .map(|p| load_recipient(p))
        .collect::<CmdResult<Vec<_>>>()?;
    let inputs: Vec<&Path> = a.inputs.iter().map(PathBuf::as_path).collect();
    let n =
        meshota_sneakernet::merge::merge(&inputs, key.as_ref(), &recipients, &a.out).at(&a.out)?;
    println!("wrote {}: {n} record(s)", a.out.display());
    Ok(())
}
