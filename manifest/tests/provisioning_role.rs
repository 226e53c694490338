//! The trust root's provisioning role: which keys may sign provisioning
//! images, for which hardware, and that a key keeps one role.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::{NOW, World, enforce, key};
use meshota_manifest::{
    Error, Expiration, ProvisioningKey, Role, SecretKey, SignedDocument, TrustRoot, UnixTime,
};

fn prov(k: &SecretKey, hardware: &[&str], expires: Option<UnixTime>) -> ProvisioningKey {
    ProvisioningKey {
        name: k.name().into(),
        key: k.public().clone(),
        hardware: hardware.iter().map(|s| (*s).to_owned()).collect(),
        expires,
    }
}

#[test]
fn a_listed_provisioning_key_signs_only_for_hardware_in_its_scope() {
    let p = key(40, "prov");
    let w = World::with(|t| t.provisioning_keys = vec![prov(&p, &["rpi4"], None)]);
    assert_eq!(
        w.trust
            .provisioning_signer(&p.id(), "rpi4", enforce())
            .unwrap(),
        p.public()
    );
    assert!(matches!(
        w.trust.provisioning_signer(&p.id(), "x86", enforce()),
        Err(Error::ProvisioningOutOfScope { hardware, .. }) if hardware == "x86"
    ));
}

#[test]
fn release_keys_and_unknown_keys_may_not_sign_provisioning_images() {
    let p = key(40, "prov");
    let w = World::with(|t| t.provisioning_keys = vec![prov(&p, &[], None)]);
    for k in [&w.releases[0], &key(41, "stranger")] {
        assert!(matches!(
            w.trust.provisioning_signer(&k.id(), "rpi4", enforce()),
            Err(Error::UnknownKey {
                role: Role::Provisioning,
                ..
            })
        ));
    }
}

#[test]
fn an_expired_or_revoked_provisioning_key_signs_nothing() {
    let p = key(40, "prov");
    let w = World::with(|t| {
        t.provisioning_keys = vec![prov(&p, &[], Some(UnixTime(NOW.0 - 1)))];
    });
    assert!(matches!(
        w.trust.provisioning_signer(&p.id(), "rpi4", enforce()),
        Err(Error::KeyExpired { .. })
    ));
    // Without a clock, expiry is not enforced.
    assert!(
        w.trust
            .provisioning_signer(&p.id(), "rpi4", Expiration::dangerous_ignore())
            .is_ok()
    );
    let w = World::with(|t| t.revoked = vec![p.id()]);
    assert!(matches!(
        w.trust.provisioning_signer(&p.id(), "rpi4", enforce()),
        Err(Error::RevokedKey { .. })
    ));
}

#[test]
fn a_key_listed_as_both_release_and_provisioning_key_is_refused() {
    let w = World::new();
    let mut body = w.trust_doc.unverified_body().clone();
    body.provisioning_keys = vec![prov(&w.releases[0], &[], None)];
    let roots: Vec<&SecretKey> = w.roots.iter().collect();
    assert!(matches!(
        SignedDocument::<TrustRoot>::sign(body, &roots),
        Err(Error::InvalidField {
            field: "provisioning keys",
            ..
        })
    ));
}

#[test]
fn provisioning_keys_survive_the_encoding_round_trip() {
    let p = key(40, "prov");
    let w = World::with(|t| t.provisioning_keys = vec![prov(&p, &["rpi4", "cm4"], Some(NOW))]);
    let bytes = w.trust_doc.encode().unwrap();
    let back = SignedDocument::<TrustRoot>::decode(&bytes).unwrap();
    assert_eq!(
        back.unverified_body().provisioning_keys,
        w.trust_doc.unverified_body().provisioning_keys
    );
    TrustRoot::verify_initial(&back, enforce()).unwrap();
}
