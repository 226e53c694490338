//! meshota's content-addressed chunk store.
//!
//! **Purpose.** Turn an image into FastCDC chunks named by their BLAKE3
//! ([`chunking`]), describe it by a [`ChunkIndex`] (itself a
//! content-addressed blob the release manifest references), keep chunks in a
//! [`ChunkStore`] ([`FsStore`] on disk, [`MemStore`] in memory), rebuild
//! images from an index into any writer ([`assemble()`]), use an existing
//! image in place as a delta base ([`ChunkStore::seed_file`]), and plan what
//! a node must fetch for a new release ([`plan_delta`]).
//!
//! **Promises.**
//! - No bytes leave a store unless they hash to the id asked for: stored
//!   chunks are re-hashed on every read, seeded chunks too (and dropped when
//!   their file changed). A put whose bytes do not match is refused.
//! - A put (or batch, or ingest) that returned is durable: [`FsStore`]
//!   fsyncs chunk bytes before the redb commit that references them, and
//!   deletes pack files only after the commit that forgets them. SIGKILL at
//!   any moment leaves a store that opens and verifies clean
//!   (tested by `tests/crash.rs` with `blobstore-torture`).
//! - Decoding a chunk index checks the length limit before parsing and
//!   accepts only canonical encodings, never panicking.
//! - Assembly holds one chunk in memory at a time and checks the
//!   whole-image hash at the end.
//! - A patch piece's output is accepted only chunk by chunk, each hashing to
//!   the signed chunk index; a wrong base is refused before applying;
//!   applying holds one piece whatever the image size.
//!
//! **What it does not do.** It does not check signatures (the manifest
//! crate does) nor decide which releases to keep (callers pin and unpin);
//! it does not talk to the network (pieces are stored and served like
//! chunks, by the caller); [`FsStore`] is one process at a time (redb's lock).
//!
//! **Where to start reading.** [`store`] (the trait and its invariants), then
//! [`store::fs`] (the commit protocol), [`index`] (the wire format),
//! [`patch`] (binary patches), [`ops`] (what each CLI command calls).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod assemble;
pub mod chunking;
pub mod delta;
mod error;
pub mod index;
pub mod index_delta;
pub mod ingest;
pub mod ops;
pub mod patch;
pub mod store;

pub use assemble::{AssembleReport, assemble};
pub use chunking::{Chunk, Chunker, DEFAULT_PARAMS, check_params};
pub use delta::{DeltaPlan, PieceChoice, choose_pieces, plan_delta};
pub use error::{Error, Result};
pub use index::{ChunkIndex, ChunkRef};
pub use index_delta::{DeltaOp, IndexDelta};
pub use ingest::{IngestReport, index_reader, ingest};
pub use store::{
    ChunkInfo, ChunkSource, ChunkStore, FsStore, GcReport, MAX_CHUNK_BYTES, MemStore, PutReport,
    SeedReport, SentChunk, StoreStats, VerifyReport,
};
