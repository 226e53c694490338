//! `meshota slots …`: the A/B slots of the device a node config describes.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use meshota_boot::SlotId;
use meshota_boot::install::DeviceStatus;
use meshota_boot::lifecycle::{Phase, ReleaseImage};
use serde_json::{Value, json};

use crate::cmd::release::read_manifest;
use crate::device::{ImageSource, Node, install_failure, reason_text};
use crate::failure::{CmdResult, Failure};

/// A/B slots.
#[derive(Debug, Subcommand)]
pub(crate) enum SlotsCmd {
    /// Show the slots, the install in flight, the anti-rollback counter and
    /// the last failure.
    Status(StatusArgs),
    /// Factory provisioning: write a verified release's image into a slot
    /// of a device never provisioned and make it the confirmed slot.
    Provision(ProvisionArgs),
}

/// Arguments of `slots status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `slots provision`.
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// The node config file.
    #[arg(long)]
    config: PathBuf,
    /// The signed release manifest.
    #[arg(long)]
    manifest: PathBuf,
    /// Assemble the image from this chunk store.
    #[arg(long, conflicts_with = "image")]
    store: Option<PathBuf>,
    /// Stream the image from this file.
    #[arg(long)]
    image: Option<PathBuf>,
    /// The slot to provision (A or B).
    #[arg(long, default_value = "A", value_parser = parse_slot)]
    slot: SlotId,
}

/// Parses a slot name (`A`/`B`).
pub(crate) fn parse_slot(s: &str) -> Result<SlotId, String> {
    SlotId::parse(s).ok_or_else(|| format!("slot {s:?} is not A or B"))
}

pub(crate) fn run(cmd: SlotsCmd) -> CmdResult {
    match cmd {
        SlotsCmd::Status(a) => status(&a),
        SlotsCmd::Provision(a) => provision(&a),
    }
}

fn image_json(i: Option<&ReleaseImage>) -> Value {
    i.map_or(Value::Null, |i| {
        json!({
            "version": i.version,
            "security_version": i.security_version,
            "size": i.size,
            "image_hash": i.image_hash.to_hex(),
        })
    })
}

fn image_text(i: Option<&ReleaseImage>) -> String {
    i.map_or_else(
        || "no verified image".to_string(),
        |i| {
            format!(
                "{} (security version {}, {} bytes, {})",
                i.version,
                i.security_version,
                i.size,
                i.image_hash.short()
            )
        },
    )
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Writing => "writing",
        Phase::Trial => "trial",
    }
}

/// A slot's role: `confirmed`, `trial`, `writing` or `inactive`.
fn role(st: &DeviceStatus, slot: SlotId) -> &'static str {
    if st.record.confirmed == slot {
        return "confirmed";
    }
    match &st.record.pending {
        Some(p) if p.slot == slot => phase_name(p.phase),
        _ => "inactive",
    }
}

/// The status as JSON (the `--json` output; documented in docs/node-config.md).
pub(crate) fn status_json(node: &Node, st: &DeviceStatus) -> Value {
    let r = &st.record;
    let slots: Vec<Value> = SlotId::ALL
        .iter()
        .map(|&s| {
            let b = st.boot.slot(s);
            json!({
                "slot": s.name(),
                "role": role(st, s),
                "bootable": b.bootable,
                "tries_left": b.tries_left,
                "image": image_json(r.slots[s.index()].as_ref()),
            })
        })
        .collect();
    let pending = r.pending.as_ref().map_or(Value::Null, |p| {
        json!({
            "slot": p.slot.name(),
            "phase": phase_name(p.phase),
            "started_at": p.started_at,
            "image": image_json(Some(&p.image)),
        })
    });
    let last_failure = r.last_failure.as_ref().map_or(Value::Null, |f| {
        let (kind, text) = reason_text(&f.reason);
        json!({
            "slot": f.slot.name(),
            "reason": kind,
            "message": text,
            "at": f.at,
            "image": image_json(f.image.as_ref()),
        })
    });
    let state = r.pending.as_ref().map_or("idle", |p| phase_name(p.phase));
    json!({
        "config": node.path.display().to_string(),
        "hardware": node.config.hardware,
        "channel": node.config.channel,
        "bootloader": node.config.boot_kind(),
        "booted": st.booted.map(SlotId::name),
        "confirmed": r.confirmed.name(),
        "primary": st.boot.primary.name(),
        "security_counter": r.security_counter,
        "state": state,
        "slots": slots,
        "pending": pending,
        "last_failure": last_failure,
        "failures": r.failures,
    })
}

fn status(a: &StatusArgs) -> CmdResult {
    let node = Node::load(&a.config)?;
    let mut dev = node.open_device()?;
    let st = dev.status().map_err(|e| {
        Failure::file(
            &node.path,
            format!("slots status: {e} (provision it with `meshota slots provision`)"),
        )
    })?;
    if a.json {
        println!("{:#}", status_json(&node, &st));
        return Ok(());
    }
    let r = &st.record;
    let c = &node.config;
    println!(
        "node          {}/{}, {} bootloader ({})",
        c.hardware,
        c.channel,
        c.boot_kind(),
        node.path.display()
    );
    println!(
        "booted        {}",
        st.booted.map_or("unknown", SlotId::name)
    );
    println!("confirmed     {}", r.confirmed.name());
    println!("primary       {}", st.boot.primary.name());
    println!("security      counter {}", r.security_counter);
    for s in SlotId::ALL {
        let b = st.boot.slot(s);
        let boot = match (b.bootable, b.tries_left) {
            (false, _) => "not bootable".to_string(),
            (true, None) => "bootable".to_string(),
            (true, Some(n)) => format!("bootable, {n} tries left"),
        };
        println!(
            "slot {}        {:<9} {}; {}",
            s.name(),
            role(&st, s),
            image_text(r.slots[s.index()].as_ref()),
            boot
        );
    }
    match &r.pending {
        Some(p) => println!(
            "pending       slot {} {}: {}",
            p.slot.name(),
            phase_name(p.phase),
            image_text(Some(&p.image))
        ),
        None => println!("pending       none"),
    }
    match &r.last_failure {
        Some(f) => println!(
            "last failure  slot {}: {}: {} (at {}; {} so far)",
            f.slot.name(),
            image_text(f.image.as_ref()),
            reason_text(&f.reason).1,
            f.at,
            r.failures
        ),
        None => println!("last failure  none"),
    }
    Ok(())
}

fn provision(a: &ProvisionArgs) -> CmdResult {
    let node = Node::load(&a.config)?;
    let source = ImageSource::from_args(a.store.as_ref(), a.image.as_ref(), &node)?;
    let trust = node.trust()?;
    let doc = read_manifest(&a.manifest)?;
    let (component, image) = node.verify_release(&trust, &a.manifest, &doc)?;
    let mut dev = node.open_device()?;
    if let Ok(r) = dev.record() {
        return Err(Failure::file(
            &node.path,
            format!(
                "slots provision: the device is already provisioned (confirmed slot {}, \
                 security counter {}); use `meshota install`",
                r.confirmed.name(),
                r.security_counter
            ),
        ));
    }
    let opts = node.config.device.install_options();
    source.with_reader(&component, |reader| {
        dev.provision(a.slot, &image, reader, &opts)
            .map_err(|e| install_failure(&node, &a.manifest, &source, &e))
    })?;
    node.save_slot_manifest(a.slot, &doc)?;
    println!(
        "provisioned slot {} with {} (security version {}) from {}",
        a.slot.name(),
        image.version,
        image.security_version,
        source.path().display()
    );
    Ok(())
}
