//! `meshota provision image` (station: build, seal, sign a device's
//! provisioning image from the registry) and `meshota provision apply`
//! (device: verify, open, install). The rules live in the crate's `image`
//! and `apply` modules.

use std::path::{Path, PathBuf};

use clap::Args;

use meshota_manifest::Expiration;
use meshota_manifest::fs::{read_limited, read_secret, write_atomic};
use meshota_provision::alg::KemKeyPair;
use meshota_provision::apply::{CURRENT, PROVISION_DIR, install, installed, open_image};
use meshota_provision::ca::REGISTRY_FILE;
use meshota_provision::cert::parse_pem;
use meshota_provision::image::signed::{
    MAX_SIGNED_IMAGE_BYTES, SignedImageInputs, build_signed_image, split, verify_image,
};
use meshota_provision::image::{MAX_FILE_BYTES, MAX_FILES, station};
use meshota_provision::registry::Registry;
use meshota_provision::serial::HardwareId;
use meshota_provision::verify::certificate_key;

use super::provision::rejected;
use super::trust::load_trust;
use crate::config::NodeConfig;
use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::{load_public, load_secret};
use crate::timefmt::{now, parse_time};

/// Arguments of `provision image`.
#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    /// The intermediate CA directory holding the registry (registry.redb).
    #[arg(long)]
    pub(crate) registry: PathBuf,
    /// The device's hardware id, as it reports it.
    #[arg(long)]
    pub(crate) hwid: String,
    /// Where to write the image.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The fleet (written as /etc/mqtt-group-id).
    #[arg(long, default_value = "default")]
    pub(crate) fleet: String,
    /// A directory of mutable configuration files (/etc/meshota/config/<name>).
    #[arg(long)]
    pub(crate) config_dir: Option<PathBuf>,
    /// Also write /etc/machine-id (derived from the serial).
    #[arg(long)]
    pub(crate) machine_id: bool,
    /// The image's time (every inode's mtime): YYYY-MM-DD, RFC 3339, Unix seconds; default now.
    #[arg(long)]
    pub(crate) issued: Option<String>,
    /// A directory of confidential files, sealed to the device's ML-KEM-768
    /// key (/etc/meshota/secret/<name>).
    #[arg(long)]
    pub(crate) secret_dir: Option<PathBuf>,
    /// The provisioning key (secret key file) that signs the image.
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// The trust root naming the provisioning key: the image is verified
    /// against it before it is written.
    #[arg(long)]
    pub(crate) trust_root: PathBuf,
}

/// Arguments of `provision apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The signed provisioning image.
    #[arg(long)]
    pub(crate) image: PathBuf,
    /// The node config (trust root, data directory, `[provision] keys`).
    #[arg(long)]
    pub(crate) config: PathBuf,
}

/// The regular files of a configuration directory, by name, sorted.
fn config_files(dir: &Path) -> CmdResult<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let kind = entry.file_type().at(&path)?;
        if !kind.is_file() {
            return Err(Failure::file(
                &path,
                "is not a regular file; a configuration directory holds files only",
            ));
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| Failure::file(&path, "has a name that is not UTF-8"))?;
        out.push((name, read_limited(&path, MAX_FILE_BYTES)?));
        if out.len() > MAX_FILES {
            return Err(Failure::file(
                dir,
                format!("holds more than {MAX_FILES} files"),
            ));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn image(a: &ImageArgs) -> CmdResult {
    let hwid = HardwareId::normalise(&a.hwid).map_err(Failure::usage)?;
    let t = now();
    let issued = match &a.issued {
        Some(s) => parse_time(s, t)?,
        None => t,
    };
    let mtime = u32::try_from(issued.0)
        .map_err(|_| Failure::usage("--issued: squashfs times end in 2106"))?;
    let reg_path = a.registry.join(REGISTRY_FILE);
    if !reg_path.exists() {
        return Err(Failure::file(
            &reg_path,
            "no registry here: name the intermediate CA directory that provisioned the device",
        ));
    }
    let registry = Registry::open(&reg_path).map_err(rejected)?;
    let mut source = station::device_source(&a.registry, &registry, &hwid, &a.fleet, a.machine_id)
        .map_err(rejected)?;
    if let Some(dir) = &a.config_dir {
        source.inputs.config = config_files(dir)?;
    }
    let secrets = match &a.secret_dir {
        Some(dir) => config_files(dir)?,
        None => Vec::new(),
    };
    let signer = load_secret(&a.key)?;
    let trust = load_trust(&a.trust_root, Expiration::Enforce { now: t })?;
    let cert = parse_pem(source.artifacts.cert_pem.as_bytes()).map_err(rejected)?;
    let node_id = certificate_key(&cert).map_err(rejected)?.id();
    let bytes = build_signed_image(&SignedImageInputs {
        inputs: &source.inputs,
        secrets: &secrets,
        hardware: &source.record.hardware_class,
        node_id,
        kem_public: source.artifacts.kem_public.as_deref(),
        issued: mtime,
        signer: &signer,
    })
    .map_err(rejected)?;
    // Refuse to write an image the device would reject.
    let v = verify_image(&bytes, &trust, Expiration::Enforce { now: t })
        .map_err(|e| Failure::file(&a.out, format!("not written: {e}")))?;
    write_atomic(&a.out, &bytes, 0o644)?;
    println!(
        "device       {} (serial {}, node id {})",
        source.record.device_id,
        source.record.serial,
        node_id.to_hex()
    );
    println!("image        {} ({} bytes)", a.out.display(), bytes.len());
    println!(
        "files        {} ({} sealed to the device's ML-KEM key)",
        v.tree.files().count(),
        secrets.len()
    );
    println!("signed by    {} (provisioning key)", signer.id().to_hex());
    println!("blake3       {}", blake3::hash(&bytes).to_hex());
    Ok(())
}

/// The device side: verify, open, check against what is installed,
/// install atomically.
pub(crate) fn apply(a: &ApplyArgs) -> CmdResult {
    let config = NodeConfig::load(&a.config)?;
    let bytes = read_limited(&a.image, MAX_SIGNED_IMAGE_BYTES)?;
    apply_bytes(&a.config, &config, &bytes, &a.image.display().to_string())
}

/// Verifies, opens and installs image `bytes` (from `source`, named in
/// errors) on the device `config` describes.
pub(crate) fn apply_bytes(
    config_path: &Path,
    config: &NodeConfig,
    bytes: &[u8],
    source: &str,
) -> CmdResult {
    let at = PathBuf::from(source);
    let keys = config.provision.as_ref().ok_or_else(|| {
        Failure::file(
            config_path,
            "has no [provision] table: set `keys` to the directory `provision keygen` wrote",
        )
    })?;
    let (_, identity) = load_public(&keys.keys.join("identity.pub"))?;
    let kem_path = keys.keys.join("kem.key");
    let kem = if kem_path.exists() {
        let pem = read_secret(&kem_path, 64 * 1024)?;
        let text = std::str::from_utf8(&pem).map_err(|_| Failure::file(&kem_path, "is not PEM"))?;
        Some(KemKeyPair::from_pkcs8_pem(text).at(&kem_path)?)
    } else {
        None
    };
    let expiration = config.expiration();
    let trust = load_trust(&config.trust_root, expiration)?;
    let verified = verify_image(bytes, &trust, expiration).at(&at)?;
    if verified.header.hardware != config.hardware {
        return Err(Failure::file(
            &at,
            format!(
                "rejected: the image is for hardware class {:?}, this node is {:?}",
                verified.header.hardware, config.hardware
            ),
        ));
    }
    let (_, doc) = split(bytes).at(&at)?;
    let trailer = doc.encode().map_err(|e| Failure::file(&at, e))?;
    let opened = open_image(&verified, trailer, identity.id(), kem.as_ref()).at(&at)?;
    let previous = installed(&config.data_dir).at(&config.data_dir)?;
    let dir = install(&config.data_dir, &opened).at(&at)?;
    let h = &opened.header;
    println!(
        "device       {} (serial {}, fleet {})",
        h.device_id, h.serial, h.fleet
    );
    println!(
        "installed    {} ({})",
        dir.display(),
        match previous {
            Some(p) if p.header == *h => "unchanged: this image was installed",
            Some(_) => "re-provisioned: mutable configuration replaced",
            None => "first provisioning",
        }
    );
    println!(
        "overlay      mount -t overlay overlay -o lowerdir={}:/etc /etc",
        config
            .data_dir
            .join(PROVISION_DIR)
            .join(CURRENT)
            .join("etc")
            .display()
    );
    Ok(())
}
