#!/usr/bin/env python3
"""Independent check of meshota's provisioning PKI with Python `cryptography`.

Verifies root -> intermediate -> device with cryptography's standard path
validation (`cryptography.x509.verification`, client verifier), parses
every extension of every certificate and checks it against meshota's
profile (ARCHITECTURE.md, "Provisioning"), and optionally checks a CRL, a
CSR and an ML-KEM-768 key pair written by meshota.

Exit 0: everything checked passed. Exit 1: something failed (printed).

Usage:
  verify_provision.py --root ROOT.crt --device DEVICE.crt
                      [--intermediate INTER.crt] [--at 2026-11-23T00:00:00Z]
                      [--crl CRL.pem] [--expect-revoked]
                      [--csr DEVICE.csr] [--kem-key kem.key --kem-pub kem.pub]
"""

import argparse
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from cryptography.x509.oid import ExtensionOID, NameOID
from cryptography.x509 import verification

ML_DSA_65 = "2.16.840.1.101.3.4.3.18"
URI_PREFIX = "urn:meshota:device:"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def load_certs(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


def ext(cert, oid):
    return cert.extensions.get_extension_for_oid(oid)


def check_common(cert, name):
    check(cert.version == x509.Version.v3, f"{name}: not X.509 v3")
    check(
        cert.signature_algorithm_oid.dotted_string == ML_DSA_65,
        f"{name}: signature algorithm {cert.signature_algorithm_oid.dotted_string}, want ML-DSA-65",
    )
    check(
        isinstance(cert.public_key(), mldsa.MLDSA65PublicKey),
        f"{name}: public key is not ML-DSA-65",
    )
    check(cert.serial_number > 0, f"{name}: serial number not positive")
    # Parse every extension; cryptography raises on a malformed one.
    parsed = {e.oid.dotted_string: e for e in cert.extensions}
    for e in cert.extensions:
        check(
            not isinstance(e.value, x509.UnrecognizedExtension),
            f"{name}: extension {e.oid.dotted_string} not understood",
        )
    ski = ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    check(not ski.critical, f"{name}: SKI must not be critical")
    want = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    check(ski.value.digest == want.digest, f"{name}: SKI is not SHA-1 of the key")
    ku = ext(cert, ExtensionOID.KEY_USAGE)
    check(ku.critical, f"{name}: keyUsage must be critical")
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    check(bc.critical, f"{name}: basicConstraints must be critical")
    ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    return parsed


def check_ca(cert, issuer, name, path_len):
    parsed = check_common(cert, name)
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS).value
    check(bc.ca and bc.path_length == path_len, f"{name}: basicConstraints {bc}, want CA pathLen {path_len}")
    ku = ext(cert, ExtensionOID.KEY_USAGE).value
    check(ku.key_cert_sign and ku.crl_sign and not ku.digital_signature, f"{name}: keyUsage {ku}")
    aki = ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    issuer_ski = ext(issuer, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    check(aki.key_identifier == issuer_ski, f"{name}: AKI does not match the issuer's SKI")
    check(
        set(parsed) == {"2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35"},
        f"{name}: unexpected extensions {sorted(parsed)}",
    )
    check(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME), f"{name}: no CN")


def check_device(cert, issuer, device_id):
    parsed = check_common(cert, "device")
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS).value
    check(not bc.ca, "device: must not be a CA")
    ku = ext(cert, ExtensionOID.KEY_USAGE).value
    check(ku.digital_signature and not ku.key_cert_sign, f"device: keyUsage {ku}")
    aki = ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    issuer_ski = ext(issuer, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    check(aki.key_identifier == issuer_ski, "device: AKI does not match the issuer's SKI")
    san = ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    serial = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    check(len(cn) == 1 and len(serial) == 1 and len(ou) == 1, "device: subject needs one CN, serialNumber, OU")
    cn = cn[0].value
    check(uris == [URI_PREFIX + cn], f"device: subjectAltName {uris}, want {URI_PREFIX}{cn}")
    check(device_id is None or cn == device_id, f"device: CN {cn}, want {device_id}")
    sn = serial[0].value
    check(len(sn) == 10 and all(c in "0123456789abcdef" for c in sn), f"device: serialNumber {sn!r}")
    check(
        set(parsed) == {"2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35", "2.5.29.17"},
        f"device: unexpected extensions {sorted(parsed)}",
    )
    return cn, sn, ou[0].value


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--intermediate", action="append", default=[])
    p.add_argument("--at")
    p.add_argument("--device-id")
    p.add_argument("--crl")
    p.add_argument("--expect-revoked", action="store_true")
    p.add_argument("--csr")
    p.add_argument("--kem-key")
    p.add_argument("--kem-pub")
    a = p.parse_args()

    roots = load_certs(a.root)
    check(len(roots) == 1, "root file must hold one certificate")
    root = roots[0]
    chain = load_certs(a.device)
    leaf, inters = chain[0], chain[1:]
    for path in a.intermediate:
        inters += load_certs(path)
    check(len(inters) == 1, f"expected one intermediate, got {len(inters)}")
    inter = inters[0]
    at = (
        datetime.datetime.fromisoformat(a.at.replace("Z", "+00:00"))
        if a.at
        else datetime.datetime.now(datetime.timezone.utc)
    )

    check_ca(root, root, "root", 1)
    check(root.subject == root.issuer, "root: not self-issued")
    root.verify_directly_issued_by(root)
    check_ca(inter, root, "intermediate", 0)
    cn, sn, ou = check_device(leaf, inter, a.device_id)

    # Standard path validation (RFC 5280 + CA/B-style profile checks).
    store = verification.Store([root])
    verifier = verification.PolicyBuilder().store(store).time(at).build_client_verifier()
    verified = verifier.verify(leaf, inters)
    check(len(verified.chain) == 3, f"verified chain has {len(verified.chain)} certificates")
    uris = [n.value for n in verified.subjects if isinstance(n, x509.UniformResourceIdentifier)]
    check(uris == [URI_PREFIX + cn], f"verified subjects {verified.subjects}")
    print(f"OK chain: {cn} (serial {sn}, {ou}) <- {inter.subject.rfc4514_string()} <- {root.subject.rfc4514_string()}")

    if a.crl:
        with open(a.crl, "rb") as f:
            crl = x509.load_pem_x509_crl(f.read())
        check(crl.signature_algorithm_oid.dotted_string == ML_DSA_65, "CRL: not ML-DSA-65")
        check(crl.is_signature_valid(inter.public_key()), "CRL: signature does not verify with the intermediate's key")
        check(crl.issuer == inter.subject, "CRL: issuer is not the intermediate")
        for e in crl.extensions:
            check(not isinstance(e.value, x509.UnrecognizedExtension), f"CRL: extension {e.oid.dotted_string}")
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        check(
            aki.key_identifier == ext(inter, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest,
            "CRL: AKI does not match the intermediate",
        )
        check(crl.last_update_utc <= at <= crl.next_update_utc, "CRL: not current")
        entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
        check((entry is not None) == a.expect_revoked, f"CRL: device revoked = {entry is not None}, expected {a.expect_revoked}")
        print(f"OK crl: number {number}, {len(list(crl))} entries, device {'revoked' if entry else 'not revoked'}")

    if a.csr:
        with open(a.csr, "rb") as f:
            csr = x509.load_pem_x509_csr(f.read())
        check(csr.signature_algorithm_oid.dotted_string == ML_DSA_65, "CSR: not ML-DSA-65")
        check(csr.is_signature_valid, "CSR: signature does not verify with its own key")
        check(csr.subject == leaf.subject, "CSR: subject differs from the certificate's")
        check(csr.public_key() == leaf.public_key(), "CSR: key differs from the certificate's")
        print("OK csr: signature valid, subject and key match the certificate")

    if a.kem_key:
        with open(a.kem_key, "rb") as f:
            sk = serialization.load_pem_private_key(f.read(), password=None)
        check(isinstance(sk, mlkem.MLKEM768PrivateKey), "kem.key: not ML-KEM-768")
        with open(a.kem_pub, "rb") as f:
            pk = serialization.load_pem_public_key(f.read())
        check(isinstance(pk, mlkem.MLKEM768PublicKey), "kem.pub: not ML-KEM-768")
        check(sk.public_key() == pk, "kem.pub is not the public half of kem.key")
        secret, ct = pk.encapsulate()
        check(sk.decapsulate(ct) == secret, "ML-KEM round trip failed")
        print("OK kem: PKCS#8 seed key loads, public key matches, encapsulation round-trips")


if __name__ == "__main__":
    try:
        main()
    except (Fail, verification.VerificationError, ValueError, x509.ExtensionNotFound) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
