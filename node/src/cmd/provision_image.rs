//! `meshota provision image`: a device's provisioning image, built by the
//! crate's `image` modules from the registry and the station's inputs.

use std::path::{Path, PathBuf};

use clap::Args;

use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_provision::ca::REGISTRY_FILE;
use meshota_provision::image::contents::ImageTree;
use meshota_provision::image::{MAX_FILE_BYTES, MAX_FILES, squashfs, station};
use meshota_provision::registry::Registry;
use meshota_provision::serial::HardwareId;

use super::provision::rejected;
use crate::failure::{AtPath, CmdResult, Failure};
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
    let tree = ImageTree::build(&source.inputs).map_err(Failure::usage)?;
    let bytes = squashfs::write(&tree, mtime).map_err(rejected)?;
    write_atomic(&a.out, &bytes, 0o644)?;
    println!(
        "device       {} (serial {})",
        source.record.device_id, source.record.serial
    );
    println!("image        {} ({} bytes)", a.out.display(), bytes.len());
    println!("files        {}", tree.files().count());
    println!("blake3       {}", blake3::hash(&bytes).to_hex());
    Ok(())
}
