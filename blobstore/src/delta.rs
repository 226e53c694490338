//! Delta planning: which chunks of a target cross the network, and how many
//! bytes they take as sent (zstd at-rest form).

use std::collections::HashSet;

use meshota_manifest::Hash;

use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkRef};
use crate::store::ChunkStore;

/// The plan for fetching one target image. Invariants: `chunks_to_fetch`
/// are distinct and absent locally; `fetch_bytes <= full_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPlan {
    /// Id of the target index.
    pub target: Hash,
    /// Target image size.
    pub target_size: u64,
    /// Distinct chunks in the target.
    pub target_chunks: u64,
    /// The chunks to fetch, in first-appearance order.
    pub chunks_to_fetch: Vec<ChunkRef>,
    /// Bytes that cross the network for them (as sent: compressed).
    pub fetch_bytes: u64,
    /// Bytes a node with nothing would fetch: every distinct target chunk
    /// as sent.
    pub full_bytes: u64,
    /// Raw bytes of the target already available locally (store or seeds).
    pub reused_bytes: u64,
}

/// Plans fetching `target` onto a node that has the chunks of any store in
/// `local` (its store, stores with seeded images), with sizes as sent taken
/// from `origin` (a store holding the whole target, e.g. the one it was
/// ingested into).
///
/// # Errors
/// [`Error::ChunkNotFound`] when `origin` lacks a target chunk, I/O.
pub fn plan_delta<O: ChunkStore + ?Sized>(
    local: &[&dyn ChunkStore],
    origin: &O,
    target: &ChunkIndex,
) -> Result<DeltaPlan> {
    let mut seen = HashSet::new();
    let mut plan = DeltaPlan {
        target: target.id()?,
        target_size: target.total_size(),
        target_chunks: 0,
        chunks_to_fetch: Vec::new(),
        fetch_bytes: 0,
        full_bytes: 0,
        reused_bytes: 0,
    };
    for c in target.chunks() {
        if !seen.insert(c.hash) {
            continue;
        }
        plan.target_chunks += 1;
        let sent = origin
            .info(&c.hash)?
            .ok_or(Error::ChunkNotFound { hash: c.hash })?
            .stored_len;
        plan.full_bytes += u64::from(sent);
        if has_any(local, &c.hash)? {
            plan.reused_bytes += u64::from(c.len);
        } else {
            plan.fetch_bytes += u64::from(sent);
            plan.chunks_to_fetch.push(*c);
        }
    }
    Ok(plan)
}

fn has_any(local: &[&dyn ChunkStore], hash: &Hash) -> Result<bool> {
    for s in local {
        if s.has(hash)? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl DeltaPlan {
    /// The plan as one JSON object (the `--json` output of `meshota delta
    /// plan`): `target`, `target_size`, `target_chunks`, `chunks_to_fetch`
    /// (a count), `fetch_bytes`, `full_bytes`, `reused_bytes`.
    #[must_use]
    pub fn to_json(&self) -> String {
        format!(
            "{{\"target\":\"{}\",\"target_size\":{},\"target_chunks\":{},\"chunks_to_fetch\":{},\"fetch_bytes\":{},\"full_bytes\":{},\"reused_bytes\":{}}}",
            self.target.to_hex(),
            self.target_size,
            self.target_chunks,
            self.chunks_to_fetch.len(),
            self.fetch_bytes,
            self.full_bytes,
            self.reused_bytes
        )
    }
}
