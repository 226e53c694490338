//! Criterion benchmarks of the manifest hot paths: sign, verify, encode,
//! decode. Figures are recorded in BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use meshota_manifest::{
    ChunkingAlgorithm, ChunkingParams, Component, Expiration, Hash, InstallPolicy, ReleaseKey,
    ReleaseManifest, RolloutPolicy, RootKey, Scope, SecretKey, SignedDocument, TrustRoot, UnixTime,
};

fn manifest() -> ReleaseManifest {
    ReleaseManifest {
        product: "border-sensor".into(),
        hardware: "rpi4".into(),
        channel: "stable".into(),
        version: "1.2.3".into(),
        security_version: 5,
        created: UnixTime(1_789_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: 64 << 20,
            image_hash: Hash::of(b"image"),
            chunk_index: Hash::of(b"index"),
            chunking: ChunkingParams {
                algorithm: ChunkingAlgorithm::FastCdc2020,
                min_size: 16 << 10,
                avg_size: 64 << 10,
                max_size: 256 << 10,
            },
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    }
}

fn bench(c: &mut Criterion) {
    let root = SecretKey::from_seed([1; 32], "root").unwrap();
    let rel = SecretKey::from_seed([2; 32], "release").unwrap();
    let trust_body = TrustRoot::with_one_key_each(
        RootKey {
            name: "root".into(),
            key: root.public().clone(),
        },
        ReleaseKey {
            name: "release".into(),
            key: rel.public().clone(),
            scope: Scope::default(),
            expires: None,
        },
    );
    let trust_doc = SignedDocument::sign(trust_body, &[&root]).unwrap();
    let trust = TrustRoot::verify_initial(&trust_doc, Expiration::dangerous_ignore()).unwrap();
    let doc = SignedDocument::sign(manifest(), &[&rel]).unwrap();
    let bytes = doc.encode().unwrap();
    let policy = InstallPolicy {
        hardware: Some("rpi4"),
        installed_security_version: Some(4),
        expiration: Expiration::Enforce {
            now: UnixTime(1_790_000_000),
        },
    };

    let mut g = c.benchmark_group("manifest");
    g.bench_function("sign", |b| {
        b.iter(|| SignedDocument::sign(black_box(manifest()), &[&rel]).unwrap())
    });
    g.bench_function("encode", |b| b.iter(|| black_box(&doc).encode().unwrap()));
    g.bench_function("decode", |b| {
        b.iter(|| SignedDocument::<ReleaseManifest>::decode(black_box(&bytes)).unwrap())
    });
    // Baseline: one bare ML-DSA-65 verification of the same signed bytes
    // (key decode included), so the figures below read as ratios to it.
    let ctx = meshota_manifest::signed::context(meshota_manifest::Kind::ReleaseManifest);
    let sig = doc.signatures()[0].signature.clone();
    g.bench_function("baseline_ml_dsa_verify", |b| {
        b.iter(|| {
            assert!(
                rel.public()
                    .verify(black_box(doc.body_bytes()), ctx.as_bytes(), &sig)
            )
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| trust.verify_manifest(black_box(&doc), &policy).unwrap())
    });
    g.bench_function("decode_and_verify", |b| {
        b.iter(|| {
            let d = SignedDocument::<ReleaseManifest>::decode(black_box(&bytes)).unwrap();
            trust.verify_manifest(&d, &policy).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
