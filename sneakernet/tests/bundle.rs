//! Bundles end to end against a real store: export, verify, import, and
//! every way a stick can be wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use meshota_blobstore::{ChunkStore, DEFAULT_PARAMS, MemStore, ingest};
use meshota_manifest::{
    Component, Expiration, Hash, ReleaseManifest, RolloutPolicy, SecretKey, SignedDocument,
    TrustRoot, UnixTime, Verified,
};
use meshota_sneakernet::{
    DecryptionKey, Error, ExportSpec, Installed, Limits, Policy, Target, WantList, WantRelease,
    export, import, merge::merge, verify_file,
};

const HW: &str = "board";
const CHANNEL: &str = "stable";

struct World {
    trust: Verified<TrustRoot>,
    trust_bytes: Vec<u8>,
    release_key: SecretKey,
}

fn world(seed: u8) -> World {
    let dev = meshota_testkit::dev_trust(seed);
    World {
        trust_bytes: dev.doc.encode().unwrap(),
        trust: dev.trust,
        release_key: dev.release,
    }
}

fn image(seed: u64, len: usize) -> Vec<u8> {
    meshota_testkit::image(len, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Ingests `img` into `store` and signs a manifest for it; returns the manifest bytes.
fn release(w: &World, store: &MemStore, img: &[u8], version: &str, sv: u64) -> Vec<u8> {
    let report = ingest(store, img, &DEFAULT_PARAMS, &mut |_| {}).unwrap();
    let body = ReleaseManifest {
        product: "sensor".into(),
        hardware: HW.into(),
        channel: CHANNEL.into(),
        version: version.into(),
        security_version: sv,
        created: UnixTime(1_790_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: img.len() as u64,
            image_hash: report.index.image_hash(),
            chunk_index: report.index_id,
            chunking: DEFAULT_PARAMS,
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    };
    SignedDocument::sign(body, &[&w.release_key])
        .unwrap()
        .encode()
        .unwrap()
}

fn policy(w: &World, installed_sv: Option<u64>) -> Policy<'_> {
    Policy {
        trust: &w.trust,
        expiration: Expiration::dangerous_ignore(),
        installed: installed_sv.map(|security_version| Installed {
            hardware: HW,
            channel: CHANNEL,
            security_version,
        }),
    }
}

fn export_plain(store: &MemStore, w: &World, manifests: Vec<Vec<u8>>, out: &Path) {
    let spec = ExportSpec {
        trust_root: Some(&w.trust_bytes),
        manifests,
        ..ExportSpec::default()
    };
    export(store, &spec, out, &mut |_| {}).unwrap();
}

/// A node's side: an empty store and manifest directory.
struct Node {
    store: MemStore,
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        Self {
            store: MemStore::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }
    fn import(
        &self,
        w: &World,
        bundle: &Path,
        sv: Option<u64>,
    ) -> Result<meshota_sneakernet::Imported, Error> {
        self.import_with(w, bundle, sv, None, Limits::default())
    }
    fn import_with(
        &self,
        w: &World,
        bundle: &Path,
        sv: Option<u64>,
        key: Option<&DecryptionKey>,
        limits: Limits,
    ) -> Result<meshota_sneakernet::Imported, Error> {
        let dir = self.manifests();
        import(
            bundle,
            key,
            policy(w, sv),
            limits,
            &Target {
                store: &self.store,
                manifests_dir: &dir,
            },
            &mut |_, _, _| {},
        )
    }
    fn assert_untouched(&self) {
        assert!(self.store.list().unwrap().is_empty(), "chunks were stored");
        assert!(
            self.store.pins().unwrap().is_empty(),
            "releases were pinned"
        );
        let manifests = std::fs::read_dir(self.manifests())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(manifests, 0, "manifests were written");
    }
}

struct Setup {
    w: World,
    origin: MemStore,
    v1: Vec<u8>,
    v2: Vec<u8>,
    tmp: tempfile::TempDir,
}

fn setup() -> Setup {
    let w = world(1);
    let origin = MemStore::new();
    let base = image(1, 600 * 1024);
    let mut next = base.clone();
    next[300_000..310_000].copy_from_slice(&image(2, 10_000));
    let v1 = release(&w, &origin, &base, "1.0.0", 1);
    let v2 = release(&w, &origin, &next, "2.0.0", 2);
    Setup {
        w,
        origin,
        v1,
        v2,
        tmp: tempfile::tempdir().unwrap(),
    }
}

fn release_id(manifest: &[u8]) -> Hash {
    SignedDocument::<ReleaseManifest>::decode(manifest)
        .unwrap()
        .id()
}

#[test]
fn exported_bundle_imports_every_release_chunk_and_pin() {
    let s = setup();
    let out = s.tmp.path().join("update.bundle");
    export_plain(&s.origin, &s.w, vec![s.v1.clone(), s.v2.clone()], &out);
    let node = Node::new();
    let imported = node.import(&s.w, &out, None).unwrap();

    assert_eq!(imported.releases.len(), 2);
    assert_eq!(imported.summary.releases[1].version, "2.0.0");
    for r in &imported.summary.releases {
        assert_eq!(r.chunks_carried, r.chunks_total, "{r:?}");
    }
    // Every chunk of both releases is in the node's store, and nothing else.
    assert_eq!(node.store.list().unwrap(), s.origin.list().unwrap());
    let pins: Vec<Hash> = node
        .store
        .pins()
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(pins.contains(&release_id(&s.v1)) && pins.contains(&release_id(&s.v2)));
    let written = node
        .manifests()
        .join(format!("{}.mota", release_id(&s.v2).to_hex()));
    assert_eq!(std::fs::read(written).unwrap(), s.v2);
    // No temporary file is left beside the bundle.
    let names: Vec<_> = std::fs::read_dir(s.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("update.bundle")]);
}

#[test]
fn verify_without_a_node_reports_what_the_bundle_carries() {
    let s = setup();
    let out = s.tmp.path().join("b");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &out);
    let summary = verify_file(
        &out,
        None,
        policy(&s.w, None),
        Limits::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(summary.trust_roots, vec![1]);
    assert_eq!(summary.releases.len(), 1);
    assert_eq!(summary.records["release manifest"], 1);
    assert_eq!(summary.records["chunk index"], 1);
    assert_eq!(
        summary.records["chunk"],
        summary.releases[0].chunks_total as u64
    );
    assert_eq!(summary.file_bytes, std::fs::metadata(&out).unwrap().len());
    assert!(!summary.encrypted);
}

#[test]
fn truncated_bundle_is_rejected_at_every_cut_and_nothing_is_kept() {
    let s = setup();
    let out = s.tmp.path().join("b");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &out);
    let full = std::fs::read(&out).unwrap();
    // Cut inside the header, inside records, at the start of the end
    // record, and one byte short of the end.
    let end_record = 37 + 8;
    for cut in [
        5,
        11,
        500,
        full.len() / 2,
        full.len() - end_record,
        full.len() - 1,
    ] {
        let short = s.tmp.path().join(format!("cut-{cut}"));
        std::fs::write(&short, &full[..cut]).unwrap();
        let node = Node::new();
        let err = node.import(&s.w, &short, None).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. } | Error::NotABundle { .. }),
            "cut at {cut}: {err}"
        );
        node.assert_untouched();
    }
}

#[test]
fn corrupted_bundle_is_rejected_naming_the_record_and_nothing_is_kept() {
    let s = setup();
    let out = s.tmp.path().join("b");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &out);
    let mut bytes = std::fs::read(&out).unwrap();
    // A byte in the middle of the chunk records.
    let at = bytes.len() * 3 / 4;
    bytes[at] ^= 0x40;
    std::fs::write(&out, &bytes).unwrap();
    let node = Node::new();
    let err = node.import(&s.w, &out, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corrupt { .. } | Error::Malformed { .. } | Error::CorruptStream(_)
        ),
        "{err}"
    );
    node.assert_untouched();
}

#[test]
fn a_bundle_with_a_record_cut_out_is_rejected_by_its_end_record() {
    // Every remaining record is intact and referenced; only the end
    // record's count and digest show that one is missing.
    let s = setup();
    let out = s.tmp.path().join("b");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &out);
    let bytes = std::fs::read(&out).unwrap();
    // Walk the plain records: kind, u32 length, 32-byte id, payload.
    let mut at = 12;
    let mut records = Vec::new();
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        records.push((bytes[at], at, 37 + len));
        at += 37 + len;
    }
    let &(_, cut_at, cut_len) = records.iter().filter(|r| r.0 == 4).nth(2).unwrap();
    let mut spliced = bytes[..cut_at].to_vec();
    spliced.extend_from_slice(&bytes[cut_at + cut_len..]);
    std::fs::write(&out, &spliced).unwrap();
    let node = Node::new();
    let err = node.import(&s.w, &out, None).unwrap_err();
    assert!(matches!(err, Error::CorruptStream(_)), "{err}");
    assert!(err.to_string().contains("counts"), "{err}");
    node.assert_untouched();
}

#[test]
fn replayed_bundle_older_than_the_installed_release_is_rejected() {
    let s = setup();
    let out = s.tmp.path().join("old");
    export_plain(&s.origin, &s.w, vec![s.v1.clone()], &out);
    let node = Node::new();
    // The node runs security version 2; the bundle offers version 1.
    let err = node.import(&s.w, &out, Some(2)).unwrap_err();
    match &err {
        Error::Replayed {
            version,
            offered,
            installed,
            ..
        } => {
            assert_eq!((version.as_str(), *offered, *installed), ("1.0.0", 1, 2));
        }
        other => panic!("{other}"),
    }
    node.assert_untouched();
    // The same bundle is fine for a node still on 1 (no replay).
    node.import(&s.w, &out, Some(1)).unwrap();
}

#[test]
fn bundle_signed_under_a_foreign_trust_root_is_rejected() {
    let s = setup();
    let foreign = world(9);
    let other_store = MemStore::new();
    let manifest = release(&foreign, &other_store, &image(5, 100_000), "2.0.0", 2);
    let out = s.tmp.path().join("foreign");
    export_plain(&other_store, &foreign, vec![manifest.clone()], &out);
    let node = Node::new();
    let err = node.import(&s.w, &out, None).unwrap_err();
    assert!(matches!(err, Error::ForeignTrust { .. }), "{err}");
    node.assert_untouched();

    // Without the foreign trust root record, the manifest itself fails.
    let out2 = s.tmp.path().join("foreign-no-root");
    let spec = ExportSpec {
        manifests: vec![manifest],
        ..ExportSpec::default()
    };
    export(&other_store, &spec, &out2, &mut |_| {}).unwrap();
    let err = node.import(&s.w, &out2, None).unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err}");
    assert!(err.to_string().contains("rejected"), "{err}");
    node.assert_untouched();
}

#[test]
fn bundle_over_the_size_limit_is_rejected_before_it_is_read() {
    let s = setup();
    let out = s.tmp.path().join("big");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &out);
    let size = std::fs::metadata(&out).unwrap().len();
    let node = Node::new();
    let err = node
        .import_with(
            &s.w,
            &out,
            None,
            None,
            Limits {
                max_bytes: size - 1,
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { size: got, max } if got == size && max == size - 1),
        "{err}"
    );
    node.assert_untouched();
    node.import_with(&s.w, &out, None, None, Limits { max_bytes: size })
        .unwrap();
}

#[test]
fn encrypted_bundle_opens_only_for_its_recipients_and_hides_its_content() {
    let s = setup();
    let device = DecryptionKey::from_seed(&[3u8; 64]);
    let gateway = DecryptionKey::from_seed(&[4u8; 64]);
    let stranger = DecryptionKey::from_seed(&[5u8; 64]);
    let out = s.tmp.path().join("sealed");
    let spec = ExportSpec {
        trust_root: Some(&s.w.trust_bytes),
        manifests: vec![s.v2.clone()],
        recipients: vec![device.recipient().unwrap(), gateway.recipient().unwrap()],
        ..ExportSpec::default()
    };
    let report = export(&s.origin, &spec, &out, &mut |_| {}).unwrap();
    assert!(report.encrypted);

    // Neither the manifest nor its version string appear in the file.
    let bytes = std::fs::read(&out).unwrap();
    assert!(!bytes.windows(5).any(|w| w == b"2.0.0"));
    assert!(!bytes.windows(64).any(|w| w == &s.v2[100..164]));

    let node = Node::new();
    assert!(matches!(
        node.import(&s.w, &out, None).unwrap_err(),
        Error::NeedKey { recipients: 2 }
    ));
    let err = node
        .import_with(&s.w, &out, None, Some(&stranger), Limits::default())
        .unwrap_err();
    assert!(matches!(err, Error::NotARecipient { .. }), "{err}");
    node.assert_untouched();
    let imported = node
        .import_with(&s.w, &out, None, Some(&gateway), Limits::default())
        .unwrap();
    assert_eq!(imported.releases.len(), 1);
    assert!(imported.summary.encrypted);

    // A flipped byte in an encrypted record fails authentication.
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    let path = s.tmp.path().join("sealed-bad");
    std::fs::write(&path, &bad).unwrap();
    let other = Node::new();
    let err = other
        .import_with(&s.w, &path, None, Some(&device), Limits::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::Decrypt(_) | Error::Malformed { .. }),
        "{err}"
    );
    other.assert_untouched();
}

#[test]
fn want_list_makes_the_next_bundle_carry_only_what_the_field_lacks() {
    let s = setup();
    // The field holds v1 completely.
    let v1 = SignedDocument::<ReleaseManifest>::decode(&s.v1).unwrap();
    let c = &v1.unverified_body().components[0];
    let index = s.origin.get_index(&c.chunk_index).unwrap();
    let mut held = WantRelease::new(v1.id(), c.chunk_index, index.chunks().len() as u32);
    for i in 0..index.chunks().len() {
        held.set(i);
    }
    let want = WantList {
        node: "field-1".into(),
        hardware: HW.into(),
        channel: CHANNEL.into(),
        created: UnixTime(1),
        trust_version: 1,
        installed_release: Some(v1.id()),
        installed_image: Some(c.image_hash),
        installed_index: None,
        security_version: 1,
        releases: vec![held],
        reports: vec![],
    };
    let want = WantList::decode(&want.encode().unwrap()).unwrap();

    let full = s.tmp.path().join("full");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &full);
    let lean = s.tmp.path().join("lean");
    let spec = ExportSpec {
        trust_root: Some(&s.w.trust_bytes),
        manifests: vec![s.v2.clone()],
        want: Some(&want),
        ..ExportSpec::default()
    };
    let report = export(&s.origin, &spec, &lean, &mut |_| {}).unwrap();
    assert!(report.chunks_skipped > 0);

    // The lean bundle carries exactly v2's chunks that v1 lacks.
    let v2 = SignedDocument::<ReleaseManifest>::decode(&s.v2).unwrap();
    let v2_index = s
        .origin
        .get_index(&v2.unverified_body().components[0].chunk_index)
        .unwrap();
    let v1_chunks: std::collections::HashSet<Hash> =
        index.chunks().iter().map(|c| c.hash).collect();
    let new: std::collections::HashSet<Hash> = v2_index
        .chunks()
        .iter()
        .map(|c| c.hash)
        .filter(|h| !v1_chunks.contains(h))
        .collect();
    assert!(!new.is_empty());
    assert_eq!(report.chunks as usize, new.len());
    let lean_size = std::fs::metadata(&lean).unwrap().len();
    let full_size = std::fs::metadata(&full).unwrap().len();
    assert!(
        lean_size * 4 < full_size,
        "lean {lean_size} vs full {full_size}"
    );

    // A field node holding v1 completes v2 from the lean bundle.
    let node = Node::new();
    node.import(&s.w, &full_v1(&s), None).unwrap();
    let imported = node.import(&s.w, &lean, Some(1)).unwrap();
    assert_eq!(imported.new_chunks as usize, new.len());
    assert!(node.store.missing(&v2_index).unwrap().is_empty());
}

fn full_v1(s: &Setup) -> PathBuf {
    let p = s.tmp.path().join("v1-full");
    export_plain(&s.origin, &s.w, vec![s.v1.clone()], &p);
    p
}

#[test]
fn merged_bundles_hold_each_record_once_and_import_whole() {
    let s = setup();
    let a = full_v1(&s);
    let b = s.tmp.path().join("v2");
    export_plain(&s.origin, &s.w, vec![s.v2.clone()], &b);
    let both = s.tmp.path().join("both");
    merge(&[&a, &b, &a], None, &[], &both).unwrap();
    let summary = verify_file(
        &both,
        None,
        policy(&s.w, None),
        Limits::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(
        summary.trust_roots,
        vec![1],
        "one trust root record, not three"
    );
    assert_eq!(summary.releases.len(), 2);
    assert_eq!(
        summary.records["chunk"] as usize,
        s.origin.list().unwrap().len()
    );
    let node = Node::new();
    node.import(&s.w, &both, None).unwrap();
    assert_eq!(node.store.list().unwrap(), s.origin.list().unwrap());
}

#[test]
fn export_that_fails_midway_leaves_no_file() {
    let s = setup();
    let half = MemStore::new();
    // A store that has the index but not the chunks.
    let v2 = SignedDocument::<ReleaseManifest>::decode(&s.v2).unwrap();
    let ix = s
        .origin
        .get_index(&v2.unverified_body().components[0].chunk_index)
        .unwrap();
    half.put_index(&ix).unwrap();
    let out = s.tmp.path().join("partial");
    let spec = ExportSpec {
        manifests: vec![s.v2.clone()],
        ..ExportSpec::default()
    };
    let err = export(&half, &spec, &out, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Export { what: "chunk", .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(s.tmp.path()).unwrap().count(),
        0,
        "a partial file was left"
    );
}

#[test]
fn a_chunk_no_release_references_is_refused() {
    let s = setup();
    // Merge a bundle of v2 with a bundle holding only v1's chunks under
    // no manifest: the merged file carries chunks nothing names.
    let orphan_store = MemStore::new();
    ingest(
        &orphan_store,
        &image(77, 50_000)[..],
        &DEFAULT_PARAMS,
        &mut |_| {},
    )
    .unwrap();
    let mut w =
        meshota_sneakernet::BundleWriter::create(&s.tmp.path().join("orphans"), &[]).unwrap();
    for (h, _) in orphan_store.list().unwrap() {
        w.chunk(&orphan_store.get_sent(&h).unwrap()).unwrap();
    }
    w.finish().unwrap();
    let node = Node::new();
    let err = node
        .import(&s.w, &s.tmp.path().join("orphans"), None)
        .unwrap_err();
    assert!(matches!(err, Error::Unreferenced { .. }), "{err}");
    node.assert_untouched();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
    #[test]
    fn mutated_bundles_never_panic_and_never_import(flips in proptest::collection::vec((0usize..100_000, 1u8..=255), 1..4), cut in 0usize..100_000) {
        static BUNDLE: std::sync::OnceLock<(Vec<u8>, World)> = std::sync::OnceLock::new();
        let (bytes, w) = BUNDLE.get_or_init(|| {
            let s = setup();
            let out = s.tmp.path().join("b");
            let small = MemStore::new();
            let m = release(&s.w, &small, &image(3, 40_000), "3.0.0", 3);
            export_plain(&small, &s.w, vec![m], &out);
            (std::fs::read(&out).unwrap(), s.w)
        });
        let mut b = bytes.clone();
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x;
        }
        b.truncate(cut.max(1) % (b.len() + 1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, &b).unwrap();
        let node = Node::new();
        proptest::prop_assert!(node.import(w, &path, None).is_err());
        node.assert_untouched();
    }
}
