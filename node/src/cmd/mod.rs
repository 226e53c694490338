//! One module per command group. Each exposes a clap subcommand enum and a
//! `run` function returning [`crate::failure::CmdResult`].

pub(crate) mod delta;
pub(crate) mod keys;
pub(crate) mod release;
pub(crate) mod store;
pub(crate) mod trust;
