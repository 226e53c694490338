//! Fetching origin objects over HTTP(S) with resumable Range requests.
//!
//! A download goes to a partial file in the gateway's state directory
//! (`partial/<name>.part`). If the transfer breaks off (timeout, reset,
//! crash), the bytes received stay there, and the next fetch of the same
//! object asks only for the rest (`Range: bytes=N-`). A server that ignores
//! the range (200) is read from the start; one that answers 416 (the
//! partial is not a prefix it can extend) restarts the download. The
//! finished bytes are returned only after the caller's check (the BLAKE3
//! id) passes; a failing object's partial file is deleted, so a corrupt
//! prefix is never resumed.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Result};

/// Bytes read from the network per write to the partial file.
const READ_BUF_BYTES: usize = 64 * 1024;

/// What one origin connection did. Counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Objects fetched completely and accepted.
    pub objects: u64,
    /// Body bytes received (resumed downloads count only the new bytes).
    pub bytes: u64,
    /// Downloads that continued a partial file with a Range request.
    pub resumed: u64,
    /// HTTP requests sent.
    pub requests: u64,
}

/// How to reach an origin.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Base URL (`http://host/releases/` or `https://…`); the layout's
    /// paths are appended.
    pub base_url: String,
    /// PEM file of CA certificates trusted for `https` origins (default:
    /// the system bundle `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<PathBuf>,
    /// Longest one request (headers and body) may take.
    pub request_timeout: Duration,
    /// Longest a connection may take to open.
    pub connect_timeout: Duration,
}

/// The system CA bundle on Debian-like systems.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An HTTP(S) client for one origin, keeping partial downloads in a
/// directory.
pub struct Origin {
    agent: ureq::Agent,
    base: String,
    partial_dir: PathBuf,
    stats: FetchStats,
}

impl Origin {
    /// A client for `cfg.base_url`, keeping partial downloads in
    /// `partial_dir` (created when missing).
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not http(s) or an unreadable CA
    /// file, [`Error::Io`] creating the directory.
    pub fn new(cfg: &OriginConfig, partial_dir: &Path) -> Result<Self> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let https = base.starts_with("https://");
        if !https && !base.starts_with("http://") {
            return Err(Error::Config(format!(
                "origin {:?} is not an http:// or https:// URL",
                cfg.base_url
            )));
        }
        std::fs::create_dir_all(partial_dir).map_err(Error::io(partial_dir))?;
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.request_timeout))
            .timeout_connect(Some(cfg.connect_timeout))
            .max_redirects(4)
            .user_agent(concat!("meshota-gateway/", env!("CARGO_PKG_VERSION")));
        if https {
            builder = builder.tls_config(tls_config(cfg.ca_file.as_deref())?);
        }
        Ok(Self {
            agent: builder.build().new_agent(),
            base,
            partial_dir: partial_dir.to_path_buf(),
            stats: FetchStats::default(),
        })
    }

    /// What this client did so far.
    #[must_use]
    pub const fn stats(&self) -> FetchStats {
        self.stats
    }

    /// The full URL of a layout path.
    #[must_use]
    pub fn url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    /// Fetches a small object whole (no partial file): the catalog, which
    /// changes between polls and so cannot be resumed. At most `max` bytes.
    ///
    /// # Errors
    /// [`Error::Http`], [`Error::HttpStatus`], [`Error::ObjectTooLarge`].
    pub fn fetch_small(&mut self, rel: &str, max: u64) -> Result<Vec<u8>> {
        let url = self.url(rel);
        self.stats.requests += 1;
        let resp = self
            .agent
            .get(&url)
            .header("Cache-Control", "no-cache")
            .call()
            .map_err(|e| http_err(&url, &e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Error::HttpStatus { url, status });
        }
        let mut out = Vec::new();
        resp.into_body()
            .into_reader()
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        self.stats.bytes += out.len() as u64;
        if out.len() as u64 > max {
            return Err(Error::ObjectTooLarge { url, max });
        }
        Ok(out)
    }

    /// Fetches an immutable object of at most `max` bytes, resuming a
    /// partial download of it, and returns its bytes once `check` accepts
    /// them. When `check` refuses, the partial file is deleted and its
    /// error returned.
    ///
    /// # Errors
    /// [`Error::Http`] (the partial file is kept for the next attempt),
    /// [`Error::HttpStatus`], [`Error::ObjectTooLarge`], `check`'s error,
    /// [`Error::Io`] on the partial file.
    pub fn fetch(
        &mut self,
        rel: &str,
        max: u64,
        check: impl FnOnce(&str, &[u8]) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let url = self.url(rel);
        let part = self
            .partial_dir
            .join(format!("{}.part", rel.replace('/', "_")));
        let have = std::fs::metadata(&part).map_or(0, |m| m.len());
        if have > max {
            remove(&part)?;
            return self.fetch(rel, max, check);
        }
        let received = self.download(&url, &part, have, max)?;
        self.stats.bytes += received;
        let bytes = std::fs::read(&part).map_err(Error::io(&part))?;
        let verdict = check(&url, &bytes);
        remove(&part)?;
        verdict?;
        self.stats.objects += 1;
        Ok(bytes)
    }

    /// Downloads `url` into `part`, which holds `have` bytes of it already;
    /// returns the bytes received. The file holds the whole object when
    /// this returns `Ok`.
    fn download(&mut self, url: &str, part: &Path, have: u64, max: u64) -> Result<u64> {
        let mut req = self.agent.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        self.stats.requests += 1;
        let resp = req.call().map_err(|e| http_err(url, &e))?;
        let status = resp.status().as_u16();
        let start = match status {
            206 if have > 0 => {
                let from = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                if from != Some(have) {
                    return Err(Error::ObjectInvalid {
                        url: url.to_string(),
                        reason: format!("asked for bytes {have}- and got Content-Range {from:?}"),
                    });
                }
                self.stats.resumed += 1;
                have
            }
            200 => 0,
            // The partial is not a prefix the server can extend (it is as
            // long as the object, or the object changed): start over.
            416 if have > 0 => {
                remove(part)?;
                return self.download(url, part, 0, max);
            }
            _ => {
                return Err(Error::HttpStatus {
                    url: url.to_string(),
                    status,
                });
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .append(start > 0)
            .open(part)
            .map_err(Error::io(part))?;
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; READ_BUF_BYTES];
        let mut total = start;
        let mut received = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Keep what arrived for the next attempt.
                    let _ = file.sync_data();
                    self.stats.bytes += received;
                    return Err(Error::Http {
                        url: url.to_string(),
                        reason: format!("transfer broke off after {total} bytes: {e}"),
                    });
                }
            };
            total += n as u64;
            received += n as u64;
            if total > max {
                drop(file);
                remove(part)?;
                return Err(Error::ObjectTooLarge {
                    url: url.to_string(),
                    max,
                });
            }
            file.write_all(&buf[..n]).map_err(Error::io(part))?;
        }
        // No fsync: the file is read back and deleted at once; only a cut
        // transfer's bytes (above) are worth keeping across a crash.
        Ok(received)
    }
}

/// The first byte position of a `Content-Range: bytes A-B/L` value.
fn range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn http_err(url: &str, e: &ureq::Error) -> Error {
    Error::Http {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// rustls with the aws-lc-rs provider and the CA certificates of `ca_file`
/// (or the system bundle).
fn tls_config(ca_file: Option<&Path>) -> Result<ureq::tls::TlsConfig> {
    let path = ca_file.unwrap_or_else(|| Path::new(SYSTEM_CA_BUNDLE));
    let pem = std::fs::read(path)
        .map_err(|e| Error::Config(format!("CA file {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build())
}
