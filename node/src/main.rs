//! The `meshota` command.
//!
//! Exit codes: 0 success, 1 verification failed or input rejected, 2 usage
//! error. Every rejection names the file, the rule broken and the values
//! involved.
// The daemon's status object is one `serde_json::json!` of many fields.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod config;
mod daemon;
mod device;
mod failure;
mod image_reader;
mod keyio;
mod radio;
mod testnet;
mod timefmt;

/// meshota: signed software updates through air-gapped and edge fleets.
#[derive(Debug, Parser)]
#[command(name = "meshota", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate and show ML-DSA-65 keys.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCmd),
    /// Create, rotate, show and verify trust roots.
    #[command(subcommand)]
    Trust(cmd::trust::TrustCmd),
    /// Create, verify and inspect release manifests.
    #[command(subcommand)]
    Release(cmd::release::ReleaseCmd),
    /// Chunk store: ingest, ls, verify, gc.
    #[command(subcommand)]
    Store(cmd::store::StoreCmd),
    /// Delta planning: what a node must fetch for a target.
    #[command(subcommand)]
    Delta(cmd::delta::DeltaCmd),
    /// A/B slots of the device a node config describes: status, provision.
    #[command(subcommand)]
    Slots(cmd::slots::SlotsCmd),
    /// Install a verified release into the inactive slot for trial boots.
    Install(cmd::install::InstallArgs),
    /// After a boot: confirm or roll back, mark bad, simulated reboot.
    #[command(subcommand)]
    Boot(cmd::boot::BootCmd),
    /// Run the mesh daemon, and talk to a running one.
    #[command(subcommand)]
    Node(cmd::node::NodeCmd),
    /// Deterministic simulation of a fleet from one seed (faults, attackers).
    Sim(cmd::sim::SimArgs),
    /// LoRa radio mesh planning: which nodes relay and which can be leaves.
    #[command(subcommand)]
    Radio(cmd::radio::RadioCmd),
    /// Developers' testnet of node daemons on loopback: up, publish, status, down.
    #[command(subcommand)]
    Testnet(cmd::testnet::TestnetCmd),
    /// The whole story: a testnet, release v1, then v2 as a delta, a summary.
    Demo(cmd::demo::DemoArgs),
    /// A mesh node that also syncs releases from an HTTP origin.
    #[command(subcommand)]
    Gateway(cmd::gateway::GatewayCmd),
    /// Write a release into a static origin directory (any web server, S3 or CDN hosts it).
    Publish(cmd::publish::PublishArgs),
    /// Private CA, device identities and certificates, revocation, batches, registry.
    #[command(subcommand)]
    Provision(cmd::provision::ProvisionCmd),
    /// USB sneakernet bundles: export, import, inspect, verify, want lists, merge.
    #[command(subcommand)]
    Bundle(cmd::bundle::BundleCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(c) => cmd::keys::run(c),
        Command::Trust(c) => cmd::trust::run(c),
        Command::Release(c) => cmd::release::run(c),
        Command::Store(c) => cmd::store::run(c),
        Command::Delta(c) => cmd::delta::run(c),
        Command::Slots(c) => cmd::slots::run(c),
        Command::Install(a) => cmd::install::run(&a),
        Command::Boot(c) => cmd::boot::run(c),
        Command::Node(c) => cmd::node::run(c),
        Command::Sim(a) => cmd::sim::run(&a),
        Command::Radio(c) => cmd::radio::run(c),
        Command::Testnet(c) => cmd::testnet::run(c),
        Command::Demo(a) => cmd::demo::run(&a),
        Command::Gateway(c) => cmd::gateway::run(c),
        Command::Publish(a) => cmd::publish::run(&a),
        Command::Provision(c) => cmd::provision::run(c),
        Command::Bundle(c) => cmd::bundle::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
