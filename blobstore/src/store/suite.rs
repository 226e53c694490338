//! One test suite, run against every backend (`suite!` below instantiates
//! it for [`MemStore`] and [`FsStore`]).

use std::io::Write;

use meshota_manifest::Hash;

use super::{ChunkSource, ChunkStore, FsStore, MemStore, SentChunk};
use crate::chunking::DEFAULT_PARAMS;
use crate::error::Error;
use crate::index::{ChunkIndex, ChunkRef};
use crate::ingest::ingest;

/// A backend under test: how to make one and how to damage a chunk at rest.
pub(crate) trait Backend {
    type S: ChunkStore;
    fn make() -> (Self::S, Option<tempfile::TempDir>);
    fn corrupt(s: &Self::S, h: &Hash);
    fn break_index(s: &Self::S, id: &Hash);
}

pub(crate) struct Mem;
impl Backend for Mem {
    type S = MemStore;
    fn make() -> (MemStore, Option<tempfile::TempDir>) {
        (MemStore::new(), None)
    }
    fn corrupt(s: &MemStore, h: &Hash) {
        s.corrupt_for_test(h);
    }
    fn break_index(s: &MemStore, id: &Hash) {
        s.break_index_for_test(id);
    }
}

pub(crate) struct Fs;
impl Backend for Fs {
    type S = FsStore;
    fn make() -> (FsStore, Option<tempfile::TempDir>) {
        let d = tempfile::tempdir().unwrap();
        (
            FsStore::open_or_create(&d.path().join("store")).unwrap(),
            Some(d),
        )
    }
    fn corrupt(s: &FsStore, h: &Hash) {
        s.corrupt_for_test(h);
    }
    fn break_index(s: &FsStore, id: &Hash) {
        s.break_index_for_test(id);
    }
}

/// Deterministic pseudo-random bytes (xorshift), partly compressible.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 512) % 3 == 0 {
                b'a' + (i % 7) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

fn put_one<S: ChunkStore>(s: &S, seed: u64, len: usize) -> (Hash, Vec<u8>) {
    let b = bytes(seed, len);
    let h = Hash::of(&b);
    assert!(s.put(h, &b).unwrap());
    (h, b)
}

fn ingest_bytes<S: ChunkStore>(s: &S, data: &[u8]) -> crate::ingest::IngestReport {
    ingest(s, data, &DEFAULT_PARAMS, &mut |_| {}).unwrap()
}

pub(crate) fn put_then_get_returns_the_same_bytes<B: Backend>() {
    let (s, _d) = B::make();
    let (h, b) = put_one(&s, 1, 70_000);
    assert_eq!(s.get(&h).unwrap(), b);
    assert!(s.has(&h).unwrap());
    assert!(
        !s.put(h, &b).unwrap(),
        "second put of the same chunk is not new"
    );
    let info = s.info(&h).unwrap().unwrap();
    assert_eq!(info.raw_len, 70_000);
    assert_eq!(info.source, ChunkSource::Stored);
    assert!(
        info.compressed && info.stored_len < info.raw_len,
        "compressible chunk stored compressed"
    );
}

pub(crate) fn put_rejects_bytes_whose_hash_differs<B: Backend>() {
    let (s, _d) = B::make();
    let b = bytes(2, 1000);
    let wrong = Hash::of(b"something else");
    match s.put(wrong, &b) {
        Err(Error::HashMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Hash::of(&b));
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.has(&wrong).unwrap());
    assert!(!s.has(&Hash::of(&b)).unwrap());
}

pub(crate) fn put_batch_stores_nothing_when_one_chunk_mismatches<B: Backend>() {
    let (s, _d) = B::make();
    let a = bytes(3, 2000);
    let b = bytes(4, 2000);
    let r = s.put_batch(&[(Hash::of(&a), &a), (Hash::of(&a), &b)]);
    assert!(matches!(r, Err(Error::HashMismatch { .. })));
    assert!(!s.has(&Hash::of(&a)).unwrap());
}

pub(crate) fn put_sent_keeps_the_sent_form_and_refuses_a_corrupt_one<B: Backend>() {
    let (s, _d) = B::make();
    let compressible = vec![7u8; 20_000];
    let raw = blake3::Hasher::new()
        .update(b"incompressible")
        .finalize_xof_bytes(3000);
    let sent = [
        SentChunk::encode(Hash::of(&compressible), &compressible),
        SentChunk::encode(Hash::of(&raw), &raw),
    ];
    assert!(sent[0].compressed && !sent[1].compressed);
    // One corrupt chunk (a flipped byte of its compressed form) and the
    // batch stores nothing.
    let mut bad = sent[0].clone();
    let n = bad.bytes.len();
    bad.bytes[n / 2] ^= 0x20;
    let r = s.put_sent_batch(&[sent[1].clone(), bad]);
    assert!(matches!(r, Err(Error::CorruptChunk { .. })), "{r:?}");
    assert!(!s.has(&sent[1].hash).unwrap());
    let r = s.put_sent_batch(&sent).unwrap();
    assert_eq!(r.new_chunks, 2);
    // Stored as sent: the at-rest size is the sent size, no recompression.
    assert_eq!(
        r.new_stored_bytes,
        (sent[0].bytes.len() + sent[1].bytes.len()) as u64
    );
    assert_eq!(s.get(&sent[0].hash).unwrap(), compressible);
    assert_eq!(s.get_sent(&sent[1].hash).unwrap(), sent[1]);
    assert_eq!(s.put_sent_batch(&sent).unwrap().new_chunks, 0);
}

pub(crate) fn get_of_an_absent_chunk_is_chunk_not_found<B: Backend>() {
    let (s, _d) = B::make();
    let h = Hash::of(b"absent");
    assert!(matches!(s.get(&h), Err(Error::ChunkNotFound { hash }) if hash == h));
    assert!(s.info(&h).unwrap().is_none());
}

pub(crate) fn incompressible_chunks_are_stored_raw<B: Backend>() {
    let (s, _d) = B::make();
    let b: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let b = blake3::Hasher::new().update(&b).finalize_xof_bytes(b.len());
    let h = Hash::of(&b);
    s.put(h, &b).unwrap();
    let info = s.info(&h).unwrap().unwrap();
    assert!(!info.compressed);
    assert_eq!(info.stored_len, 4096);
    assert_eq!(s.get(&h).unwrap(), b);
}

trait XofBytes {
    fn finalize_xof_bytes(&self, n: usize) -> Vec<u8>;
}
impl XofBytes for blake3::Hasher {
    fn finalize_xof_bytes(&self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        self.finalize_xof().fill(&mut out);
        out
    }
}

pub(crate) fn missing_lists_distinct_absent_chunks_of_an_index<B: Backend>() {
    let (s, _d) = B::make();
    let (h1, _) = put_one(&s, 5, 20_000);
    let h2 = Hash::of(b"not stored");
    let idx = ChunkIndex::new(
        DEFAULT_PARAMS,
        vec![
            ChunkRef {
                hash: h1,
                len: 20_000,
            },
            ChunkRef { hash: h2, len: 100 },
            ChunkRef { hash: h2, len: 100 },
        ],
        Hash::of(b"img"),
    )
    .unwrap();
    assert_eq!(
        s.missing(&idx).unwrap(),
        vec![ChunkRef { hash: h2, len: 100 }]
    );
}

pub(crate) fn gc_removes_unpinned_chunks_and_keeps_pinned_ones<B: Backend>() {
    let (s, _d) = B::make();
    let img_a = bytes(10, 400_000);
    let img_b = bytes(11, 300_000);
    let a = ingest_bytes(&s, &img_a);
    let b = ingest_bytes(&s, &img_b);
    let (loose, _) = put_one(&s, 12, 5000);
    let rel_a = Hash::of(b"release a");
    s.pin(rel_a, a.index_id).unwrap();
    assert_eq!(s.pins().unwrap(), vec![(rel_a, a.index_id)]);
    let r = s.gc().unwrap();
    assert!(r.chunks_removed >= 2, "{r:?}");
    assert_eq!(r.indexes_removed, 1);
    assert!(!s.has(&loose).unwrap());
    assert!(s.missing(&a.index).unwrap().is_empty());
    assert!(s.get_index(&a.index_id).is_ok());
    assert!(matches!(
        s.get_index(&b.index_id),
        Err(Error::IndexNotFound { .. })
    ));
    let mut out = Vec::new();
    crate::assemble(&s, &a.index, &mut out, &mut |_| {}).unwrap();
    assert_eq!(out, img_a);
    assert!(s.unpin(rel_a).unwrap());
    assert!(!s.unpin(rel_a).unwrap());
    s.gc().unwrap();
    assert_eq!(s.stats().unwrap().chunks, 0);
}

pub(crate) fn pin_of_an_unknown_index_is_refused<B: Backend>() {
    let (s, _d) = B::make();
    assert!(matches!(
        s.pin(Hash::of(b"r"), Hash::of(b"i")),
        Err(Error::IndexNotFound { .. })
    ));
}

pub(crate) fn stats_count_chunks_and_bytes<B: Backend>() {
    let (s, _d) = B::make();
    put_one(&s, 20, 10_000);
    put_one(&s, 21, 20_000);
    let st = s.stats().unwrap();
    assert_eq!(st.chunks, 2);
    assert_eq!(st.raw_bytes, 30_000);
    assert!(st.stored_bytes < 30_000);
    assert!(st.disk_bytes >= st.stored_bytes);
    assert_eq!(s.list().unwrap().len(), 2);
}

pub(crate) fn corrupt_chunk_is_detected_on_read_and_quarantined_by_verify<B: Backend>() {
    let (s, _d) = B::make();
    let (good, _) = put_one(&s, 30, 30_000);
    let (bad, _) = put_one(&s, 31, 30_000);
    assert!(s.verify().unwrap().is_clean());
    B::corrupt(&s, &bad);
    assert!(matches!(s.get(&bad), Err(Error::CorruptChunk { hash, .. }) if hash == bad));
    let r = s.verify().unwrap();
    assert_eq!(r.bad_chunks, vec![bad]);
    assert_eq!(r.chunks_checked, 2);
    assert!(!s.has(&bad).unwrap());
    assert!(s.get(&good).is_ok());
    assert!(s.verify().unwrap().is_clean());
}

pub(crate) fn seeded_file_serves_chunks_in_place_and_drops_them_when_changed<B: Backend>() {
    let (s, _d) = B::make();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot-a.img");
    let img = bytes(40, 500_000);
    std::fs::write(&path, &img).unwrap();
    let seeded = s.seed_file(&path, &DEFAULT_PARAMS).unwrap();
    assert_eq!(
        s.stats().unwrap().chunks,
        0,
        "nothing copied into the store"
    );
    assert!(s.missing(&seeded.index).unwrap().is_empty());
    let first = seeded.index.chunks()[0];
    assert_eq!(
        s.info(&first.hash).unwrap().unwrap().source,
        ChunkSource::Seeded
    );
    let mut out = Vec::new();
    crate::assemble(&s, &seeded.index, &mut out, &mut |_| {}).unwrap();
    assert_eq!(out, img);
    // Overwrite the first chunk's bytes in the file.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&[0xee; 100]).unwrap();
    drop(f);
    assert!(matches!(s.get(&first.hash), Err(Error::SeedStale { hash, .. }) if hash == first.hash));
    assert!(!s.has(&first.hash).unwrap(), "stale entry dropped");
    assert!(matches!(
        s.get(&first.hash),
        Err(Error::ChunkNotFound { .. })
    ));
    let second = seeded.index.chunks()[1];
    assert!(s.get(&second.hash).is_ok());
    // verify drops nothing else that still matches
    assert!(s.verify().unwrap().stale_seeds.is_empty());
}

pub(crate) fn seeded_region_serves_the_chunks_that_match_and_replaces_the_other_slot<B: Backend>() {
    let (s, _d) = B::make();
    let dir = tempfile::tempdir().unwrap();
    // One file holding two slots of 400 kB: the image sits at the start of
    // slot B, followed by other bytes.
    let disk = dir.path().join("disk.img");
    let img = bytes(42, 300_000);
    let index = ingest_bytes(&MemStore::new(), &img).index;
    let mut file = bytes(43, 800_000);
    file[400_000..700_000].copy_from_slice(&img);
    // Damage the second chunk in place: it must not be seeded.
    let second = index.chunks()[1];
    let at = 400_000 + index.chunks()[0].len as usize;
    file[at] ^= 0xff;
    std::fs::write(&disk, &file).unwrap();

    let r = s.seed_region(&disk, 400_000, &index).unwrap();
    assert_eq!(
        s.stats().unwrap().chunks,
        0,
        "nothing copied into the store"
    );
    let distinct: std::collections::BTreeSet<_> = index.chunks().iter().map(|c| c.hash).collect();
    assert_eq!(r.chunks as usize, distinct.len() - 1);
    assert_eq!(s.missing(&index).unwrap(), vec![second]);
    let first = index.chunks()[0];
    assert_eq!(s.get(&first.hash).unwrap(), &img[..first.len as usize]);
    assert_eq!(
        s.info(&first.hash).unwrap().unwrap().source,
        ChunkSource::Seeded
    );
    assert_eq!(s.get_index(&r.index_id).unwrap(), index);

    // Seeding the same image at slot A's offset, where it is not, replaces
    // slot B's seeds: nothing of it is held any more.
    let r = s.seed_region(&disk, 0, &index).unwrap();
    assert_eq!(r.chunks, 0);
    assert!(!s.has(&first.hash).unwrap());

    // Unseeding a path forgets its chunks; one never seeded is no error.
    s.seed_region(&disk, 400_000, &index).unwrap();
    assert!(s.has(&first.hash).unwrap());
    s.unseed(&disk).unwrap();
    assert!(!s.has(&first.hash).unwrap());
    assert!(matches!(
        s.get(&first.hash),
        Err(Error::ChunkNotFound { .. })
    ));
    s.unseed(&dir.path().join("never-seeded")).unwrap();

    // A region past the end of the file is skipped, not an error.
    let r = s.seed_region(&disk, 10_000_000, &index).unwrap();
    assert_eq!(r.chunks, 0);
    assert!(matches!(
        s.seed_region(&dir.path().join("absent"), 0, &index),
        Err(Error::Io { .. })
    ));
}

pub(crate) fn stored_chunk_is_preferred_over_a_stale_seed<B: Backend>() {
    let (s, _d) = B::make();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let img = bytes(41, 100_000);
    std::fs::write(&path, &img).unwrap();
    let seeded = s.seed_file(&path, &DEFAULT_PARAMS).unwrap();
    let c = seeded.index.chunks()[0];
    s.put(c.hash, &img[..c.len as usize]).unwrap();
    std::fs::write(&path, b"gone").unwrap();
    assert_eq!(s.get(&c.hash).unwrap(), &img[..c.len as usize]);
    let r = s.verify().unwrap();
    assert!(!r.stale_seeds.is_empty());
    assert!(r.bad_chunks.is_empty());
}

pub(crate) fn ingest_then_assemble_reproduces_the_image<B: Backend>() {
    let (s, _d) = B::make();
    let mut img = bytes(50, 1_500_000);
    img.extend_from_slice(&img.clone()[..400_000]);
    let r = ingest_bytes(&s, &img);
    assert_eq!(r.index.total_size(), img.len() as u64);
    assert_eq!(r.index.image_hash(), Hash::of(&img));
    assert_eq!(s.get_index(&r.index_id).unwrap(), r.index);
    assert!(
        r.new_chunks < r.index.chunks().len() as u64,
        "repeated content deduplicated"
    );
    let mut out = Vec::new();
    let a = crate::assemble(&s, &r.index, &mut out, &mut |_| {}).unwrap();
    assert_eq!(a.bytes, img.len() as u64);
    assert_eq!(out, img);
    let again = ingest_bytes(&s, &img);
    assert_eq!(again.new_chunks, 0);
    assert_eq!(again.index_id, r.index_id);
}

pub(crate) fn assembly_fails_on_a_missing_chunk_and_on_a_wrong_image_hash<B: Backend>() {
    let (s, _d) = B::make();
    let img = bytes(60, 300_000);
    let r = ingest_bytes(&s, &img);
    let lying = ChunkIndex::new(
        *r.index.params(),
        r.index.chunks().to_vec(),
        Hash::of(b"another image"),
    )
    .unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        crate::assemble(&s, &lying, &mut out, &mut |_| {}),
        Err(Error::ImageHashMismatch { .. })
    ));
    let mut chunks = r.index.chunks().to_vec();
    chunks.push(ChunkRef {
        hash: Hash::of(b"nope"),
        len: 10,
    });
    let absent = ChunkIndex::new(*r.index.params(), chunks, r.index.image_hash()).unwrap();
    assert!(matches!(
        crate::assemble(&s, &absent, &mut Vec::new(), &mut |_| {}),
        Err(Error::ChunkNotFound { .. })
    ));
}

pub(crate) fn get_sent_serves_the_checked_compressed_form_and_never_a_corrupt_one<B: Backend>() {
    let (s, _d) = B::make();
    let (h, b) = put_one(&s, 90, 40_000);
    let sent = s.get_sent(&h).unwrap();
    assert!(sent.compressed);
    assert_eq!(
        sent.bytes.len() as u32,
        s.info(&h).unwrap().unwrap().stored_len
    );
    assert_eq!(sent.open().unwrap(), b);
    let mut tampered = sent.clone();
    let n = tampered.bytes.len();
    tampered.bytes[n / 2] ^= 1;
    assert!(matches!(tampered.open(), Err(Error::CorruptChunk { .. })));
    let mut lying = sent;
    lying.raw_len = 1 << 30;
    assert!(matches!(lying.open(), Err(Error::CorruptChunk { .. })));
    B::corrupt(&s, &h);
    assert!(matches!(s.get_sent(&h), Err(Error::CorruptChunk { .. })));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    std::fs::write(&path, bytes(91, 50_000)).unwrap();
    let seeded = s.seed_file(&path, &DEFAULT_PARAMS).unwrap();
    let c = seeded.index.chunks()[0];
    let sent = s.get_sent(&c.hash).unwrap();
    assert_eq!(Hash::of(&sent.open().unwrap()), c.hash);
}

pub(crate) fn gc_refuses_to_run_when_a_pinned_index_is_damaged<B: Backend>() {
    let (s, _d) = B::make();
    let r = ingest_bytes(&s, &bytes(95, 200_000));
    let (loose, _) = put_one(&s, 96, 3000);
    let rel = Hash::of(b"rel");
    s.pin(rel, r.index_id).unwrap();
    B::break_index(&s, &r.index_id);
    match s.gc() {
        Err(Error::PinnedIndexMissing { release, index, .. }) => {
            assert_eq!((release, index), (rel, r.index_id));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.has(&loose).unwrap(), "nothing deleted");
    let v = s.verify().unwrap();
    assert_eq!(v.bad_indexes, vec![r.index_id]);
    assert!(s.unpin(rel).unwrap());
    assert!(s.gc().is_ok());
}

macro_rules! suite {
    ($backend:ident, $modname:ident) => {
        mod $modname {
            use super::*;
            #[test]
            fn get_sent_serves_the_checked_compressed_form_and_never_a_corrupt_one() {
                super::get_sent_serves_the_checked_compressed_form_and_never_a_corrupt_one::<
                    $backend,
                >();
            }
            #[test]
            fn gc_refuses_to_run_when_a_pinned_index_is_damaged() {
                super::gc_refuses_to_run_when_a_pinned_index_is_damaged::<$backend>();
            }
            #[test]
            fn put_then_get_returns_the_same_bytes() {
                super::put_then_get_returns_the_same_bytes::<$backend>();
            }
            #[test]
            fn put_rejects_bytes_whose_hash_differs() {
                super::put_rejects_bytes_whose_hash_differs::<$backend>();
            }
            #[test]
            fn put_batch_stores_nothing_when_one_chunk_mismatches() {
                super::put_batch_stores_nothing_when_one_chunk_mismatches::<$backend>();
            }
            #[test]
            fn put_sent_keeps_the_sent_form_and_refuses_a_corrupt_one() {
                super::put_sent_keeps_the_sent_form_and_refuses_a_corrupt_one::<$backend>();
            }
            #[test]
            fn get_of_an_absent_chunk_is_chunk_not_found() {
                super::get_of_an_absent_chunk_is_chunk_not_found::<$backend>();
            }
            #[test]
            fn incompressible_chunks_are_stored_raw() {
                super::incompressible_chunks_are_stored_raw::<$backend>();
            }
            #[test]
            fn missing_lists_distinct_absent_chunks_of_an_index() {
                super::missing_lists_distinct_absent_chunks_of_an_index::<$backend>();
            }
            #[test]
            fn gc_removes_unpinned_chunks_and_keeps_pinned_ones() {
                super::gc_removes_unpinned_chunks_and_keeps_pinned_ones::<$backend>();
            }
            #[test]
            fn pin_of_an_unknown_index_is_refused() {
                super::pin_of_an_unknown_index_is_refused::<$backend>();
            }
            #[test]
            fn stats_count_chunks_and_bytes() {
                super::stats_count_chunks_and_bytes::<$backend>();
            }
            #[test]
            fn corrupt_chunk_is_detected_on_read_and_quarantined_by_verify() {
                super::corrupt_chunk_is_detected_on_read_and_quarantined_by_verify::<$backend>();
            }
            #[test]
            fn seeded_file_serves_chunks_in_place_and_drops_them_when_changed() {
                super::seeded_file_serves_chunks_in_place_and_drops_them_when_changed::<$backend>();
            }
            #[test]
            fn seeded_region_serves_the_chunks_that_match_and_replaces_the_other_slot() {
                super::seeded_region_serves_the_chunks_that_match_and_replaces_the_other_slot::<
                    $backend,
                >();
            }
            #[test]
            fn stored_chunk_is_preferred_over_a_stale_seed() {
                super::stored_chunk_is_preferred_over_a_stale_seed::<$backend>();
            }
            #[test]
            fn ingest_then_assemble_reproduces_the_image() {
                super::ingest_then_assemble_reproduces_the_image::<$backend>();
            }
            #[test]
            fn assembly_fails_on_a_missing_chunk_and_on_a_wrong_image_hash() {
                super::assembly_fails_on_a_missing_chunk_and_on_a_wrong_image_hash::<$backend>();
            }
        }
    };
}

suite!(Mem, mem);
suite!(Fs, fs);

mod fs_only {
    use super::*;

    #[test]
    fn a_directory_that_is_not_a_store_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("photo.jpg"), b"x").unwrap();
        assert!(matches!(
            FsStore::open_or_create(d.path()),
            Err(Error::NotAStore { .. })
        ));
        assert!(matches!(
            FsStore::open(d.path()),
            Err(Error::NotAStore { .. })
        ));
        let msg = FsStore::open(d.path()).err().unwrap().to_string();
        assert!(msg.contains("not a meshota store"), "{msg}");
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(super::super::fs::MARKER_FILE),
            b"meshota-blobstore 9\n",
        )
        .unwrap();
        assert!(matches!(
            FsStore::open(d.path()),
            Err(Error::UnsupportedStore { .. })
        ));
    }

    #[test]
    fn chunks_survive_reopening_the_store() {
        let d = tempfile::tempdir().unwrap();
        let img = bytes(70, 600_000);
        let id = {
            let s = FsStore::open_or_create(d.path()).unwrap();
            let r = ingest_bytes(&s, &img);
            s.pin(Hash::of(b"rel"), r.index_id).unwrap();
            r.index_id
        };
        let s = FsStore::open(d.path()).unwrap();
        let idx = s.get_index(&id).unwrap();
        let mut out = Vec::new();
        crate::assemble(&s, &idx, &mut out, &mut |_| {}).unwrap();
        assert_eq!(out, img);
        assert!(s.verify().unwrap().is_clean());
    }

    #[test]
    fn gc_compacts_packs_and_open_removes_unreferenced_packs() {
        let d = tempfile::tempdir().unwrap();
        let s = FsStore::open_or_create(d.path()).unwrap();
        let keep = ingest_bytes(&s, &bytes(80, 300_000));
        ingest_bytes(&s, &bytes(81, 3_000_000));
        s.pin(Hash::of(b"keep"), keep.index_id).unwrap();
        let before = s.stats().unwrap().disk_bytes;
        let r = s.gc().unwrap();
        assert!(r.packs_compacted >= 1, "{r:?}");
        let after = s.stats().unwrap();
        assert!(after.disk_bytes < before / 2, "{before} -> {after:?}");
        assert_eq!(after.disk_bytes, after.stored_bytes);
        let stray = d.path().join("packs").join("999999999999.pack");
        std::fs::write(&stray, b"left by a crash").unwrap();
        drop(s);
        let s = FsStore::open(d.path()).unwrap();
        assert!(!stray.exists());
        assert!(s.verify().unwrap().is_clean());
        assert!(s.missing(&keep.index).unwrap().is_empty());
    }

    #[test]
    fn reads_and_verify_running_beside_gc_compaction_see_no_corruption() {
        let d = tempfile::tempdir().unwrap();
        let s = FsStore::open_or_create(d.path()).unwrap();
        let keep = ingest_bytes(&s, &bytes(100, 400_000));
        s.pin(Hash::of(b"keep"), keep.index_id).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0u32;
                for _ in 0..2_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    for c in keep.index.chunks() {
                        s.get(&c.hash).unwrap();
                        reads += 1;
                    }
                    let v = s.verify().unwrap();
                    assert!(v.bad_chunks.is_empty(), "{v:?}");
                }
                reads
            });
            for round in 0..15u64 {
                // Churn: ingest garbage next to the kept chunks, then GC it,
                // which rewrites the mostly-dead packs holding the kept ones.
                ingest_bytes(&s, &bytes(200 + round, 700_000));
                s.gc().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert!(s.missing(&keep.index).unwrap().is_empty());
        assert!(s.verify().unwrap().is_clean());
    }
}
