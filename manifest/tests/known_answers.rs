//! NIST ACVP known-answer tests for ML-DSA-65 signature verification
//! (FIPS 204, external interface, pure, with context), checked through the
//! project's own verify API. Vectors: `tests/data/acvp/ml-dsa-65-sigver.json`,
//! whose `source` field names where they come from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshota_manifest::PublicKey;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = include_str!("data/acvp/ml-dsa-65-sigver.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    assert_eq!(doc["parameterSet"], "ML-DSA-65");
    doc["tests"].as_array().unwrap().clone()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn acvp_ml_dsa_65_sigver_vectors_give_the_expected_verdicts() {
    let tests = vectors();
    assert!(tests.iter().filter(|t| t["testPassed"] == true).count() >= 2);
    assert!(tests.iter().filter(|t| t["testPassed"] == false).count() >= 2);
    for t in &tests {
        assert_eq!(t["signatureInterface"], "external");
        assert_eq!(t["preHash"], "pure");
        let pk = PublicKey::from_bytes(&bytes(&t["pk"])).unwrap();
        let verdict = pk.verify(
            &bytes(&t["message"]),
            &bytes(&t["context"]),
            &bytes(&t["signature"]),
        );
        assert_eq!(
            verdict,
            t["testPassed"].as_bool().unwrap(),
            "tgId {} tcId {} ({})",
            t["tgId"],
            t["tcId"],
            t["reason"]
        );
    }
}

#[test]
fn acvp_valid_vector_fails_under_another_context() {
    let t = vectors()
        .into_iter()
        .find(|t| t["testPassed"] == true)
        .unwrap();
    let pk = PublicKey::from_bytes(&bytes(&t["pk"])).unwrap();
    let mut ctx = bytes(&t["context"]);
    ctx[0] ^= 1;
    assert!(!pk.verify(&bytes(&t["message"]), &ctx, &bytes(&t["signature"])));
}
