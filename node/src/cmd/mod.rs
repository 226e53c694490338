//! One module per command group. Each exposes a clap subcommand enum and a
//! `run` function returning [`crate::failure::CmdResult`].

pub(crate) mod boot;
pub(crate) mod bundle;
pub(crate) mod delta;
pub(crate) mod demo;
pub(crate) mod gateway;
pub(crate) mod install;
pub(crate) mod keys;
pub(crate) mod node;
pub(crate) mod provision;
pub(crate) mod provision_image;
pub(crate) mod provision_serve;
pub(crate) mod publish;
pub(crate) mod radio;
pub(crate) mod release;
pub(crate) mod sim;
pub(crate) mod slots;
pub(crate) mod store;
pub(crate) mod testnet;
pub(crate) mod trust;
