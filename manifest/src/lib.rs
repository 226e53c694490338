//! meshota formats and trust (WIP).
#![no_std]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod hash;
pub use hash::{ChunkingAlgorithm, ChunkingParams, Hash, ParseHashError};
