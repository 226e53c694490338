//! Origin catalogs: the signed list of releases an HTTP origin offers.
//!
//! `meshota publish` writes one catalog per origin (`catalog.mota`, the
//! only file of the origin layout that changes); a gateway polls it, and
//! fetches the manifests it lists by id. The catalog carries a `sequence`
//! that increases with every publication, so a gateway that holds sequence
//! *n* refuses any catalog below *n* (a replayed or stale mirror cannot
//! hide newer releases from it) and any other catalog at *n*.
//!
//! The catalog is signed by release keys with the release threshold, each
//! signer's scope covering every entry's hardware class and channel (so a
//! key scoped to one hardware class cannot advertise releases for another).
//! An empty catalog needs keys with an unrestricted scope. Nothing in a
//! catalog is trusted beyond "which releases to look at": each manifest it
//! lists is verified on its own.

use alloc::{string::String, vec::Vec};

use serde::{Deserialize, Serialize};

use crate::frame::Kind;
use crate::limits::{MAX_CATALOG_BYTES, MAX_CATALOG_RELEASES, MAX_MANIFEST_BYTES};
use crate::release::check_release_signatures;
use crate::signed::{Document, SignedDocument, Verified};
use crate::trust::{TrustRoot, check_count, check_string};
use crate::{Error, Expiration, Hash, UnixTime};

/// The body of an origin catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Strictly increasing per origin: a gateway refuses a catalog below
    /// the one it holds.
    pub sequence: u64,
    /// When the catalog was written.
    pub issued: UnixTime,
    /// When it stops being accepted, if ever (protection against an origin
    /// frozen on an old catalog, for gateways with a clock).
    pub expires: Option<UnixTime>,
    /// The releases offered, oldest first.
    pub releases: Vec<CatalogEntry>,
}

/// One release an origin offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The release manifest's id (BLAKE3 of its signed body): the origin
    /// serves it at `manifests/<id>.mota`.
    pub release: Hash,
    /// Its hardware class.
    pub hardware: String,
    /// Its channel.
    pub channel: String,
    /// Its version (for display; the manifest is authoritative).
    pub version: String,
    /// Its security version (for display; the manifest is authoritative).
    pub security_version: u64,
    /// Size in bytes of the manifest file: a fetcher reads no more.
    pub manifest_size: u64,
}

impl Document for Catalog {
    const KIND: Kind = Kind::Catalog;
    const MAX_BYTES: usize = MAX_CATALOG_BYTES;

    fn check_structure(&self) -> Result<(), Error> {
        check_count(
            "catalog releases",
            self.releases.len(),
            MAX_CATALOG_RELEASES,
        )?;
        for (i, e) in self.releases.iter().enumerate() {
            check_string("hardware class", &e.hardware)?;
            check_string("channel", &e.channel)?;
            check_string("version", &e.version)?;
            if e.manifest_size == 0 || e.manifest_size > MAX_MANIFEST_BYTES as u64 {
                return Err(Error::InvalidField {
                    field: "catalog manifest size",
                    reason: alloc::format!(
                        "{} bytes for release {}: must be 1 to {MAX_MANIFEST_BYTES}",
                        e.manifest_size,
                        e.release
                    ),
                });
            }
            if self.releases[..i].iter().any(|o| o.release == e.release) {
                return Err(Error::InvalidField {
                    field: "catalog releases",
                    reason: alloc::format!("release {} is listed twice", e.release),
                });
            }
        }
        Ok(())
    }
}

impl Verified<TrustRoot> {
    /// Verifies an origin catalog. Steps, in order:
    /// 1. the trust root is not expired;
    /// 2. release-key signatures meet the release threshold, each counted
    ///    signer's scope covering every entry (an empty catalog: any
    ///    (hardware, channel), which only unrestricted keys cover);
    /// 3. the catalog is not expired;
    /// 4. against the catalog held (`held`: its sequence and id), the
    ///    sequence is not lower, and an equal sequence is the same catalog.
    ///
    /// # Errors
    /// As for manifests, plus [`Error::Expired`], [`Error::OlderCatalog`],
    /// [`Error::CatalogSequenceReused`].
    pub fn verify_catalog(
        &self,
        doc: &SignedDocument<Catalog>,
        held: Option<(u64, Hash)>,
        expiration: Expiration,
    ) -> Result<Verified<Catalog>, Error> {
        let trust = self.body();
        trust.check_not_expired(expiration)?;
        let c = doc.unverified_body();
        let mut pairs: Vec<(&str, &str)> = c
            .releases
            .iter()
            .map(|e| (e.hardware.as_str(), e.channel.as_str()))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        if pairs.is_empty() {
            pairs.push(("", ""));
        }
        for (hardware, channel) in pairs {
            check_release_signatures(trust, doc, hardware, channel, expiration)?;
        }
        if let (Some(now), Some(expires)) = (expiration.now(), c.expires) {
            if expires <= now {
                return Err(Error::Expired {
                    kind: Kind::Catalog,
                    expires,
                    now,
                });
            }
        }
        if let Some((held_seq, held_id)) = held {
            if c.sequence < held_seq {
                return Err(Error::OlderCatalog {
                    held: held_seq,
                    offered: c.sequence,
                });
            }
            if c.sequence == held_seq && doc.id() != held_id {
                return Err(Error::CatalogSequenceReused {
                    sequence: c.sequence,
                });
            }
        }
        Ok(doc.clone().into_verified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{ReleaseKey, RootKey, Scope};
    use crate::{SecretKey, TrustRoot};
    use alloc::string::ToString;
    use alloc::vec;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32], "k").unwrap()
    }

    fn trust(release: &SecretKey, scope: Scope) -> Verified<TrustRoot> {
        let root = key(1);
        let body = TrustRoot::with_one_key_each(
            RootKey {
                name: "root".into(),
                key: root.public().clone(),
            },
            ReleaseKey {
                name: "rel".into(),
                key: release.public().clone(),
                scope,
                expires: None,
            },
        );
        let doc = SignedDocument::sign(body, &[&root]).unwrap();
        TrustRoot::verify_initial(&doc, Expiration::dangerous_ignore()).unwrap()
    }

    fn entry(hardware: &str, n: u8) -> CatalogEntry {
        CatalogEntry {
            release: Hash::of(&[n]),
            hardware: hardware.to_string(),
            channel: "stable".to_string(),
            version: "1.0.0".to_string(),
            security_version: u64::from(n),
            manifest_size: 10_000,
        }
    }

    fn catalog(
        sequence: u64,
        releases: Vec<CatalogEntry>,
        k: &SecretKey,
    ) -> SignedDocument<Catalog> {
        let body = Catalog {
            sequence,
            issued: UnixTime(1_000),
            expires: None,
            releases,
        };
        SignedDocument::sign(body, &[k]).unwrap()
    }

    const ANY: Expiration = Expiration::Enforce {
        now: UnixTime(2_000),
    };

    #[test]
    fn a_catalog_signed_by_a_release_key_round_trips_and_verifies() {
        let rel = key(2);
        let t = trust(&rel, Scope::default());
        let doc = catalog(3, vec![entry("rpi4", 1)], &rel);
        let back = SignedDocument::<Catalog>::decode(&doc.encode().unwrap()).unwrap();
        assert_eq!(back.id(), doc.id());
        let v = t.verify_catalog(&back, None, ANY).unwrap();
        assert_eq!(v.body().sequence, 3);
    }

    #[test]
    fn a_catalog_older_than_the_one_held_is_refused_and_the_same_one_is_accepted() {
        let rel = key(2);
        let t = trust(&rel, Scope::default());
        let old = catalog(4, vec![entry("rpi4", 1)], &rel);
        let held = catalog(5, vec![entry("rpi4", 1), entry("rpi4", 2)], &rel);
        let e = t
            .verify_catalog(&old, Some((5, held.id())), ANY)
            .unwrap_err();
        assert_eq!(
            e,
            Error::OlderCatalog {
                held: 5,
                offered: 4
            }
        );
        assert!(t.verify_catalog(&held, Some((5, held.id())), ANY).is_ok());
        let other = catalog(5, vec![entry("rpi4", 3)], &rel);
        let e = t
            .verify_catalog(&other, Some((5, held.id())), ANY)
            .unwrap_err();
        assert_eq!(e, Error::CatalogSequenceReused { sequence: 5 });
    }

    #[test]
    fn a_key_scoped_to_one_hardware_class_cannot_list_another() {
        let rel = key(2);
        let scope = Scope {
            hardware: vec!["rpi4".into()],
            channels: vec![],
        };
        let t = trust(&rel, scope);
        assert!(
            t.verify_catalog(&catalog(1, vec![entry("rpi4", 1)], &rel), None, ANY)
                .is_ok()
        );
        let doc = catalog(1, vec![entry("rpi4", 1), entry("x86", 2)], &rel);
        let e = t.verify_catalog(&doc, None, ANY).unwrap_err();
        assert!(
            matches!(e, Error::KeyOutOfScope { ref hardware, .. } if hardware == "x86"),
            "{e:?}"
        );
    }

    #[test]
    fn a_catalog_signed_by_an_unknown_key_or_altered_after_signing_is_refused() {
        let rel = key(2);
        let t = trust(&rel, Scope::default());
        let doc = catalog(1, vec![entry("rpi4", 1)], &key(9));
        assert!(matches!(
            t.verify_catalog(&doc, None, ANY),
            Err(Error::UnknownKey { .. })
        ));
        let good = catalog(1, vec![entry("rpi4", 1)], &rel).encode().unwrap();
        // Flip one byte of the body's sequence (the first byte after the
        // header and the body length).
        let mut bad = good.clone();
        bad[7] ^= 1;
        let doc = SignedDocument::<Catalog>::decode(&bad).unwrap();
        assert!(matches!(
            t.verify_catalog(&doc, None, ANY),
            Err(Error::InvalidSignature { .. })
        ));
    }

    #[test]
    fn an_expired_catalog_is_refused_when_the_clock_is_enforced() {
        let rel = key(2);
        let t = trust(&rel, Scope::default());
        let mut body = catalog(1, vec![], &rel).unverified_body().clone();
        body.expires = Some(UnixTime(1_500));
        let doc = SignedDocument::sign(body, &[&rel]).unwrap();
        assert!(matches!(
            t.verify_catalog(&doc, None, ANY),
            Err(Error::Expired {
                kind: Kind::Catalog,
                ..
            })
        ));
        assert!(
            t.verify_catalog(&doc, None, Expiration::dangerous_ignore())
                .is_ok()
        );
    }

    #[test]
    fn a_release_listed_twice_or_an_oversize_manifest_size_is_malformed() {
        let rel = key(2);
        let body = Catalog {
            sequence: 1,
            issued: UnixTime(0),
            expires: None,
            releases: vec![entry("a", 1), entry("a", 1)],
        };
        assert!(matches!(
            SignedDocument::sign(body, &[&rel]),
            Err(Error::InvalidField {
                field: "catalog releases",
                ..
            })
        ));
        let mut e = entry("a", 1);
        e.manifest_size = MAX_MANIFEST_BYTES as u64 + 1;
        let body = Catalog {
            sequence: 1,
            issued: UnixTime(0),
            expires: None,
            releases: vec![e],
        };
        assert!(SignedDocument::sign(body, &[&rel]).is_err());
    }
}
