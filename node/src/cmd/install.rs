//! `meshota install`: a verified release into the inactive slot, switched
//! to for trial boots. The pipeline (verify, stream, read back, verify
//! again, switch) is the boot crate's `Device::install`.

use std::path::{Path, PathBuf};

use clap::Args;
use meshota_boot::install::{Installed, TrustedManifest};
use meshota_boot::lifecycle::ReleaseImage;
use meshota_manifest::{ReleaseManifest, SignedDocument, TrustRoot, Verified};

use crate::cmd::release::read_manifest;
use crate::device::{ImageSource, Node, install_failure};
use crate::failure::CmdResult;
use crate::timefmt::now;

/// Arguments of `install`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
    /// The signed release manifest.
    #[arg(long)]
    manifest: PathBuf,
    /// Assemble the image from this chunk store (default: the config's
    /// `store_dir`).
    #[arg(long, conflicts_with = "image")]
    store: Option<PathBuf>,
    /// Stream the image from this file.
    #[arg(long)]
    image: Option<PathBuf>,
}

pub(crate) fn run(a: &InstallArgs) -> CmdResult {
    let node = Node::load(&a.config)?;
    let source = ImageSource::from_args(a.store.as_ref(), a.image.as_ref(), &node)?;
    let trust = node.trust()?;
    let doc = read_manifest(&a.manifest)?;
    let (installed, image) = install_release(&node, &trust, &a.manifest, &doc, &source)?;
    println!(
        "installed {} (security version {}) into slot {} from {}",
        image.version,
        image.security_version,
        installed.slot.name(),
        source.path().display()
    );
    println!(
        "slot {} is on trial for {} boot(s); reboot into it, then `meshota boot confirm` \
         (the simulated bootloader: `meshota boot reboot`)",
        installed.slot.name(),
        installed.trial_boots
    );
    Ok(())
}

/// The install pipeline for `doc` (read from `manifest_path`) from `source`
/// into the inactive slot, switched to for trial boots. Shared by
/// `meshota install` and the daemon.
pub(crate) fn install_release(
    node: &Node,
    trust: &Verified<TrustRoot>,
    manifest_path: &Path,
    doc: &SignedDocument<ReleaseManifest>,
    source: &ImageSource,
) -> CmdResult<(Installed, ReleaseImage)> {
    // Checked here first so that a bad manifest is named before any store
    // or device is opened; the boot crate checks again (with the counter)
    // before writing and right before the switch.
    let (component, image) = node.verify_release(trust, manifest_path, doc)?;
    let mut dev = node.open_device()?;
    let record = dev
        .record()
        .map_err(|e| node.device_failure("install", &e))?;
    let target = record.confirmed.other();
    // Saved before the switch: a boot that resumes an interrupted switch
    // re-verifies this copy.
    node.save_slot_manifest(target, doc)?;
    let mut check = TrustedManifest {
        trust,
        manifest: doc,
        hardware: &node.config.hardware,
        component: &node.config.component,
        expiration: node.config.expiration(),
    };
    let opts = node.config.device.install_options();
    let installed = source.with_reader(&component, |reader| {
        dev.install(&mut check, reader, &opts, now().0)
            .map_err(|e| install_failure(node, manifest_path, source, &e))
    })?;
    Ok((installed, image))
}
