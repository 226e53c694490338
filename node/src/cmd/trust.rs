//! `meshota trust …`: create, rotate, show and check trust roots.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::limits::MAX_TRUST_ROOT_BYTES;
use meshota_manifest::{
    Expiration, KeyId, ProvisioningKey, PublicKey, ReleaseKey, RootKey, Scope, SecretKey,
    SignedDocument, TrustRoot, Verified,
};

use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::{load_public, load_secret};
use crate::timefmt::{now, parse_time};

/// Trust root management.
#[derive(Debug, Subcommand)]
pub(crate) enum TrustCmd {
    /// Create version 1 of a trust root.
    Init(InitArgs),
    /// Create the next version of a trust root (rotation, revocation).
    Rotate(RotateArgs),
    /// Print a trust root.
    Show(ShowArgs),
    /// Check a trust root, and optionally a chain of later versions.
    Verify(VerifyArgs),
}

/// Arguments of `trust init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Root key public files (they sign trust roots).
    #[arg(long = "root-key", required = true, num_args = 1..)]
    root_keys: Vec<PathBuf>,
    /// Distinct root keys needed to sign a trust root.
    #[arg(long)]
    threshold: u32,
    /// Release keys: `PUB[;hardware=a,b][;channels=x,y][;expires=DATE]`.
    #[arg(long = "release-key", num_args = 1..)]
    release_keys: Vec<String>,
    /// Distinct release keys needed to sign a manifest.
    #[arg(long, default_value_t = 1)]
    release_threshold: u32,
    /// Provisioning keys (sign provisioning images): `PUB[;hardware=a,b][;expires=DATE]`.
    #[arg(long = "provisioning-key", num_args = 1..)]
    provisioning_keys: Vec<String>,
    /// Secret root keys to sign with.
    #[arg(long = "sign", required = true, num_args = 1..)]
    sign: Vec<PathBuf>,
    /// When the trust root expires (YYYY-MM-DD, Unix seconds, or +N[d|h]).
    #[arg(long)]
    expires: Option<String>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `trust rotate`.
#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The current trust root.
    #[arg(long)]
    trust: PathBuf,
    /// Root keys to add.
    #[arg(long = "add-root-key", num_args = 1..)]
    add_root_keys: Vec<PathBuf>,
    /// Root keys to remove and revoke (public key file or key id hex).
    #[arg(long = "remove-root-key", num_args = 1..)]
    remove_root_keys: Vec<String>,
    /// New root threshold (default: unchanged).
    #[arg(long)]
    threshold: Option<u32>,
    /// Release keys to add: `PUB[;hardware=..][;channels=..][;expires=..]`.
    #[arg(long = "add-release-key", num_args = 1..)]
    add_release_keys: Vec<String>,
    /// Release keys to remove and revoke (public key file or key id hex).
    #[arg(long = "remove-release-key", num_args = 1..)]
    remove_release_keys: Vec<String>,
    /// New release threshold (default: unchanged).
    #[arg(long)]
    release_threshold: Option<u32>,
    /// Provisioning keys to add: `PUB[;hardware=..][;expires=..]`.
    #[arg(long = "add-provisioning-key", num_args = 1..)]
    add_provisioning_keys: Vec<String>,
    /// Provisioning keys to remove and revoke (public key file or key id hex).
    #[arg(long = "remove-provisioning-key", num_args = 1..)]
    remove_provisioning_keys: Vec<String>,
    /// New expiry (default: unchanged).
    #[arg(long, conflicts_with = "no_expiry")]
    expires: Option<String>,
    /// Remove the expiry.
    #[arg(long)]
    no_expiry: bool,
    /// Secret keys to sign with: the current threshold of old root keys and
    /// the new threshold of new root keys.
    #[arg(long = "sign", required = true, num_args = 1..)]
    sign: Vec<PathBuf>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `trust show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The trust root file.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `trust verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The trust root taken as the anchor (checked against its own keys).
    #[arg(long)]
    trust: PathBuf,
    /// Later versions, in order: each must rotate from the one before.
    next: Vec<PathBuf>,
    /// Verify as of this time instead of the system clock.
    #[arg(long, conflicts_with = "ignore_expiry")]
    now: Option<String>,
    /// Do not enforce expiry (for devices without a clock).
    #[arg(long)]
    ignore_expiry: bool,
}

pub(crate) fn run(cmd: TrustCmd) -> CmdResult {
    match cmd {
        TrustCmd::Init(a) => init(a),
        TrustCmd::Rotate(a) => rotate(a),
        TrustCmd::Show(a) => show(&a),
        TrustCmd::Verify(a) => verify(&a),
    }
}

/// Decodes a trust root file without verifying it.
pub(crate) fn read_trust_doc(path: &Path) -> CmdResult<SignedDocument<TrustRoot>> {
    let bytes = read_limited(path, MAX_TRUST_ROOT_BYTES)?;
    SignedDocument::decode(&bytes).at(path)
}

/// Loads a trust root as an anchor: self-signed by its root threshold,
/// not expired under `expiration`.
pub(crate) fn load_trust(path: &Path, expiration: Expiration) -> CmdResult<Verified<TrustRoot>> {
    let doc = read_trust_doc(path)?;
    TrustRoot::verify_initial(&doc, expiration).at(path)
}

/// The expiry policy from `--now` / `--ignore-expiry`.
pub(crate) fn expiration_from(now_arg: Option<&str>, ignore: bool) -> CmdResult<Expiration> {
    if ignore {
        return Ok(Expiration::dangerous_ignore());
    }
    let now = match now_arg {
        Some(s) => parse_time(s, now())?,
        None => now(),
    };
    Ok(Expiration::Enforce { now })
}

fn parse_release_key(spec: &str) -> CmdResult<ReleaseKey> {
    let mut parts = spec.split(';');
    let path = PathBuf::from(parts.next().unwrap_or_default());
    let (name, key) = load_public(&path)?;
    let mut scope = Scope::default();
    let mut expires = None;
    for part in parts {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            Failure::usage(format!(
                "release key option {part:?} in {spec:?} is not KEY=VALUE (hardware=, channels=, expires=)"
            ))
        })?;
        let list = || {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        match k {
            "hardware" => scope.hardware = list(),
            "channels" | "channel" => scope.channels = list(),
            "expires" => expires = Some(parse_time(v, now())?),
            other => {
                return Err(Failure::usage(format!(
                    "unknown release key option {other:?} in {spec:?} (hardware=, channels=, expires=)"
                )));
            }
        }
    }
    Ok(ReleaseKey {
        name,
        key,
        scope,
        expires,
    })
}

fn parse_provisioning_key(spec: &str) -> CmdResult<ProvisioningKey> {
    let mut parts = spec.split(';');
    let path = PathBuf::from(parts.next().unwrap_or_default());
    let (name, key) = load_public(&path)?;
    let mut hardware = Vec::new();
    let mut expires = None;
    for part in parts {
        match part.split_once('=') {
            Some(("hardware", v)) => {
                hardware = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            Some(("expires", v)) => expires = Some(parse_time(v, now())?),
            _ => {
                return Err(Failure::usage(format!(
                    "provisioning key option {part:?} in {spec:?}: use hardware=a,b or expires=DATE"
                )));
            }
        }
    }
    Ok(ProvisioningKey {
        name,
        key,
        hardware,
        expires,
    })
}

fn load_root_keys(paths: &[PathBuf]) -> CmdResult<Vec<RootKey>> {
    paths
        .iter()
        .map(|p| load_public(p).map(|(name, key)| RootKey { name, key }))
        .collect()
}

fn load_signers(paths: &[PathBuf]) -> CmdResult<Vec<SecretKey>> {
    paths.iter().map(|p| load_secret(p)).collect()
}

/// Signs `body` with every key in `signers` (errors name `out`).
fn sign_trust_root(
    body: TrustRoot,
    signers: &[SecretKey],
    out: &Path,
) -> CmdResult<SignedDocument<TrustRoot>> {
    let refs: Vec<&SecretKey> = signers.iter().collect();
    SignedDocument::sign(body, &refs).at(out)
}

fn init(a: InitArgs) -> CmdResult {
    let expires = a
        .expires
        .as_deref()
        .map(|s| parse_time(s, now()))
        .transpose()?;
    let body = TrustRoot {
        version: 1,
        expires,
        root_keys: load_root_keys(&a.root_keys)?,
        root_threshold: a.threshold,
        release_keys: a
            .release_keys
            .iter()
            .map(|s| parse_release_key(s))
            .collect::<CmdResult<_>>()?,
        release_threshold: a.release_threshold,
        revoked: vec![],
        provisioning_keys: a
            .provisioning_keys
            .iter()
            .map(|s| parse_provisioning_key(s))
            .collect::<CmdResult<_>>()?,
    };
    let signers = load_signers(&a.sign)?;
    let doc = sign_trust_root(body, &signers, &a.out)?;
    // Refuse to write a trust root that would not verify.
    TrustRoot::verify_initial(&doc, Expiration::Enforce { now: now() })
        .map_err(|e| Failure::file(&a.out, format!("not written: {e}")))?;
    write_atomic(&a.out, &doc.encode().at(&a.out)?, 0o644)?;
    println!("trust root version 1 written to {}", a.out.display());
    println!("id {}", doc.id());
    Ok(())
}

fn key_id_of(spec: &str) -> CmdResult<KeyId> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(load_public(path)?.1.id());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(spec, &mut out).map_err(|_| {
        Failure::usage(format!(
            "{spec:?} is neither a public key file nor a 64-hex-digit key id"
        ))
    })?;
    Ok(KeyId(out))
}

fn rotate(a: RotateArgs) -> CmdResult {
    // The current root must verify against itself; expiry is not enforced
    // here so that an expired root can still be rotated forward.
    let current = load_trust(&a.trust, Expiration::dangerous_ignore())?;
    let mut next = current.body().clone();
    next.version = next
        .version
        .checked_add(1)
        .ok_or_else(|| Failure::file(&a.trust, "version cannot be increased further"))?;
    for spec in &a.remove_root_keys {
        let id = key_id_of(spec)?;
        let before = next.root_keys.len();
        next.root_keys.retain(|k| k.key.id() != id);
        if next.root_keys.len() == before {
            return Err(Failure::usage(format!(
                "root key {id} is not in {}",
                a.trust.display()
            )));
        }
        next.revoked.push(id);
    }
    for spec in &a.remove_release_keys {
        let id = key_id_of(spec)?;
        let before = next.release_keys.len();
        next.release_keys.retain(|k| k.key.id() != id);
        if next.release_keys.len() == before {
            return Err(Failure::usage(format!(
                "release key {id} is not in {}",
                a.trust.display()
            )));
        }
        if !next.root_keys.iter().any(|k| k.key.id() == id) {
            next.revoked.push(id);
        }
    }
    for spec in &a.remove_provisioning_keys {
        let id = key_id_of(spec)?;
        let before = next.provisioning_keys.len();
        next.provisioning_keys.retain(|k| k.key.id() != id);
        if next.provisioning_keys.len() == before {
            return Err(Failure::usage(format!(
                "provisioning key {id} is not in {}",
                a.trust.display()
            )));
        }
        next.revoked.push(id);
    }
    for spec in &a.add_provisioning_keys {
        next.provisioning_keys.push(parse_provisioning_key(spec)?);
    }
    next.root_keys.extend(load_root_keys(&a.add_root_keys)?);
    for spec in &a.add_release_keys {
        next.release_keys.push(parse_release_key(spec)?);
    }
    if let Some(t) = a.threshold {
        next.root_threshold = t;
    }
    if let Some(t) = a.release_threshold {
        next.release_threshold = t;
    }
    if a.no_expiry {
        next.expires = None;
    } else if let Some(e) = &a.expires {
        next.expires = Some(parse_time(e, now())?);
    }
    next.revoked.sort_unstable();
    next.revoked.dedup();
    let signers = load_signers(&a.sign)?;
    let doc = sign_trust_root(next, &signers, &a.out)?;
    current
        .verify_rotation(&doc, Expiration::Enforce { now: now() })
        .map_err(|e| Failure::file(&a.out, format!("not written: {e}")))?;
    write_atomic(&a.out, &doc.encode().at(&a.out)?, 0o644)?;
    println!(
        "trust root version {} written to {}",
        doc.unverified_body().version,
        a.out.display()
    );
    println!("id {}", doc.id());
    Ok(())
}

fn scope_text(s: &Scope) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "any".to_owned()
        } else {
            v.join(",")
        }
    };
    format!(
        "hardware={} channels={}",
        list(&s.hardware),
        list(&s.channels)
    )
}

fn key_json(name: &str, key: &PublicKey) -> serde_json::Value {
    serde_json::json!({ "name": name, "key_id": key.id().to_hex() })
}

fn show(a: &ShowArgs) -> CmdResult {
    let doc = read_trust_doc(&a.file)?;
    let t = doc.unverified_body();
    let check = TrustRoot::verify_initial(&doc, Expiration::Enforce { now: now() });
    if a.json {
        let v = serde_json::json!({
            "id": doc.id().to_hex(),
            "version": t.version,
            "expires": t.expires.map(|e| e.0),
            "root_threshold": t.root_threshold,
            "root_keys": t.root_keys.iter().map(|k| key_json(&k.name, &k.key)).collect::<Vec<_>>(),
            "release_threshold": t.release_threshold,
            "release_keys": t.release_keys.iter().map(|k| serde_json::json!({
                "name": k.name,
                "key_id": k.key.id().to_hex(),
                "hardware": k.scope.hardware,
                "channels": k.scope.channels,
                "expires": k.expires.map(|e| e.0),
            })).collect::<Vec<_>>(),
            "provisioning_keys": t.provisioning_keys.iter().map(|k| serde_json::json!({
                "name": k.name,
                "key_id": k.key.id().to_hex(),
                "hardware": k.hardware,
                "expires": k.expires.map(|e| e.0),
            })).collect::<Vec<_>>(),
            "revoked": t.revoked.iter().map(KeyId::to_hex).collect::<Vec<_>>(),
            "signatures": doc.signatures().iter().map(|s| s.key_id.to_hex()).collect::<Vec<_>>(),
            "self_signed_valid": check.is_ok(),
            "problem": check.as_ref().err().map(ToString::to_string),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("trust root  version {}  id {}", t.version, doc.id().short());
    println!(
        "expires     {}",
        t.expires
            .map_or_else(|| "never".to_owned(), |e| e.to_string())
    );
    println!(
        "root keys   threshold {} of {}",
        t.root_threshold,
        t.root_keys.len()
    );
    for k in &t.root_keys {
        println!("  {}  {}", k.key.id(), k.name);
    }
    println!(
        "release keys  threshold {} of {}",
        t.release_threshold,
        t.release_keys.len()
    );
    for k in &t.release_keys {
        println!(
            "  {}  {}  {}{}",
            k.key.id(),
            k.name,
            scope_text(&k.scope),
            k.expires
                .map(|e| format!(" expires={e}"))
                .unwrap_or_default()
        );
    }
    if !t.provisioning_keys.is_empty() {
        println!("provisioning keys");
        for k in &t.provisioning_keys {
            println!(
                "  {}  {}  hardware={}{}",
                k.key.id(),
                k.name,
                if k.hardware.is_empty() {
                    "any".to_owned()
                } else {
                    k.hardware.join(",")
                },
                k.expires
                    .map(|e| format!(" expires={e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !t.revoked.is_empty() {
        println!("revoked");
        for k in &t.revoked {
            println!("  {k}");
        }
    }
    println!("signatures");
    for s in doc.signatures() {
        let who = t
            .root_key(&s.key_id)
            .map_or("(not a root key)", |k| k.name.as_str());
        println!("  {}  {}", s.key_id, who);
    }
    match check {
        Ok(_) => println!("self-signature: valid"),
        Err(e) => println!("self-signature: INVALID: {e}"),
    }
    Ok(())
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let expiration = expiration_from(a.now.as_deref(), a.ignore_expiry)?;
    let mut current = load_trust(&a.trust, expiration)?;
    println!("{}: version {} valid", a.trust.display(), current.version);
    for path in &a.next {
        let doc = read_trust_doc(path)?;
        current = current.verify_rotation(&doc, expiration).at(path)?;
        println!("{}: version {} valid", path.display(), current.version);
    }
    Ok(())
}
