//! Mesh admission for provisioned fleets: a peer is admitted when the
//! certificate chain its hello carries chains to the fleet's root, is
//! valid now, is not on the revocation list, and is for the key the peer
//! proved by channel binding. The rules are `meshota_provision::verify`;
//! this module adapts them to the QUIC driver's [`PeerCheck`]. The
//! revocation list is re-read when its file changes.

use meshota_manifest::fs::read_limited;
use meshota_manifest::{PublicKey, UnixTime};
use meshota_mesh::quic::PeerCheck;
use meshota_mesh::quic::hello::MAX_CREDENTIAL_BYTES;
use meshota_provision::ca::{parse_crl, read_cert};
use meshota_provision::cert::parse_pem_chain;
use meshota_provision::verify::verify_device;
use meshota_provision::x509_cert::Certificate;
use meshota_provision::x509_cert::crl::CertificateList;

use crate::config::CertAdmissionConfig;
use crate::failure::{AtPath, CmdResult, Failure};
use crate::timefmt::now;

/// Checks `credentials` (PEM: device certificate, then intermediates)
/// for the peer that proved `key`, at `at`.
///
/// # Errors
/// The reason the peer is refused.
pub(crate) fn check_peer(
    root: &Certificate,
    crl: Option<&CertificateList>,
    key: &PublicKey,
    credentials: &[u8],
    at: UnixTime,
) -> Result<(), String> {
    if credentials.is_empty() {
        return Err("it presented no device certificate".into());
    }
    let mut chain = parse_pem_chain(credentials).map_err(|e| e.to_string())?;
    let device = chain.remove(0);
    let v = verify_device(root, &chain, &device, at, crl).map_err(|e| e.to_string())?;
    if v.public_key != *key {
        return Err(format!(
            "the certificate of device {} is for another key than the one it proved",
            v.subject.device_id
        ));
    }
    Ok(())
}

/// The admission check and this node's own credentials, from the
/// `[mesh.certificate]` table. The node's own chain must pass the same
/// check for its own key, so a misconfigured node fails at start.
pub(crate) fn certified(
    cfg: &CertAdmissionConfig,
    own_key: &PublicKey,
) -> CmdResult<(PeerCheck, Vec<u8>)> {
    let root = read_cert(&cfg.root).at(&cfg.root)?;
    let crl = RevocationList::open(cfg.crl.clone())?;
    let own = read_limited(&cfg.chain, MAX_CREDENTIAL_BYTES)?;
    check_peer(&root, crl.current()?.as_ref(), own_key, &own, now())
        .map_err(|e| Failure::file(&cfg.chain, format!("this node's own certificate: {e}")))?;
    let check = PeerCheck::new(move |key, creds| {
        let list = crl.current().map_err(|f| f.message)?;
        check_peer(&root, list.as_ref(), key, creds, now())
    });
    Ok((check, own))
}

/// The configured revocation list, re-read whenever its file's
/// modification time changes, so a list copied in after a `provision
/// revoke` takes effect on the next connection without a restart. A list
/// that cannot be read or parsed refuses every peer (fail closed).
struct RevocationList {
    path: Option<std::path::PathBuf>,
    cached: std::sync::Mutex<(Option<std::time::SystemTime>, Option<CertificateList>)>,
}

impl RevocationList {
    fn open(path: Option<std::path::PathBuf>) -> CmdResult<Self> {
        let list = Self {
            path,
            cached: std::sync::Mutex::new((None, None)),
        };
        list.current()?;
        Ok(list)
    }

    fn current(&self) -> CmdResult<Option<CertificateList>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .at(path)?;
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.0 != Some(modified) || cached.1.is_none() {
            let list = parse_crl(&read_limited(path, 64 << 20)?).at(path)?;
            *cached = (Some(modified), Some(list));
        }
        Ok(cached.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use meshota_manifest::{Protection, SecretKey};
    use meshota_provision::ca::{Ca, NewKey};
    use meshota_provision::cert::{self, DeviceSubject, to_pem};
    use meshota_provision::serial::HardwareId;

    const NOW: UnixTime = UnixTime(1_795_392_000);

    fn cas(dir: &Path, seed: u8) -> (Ca, Ca) {
        let rk = SecretKey::from_seed([seed; 32], "ca").unwrap();
        let rfile = rk.secret_key_file(Protection::None).unwrap();
        let root = Ca::create_root(
            &dir.join(format!("root{seed}")),
            &format!("Root {seed}"),
            &NewKey {
                key: &rk,
                file: &rfile,
            },
            cert::ROOT_VALIDITY_DAYS,
            1,
            NOW,
            "tester",
        )
        .unwrap();
        let ik = SecretKey::from_seed([seed + 1; 32], "ca").unwrap();
        let ifile = ik.secret_key_file(Protection::None).unwrap();
        let inter = root
            .create_intermediate(
                &dir.join(format!("inter{seed}")),
                &format!("Factory {seed}"),
                &NewKey {
                    key: &ik,
                    file: &ifile,
                },
                cert::INTERMEDIATE_VALIDITY_DAYS,
                0,
                NOW,
            )
            .unwrap();
        (root, inter)
    }

    fn chain(inter: &Ca, id: &str, key: &SecretKey) -> (Vec<u8>, Certificate) {
        let subject = DeviceSubject {
            device_id: id.into(),
            serial: HardwareId::normalise(&format!("hw-{id}")).unwrap().serial(),
            hardware: "rpi4".into(),
        };
        let c = inter
            .issue_device(&subject, key.public(), cert::DEVICE_VALIDITY_DAYS, NOW)
            .unwrap();
        let pem = format!(
            "{}{}",
            to_pem(&c).unwrap(),
            to_pem(inter.certificate()).unwrap()
        );
        (pem.into_bytes(), c)
    }

    #[test]
    fn a_peer_with_a_fleet_certificate_for_its_proven_key_is_admitted() {
        let d = tempfile::tempdir().unwrap();
        let (root, inter) = cas(d.path(), 10);
        let k = SecretKey::from_seed([50; 32], "n1").unwrap();
        let (creds, _) = chain(&inter, "n1", &k);
        check_peer(root.certificate(), None, k.public(), &creds, NOW).unwrap();
    }

    #[test]
    fn another_fleets_certificate_another_keys_certificate_and_none_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (root, inter) = cas(d.path(), 10);
        let (_, other_inter) = cas(d.path(), 20);
        let k = SecretKey::from_seed([50; 32], "n1").unwrap();
        let (foreign, _) = chain(&other_inter, "n1", &k);
        let e = check_peer(root.certificate(), None, k.public(), &foreign, NOW).unwrap_err();
        assert!(e.contains("does not chain"), "{e}");
        let thief = SecretKey::from_seed([51; 32], "n2").unwrap();
        let (stolen, _) = chain(&inter, "n1", &k);
        let e = check_peer(root.certificate(), None, thief.public(), &stolen, NOW).unwrap_err();
        assert!(e.contains("another key"), "{e}");
        let e = check_peer(root.certificate(), None, k.public(), b"", NOW).unwrap_err();
        assert!(e.contains("no device certificate"), "{e}");
    }

    #[test]
    fn a_revocation_list_replaced_on_disk_takes_effect_without_a_restart() {
        use meshota_provision::ca::crl_to_pem;
        let d = tempfile::tempdir().unwrap();
        let (root, inter) = cas(d.path(), 11);
        let k = SecretKey::from_seed([51; 32], "n1").unwrap();
        let (creds, c) = chain(&inter, "n1", &k);
        let path = d.path().join("crl.pem");
        let write = |crl: &CertificateList, secs: u64| {
            std::fs::write(&path, crl_to_pem(crl).unwrap()).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        write(&inter.issue_crl(&[], 1, NOW, 30).unwrap(), 1_000);
        let list = RevocationList::open(Some(path.clone())).unwrap();
        let at = |l: &RevocationList| {
            check_peer(
                root.certificate(),
                l.current().unwrap().as_ref(),
                k.public(),
                &creds,
                NOW,
            )
        };
        at(&list).unwrap();
        let serial = c.tbs_certificate().serial_number().as_bytes().to_vec();
        write(
            &inter.issue_crl(&[(serial, NOW)], 2, NOW, 30).unwrap(),
            2_000,
        );
        let e = at(&list).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        // An unreadable list refuses (fail closed), it does not admit.
        std::fs::write(&path, b"not a crl").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(3_000))
            .unwrap();
        assert!(list.current().is_err());
    }

    #[test]
    fn a_revoked_or_expired_peer_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (root, inter) = cas(d.path(), 10);
        let k = SecretKey::from_seed([50; 32], "n1").unwrap();
        let (creds, c) = chain(&inter, "n1", &k);
        let serial = c.tbs_certificate().serial_number().as_bytes().to_vec();
        let crl = inter.issue_crl(&[(serial, NOW)], 1, NOW, 30).unwrap();
        let e = check_peer(root.certificate(), Some(&crl), k.public(), &creds, NOW).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        let later = UnixTime(NOW.0 + 800 * 86_400);
        let e = check_peer(root.certificate(), None, k.public(), &creds, later).unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }
}
