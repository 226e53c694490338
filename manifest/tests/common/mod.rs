//! Fixtures shared by the manifest crate's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use meshota_manifest::{
    ChunkingAlgorithm, ChunkingParams, Component, Expiration, Hash, InstallPolicy, ReleaseKey,
    ReleaseManifest, RolloutPolicy, RootKey, Scope, SecretKey, SignedDocument, TrustRoot, UnixTime,
    Verified,
};

/// A deterministic key named `name`, derived from `n`.
pub fn key(n: u8, name: &str) -> SecretKey {
    SecretKey::from_seed([n; 32], name).unwrap()
}

pub const NOW: UnixTime = UnixTime(1_790_000_000);

pub fn enforce() -> Expiration {
    Expiration::Enforce { now: NOW }
}

/// A trust root world: root keys 1..=3 (threshold 2), release keys 10 and
/// 11 (threshold 1, unrestricted) and 12 (scoped to hardware `rpi4`,
/// channel `beta`).
pub struct World {
    pub roots: Vec<SecretKey>,
    pub releases: Vec<SecretKey>,
    pub trust_doc: SignedDocument<TrustRoot>,
    pub trust: Verified<TrustRoot>,
}

pub fn root_body(roots: &[SecretKey], threshold: u32, releases: Vec<ReleaseKey>) -> TrustRoot {
    TrustRoot {
        version: 1,
        expires: None,
        root_keys: roots
            .iter()
            .map(|k| RootKey {
                name: k.name().into(),
                key: k.public().clone(),
            })
            .collect(),
        root_threshold: threshold,
        release_keys: releases,
        release_threshold: 1,
        revoked: vec![],
        provisioning_keys: vec![],
    }
}

pub fn release_key(k: &SecretKey, scope: Scope) -> ReleaseKey {
    ReleaseKey {
        name: k.name().into(),
        key: k.public().clone(),
        scope,
        expires: None,
    }
}

impl World {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(edit: impl FnOnce(&mut TrustRoot)) -> Self {
        let roots = vec![key(1, "root-1"), key(2, "root-2"), key(3, "root-3")];
        let releases = vec![key(10, "rel-10"), key(11, "rel-11"), key(12, "rel-12")];
        let mut body = root_body(
            &roots,
            2,
            vec![
                release_key(&releases[0], Scope::default()),
                release_key(&releases[1], Scope::default()),
                release_key(
                    &releases[2],
                    Scope {
                        hardware: vec!["rpi4".into()],
                        channels: vec!["beta".into()],
                    },
                ),
            ],
        );
        edit(&mut body);
        let trust_doc = SignedDocument::sign(body, &[&roots[0], &roots[1]]).unwrap();
        let trust = TrustRoot::verify_initial(&trust_doc, enforce()).unwrap();
        Self {
            roots,
            releases,
            trust_doc,
            trust,
        }
    }
}

pub fn manifest_body(hardware: &str, channel: &str, security_version: u64) -> ReleaseManifest {
    ReleaseManifest {
        product: "border-sensor".into(),
        hardware: hardware.into(),
        channel: channel.into(),
        version: "1.2.3".into(),
        security_version,
        created: UnixTime(1_789_000_000),
        components: vec![Component {
            name: "rootfs".into(),
            slot: "rootfs".into(),
            size: 4096,
            image_hash: Hash::of(b"image"),
            chunk_index: Hash::of(b"index"),
            chunking: ChunkingParams {
                algorithm: ChunkingAlgorithm::FastCdc2020,
                min_size: 16 * 1024,
                avg_size: 64 * 1024,
                max_size: 256 * 1024,
            },
        }],
        patches: vec![],
        rollout: RolloutPolicy::default(),
    }
}

pub fn sign_manifest(
    body: ReleaseManifest,
    keys: &[&SecretKey],
) -> SignedDocument<ReleaseManifest> {
    SignedDocument::sign(body, keys).unwrap()
}

pub fn policy(hardware: &str, installed: Option<u64>) -> InstallPolicy<'_> {
    InstallPolicy {
        hardware: Some(hardware),
        installed_security_version: installed,
        expiration: enforce(),
    }
}
