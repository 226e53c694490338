//! Rollout commands and node reports: the same envelope, their own rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use meshota_manifest::{
    Error, Expiration, Hash, InstallOutcome, NodeReport, Role, RolloutAction, RolloutCommand,
    SignedDocument, SlotState, UnixTime,
};

fn command(expires: Option<UnixTime>) -> RolloutCommand {
    RolloutCommand {
        hardware: "rpi4".into(),
        channel: "stable".into(),
        release: Hash::of(b"release"),
        action: RolloutAction::Halt,
        sequence: 7,
        issued: NOW,
        expires,
    }
}

#[test]
fn accepts_rollout_command_signed_by_release_key() {
    let w = World::new();
    let doc = SignedDocument::sign(command(None), &[&w.releases[0]]).unwrap();
    let bytes = doc.encode().unwrap();
    let back = SignedDocument::<RolloutCommand>::decode(&bytes).unwrap();
    let v = w.trust.verify_rollout_command(&back, enforce()).unwrap();
    assert_eq!(v.action, RolloutAction::Halt);
}

#[test]
fn rejects_expired_rollout_command() {
    let w = World::new();
    let doc = SignedDocument::sign(command(Some(NOW)), &[&w.releases[0]]).unwrap();
    assert!(matches!(
        w.trust.verify_rollout_command(&doc, enforce()),
        Err(Error::Expired { .. })
    ));
    assert!(
        w.trust
            .verify_rollout_command(&doc, Expiration::dangerous_ignore())
            .is_ok()
    );
}

#[test]
fn rejects_rollout_command_from_key_out_of_scope() {
    let w = World::new();
    let mut c = command(None);
    c.channel = "stable".into();
    let doc = SignedDocument::sign(c, &[&w.releases[2]]).unwrap(); // beta only
    assert!(matches!(
        w.trust.verify_rollout_command(&doc, enforce()),
        Err(Error::KeyOutOfScope { .. })
    ));
}

#[test]
fn manifest_signature_does_not_verify_a_rollout_command() {
    // Same signer, body bytes moved between kinds: the context differs.
    let w = World::new();
    let doc = SignedDocument::sign(command(None), &[&w.releases[0]]).unwrap();
    let mut bytes = doc.encode().unwrap();
    bytes[5] = meshota_manifest::Kind::ReleaseManifest as u8;
    assert!(SignedDocument::<meshota_manifest::ReleaseManifest>::decode(&bytes).is_err());
}

fn report(node: &meshota_manifest::SecretKey) -> NodeReport {
    NodeReport {
        node_id: node.id(),
        device_key: node.public().clone(),
        hardware: "rpi4".into(),
        installed_version: Some("1.2.3".into()),
        installed_release: Some(Hash::of(b"r")),
        security_version: 5,
        slot_state: SlotState::Trial {
            slot: "B".into(),
            tries_left: 2,
        },
        last_install: InstallOutcome::RolledBack {
            release: Hash::of(b"r2"),
            reason: "health check timed out".into(),
        },
        counter: 42,
        time: None,
    }
}

#[test]
fn node_report_verifies_against_its_device_key() {
    let dev = key(50, "device");
    let doc = SignedDocument::sign(report(&dev), &[&dev]).unwrap();
    let back = SignedDocument::<NodeReport>::decode(&doc.encode().unwrap()).unwrap();
    let v = NodeReport::verify(&back, dev.public()).unwrap();
    assert_eq!(v.counter, 42);
}

#[test]
fn rejects_node_report_claiming_another_node() {
    let dev = key(50, "device");
    let other = key(51, "other");
    let doc = SignedDocument::sign(report(&dev), &[&other]).unwrap();
    assert!(matches!(
        NodeReport::verify(&doc, other.public()),
        Err(Error::ReportNodeMismatch { .. })
    ));
    assert_eq!(
        NodeReport::verify(&doc, dev.public()).map(|_| ()),
        Err(Error::ThresholdNotMet {
            role: Role::Device,
            valid: 0,
            threshold: 1
        })
    );
}

#[test]
fn a_report_verifies_against_the_device_key_it_carries() {
    let dev = key(50, "device");
    let doc = SignedDocument::sign(report(&dev), &[&dev]).unwrap();
    let back = SignedDocument::<NodeReport>::decode(&doc.encode().unwrap()).unwrap();
    assert_eq!(NodeReport::verify_self(&back).unwrap().counter, 42);
}

#[test]
fn rejects_report_that_carries_a_victims_key_but_another_signature() {
    // The forger copies the victim's id and public key and signs with its
    // own key: the carried key did not sign.
    let victim = key(50, "device");
    let forger = key(51, "other");
    let doc = SignedDocument::sign(report(&victim), &[&forger]).unwrap();
    let back = SignedDocument::<NodeReport>::decode(&doc.encode().unwrap()).unwrap();
    assert!(matches!(
        NodeReport::verify_self(&back),
        Err(Error::ThresholdNotMet { .. })
    ));
}

#[test]
fn rejects_report_whose_node_id_is_not_its_keys() {
    let victim = key(50, "device");
    let forger = key(51, "other");
    let body = NodeReport {
        device_key: forger.public().clone(),
        ..report(&victim)
    };
    assert!(matches!(
        SignedDocument::sign(body, &[&forger]),
        Err(Error::ReportNodeMismatch { .. })
    ));
}
