//! Decoders a stranger can feed (CSRs, certificates, CRLs, key files,
//! devices CSVs) return errors on any input, never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use meshota_provision::alg::{KemKeyPair, kem_public_key_from_pem};
use meshota_provision::batch::parse_devices_csv;
use meshota_provision::ca::parse_crl;
use meshota_provision::cert::{parse_pem, parse_pem_chain};
use meshota_provision::csr::verify_csr;
use proptest::prelude::*;

proptest! {
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
