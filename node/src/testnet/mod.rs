//! The developers' testnet: N real `meshota node run` processes on
//! loopback with file slots and the simulated bootloader, driven by
//! `meshota testnet …` and `meshota demo` (node/src/cmd/{testnet,demo}.rs).
//! The daemon contract they use is docs/daemon.md.

pub(crate) mod control;
pub(crate) mod create;
pub(crate) mod fleet;
pub(crate) mod image;
pub(crate) mod state;
pub(crate) mod topology;
pub(crate) mod view;
