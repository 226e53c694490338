//! Delta planning: which chunks (and patch pieces) of a target cross the
//! network, and how many bytes they take as sent (zstd at-rest form).
//!
//! Two plans are priced: **chunks** (every target chunk the node lacks) and,
//! when a patch from the node's base exists, **patch** (the patch index, the
//! pieces worth fetching, and the chunks no chosen piece produces). A piece
//! is chosen only when it is smaller than the chunks it would produce that
//! the node still lacks; the cheaper plan wins and its bytes are
//! `fetch_bytes`.

use std::collections::{BTreeSet, HashSet};

use meshota_manifest::Hash;

use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkRef};
use crate::patch::{PatchIndex, PieceRef};
use crate::store::ChunkStore;

/// The patch half of a plan. Invariants: `pieces_to_fetch` are in index
/// order and absent locally; `chunks_to_fetch` are the distinct target
/// chunks neither held locally nor produced by a chosen piece (or by a
/// piece already held); `total_bytes() == index_bytes + piece_bytes +
/// chunk_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPlan {
    /// Id of the patch index (the manifest's `PatchRef.patch`).
    pub patch: Hash,
    /// Bytes of the patch index blob to fetch (0 when held locally).
    pub index_bytes: u64,
    /// The pieces to fetch.
    pub pieces_to_fetch: Vec<PieceRef>,
    /// Their bytes.
    pub piece_bytes: u64,
    /// Chunks still fetched plainly under this plan.
    pub chunks_to_fetch: Vec<ChunkRef>,
    /// Their bytes as sent.
    pub chunk_bytes: u64,
}

impl PatchPlan {
    /// Every byte this plan moves: index, pieces and plain chunks.
    #[must_use]
    pub const fn total_bytes(&self) -> u64 {
        self.index_bytes + self.piece_bytes + self.chunk_bytes
    }
}

/// The plan for fetching one target image. Invariants: `chunks_to_fetch`
/// are distinct and absent locally; `fetch_bytes` is the cheaper of
/// `chunk_plan_bytes` and the patch plan's total (the plan `uses_patch`
/// says), so `fetch_bytes <= chunk_plan_bytes <= full_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPlan {
    /// Id of the target index.
    pub target: Hash,
    /// Target image size.
    pub target_size: u64,
    /// Distinct chunks in the target.
    pub target_chunks: u64,
    /// The chunks to fetch plainly under the chosen plan, in
    /// first-appearance order.
    pub chunks_to_fetch: Vec<ChunkRef>,
    /// Bytes that cross the network under the chosen plan (as sent:
    /// compressed chunks, plus the patch index and pieces when
    /// `uses_patch`).
    pub fetch_bytes: u64,
    /// Bytes of the chunk-only plan: every target chunk the node lacks.
    pub chunk_plan_bytes: u64,
    /// The patch plan, when a patch from the node's base was given.
    pub patch: Option<PatchPlan>,
    /// Whether the patch plan was chosen (it is strictly cheaper).
    pub uses_patch: bool,
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
        chunk_plan_bytes: 0,
        patch: None,
        uses_patch: false,
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
    plan.chunk_plan_bytes = plan.fetch_bytes;
    Ok(plan)
}

/// Plans as [`plan_delta`], and prices the patch `patch` (id `patch_id`,
/// index blob of `index_size` bytes) from the node's base too: each piece
/// is chosen when it is smaller than the chunks it produces that the node
/// still lacks (as sent, taken from `origin`); pieces and the index blob
/// held locally cost nothing. The cheaper plan becomes `fetch_bytes` and
/// `chunks_to_fetch`. The caller checks that the node's base is the
/// patch's base (e.g. its active slot's image hash).
///
/// # Errors
/// As [`plan_delta`]; [`Error::PatchTargetMismatch`] or
/// [`Error::PatchMalformed`] when the patch is not for `target`.
pub fn plan_delta_with_patch<O: ChunkStore + ?Sized>(
    local: &[&dyn ChunkStore],
    origin: &O,
    target: &ChunkIndex,
    patch: &PatchIndex,
    patch_id: Hash,
    index_size: u64,
) -> Result<DeltaPlan> {
    let mut plan = plan_delta(local, origin, target)?;
    patch.check_target(target, &plan.target)?;
    let mut lacking: std::collections::HashMap<Hash, u64> = std::collections::HashMap::new();
    for c in &plan.chunks_to_fetch {
        lacking.insert(c.hash, sent_len(origin, &c.hash)?);
    }
    let mut p = PatchPlan {
        patch: patch_id,
        index_bytes: if has_any(local, &patch_id)? {
            0
        } else {
            index_size
        },
        pieces_to_fetch: Vec::new(),
        piece_bytes: 0,
        chunks_to_fetch: Vec::new(),
        chunk_bytes: 0,
    };
    let choice = choose_pieces(
        target,
        patch,
        &|h: &Hash| lacking.get(h).copied(),
        &mut |h: &Hash| has_any(local, h),
    )?;
    p.piece_bytes = choice.piece_bytes;
    p.pieces_to_fetch = choice.pieces_to_fetch;
    let produced = choice.produced;
    for c in &plan.chunks_to_fetch {
        if !produced.contains(&c.hash) {
            p.chunk_bytes += lacking.get(&c.hash).copied().unwrap_or(0);
            p.chunks_to_fetch.push(*c);
        }
    }
    if p.pieces_to_fetch.is_empty() && p.chunks_to_fetch.len() == plan.chunks_to_fetch.len() {
        // No piece helps: fetching the index would be waste.
        p.index_bytes = 0;
    }
    if p.total_bytes() < plan.chunk_plan_bytes {
        plan.uses_patch = true;
        plan.fetch_bytes = p.total_bytes();
        plan.chunks_to_fetch.clone_from(&p.chunks_to_fetch);
    }
    plan.patch = Some(p);
    Ok(plan)
}

/// Which pieces of a patch are worth fetching. Invariants:
/// `pieces_to_fetch` are in index order and not held; `piece_bytes` is
/// their encoded size; `produced` holds the lacking target chunks that the
/// chosen pieces or pieces already held produce (each counted once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PieceChoice {
    /// The pieces to fetch.
    pub pieces_to_fetch: Vec<PieceRef>,
    /// Their bytes.
    pub piece_bytes: u64,
    /// The lacking chunks they (or held pieces) produce.
    pub produced: BTreeSet<Hash>,
}

/// The piece choice both plans share (`meshota delta plan` and the mesh
/// core's patch fetch): walking the pieces in index order, a piece is
/// chosen when it produces a lacking chunk no earlier piece produces and
/// is held already or smaller than those chunks as sent. `lacking(hash)` is
/// `Some(bytes as sent)` for a target chunk the node lacks; `piece_held`
/// says whether the node holds a piece blob. Call
/// [`PatchIndex::check_target`] first (pieces outside the target produce
/// nothing here).
///
/// # Errors
/// Whatever `piece_held` returns.
pub fn choose_pieces(
    target: &ChunkIndex,
    patch: &PatchIndex,
    lacking: &dyn Fn(&Hash) -> Option<u64>,
    piece_held: &mut dyn FnMut(&Hash) -> Result<bool>,
) -> Result<PieceChoice> {
    let mut out = PieceChoice::default();
    for piece in patch.pieces() {
        let mut gain = 0u64;
        let mut hashes = Vec::new();
        for c in target.chunks().get(piece.ordinals()).unwrap_or_default() {
            if !out.produced.contains(&c.hash) && !hashes.contains(&c.hash) {
                if let Some(sent) = lacking(&c.hash) {
                    gain += sent;
                    hashes.push(c.hash);
                }
            }
        }
        if hashes.is_empty() {
            continue;
        }
        let held = piece_held(&piece.hash)?;
        if held || u64::from(piece.size) < gain {
            if !held {
                out.piece_bytes += u64::from(piece.size);
                out.pieces_to_fetch.push(*piece);
            }
            out.produced.extend(hashes);
        }
    }
    Ok(out)
}

fn sent_len<O: ChunkStore + ?Sized>(origin: &O, hash: &Hash) -> Result<u64> {
    Ok(u64::from(
        origin
            .info(hash)?
            .ok_or(Error::ChunkNotFound { hash: *hash })?
            .stored_len,
    ))
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
    /// (a count, under the chosen plan), `fetch_bytes` (the chosen plan),
    /// `full_bytes`, `reused_bytes`, then `plan` (`"chunks"` or `"patch"`),
    /// `chunk_plan_bytes`, and `patch` (`null`, or `{id, index_bytes,
    /// pieces_to_fetch (a count), piece_bytes, chunks_to_fetch (a count),
    /// chunk_bytes, total_bytes}`).
    #[must_use]
    pub fn to_json(&self) -> String {
        let patch = self.patch.as_ref().map_or_else(
            || "null".to_string(),
            |p| {
                format!(
                    "{{\"id\":\"{}\",\"index_bytes\":{},\"pieces_to_fetch\":{},\"piece_bytes\":{},\"chunks_to_fetch\":{},\"chunk_bytes\":{},\"total_bytes\":{}}}",
                    p.patch.to_hex(),
                    p.index_bytes,
                    p.pieces_to_fetch.len(),
                    p.piece_bytes,
                    p.chunks_to_fetch.len(),
                    p.chunk_bytes,
                    p.total_bytes()
                )
            },
        );
        format!(
            "{{\"target\":\"{}\",\"target_size\":{},\"target_chunks\":{},\"chunks_to_fetch\":{},\"fetch_bytes\":{},\"full_bytes\":{},\"reused_bytes\":{},\"plan\":\"{}\",\"chunk_plan_bytes\":{},\"patch\":{patch}}}",
            self.target.to_hex(),
            self.target_size,
            self.target_chunks,
            self.chunks_to_fetch.len(),
            self.fetch_bytes,
            self.full_bytes,
            self.reused_bytes,
            if self.uses_patch { "patch" } else { "chunks" },
            self.chunk_plan_bytes,
        )
    }
}
