//! Batch provisioning for a factory line: many devices from one CSV.
//!
//! The CSV has a header line naming its columns, in any order:
//! `hardware_id` and `hardware_class` (required), `device_id` (optional:
//! default `dev-<serial>`, and a registered device keeps its id), `csr`
//! (optional: a CSR file collected from the device, relative to the CSV's
//! directory; without it the station generates the device's keys). Blank
//! lines and lines starting with `#` are skipped.
//!
//! Output, per device, in `OUT/<device id>/`: `device.crt` (the device
//! certificate, then the intermediate's), and for generated keys
//! `identity.key` (0600, meshota's secret key file: the node's device key),
//! `identity.pub`, `kem.key` (0600, PKCS#8) and `kem.pub`. `OUT/root.crt`
//! is the trust anchor.
//!
//! Devices go through in chunks: the chunk's keys are made and its
//! certificates signed on `threads` threads (each appends to the audit log
//! and fsyncs it before handing its certificates on); every device's files
//! are written on `io_threads` threads (temporary files, fsync, rename,
//! directory fsync; the output directory is fsynced after the chunk); then
//! the chunk is recorded in the registry in one transaction. A crash leaves at most files of devices the registry
//! does not know; running the batch again gives them the same device ids
//! and new keys.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshota_manifest::{PublicKey, UnixTime};
use x509_cert::Certificate;

use crate::ca::{Ca, sync_dir};
use crate::cert::{DeviceSubject, Period, serial_hex, to_pem};
use crate::csr::{DeviceKeys, MAX_CSR_BYTES, verify_csr};
use crate::error::{Error, Result};
use crate::registry::{DeviceArtifacts, Issued, Registry};
use crate::serial::{DeviceSerial, HardwareId, check_name};

/// Largest devices CSV accepted, in bytes.
pub const MAX_CSV_BYTES: usize = 64 * 1024 * 1024;

/// One row of the devices CSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRow {
    /// 1-based line number in the CSV.
    pub line: usize,
    /// The hardware id as written.
    pub hardware_id: String,
    /// The hardware class.
    pub hardware_class: String,
    /// The device id asked for, if any.
    pub device_id: Option<String>,
    /// A CSR file collected from the device, if any.
    pub csr: Option<PathBuf>,
}

/// Parses the devices CSV; `base` resolves relative CSR paths.
///
/// # Errors
/// [`Error::BadCsv`] for a missing or unknown column, or a row with the
/// wrong number of fields. (Bad values are per-device failures of the run.)
pub fn parse_devices_csv(text: &str, base: &Path) -> Result<Vec<BatchRow>> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((hline, header)) = lines.next() else {
        return Err(Error::BadCsv {
            line: 1,
            reason: "empty: expected a header line such as `hardware_id,hardware_class`".into(),
        });
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| cols.iter().position(|c| *c == name);
    for c in &cols {
        if !matches!(*c, "hardware_id" | "hardware_class" | "device_id" | "csr") {
            return Err(Error::BadCsv {
                line: hline,
                reason: format!(
                    "unknown column {c:?} (known: hardware_id, hardware_class, device_id, csr)"
                ),
            });
        }
    }
    let (Some(hw), Some(class)) = (find("hardware_id"), find("hardware_class")) else {
        return Err(Error::BadCsv {
            line: hline,
            reason: "the header must name hardware_id and hardware_class".into(),
        });
    };
    let (dev, csr) = (find("device_id"), find("csr"));
    let mut rows = Vec::new();
    for (line, l) in lines {
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(Error::BadCsv {
                line,
                reason: format!("{} fields, the header has {}", fields.len(), cols.len()),
            });
        }
        let opt = |i: Option<usize>| i.map(|i| fields[i]).filter(|s| !s.is_empty());
        rows.push(BatchRow {
            line,
            hardware_id: fields[hw].to_owned(),
            hardware_class: fields[class].to_owned(),
            device_id: opt(dev).map(str::to_owned),
            csr: opt(csr).map(|p| base.join(p)),
        });
    }
    Ok(rows)
}

/// Options of a batch run.
#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// Device certificate validity in days.
    pub days: u32,
    /// Threads making keys and signing (at least 1; the CPU count is right).
    pub threads: usize,
    /// Threads writing device directories (at least 1; more than CPUs pays,
    /// they mostly wait for fsync).
    pub io_threads: usize,
    /// Devices per chunk (one audit fsync and one registry commit each).
    pub chunk: usize,
}

/// What happened to one row.
#[derive(Clone, Debug)]
pub struct DeviceOutcome {
    /// The CSV line.
    pub line: usize,
    /// The hardware id as written.
    pub hardware_id: String,
    /// Device id and serial when provisioned.
    pub result: core::result::Result<(String, DeviceSerial), String>,
    /// Time spent on this device (keys, CSR check, signing, files).
    pub time: Duration,
}

/// The result of a run: one outcome per row, in CSV order.
#[derive(Clone, Debug)]
pub struct BatchReport {
    /// Outcomes.
    pub outcomes: Vec<DeviceOutcome>,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

impl BatchReport {
    /// Rows provisioned.
    #[must_use]
    pub fn succeeded(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    /// Rows that failed, with their reasons.
    pub fn failures(&self) -> impl Iterator<Item = (&DeviceOutcome, &str)> {
        self.outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|e| (o, e.as_str())))
    }

    /// Provisioned devices per second of wall-clock time.
    #[must_use]
    pub fn devices_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.succeeded() as f64 / s
        } else {
            0.0
        }
    }

    /// The `p`-th percentile (0–100, nearest rank) of per-device time over
    /// all rows; zero when there are none.
    #[must_use]
    pub fn percentile(&self, p: f64) -> Duration {
        let mut t: Vec<Duration> = self.outcomes.iter().map(|o| o.time).collect();
        if t.is_empty() {
            return Duration::ZERO;
        }
        t.sort();
        let rank = ((p / 100.0) * t.len() as f64).ceil() as usize;
        t[rank.clamp(1, t.len()) - 1]
    }
}

/// A row that passed the sequential checks.
struct Planned {
    index: usize,
    device_id: String,
    serial: DeviceSerial,
    hardware_id: HardwareId,
    hardware_class: String,
    csr: Option<PathBuf>,
}

/// A device ready to be written.
struct Made {
    index: usize,
    subject: DeviceSubject,
    hardware_id: HardwareId,
    keys: Option<DeviceKeys>,
    cert: Certificate,
    time: Duration,
}

/// Writes files into `dir` atomically: each to a temporary file (mode
/// set, fsynced), then all renamed, then the directory fsynced once.
fn write_files(dir: &Path, files: &[(&str, &[u8], u32)]) -> Result<()> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut tmps = Vec::with_capacity(files.len());
    for (name, bytes, mode) in files {
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let r = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(*mode)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(*mode))?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            for (t, _) in &tmps {
                let _ = fs::remove_file(t);
            }
            return Err(Error::io(tmp)(e));
        }
        tmps.push((tmp, dir.join(name)));
    }
    for (tmp, path) in &tmps {
        fs::rename(tmp, path).map_err(Error::io(path))?;
    }
    sync_dir(dir)
}

fn key_files(keys: &DeviceKeys) -> Result<Vec<(&'static str, Vec<u8>, u32)>> {
    let key_err = |source| Error::Key {
        path: PathBuf::from("identity.key"),
        source,
    };
    Ok(vec![
        (
            "identity.key",
            keys.identity
                .secret_key_file(meshota_manifest::Protection::None)
                .map_err(key_err)?,
            0o600,
        ),
        (
            "identity.pub",
            keys.identity.public_key_file().map_err(key_err)?,
            0o644,
        ),
        (
            "kem.key",
            keys.kem.to_pkcs8_pem()?.as_bytes().to_vec(),
            0o600,
        ),
        ("kem.pub", keys.kem.public_key_pem()?.into_bytes(), 0o644),
    ])
}

/// Writes one device's directory: its key files (when the station made
/// them) and `device.crt` (device certificate, then `issuer_pem`).
///
/// # Errors
/// [`Error::Io`], [`Error::Build`].
pub fn write_device_dir(
    dir: &Path,
    keys: Option<&DeviceKeys>,
    cert: &Certificate,
    issuer_pem: &str,
) -> Result<()> {
    let mut files = match keys {
        Some(k) => key_files(k)?,
        None => Vec::new(),
    };
    let chain = format!("{}{issuer_pem}", to_pem(cert)?);
    files.push(("device.crt", chain.into_bytes(), 0o644));
    let refs: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(n, b, m)| (*n, b.as_slice(), *m))
        .collect();
    write_files(dir, &refs)
}

/// Runs a batch (see the module doc). `progress` is called once per row as
/// it finishes, from any thread.
///
/// # Errors
/// Only failures that stop the whole run: the CA cannot sign
/// ([`Error::CaOutOfValidity`]), the audit log or the registry cannot be
/// written, the output directory cannot be created. Per-device problems
/// are outcomes.
pub fn run_batch(
    ca: &Ca,
    registry: &Registry,
    rows: &[BatchRow],
    out: &Path,
    opts: BatchOptions,
    now: UnixTime,
    progress: &(dyn Fn(&DeviceOutcome) + Sync),
) -> Result<BatchReport> {
    let start = Instant::now();
    ca.check_usable(now)?;
    fs::create_dir_all(out).map_err(Error::io(out))?;
    let root = ca
        .root()
        .ok_or_else(|| Error::NotIssuingCa(ca.dir().to_path_buf()))?;
    write_files(out, &[("root.crt", to_pem(root)?.as_bytes(), 0o644)])?;
    let issuer_pem = to_pem(ca.certificate())?;

    let mut outcomes: Vec<Option<DeviceOutcome>> = vec![None; rows.len()];
    let fail = |row: &BatchRow, reason: String, time: Duration| DeviceOutcome {
        line: row.line,
        hardware_id: row.hardware_id.clone(),
        result: Err(reason),
        time,
    };

    // Sequential checks: names, serials, registry rules, and the same rules
    // among the rows of this batch.
    let mut planned = Vec::new();
    let mut batch_serials: BTreeMap<DeviceSerial, (HardwareId, String)> = BTreeMap::new();
    let mut batch_ids: BTreeMap<String, DeviceSerial> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        let t0 = Instant::now();
        let plan = (|| -> Result<Planned> {
            let hardware_id = HardwareId::normalise(&row.hardware_id)?;
            check_name("hardware class", &row.hardware_class)?;
            if let Some(id) = &row.device_id {
                check_name("device id", id)?;
            }
            let serial = hardware_id.serial();
            if let Some((other_hw, other_id)) = batch_serials.get(&serial) {
                if other_hw != &hardware_id {
                    return Err(Error::SerialCollision {
                        serial: serial.to_string(),
                        existing: other_hw.to_string(),
                        new: hardware_id.to_string(),
                    });
                }
                return Err(Error::BadCsv {
                    line: row.line,
                    reason: format!(
                        "hardware id {hardware_id} appears twice in this batch (device {other_id})"
                    ),
                });
            }
            let device_id =
                registry.resolve(serial, Some(&hardware_id), row.device_id.as_deref())?;
            if let Some(other) = batch_ids.get(&device_id) {
                return Err(Error::DeviceIdTaken {
                    device_id,
                    registered_serial: other.to_string(),
                    serial: serial.to_string(),
                });
            }
            Ok(Planned {
                index,
                device_id,
                serial,
                hardware_id,
                hardware_class: row.hardware_class.clone(),
                csr: row.csr.clone(),
            })
        })();
        match plan {
            Ok(p) => {
                batch_serials.insert(p.serial, (p.hardware_id.clone(), p.device_id.clone()));
                batch_ids.insert(p.device_id.clone(), p.serial);
                planned.push(p);
            }
            Err(e) => {
                let o = fail(row, e.to_string(), t0.elapsed());
                progress(&o);
                outcomes[index] = Some(o);
            }
        }
    }

    let threads = opts.threads.max(1);
    for chunk in planned.chunks(opts.chunk.max(1)) {
        // Keys (or CSR checks) and signing, on `threads` threads.
        let per = chunk.len().div_ceil(threads);
        let results: Vec<PartResult> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .chunks(per.max(1))
                .map(|part| s.spawn(move || make_part(ca, part, rows, opts.days, now)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::build("batch", "a worker thread panicked")))
                })
                .collect()
        });
        let mut made = Vec::new();
        for part in results {
            for r in part? {
                match r {
                    Ok(m) => made.push(m),
                    Err((index, reason, time)) => {
                        let o = fail(&rows[index], reason, time);
                        progress(&o);
                        outcomes[index] = Some(o);
                    }
                }
            }
        }
        // Files, on `io_threads` threads: fsync waits overlap (and the file
        // system can commit them together); CPU is not the limit here.
        let io_per = made.len().div_ceil(opts.io_threads.max(1)).max(1);
        let write_results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = made
                .chunks_mut(io_per)
                .map(|part| {
                    let issuer_pem = &issuer_pem;
                    s.spawn(move || {
                        part.iter_mut()
                            .map(|m| {
                                let t = Instant::now();
                                let r = write_device_dir(
                                    &out.join(&m.subject.device_id),
                                    m.keys.as_ref(),
                                    &m.cert,
                                    issuer_pem,
                                );
                                m.time += t.elapsed();
                                r
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(Error::build("batch", "a writer thread panicked"))]
                    })
                })
                .collect::<Vec<_>>()
        });
        // The new device directories' entries.
        sync_dir(out)?;
        let mut issued = Vec::new();
        let mut made_ok = Vec::new();
        if write_results.len() != made.len() {
            return Err(Error::build("batch", "a writer thread panicked"));
        }
        for (m, r) in made.into_iter().zip(write_results) {
            match r {
                Ok(()) => {
                    issued.push(Issued {
                        device_id: m.subject.device_id.clone(),
                        serial: m.subject.serial,
                        hardware_id: Some(m.hardware_id.clone()),
                        hardware_class: m.subject.hardware.clone(),
                        cert_serial: serial_hex(&m.cert),
                        period: Period::of(&m.cert),
                        artifacts: Some(DeviceArtifacts {
                            cert_pem: to_pem(&m.cert)?,
                            kem_public: m.keys.as_ref().map(|k| k.kem.encapsulation_key()),
                        }),
                    });
                    made_ok.push(m);
                }
                Err(e) => {
                    let o = fail(&rows[m.index], e.to_string(), m.time);
                    progress(&o);
                    outcomes[m.index] = Some(o);
                }
            }
        }
        registry.record(&issued, now)?;
        for m in made_ok {
            let o = DeviceOutcome {
                line: rows[m.index].line,
                hardware_id: rows[m.index].hardware_id.clone(),
                result: Ok((m.subject.device_id, m.subject.serial)),
                time: m.time,
            };
            progress(&o);
            drop(m.keys);
            outcomes[m.index] = Some(o);
        }
    }
    Ok(BatchReport {
        outcomes: outcomes.into_iter().flatten().collect(),
        elapsed: start.elapsed(),
    })
}

/// A device made, or (row index, reason, time spent) — per device of a part.
type PartResult = Result<Vec<core::result::Result<Made, (usize, String, Duration)>>>;

/// One thread's share of a chunk: keys or CSR, then one signing call (one
/// audit append).
fn make_part(ca: &Ca, part: &[Planned], rows: &[BatchRow], days: u32, now: UnixTime) -> PartResult {
    let mut prepared: Vec<(
        usize,
        DeviceSubject,
        PublicKey,
        Option<DeviceKeys>,
        Instant,
        Duration,
    )> = Vec::new();
    let mut results = Vec::new();
    for p in part {
        let t0 = Instant::now();
        let subject = DeviceSubject {
            device_id: p.device_id.clone(),
            serial: p.serial,
            hardware: p.hardware_class.clone(),
        };
        let r = match &p.csr {
            None => {
                DeviceKeys::generate(&p.device_id).map(|k| (k.identity.public().clone(), Some(k)))
            }
            Some(path) => csr_key(path, &subject).map(|k| (k, None)),
        };
        match r {
            Ok((key, keys)) => prepared.push((p.index, subject, key, keys, t0, t0.elapsed())),
            Err(e) => results.push(Err((p.index, e.to_string(), t0.elapsed()))),
        }
    }
    let requests: Vec<(DeviceSubject, PublicKey)> = prepared
        .iter()
        .map(|(_, s, k, ..)| (s.clone(), k.clone()))
        .collect();
    let sign_start = Instant::now();
    let certs = ca.issue_devices(&requests, days, now)?;
    // Signing and the audit fsync are shared: each device bears its share.
    let sign_share = sign_start.elapsed() / u32::try_from(requests.len().max(1)).unwrap_or(1);
    let hw: BTreeMap<usize, &Planned> = part.iter().map(|p| (p.index, p)).collect();
    for ((index, subject, _, keys, _, before), cert) in prepared.into_iter().zip(certs) {
        let time = before + sign_share;
        match (cert, hw.get(&index)) {
            (Ok(cert), Some(p)) => results.push(Ok(Made {
                index,
                subject,
                hardware_id: p.hardware_id.clone(),
                keys,
                cert,
                time,
            })),
            (Err(e), _) => results.push(Err((index, e.to_string(), time))),
            (Ok(_), None) => results.push(Err((
                index,
                format!("line {}: lost", rows[index].line),
                time,
            ))),
        }
    }
    Ok(results)
}

/// Reads and checks a collected CSR: valid, and for exactly this row's
/// device id, serial and hardware class.
fn csr_key(path: &Path, want: &DeviceSubject) -> Result<PublicKey> {
    let bytes = meshota_manifest::fs::read_limited(path, MAX_CSR_BYTES)?;
    let csr = verify_csr(&bytes).map_err(|e| Error::Malformed {
        what: "CSR",
        reason: format!("{}: {e}", path.display()),
    })?;
    if &csr.subject != want {
        return Err(Error::profile(
            "CSR",
            format!(
                "{} asks for device {} serial {} class {}, the CSV row means device {} serial {} class {}",
                path.display(),
                csr.subject.device_id,
                csr.subject.serial,
                csr.subject.hardware,
                want.device_id,
                want.serial,
                want.hardware
            ),
        ));
    }
    Ok(csr.public_key)
}
