//! Thin entry points for the `meshota store …` and `meshota delta plan`
//! commands: each opens what it needs, does one thing, and returns a value
//! the CLI prints. Progress callbacks get (done, total) bytes; the CLI draws
//! a bar when attached to a terminal.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use meshota_manifest::{ChunkingParams, Hash, PatchRef};

use crate::delta::{DeltaPlan, plan_delta, plan_delta_with_patch};
use crate::error::{Error, Result};
use crate::ingest::{IngestReport, index_reader, ingest};
use crate::patch::{PatchBuild, PatchIndex, PatchOptions, create_patch};
use crate::store::{ChunkInfo, ChunkStore, FsStore, GcReport, MemStore, StoreStats, VerifyReport};

/// Serves `meshota store ingest --store DIR FILE`: opens (or creates) the
/// store, ingests `file`, and pins its index under the index's own id as the
/// release key so `store gc` keeps it (a release pins it again under its
/// manifest hash).
///
/// # Errors
/// [`Error::NotAStore`], I/O on `file`, store errors.
pub fn store_ingest(
    store_dir: &Path,
    file: &Path,
    params: &ChunkingParams,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<IngestReport> {
    let store = FsStore::open_or_create(store_dir)?;
    let f = File::open(file).map_err(Error::io("open", file))?;
    let total = f.metadata().map_err(Error::io("stat", file))?.len();
    let report = ingest(
        &store,
        BufReader::with_capacity(1 << 20, f),
        params,
        &mut |done| progress(done, total),
    )?;
    store.pin(report.index_id, report.index_id)?;
    Ok(report)
}

/// What `meshota store ls --store DIR` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreListing {
    /// Counts and sizes.
    pub stats: StoreStats,
    /// (release, index id) pins, sorted.
    pub pins: Vec<(Hash, Hash)>,
    /// Every stored chunk, sorted by id.
    pub chunks: Vec<(Hash, ChunkInfo)>,
}

/// Serves `meshota store ls --store DIR`. Refuses a directory that is not a
/// store (does not create one).
///
/// # Errors
/// [`Error::NotAStore`], store errors.
pub fn store_ls(store_dir: &Path) -> Result<StoreListing> {
    let store = FsStore::open(store_dir)?;
    Ok(StoreListing {
        stats: store.stats()?,
        pins: store.pins()?,
        chunks: store.list()?,
    })
}

/// Serves `meshota store verify --store DIR`: re-hashes everything,
/// quarantines bad chunks. The CLI should exit non-zero unless
/// [`VerifyReport::is_clean`].
///
/// # Errors
/// [`Error::NotAStore`], store errors.
pub fn store_verify(store_dir: &Path) -> Result<VerifyReport> {
    FsStore::open(store_dir)?.verify()
}

/// Serves `meshota store gc --store DIR`: removes unpinned chunks and indexes.
///
/// # Errors
/// [`Error::NotAStore`], store errors.
pub fn store_gc(store_dir: &Path) -> Result<GcReport> {
    FsStore::open(store_dir)?.gc()
}

/// Serves `meshota delta plan --from OLD --to NEW_IMAGE [--store DIR]`:
/// seeds the `from` images in memory (nothing copied), optionally counts
/// the chunks of the store at `store_dir` too (opened, not modified), chunks
/// and compresses `to_image` to learn its chunks' sizes as sent, and plans.
///
/// # Errors
/// I/O on the images, [`Error::NotAStore`], store errors.
pub fn delta_plan_image(
    from: &[PathBuf],
    to_image: &Path,
    store_dir: Option<&Path>,
    params: &ChunkingParams,
) -> Result<DeltaPlan> {
    let origin = MemStore::new();
    let f = File::open(to_image).map_err(Error::io("open", to_image))?;
    let target = ingest(
        &origin,
        BufReader::with_capacity(1 << 20, f),
        params,
        &mut |_| {},
    )?
    .index;
    plan_against(from, store_dir, &origin, &target.id()?)
}

/// Serves `meshota delta plan --from OLD --to MANIFEST --store DIR`: the
/// CLI reads the manifest's chunk-index id and passes it here; `store_dir`
/// must hold that index and its chunks (e.g. the release's origin store).
///
/// # Errors
/// [`Error::IndexNotFound`], [`Error::ChunkNotFound`], I/O, store errors.
pub fn delta_plan_index(
    from: &[PathBuf],
    target_index: &Hash,
    store_dir: &Path,
) -> Result<DeltaPlan> {
    let origin = FsStore::open(store_dir)?;
    let target = origin.get_index(target_index)?;
    let seeds = seed_all(from, &target)?;
    plan_delta(&[&seeds], &origin, &target)
}

/// Serves `meshota delta plan --from OLD --to MANIFEST --store DIR` for a
/// release that lists patches: as [`delta_plan_index`], and when one of the
/// `from` images is the base of one of `patches` (by image hash; the
/// caller passes the patches of the target's component), the patch plan is
/// priced too and the cheaper plan chosen. `store_dir` must hold the patch
/// index blob and its pieces (`release create --previous` puts them there).
///
/// # Errors
/// As [`delta_plan_index`]; [`Error::ChunkNotFound`] when the store lacks
/// the patch index; patch decode errors.
pub fn delta_plan_release(
    from: &[PathBuf],
    target_index: &Hash,
    patches: &[PatchRef],
    store_dir: &Path,
) -> Result<DeltaPlan> {
    let origin = FsStore::open(store_dir)?;
    let target = origin.get_index(target_index)?;
    let (seeds, bases) = seed_all_hashed(from, &target)?;
    let Some(p) = patches.iter().find(|p| bases.contains(&p.base_image_hash)) else {
        return plan_delta(&[&seeds], &origin, &target);
    };
    let patch = PatchIndex::load(&origin, &p.patch, p.size)?;
    plan_delta_with_patch(&[&seeds], &origin, &target, &patch, p.patch, p.size)
}

/// Serves `meshota delta plan --from OLD --to NEW_IMAGE --make-patch`: as
/// [`delta_plan_image`] (without a node store), plus a patch made from the
/// first `from` image to `to_image` with `opts`, priced as a release
/// would carry it. Returns the plan and the patch (`None` when it would not
/// beat the chunks).
///
/// # Errors
/// As [`delta_plan_image`]; [`Error::Read`] on the images.
pub fn delta_plan_image_patched(
    from: &[PathBuf],
    to_image: &Path,
    params: &ChunkingParams,
    opts: &PatchOptions,
) -> Result<(DeltaPlan, Option<PatchBuild>)> {
    let origin = MemStore::new();
    let new_file = File::open(to_image).map_err(Error::io("open", to_image))?;
    let target = ingest(
        &origin,
        BufReader::with_capacity(1 << 20, &new_file),
        params,
        &mut |_| {},
    )?
    .index;
    let (seeds, _) = seed_all_hashed(from, &target)?;
    let Some(base_path) = from.first() else {
        return Ok((plan_delta(&[&seeds], &origin, &target)?, None));
    };
    let base = File::open(base_path).map_err(Error::io("open", base_path))?;
    let base_index = index_reader(BufReader::with_capacity(1 << 20, &base), params)?;
    let build = create_patch(&origin, &base, &base_index, &new_file, &target, opts)?;
    let plan = match &build {
        Some(b) => plan_delta_with_patch(
            &[&seeds],
            &origin,
            &target,
            &b.index,
            b.id,
            b.encoded.len() as u64,
        )?,
        None => plan_delta(&[&seeds], &origin, &target)?,
    };
    Ok((plan, build))
}

fn seed_all(from: &[PathBuf], target: &crate::index::ChunkIndex) -> Result<MemStore> {
    Ok(seed_all_hashed(from, target)?.0)
}

/// Seeds every `from` image in memory; also returns their image hashes.
fn seed_all_hashed(
    from: &[PathBuf],
    target: &crate::index::ChunkIndex,
) -> Result<(MemStore, Vec<Hash>)> {
    let seeds = MemStore::new();
    let mut hashes = Vec::with_capacity(from.len());
    for p in from {
        hashes.push(seeds.seed_file(p, target.params())?.index.image_hash());
    }
    Ok((seeds, hashes))
}

fn plan_against(
    from: &[PathBuf],
    store_dir: Option<&Path>,
    origin: &MemStore,
    target_id: &Hash,
) -> Result<DeltaPlan> {
    let target = origin.get_index(target_id)?;
    let seeds = seed_all(from, &target)?;
    match store_dir {
        Some(dir) => {
            let local = FsStore::open(dir)?;
            plan_delta(&[&seeds, &local], origin, &target)
        }
        None => plan_delta(&[&seeds], origin, &target),
    }
}
