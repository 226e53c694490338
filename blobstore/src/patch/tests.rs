//! The patch install path as a node meets it: good patches, and the bad
//! inputs of issue #6 (corrupt piece, patch for another base, truncated
//! piece), each ending with the image assembled and verified after the
//! leftover chunks are fetched plainly.

use meshota_manifest::Hash;
use proptest::prelude::*;

use super::piece::{Control, DiffSource, Piece, deflate};
use super::*;
use crate::chunking::DEFAULT_PARAMS;
use crate::index::ChunkIndex;
use crate::ingest::ingest;
use crate::store::{ChunkStore, MemStore};
use crate::{Error, assemble};

/// Deterministic bytes that look a little like machine code: runs of
/// repeated structure with pseudo-random operands.
fn old_image(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 16 < 6 {
                (i % 7) as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

/// A new release of `old`: operands shifted every 3 KiB (as relinked code
/// is), an insertion, a deletion, and an appended section.
fn new_image(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for at in (100..new.len() - 4).step_by(3 * 1024) {
        let v = u32::from_le_bytes([new[at], new[at + 1], new[at + 2], new[at + 3]]);
        new[at..at + 4].copy_from_slice(&v.wrapping_add(0x40).to_le_bytes());
    }
    new.splice(200_000..200_000, old_image(5_000, 99));
    new.drain(400_000..402_000);
    new.extend(old_image(30_000, 7));
    new
}

struct Release {
    old: Vec<u8>,
    old_index: ChunkIndex,
    new: Vec<u8>,
    new_index: ChunkIndex,
    origin: MemStore,
}

fn release() -> Release {
    let old = old_image(700_000, 1);
    let new = new_image(&old);
    let origin = MemStore::new();
    let old_index = crate::ingest::index_reader(old.as_slice(), &DEFAULT_PARAMS).unwrap();
    let new_index = ingest(&origin, new.as_slice(), &DEFAULT_PARAMS, &mut |_| {})
        .unwrap()
        .index;
    Release {
        old,
        old_index,
        new,
        new_index,
        origin,
    }
}

fn small_pieces() -> PatchOptions {
    PatchOptions {
        piece_output_bytes: 128 * 1024,
        ..PatchOptions::default()
    }
}

fn make_patch(r: &Release) -> PatchBuild {
    make_patch_with(r, &small_pieces())
}

fn make_patch_with(r: &Release, opts: &PatchOptions) -> PatchBuild {
    create_patch(&r.origin, &r.old, &r.old_index, &r.new, &r.new_index, opts)
        .unwrap()
        .expect("a patch beats fetching these chunks")
}

/// A node on the old release: its store holds the base's chunks (as a
/// seeded active slot would provide them).
fn node_on_base(r: &Release) -> MemStore {
    let node = MemStore::new();
    ingest(&node, r.old.as_slice(), &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    node
}

/// Copies blobs from the origin to the node as the mesh would.
fn deliver(from: &MemStore, to: &MemStore, hashes: impl IntoIterator<Item = Hash>) {
    for h in hashes {
        to.put(h, &from.get(&h).unwrap()).unwrap();
    }
}

/// Fetches what is still missing plainly, then assembles and verifies.
fn finish_plainly(r: &Release, node: &MemStore) -> usize {
    let missing = node.missing(&r.new_index).unwrap();
    deliver(&r.origin, node, missing.iter().map(|c| c.hash));
    let mut out = Vec::new();
    assemble(node, &r.new_index, &mut out, &mut |_| {}).unwrap();
    assert_eq!(out, r.new);
    missing.len()
}

fn rebuild(
    r: &Release,
    node: &MemStore,
    patch: &PatchIndex,
    base: &[u8],
) -> crate::Result<RebuildReport> {
    rebuild_from_patch(node, &r.new_index, patch, base, &mut |_, _| {})
}

fn produced_any(node_before: u64, node: &MemStore) -> bool {
    node.stats().unwrap().chunks > node_before
}

#[test]
fn patch_rebuilds_every_missing_chunk_and_the_image_assembles() {
    let r = release();
    let build = make_patch(&r);
    assert!(build.patch_bytes < build.replaced_bytes);
    assert!(build.index.pieces().len() > 1, "several pieces");
    let node = node_on_base(&r);
    deliver(&r.origin, &node, [build.id]);
    deliver(
        &r.origin,
        &node,
        build.index.pieces().iter().map(|p| p.hash),
    );
    let patch = PatchIndex::load(&node, &build.id, build.encoded.len() as u64).unwrap();
    let report = rebuild(&r, &node, &patch, &r.old).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.pieces_applied as usize, patch.pieces().len());
    assert!(report.chunks_produced > 0);
    // The only chunks left are those the pieces were not worth making for.
    assert_eq!(finish_plainly(&r, &node), report.still_missing.len());
}

#[test]
fn needed_pieces_are_those_not_held_that_make_a_missing_chunk() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    let all = build.index.needed_pieces(&node, &r.new_index).unwrap();
    assert_eq!(all, build.index.pieces());
    // Holding a piece, or every chunk a piece makes, drops it from the list.
    let pieces = build.index.pieces();
    deliver(&r.origin, &node, [pieces[0].hash]);
    let made_by_1: Vec<Hash> = r.new_index.chunks()[pieces[1].ordinals()]
        .iter()
        .map(|c| c.hash)
        .collect();
    deliver(&r.origin, &node, made_by_1);
    assert_eq!(
        build.index.needed_pieces(&node, &r.new_index).unwrap(),
        &pieces[2..]
    );
}

#[test]
fn rejects_patch_for_another_base_before_applying() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    deliver(
        &r.origin,
        &node,
        build.index.pieces().iter().map(|p| p.hash),
    );
    let before = node.stats().unwrap().chunks;
    let mut other_base = r.old.clone();
    other_base[10] ^= 0xff;
    match rebuild(&r, &node, &build.index, &other_base) {
        Err(Error::WrongBase { expected, .. }) => assert_eq!(expected, r.old_index.image_hash()),
        other => panic!("expected WrongBase, got {other:?}"),
    }
    assert!(!produced_any(before, &node));
    finish_plainly(&r, &node);
}

#[test]
fn rejects_a_piece_made_for_another_base_listed_in_this_patch() {
    let r = release();
    let build = make_patch(&r);
    // A piece of a patch from another base names that base; listed in this
    // patch, it is refused before the base is read.
    let victim = build.index.pieces()[0];
    let good = r.origin.get(&victim.hash).unwrap();
    let foreign = Piece {
        base_image_hash: Hash::of(b"another base"),
        ..Piece::decode(&good).unwrap()
    }
    .encode()
    .unwrap();
    let listed = PieceRef {
        hash: Hash::of(&foreign),
        size: foreign.len() as u32,
        ..victim
    };
    assert!(matches!(
        apply_piece(
            r.old.as_slice(),
            &foreign,
            &listed,
            &build.index,
            &r.new_index
        ),
        Err(Error::WrongBase { .. })
    ));
}

#[test]
fn corrupt_piece_output_is_discarded_and_its_chunks_fetched_plainly() {
    let r = release();
    // zstd-coded, so that one diff byte can be altered alone.
    let build = make_patch_with(
        &r,
        &PatchOptions {
            diff_codec: Some(DiffCodec::Zstd),
            ..small_pieces()
        },
    );
    // A piece whose diff stream is altered, listed under its own hash (as
    // a buggy or hostile release tool would list it): it decodes and
    // applies, but its output does not hash to the signed index.
    let victim = build.index.pieces()[0];
    let good = r.origin.get(&victim.hash).unwrap();
    let p = Piece::decode(&good).unwrap();
    let (control, diff, extra) = p.streams().unwrap();
    let DiffSource::Plain {
        bytes: mut diff, ..
    } = diff
    else {
        panic!("a zstd diff stream is decompressed whole");
    };
    let mid = diff.len() / 2;
    diff[mid] ^= 0x55;
    let (c, d, e) = (
        deflate(&control, 3).unwrap(),
        deflate(&diff, 3).unwrap(),
        deflate(&extra, 3).unwrap(),
    );
    let bad = Piece {
        control: &c,
        diff: &d,
        extra: &e,
        ..p
    }
    .encode()
    .unwrap();
    let report = install_with_first_piece(&r, &build, &bad);
    assert!(matches!(
        report.failed[0].error,
        Error::PieceOutputMismatch { .. }
    ));
}

/// A node on the base installs with `bad` listed (under its own hash) in
/// place of the patch's first piece: exactly that piece fails, nothing of
/// its range is accepted from it, and a plain fetch completes the install.
fn install_with_first_piece(r: &Release, build: &PatchBuild, bad: &[u8]) -> RebuildReport {
    let victim = build.index.pieces()[0];
    let mut pieces = build.index.pieces().to_vec();
    pieces[0] = PieceRef {
        hash: Hash::of(bad),
        size: bad.len() as u32,
        ..victim
    };
    let patch = PatchIndex::new(
        build.index.base_image_hash(),
        build.index.base_size(),
        build.index.target_index(),
        pieces.clone(),
    )
    .unwrap();
    let node = node_on_base(r);
    node.put(Hash::of(bad), bad).unwrap();
    deliver(&r.origin, &node, pieces[1..].iter().map(|p| p.hash));
    let report = rebuild(r, &node, &patch, &r.old).unwrap();
    assert_eq!(report.failed.len(), 1);
    for c in &r.new_index.chunks()[victim.ordinals()] {
        if !r.old_index.chunks().iter().any(|o| o.hash == c.hash) {
            assert!(report.still_missing.iter().any(|m| m.hash == c.hash));
        }
    }
    finish_plainly(r, &node);
    report
}

#[test]
fn default_diff_coding_is_never_larger_than_either_codec_alone() {
    let r = release();
    let size = |codec| {
        make_patch_with(
            &r,
            &PatchOptions {
                diff_codec: codec,
                ..small_pieces()
            },
        )
        .patch_bytes
    };
    let (best, zstd, context) = (
        size(None),
        size(Some(DiffCodec::Zstd)),
        size(Some(DiffCodec::BaseContext)),
    );
    assert!(
        best <= zstd.min(context),
        "best {best}, zstd {zstd}, base-context {context}"
    );
}

#[test]
fn corrupt_coded_diff_stream_is_discarded_and_its_chunks_fetched_plainly() {
    let r = release();
    let build = make_patch_with(
        &r,
        &PatchOptions {
            diff_codec: Some(DiffCodec::BaseContext),
            ..small_pieces()
        },
    );
    let victim = build.index.pieces()[0];
    let good = r.origin.get(&victim.hash).unwrap();
    let p = Piece::decode(&good).unwrap();
    assert_eq!(p.diff_codec, DiffCodec::BaseContext as u8);
    let mut diff = p.diff.to_vec();
    let mid = diff.len() / 2;
    diff[mid] ^= 0x55;
    let bad = Piece { diff: &diff, ..p }.encode().unwrap();
    let report = install_with_first_piece(&r, &build, &bad);
    // A flipped coded byte garbles the rest of the stream: the output
    // fails its hash, or the stream no longer ends where it should.
    assert!(matches!(
        report.failed[0].error,
        Error::PieceOutputMismatch { .. } | Error::PatchMalformed { .. }
    ));
}

#[test]
fn corrupt_piece_at_rest_is_never_applied() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    deliver(
        &r.origin,
        &node,
        build.index.pieces().iter().map(|p| p.hash),
    );
    let victim = build.index.pieces()[1];
    node.corrupt_for_test(&victim.hash);
    let report = rebuild(&r, &node, &build.index, &r.old).unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(matches!(report.failed[0].error, Error::CorruptChunk { .. }));
    assert!(!report.still_missing.is_empty());
    finish_plainly(&r, &node);
}

#[test]
fn truncated_piece_is_discarded_and_its_chunks_fetched_plainly() {
    let r = release();
    let build = make_patch(&r);
    let victim = build.index.pieces()[0];
    let good = r.origin.get(&victim.hash).unwrap();
    let cut = &good[..good.len() / 2];
    let mut pieces = build.index.pieces().to_vec();
    pieces[0] = PieceRef {
        hash: Hash::of(cut),
        size: cut.len() as u32,
        ..victim
    };
    let patch = PatchIndex::new(
        build.index.base_image_hash(),
        build.index.base_size(),
        build.index.target_index(),
        pieces.clone(),
    )
    .unwrap();
    let node = node_on_base(&r);
    let before = node.stats().unwrap().chunks;
    node.put(Hash::of(cut), cut).unwrap();
    let report = rebuild(&r, &node, &patch, &r.old).unwrap();
    assert_eq!(report.failed.len(), 1);
    assert!(matches!(
        report.failed[0].error,
        Error::PatchTruncated { .. }
    ));
    assert_eq!(report.pieces_absent.len(), pieces.len() - 1);
    // Only the truncated blob itself was added: no chunk was produced.
    assert_eq!(node.stats().unwrap().chunks, before + 1);
    finish_plainly(&r, &node);
}

#[test]
fn refuses_a_patch_for_another_target_index() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    let other = r.old_index.clone();
    assert!(matches!(
        rebuild_from_patch(
            &node,
            &other,
            &build.index,
            r.old.as_slice(),
            &mut |_, _| {}
        ),
        Err(Error::PatchTargetMismatch { .. })
    ));
}

#[test]
fn records_no_patch_when_no_piece_beats_fetching_the_chunks() {
    let unrelated = old_image(300_000, 77);
    let idx = crate::ingest::index_reader(unrelated.as_slice(), &DEFAULT_PARAMS).unwrap();
    let random: Vec<u8> = {
        let mut x = 0x1234_5678u32;
        (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    };
    let origin = MemStore::new();
    let target = ingest(&origin, random.as_slice(), &DEFAULT_PARAMS, &mut |_| {})
        .unwrap()
        .index;
    let built = create_patch(
        &origin,
        &unrelated,
        &idx,
        &random,
        &target,
        &PatchOptions::default(),
    )
    .unwrap();
    assert!(built.is_none());
}

#[test]
fn pin_index_keeps_the_patch_through_gc() {
    let r = release();
    let build = make_patch(&r);
    let release_id = Hash::of(b"release");
    let pin_id = r.origin.put_index(&build.pin).unwrap();
    r.origin.pin(release_id, pin_id).unwrap();
    r.origin.gc().unwrap();
    assert!(r.origin.has(&build.id).unwrap());
    for p in build.index.pieces() {
        assert!(r.origin.has(&p.hash).unwrap());
    }
}

fn sample_target() -> (Vec<u8>, ChunkIndex, PatchIndex) {
    let base = old_image(50_000, 3);
    let target_bytes = old_image(20_000, 4);
    let target = crate::ingest::index_reader(target_bytes.as_slice(), &DEFAULT_PARAMS).unwrap();
    let n = target.chunks().len() as u32;
    let patch = PatchIndex::new(
        Hash::of(&base),
        base.len() as u64,
        target.id().unwrap(),
        vec![PieceRef {
            hash: Hash::of(b"x"),
            size: 1,
            first: 0,
            count: n,
        }],
    )
    .unwrap();
    (base, target, patch)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn applying_random_bytes_as_a_piece_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (base, target, patch) = sample_target();
        let mut framed = b"MOTA\x01\x22".to_vec();
        framed.extend_from_slice(&bytes);
        let piece = patch.pieces()[0];
        prop_assert!(apply_piece(base.as_slice(), &bytes, &piece, &patch, &target).is_err());
        prop_assert!(apply_piece(base.as_slice(), &framed, &piece, &patch, &target).is_err());
    }

    #[test]
    fn applying_random_well_framed_streams_never_panics_nor_accepts_a_chunk(
        controls in proptest::collection::vec((0u32..30_000, 0u32..30_000, -100_000i64..100_000), 0..8),
        diff in proptest::collection::vec(any::<u8>(), 0..20_000),
        cursor in 0u64..60_000,
    ) {
        let (base, target, patch) = sample_target();
        let mut control = Vec::new();
        for (add, copy, seek) in controls {
            control = postcard::to_extend(&Control { add, copy, seek }, control).unwrap();
        }
        let output_len = target.total_size() as u32;
        let diff_len = (diff.len() as u32).min(output_len);
        let extra = vec![7u8; (output_len - diff_len) as usize];
        let (c, d, e) = (
            deflate(&control, 1).unwrap(),
            deflate(&diff[..diff_len as usize], 1).unwrap(),
            deflate(&extra, 1).unwrap(),
        );
        let bytes = Piece {
            base_image_hash: patch.base_image_hash(),
            base_cursor: cursor,
            first: 0,
            count: target.chunks().len() as u32,
            output_len,
            control_len: control.len() as u32,
            diff_len,
            diff_codec: DiffCodec::Zstd as u8,
            control: &c,
            diff: &d,
            extra: &e,
        }
        .encode()
        .unwrap();
        let piece = PieceRef { hash: Hash::of(&bytes), size: bytes.len() as u32, ..patch.pieces()[0] };
        prop_assert!(apply_piece(base.as_slice(), &bytes, &piece, &patch, &target).is_err());
    }
}

#[test]
fn plan_prices_patch_and_chunks_separately_and_picks_the_cheaper() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    let size = build.encoded.len() as u64;
    let plan = crate::delta::plan_delta_with_patch(
        &[&node],
        &r.origin,
        &r.new_index,
        &build.index,
        build.id,
        size,
    )
    .unwrap();
    let p = plan.patch.as_ref().unwrap();
    assert!(plan.uses_patch);
    assert_eq!(plan.fetch_bytes, p.total_bytes());
    assert_eq!(p.index_bytes, size);
    assert!(plan.fetch_bytes < plan.chunk_plan_bytes);
    assert_eq!(plan.chunks_to_fetch, p.chunks_to_fetch);
    // A node that already holds every target chunk fetches nothing.
    let full = MemStore::new();
    ingest(&full, r.new.as_slice(), &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let plan = crate::delta::plan_delta_with_patch(
        &[&full],
        &r.origin,
        &r.new_index,
        &build.index,
        build.id,
        size,
    )
    .unwrap();
    assert_eq!((plan.fetch_bytes, plan.uses_patch), (0, false));
}

#[test]
fn plan_counts_pieces_already_held_as_free() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    deliver(&r.origin, &node, [build.id, build.index.pieces()[0].hash]);
    let plan = crate::delta::plan_delta_with_patch(
        &[&node],
        &r.origin,
        &r.new_index,
        &build.index,
        build.id,
        build.encoded.len() as u64,
    )
    .unwrap();
    let p = plan.patch.unwrap();
    assert_eq!(p.index_bytes, 0);
    assert_eq!(p.pieces_to_fetch.len(), build.index.pieces().len() - 1);
    assert_eq!(
        p.piece_bytes,
        build.index.pieces()[1..]
            .iter()
            .map(|x| u64::from(x.size))
            .sum::<u64>()
    );
}

#[test]
fn corrupt_patch_index_is_refused_and_the_install_completes_plainly() {
    let r = release();
    let build = make_patch(&r);
    let node = node_on_base(&r);
    deliver(&r.origin, &node, [build.id]);
    node.corrupt_for_test(&build.id);
    let size = build.encoded.len() as u64;
    assert!(matches!(
        PatchIndex::load(&node, &build.id, size),
        Err(Error::CorruptChunk { .. })
    ));
    // A patch index longer than the manifest's size is refused unread.
    let fresh = MemStore::new();
    deliver(&r.origin, &fresh, [build.id]);
    assert!(matches!(
        PatchIndex::load(&fresh, &build.id, size - 1),
        Err(Error::PatchTooLarge { .. })
    ));
    finish_plainly(&r, &node);
}
