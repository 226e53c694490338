//! Decoders a stranger can feed (CSRs, certificates, CRLs, key files,
//! devices CSVs, signed image trailers, fetch headers) return errors on
//! any input, never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use meshota_provision::alg::{KemKeyPair, kem_public_key_from_pem};
use meshota_provision::batch::parse_devices_csv;
use meshota_provision::ca::parse_crl;
use meshota_provision::cert::{parse_pem, parse_pem_chain};
use meshota_provision::csr::verify_csr;
use meshota_provision::fetch_auth::FetchAuth;
use meshota_provision::image::signed::{TRAILER_MAGIC, split};
use proptest::prelude::*;

proptest! {
    #[test]
    fn random_image_trailers_are_rejected_without_panicking(
        junk in proptest::collection::vec(any::<u8>(), 0..4096),
        len in 0u32..5000,
    ) {
        prop_assert!(split(&junk).is_err());
        // With the magic and an in-range length, the trailer decoder runs.
        let mut framed = junk.clone();
        framed.extend_from_slice(&len.to_le_bytes());
        framed.extend_from_slice(&TRAILER_MAGIC);
        prop_assert!(split(&framed).is_err());
        let mut mota = b"MOTA\x01\x40".to_vec();
        mota.extend_from_slice(&junk);
        let n = u32::try_from(mota.len()).unwrap();
        mota.extend_from_slice(&n.to_le_bytes());
        mota.extend_from_slice(&TRAILER_MAGIC);
        prop_assert!(split(&mota).is_err());
    }

    #[test]
    fn random_fetch_headers_are_rejected_without_panicking(
        values in proptest::collection::vec(".{0,80}", 4),
    ) {
        let names = ["x-meshota-device", "x-meshota-time", "x-meshota-nonce", "x-meshota-signature"];
        let r = FetchAuth::from_headers(|n| {
            names.iter().position(|k| *k == n).map(|i| values[i].as_str())
        });
        prop_assert!(r.is_err());
    }

    #[test]
    fn random_bytes_are_rejected_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(verify_csr(&bytes).is_err());
        prop_assert!(parse_pem(&bytes).is_err());
        prop_assert!(parse_pem_chain(&bytes).is_err());
        prop_assert!(parse_crl(&bytes).is_err());
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(KemKeyPair::from_pkcs8_pem(&text).is_err());
        prop_assert!(kem_public_key_from_pem(&text).is_err());
        let _ = parse_devices_csv(&text, Path::new("."));
    }

    #[test]
    fn pem_wrapped_junk_is_rejected(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for label in ["CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL", "PRIVATE KEY", "PUBLIC KEY"] {
            let pem = der::pem::encode_string(label, der::pem::LineEnding::LF, &body).unwrap();
            prop_assert!(verify_csr(pem.as_bytes()).is_err());
            prop_assert!(parse_pem(pem.as_bytes()).is_err());
            prop_assert!(parse_crl(pem.as_bytes()).is_err());
            prop_assert!(KemKeyPair::from_pkcs8_pem(&pem).is_err());
            prop_assert!(kem_public_key_from_pem(&pem).is_err());
        }
    }
}

#[test]
fn a_devices_csv_needs_its_two_columns_and_consistent_rows() {
    let base = Path::new("/csv");
    let rows = parse_devices_csv(
        "# comment\nhardware_id,hardware_class,csr\n\nSN1,rpi4,\nSN2,rpi4,d/2.csr\n",
        base,
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 4);
    assert_eq!(rows[1].csr.as_deref(), Some(Path::new("/csv/d/2.csr")));
    for bad in [
        "",
        "hardware_id\nSN1\n",
        "hardware_id,hardware_class,color\n",
        "hardware_id,hardware_class\nSN1\n",
    ] {
        assert!(parse_devices_csv(bad, base).is_err(), "{bad:?}");
    }
}
