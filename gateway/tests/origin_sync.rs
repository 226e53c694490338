//! A gateway syncing from a real nginx on loopback: fresh sync, nothing
//! refetched, resume with Range, corrupt objects refused, older catalogs
//! refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Keys, Nginx, image, keys, release};
use meshota_blobstore::patch::PatchIndex;
use meshota_blobstore::{ChunkIndex, ChunkStore, FsStore};
use meshota_gateway::Error;
use meshota_gateway::origin::http::{Origin, OriginConfig};
use meshota_gateway::origin::{SyncOptions, layout, publish, sync};
use meshota_manifest::{Expiration, Hash, ReleaseManifest, SignedDocument, UnixTime};

const IGNORE: Expiration = Expiration::dangerous_ignore();

/// A publisher's store and origin directory, and a gateway's store and
/// state directory, in one temporary directory.
struct World {
    dir: tempfile::TempDir,
    keys: Keys,
    publisher: FsStore,
    gateway: FsStore,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let publisher = FsStore::open_or_create(&dir.path().join("pub-store")).unwrap();
        let gateway = FsStore::open_or_create(&dir.path().join("gw-store")).unwrap();
        Self {
            dir,
            keys: keys(),
            publisher,
            gateway,
        }
    }
    fn origin(&self) -> std::path::PathBuf {
        self.dir.path().join("origin")
    }
    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("gw-state")
    }
    /// Creates and publishes a release; returns its manifest.
    fn publish(&self, img: &[u8], version: &str, sv: u64) -> Vec<u8> {
        let m = release(&self.publisher, &self.keys, img, version, sv);
        publish(
            &self.publisher,
            &m,
            &self.keys.trust,
            &self.keys.release,
            &self.origin(),
            UnixTime(2_000),
            IGNORE,
        )
        .unwrap();
        m
    }
    fn client(&self, nginx: &Nginx, timeout: Duration) -> Origin {
        self.client_at(nginx.url(), None, timeout)
    }
    fn client_at(
        &self,
        base_url: String,
        ca_file: Option<std::path::PathBuf>,
        timeout: Duration,
    ) -> Origin {
        let cfg = OriginConfig {
            base_url,
            ca_file,
            request_timeout: timeout,
            connect_timeout: Duration::from_secs(5),
        };
        Origin::new(&cfg, &self.state().join("partial")).unwrap()
    }
    fn sync(
        &self,
        origin: &mut Origin,
    ) -> meshota_gateway::Result<meshota_gateway::origin::SyncReport> {
        let state = self.state();
        let opts = SyncOptions {
            trust: &self.keys.trust,
            expiration: IGNORE,
            state_dir: &state,
        };
        sync(origin, &self.gateway, &opts)
    }
}

fn index_of(store: &FsStore, manifest: &[u8]) -> (Hash, ChunkIndex) {
    let doc = SignedDocument::<ReleaseManifest>::decode(manifest).unwrap();
    let id = doc.unverified_body().components[0].chunk_index;
    (doc.id(), store.get_index(&id).unwrap())
}

#[test]
fn a_fresh_gateway_syncs_a_release_and_a_second_sync_fetches_nothing() {
    let w = World::new();
    let m = w.publish(&image(500_000, 11), "1.0.0", 1);
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));

    let r = w.sync(&mut o).unwrap();
    let (id, index) = index_of(&w.publisher, &m);
    assert_eq!(r.catalog_sequence, 1);
    assert_eq!(r.new_releases.len(), 1);
    assert_eq!(r.new_releases[0].release, id);
    assert_eq!(r.new_releases[0].manifest, m);
    assert!(w.gateway.missing(&index).unwrap().is_empty());
    assert!(w.gateway.pins().unwrap().iter().any(|(rel, _)| *rel == id));
    let distinct: std::collections::BTreeSet<_> = index.chunks().iter().map(|c| c.hash).collect();
    assert_eq!(r.chunks_fetched as usize, distinct.len());

    // nginx logs a request when it finalises it, which may be just after
    // the client has the body: wait (bounded) until the first sync's
    // requests are all logged before counting.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (nginx.access_log().len() as u64) < r.fetch.requests
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log_before = nginx.access_log().len();
    let again = w.sync(&mut o).unwrap();
    assert!(again.new_releases.is_empty());
    assert_eq!(again.chunks_fetched, 0);
    assert_eq!(again.fetch.requests, 1, "only the catalog is asked for");
    // Likewise for the second sync's one line.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while nginx.access_log().len() == log_before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = nginx.access_log();
    assert_eq!(log.len() - log_before, 1, "{:?}", &log[log_before..]);
    assert!(
        log[log_before].starts_with("/catalog.mota 200"),
        "{}",
        log[log_before]
    );
}

/// A release with a patch: the gateway fetches the patch blobs with the
/// chunks and pins them under the release, so a store GC keeps what it
/// serves nodes on the base.
#[test]
fn a_synced_patch_is_pinned_and_survives_gc() {
    let w = World::new();
    let v1 = image(300_000, 21);
    let mut v2 = v1.clone();
    for at in (1_000..v2.len()).step_by(40_000) {
        v2[at] ^= 0x5a;
    }
    let (m, patch) = common::release_with_patch(&w.publisher, &w.keys, &v1, &v2, "2.0.0", 2);
    publish(
        &w.publisher,
        &m,
        &w.keys.trust,
        &w.keys.release,
        &w.origin(),
        UnixTime(2_000),
        IGNORE,
    )
    .unwrap();
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));
    let r = w.sync(&mut o).unwrap();
    assert_eq!(r.new_releases.len(), 1);
    let pindex = PatchIndex::load(&w.gateway, &patch, u64::MAX).unwrap();
    w.gateway.gc().unwrap();
    assert!(w.gateway.has(&patch).unwrap(), "the patch index blob");
    for piece in pindex.pieces() {
        assert!(
            w.gateway.has(&piece.hash).unwrap(),
            "piece {}",
            piece.hash.short()
        );
    }
}

#[test]
fn a_second_release_fetches_only_the_chunks_the_gateway_lacks() {
    let w = World::new();
    let v1 = image(600_000, 12);
    let mut v2 = v1.clone();
    v2[300_000..320_000].copy_from_slice(&image(20_000, 13));
    w.publish(&v1, "1.0.0", 1);
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));
    let first = w.sync(&mut o).unwrap();
    let m2 = w.publish(&v2, "2.0.0", 2);
    let second = w.sync(&mut o).unwrap();
    assert_eq!(second.catalog_sequence, 2);
    assert_eq!(second.new_releases.len(), 1);
    assert_eq!(second.new_releases[0].version, "2.0.0");
    let (_, index) = index_of(&w.publisher, &m2);
    assert!(w.gateway.missing(&index).unwrap().is_empty());
    assert!(
        second.chunks_fetched > 0 && second.chunks_fetched * 4 < first.chunks_fetched,
        "{first:?} {second:?}"
    );
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let w = World::new();
    let m = w.publish(&image(400_000, 14), "1.0.0", 1);
    let (_, index) = index_of(&w.publisher, &m);
    let big = *index.chunks().iter().max_by_key(|c| c.len).unwrap();
    assert!(big.len > 24_000, "a chunk large enough to cut: {}", big.len);
    // That chunk trickles out at 8 KiB/s: a 1 s request timeout cuts it.
    let path = layout::chunk(&big.hash);
    let nginx = Nginx::start(
        &w.origin(),
        &format!("location = /{path} {{ limit_rate 8k; }}"),
    );

    let mut short = w.client(&nginx, Duration::from_secs(1));
    let e = w.sync(&mut short).unwrap_err();
    assert!(
        matches!(e, Error::Http { ref url, .. } if url.ends_with(&path)),
        "{e:?}"
    );
    assert!(!w.gateway.has(&big.hash).unwrap());
    let part = w
        .state()
        .join("partial")
        .join(format!("{}.part", path.replace('/', "_")));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(
        kept > 0 && kept < u64::from(big.len),
        "partial file holds {kept} of {}",
        big.len
    );

    let mut patient = w.client(&nginx, Duration::from_secs(60));
    let r = w.sync(&mut patient).unwrap();
    assert_eq!(r.fetch.resumed, 1);
    assert!(w.gateway.has(&big.hash).unwrap());
    assert!(w.gateway.missing(&index).unwrap().is_empty());
    assert!(!part.exists());
    // nginx saw the resumed request: a 206 for exactly the rest (logged
    // when nginx finalises it: wait, bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        let found = nginx
            .access_log()
            .into_iter()
            .find(|l| l.starts_with(&format!("/{path} 206")));
        match found {
            Some(l) => break l,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            None => panic!("no 206 for the cut chunk: {:?}", nginx.access_log()),
        }
    };
    assert_eq!(
        line,
        format!(
            "/{path} 206 \"bytes={kept}-\" {}",
            u64::from(big.len) - kept
        )
    );
}

fn corrupt(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    b[10] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_corrupted_chunk_on_the_origin_is_refused_and_nothing_of_it_is_stored() {
    let w = World::new();
    let m = w.publish(&image(300_000, 15), "1.0.0", 1);
    let (id, index) = index_of(&w.publisher, &m);
    let victim = index.chunks()[2].hash;
    corrupt(&w.origin().join(layout::chunk(&victim)));
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));
    let e = w.sync(&mut o).unwrap_err();
    match e {
        Error::ObjectHashMismatch { expected, url, .. } => {
            assert_eq!(expected, victim);
            assert!(url.ends_with(&layout::chunk(&victim)));
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(!w.gateway.has(&victim).unwrap());
    assert!(
        w.gateway.pins().unwrap().iter().all(|(r, _)| *r != id),
        "an incomplete release is not pinned"
    );
    assert!(
        !w.state().join("catalog.mota").exists(),
        "the catalog is not recorded as held"
    );
    let partial = w.state().join("partial");
    assert_eq!(
        std::fs::read_dir(&partial).unwrap().count(),
        0,
        "no partial file kept"
    );
}

#[test]
fn a_manifest_altered_on_the_origin_is_refused_before_any_chunk_is_fetched() {
    let w = World::new();
    let m = w.publish(&image(200_000, 16), "1.0.0", 1);
    let doc = SignedDocument::<ReleaseManifest>::decode(&m).unwrap();
    corrupt(&w.origin().join(layout::manifest(&doc.id())));
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));
    let e = w.sync(&mut o).unwrap_err();
    assert!(
        matches!(e, Error::Document { .. } | Error::ObjectInvalid { .. }),
        "{e:?}"
    );
    assert_eq!(w.gateway.stats().unwrap().chunks, 0);
    assert!(
        nginx
            .access_log()
            .iter()
            .all(|l| !l.starts_with("/chunks/"))
    );
}

#[test]
fn gateway_refuses_catalog_older_than_the_one_it_holds() {
    let w = World::new();
    w.publish(&image(100_000, 17), "1.0.0", 1);
    let old_catalog = std::fs::read(w.origin().join(layout::CATALOG)).unwrap();
    w.publish(&image(100_000, 18), "2.0.0", 2);
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));
    assert_eq!(w.sync(&mut o).unwrap().catalog_sequence, 2);

    // A stale mirror (or an attacker) serves the signed catalog of sequence 1.
    std::fs::write(w.origin().join(layout::CATALOG), &old_catalog).unwrap();
    let e = w.sync(&mut o).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Catalog {
                source: meshota_manifest::Error::OlderCatalog {
                    held: 2,
                    offered: 1
                },
                ..
            }
        ),
        "{e:?}"
    );
    let held = std::fs::read(w.state().join("catalog.mota")).unwrap();
    assert_ne!(held, old_catalog, "the newer catalog stays held");
}

#[test]
fn a_release_the_mesh_pinned_before_its_chunks_arrived_is_still_fetched() {
    let w = World::new();
    let m = w.publish(&image(200_000, 19), "1.0.0", 1);
    let (id, index) = index_of(&w.publisher, &m);
    // The mesh stored and pinned the index, but no chunk yet.
    let ix = w.gateway.put_index(&index).unwrap();
    w.gateway.pin(id, ix).unwrap();
    let nginx = Nginx::start(&w.origin(), "");
    let mut o = w.client(&nginx, Duration::from_secs(30));
    let r = w.sync(&mut o).unwrap();
    assert_eq!(r.new_releases.len(), 1);
    assert!(w.gateway.missing(&index).unwrap().is_empty());
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA `NAME-ca.crt` and a server certificate for 127.0.0.1 it
/// signed (`NAME.crt`, `NAME.key`), made with the openssl tool in `dir`.
/// Returns (CA certificate, server certificate, server key).
fn private_ca(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_crt, ca_key) = (format!("{name}-ca.crt"), format!("{name}-ca.key"));
    let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
    let (ext, crt) = (format!("{name}.ext"), format!("{name}.crt"));
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
    ]);
    openssl(dir, &a);
    let mut b = vec!["req"];
    b.extend(ec);
    b.extend(["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr]);
    openssl(dir, &b);
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
    (dir.join(ca_crt), dir.join(crt), dir.join(key))
}

#[test]
fn an_https_origin_syncs_with_the_configured_ca_and_is_refused_with_another() {
    let w = World::new();
    let m = w.publish(&image(150_000, 20), "1.0.0", 1);
    let (ca, cert, key) = private_ca(w.dir.path(), "origin");
    let (other_ca, _, _) = private_ca(w.dir.path(), "other");
    let nginx = Nginx::start_with(&w.origin(), "", Some((&cert, &key)));

    let mut wrong = w.client_at(nginx.https_url(), Some(other_ca), Duration::from_secs(30));
    let e = w.sync(&mut wrong).unwrap_err();
    assert!(matches!(e, Error::Http { .. }), "{e:?}");
    assert_eq!(w.gateway.stats().unwrap().chunks, 0);

    let mut right = w.client_at(nginx.https_url(), Some(ca), Duration::from_secs(30));
    let r = w.sync(&mut right).unwrap();
    assert_eq!(r.new_releases.len(), 1);
    let (_, index) = index_of(&w.publisher, &m);
    assert!(w.gateway.missing(&index).unwrap().is_empty());
}
