//! `meshota gateway …`: a mesh node that also syncs releases from an HTTP
//! origin (docs/gateway.md).

use clap::Subcommand;

use std::time::Duration;

use crate::cmd::node::{ConfigArg, init_logging};
use crate::config::NodeConfig;
use crate::daemon::control::{Request, call};
use crate::failure::{CmdResult, Failure};

/// The gateway.
#[derive(Debug, Subcommand)]
pub(crate) enum GatewayCmd {
    /// Run the mesh daemon with the gateway duties of the config's
    /// `[gateway]` table, in the foreground until `node stop`, SIGTERM or
    /// Ctrl-C. `node status` and `node stop` work on it as on any node.
    Run(ConfigArg),
    /// Ask a running gateway to poll its origin now.
    Sync(ConfigArg),
}

pub(crate) fn run(cmd: GatewayCmd) -> CmdResult {
    match cmd {
        GatewayCmd::Run(a) => {
            init_logging();
            crate::daemon::run(&a.config, true)
        }
        GatewayCmd::Sync(a) => {
            let cfg = NodeConfig::load(&a.config)?;
            let answer = call(
                &cfg.control_socket(),
                &Request::Sync,
                Duration::from_secs(10),
            )
            .map_err(Failure::rejected)?;
            if answer["ok"] == true {
                println!("origin poll requested");
                Ok(())
            } else {
                Err(Failure::rejected(
                    answer["error"].as_str().unwrap_or("no reason given"),
                ))
            }
        }
    }
}
