//! `meshota provision …`: the private CA, device keys and certificates,
//! revocation, batch provisioning and the device registry. The logic lives
//! in `meshota-provision`; this module reads arguments and files and
//! prints results.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use meshota_manifest::fs::{read_limited, write_atomic};
use meshota_manifest::{KdfParams, Protection, SecretKey, UnixTime};
use meshota_provision::alg::kem_public_key_from_pem;
use meshota_provision::batch::{BatchOptions, parse_devices_csv, run_batch};
use meshota_provision::ca::{
    CRL_FILE, Ca, MAX_CERT_FILE_BYTES, NewKey, REGISTRY_FILE, crl_to_pem, parse_crl, read_cert,
};
use meshota_provision::cert::{self, DeviceSubject, parse_pem_chain, rfc3339, to_pem};
use meshota_provision::csr::{DeviceKeys, MAX_CSR_BYTES, build_csr, csr_to_pem, verify_csr};
use meshota_provision::registry::{self, DeviceArtifacts, Issued, Registry, Selector};
use meshota_provision::serial::{DeviceSerial, HardwareId, check_name};
use meshota_provision::verify::verify_device;

use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::{new_passphrase, passphrase_for};
use crate::timefmt::{now, parse_time};

/// Provisioning: CA, device identities, revocation, batches, registry.
#[derive(Debug, Subcommand)]
pub(crate) enum ProvisionCmd {
    /// Create a root CA or an intermediate (issuing) CA.
    #[command(subcommand)]
    Ca(CaCmd),
    /// On a device: make its ML-DSA-65 identity key, its ML-KEM-768 key pair
    /// and a certificate request (PKCS#10) signed with the identity key.
    Keygen(KeygenArgs),
    /// Issue a device certificate for a CSR (checks the CSR's signature).
    Sign(SignArgs),
    /// Verify a device certificate offline (exit 0 valid, 1 rejected).
    Verify(VerifyArgs),
    /// Revoke a device and write a new revocation list (DIR/crl.pem).
    Revoke(RevokeArgs),
    /// Write a fresh revocation list (DIR/crl.pem) without revoking anything.
    Crl(CrlArgs),
    /// Provision many devices from a CSV (keys generated, or CSRs collected).
    Batch(BatchArgs),
    /// The device registry of an intermediate CA.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Write a device's provisioning image (squashfs): identity files,
    /// certificate chain, configuration.
    Image(super::provision_image::ImageArgs),
    /// On a device: verify a provisioning image, decrypt its sealed files
    /// and install it atomically into the data directory.
    Apply(super::provision_image::ApplyArgs),
    /// Serve devices their current images (requests signed by the device key).
    Serve(super::provision_serve::ServeArgs),
    /// On a device: fetch its current image from a server and apply it;
    /// with --watch, again on every MQTT re-provision message.
    Fetch(super::provision_serve::FetchArgs),
    /// Publish a re-provision message (meshota/<fleet>/<device>/reprovision).
    Notify(super::provision_serve::NotifyArgs),
}

/// CA creation.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCmd {
    /// A self-signed root CA (keep it offline): DIR/ca.crt and DIR/ca.key (0600).
    Root(RootArgs),
    /// An intermediate CA signed by a root: DIR/ca.crt, DIR/ca.key, DIR/root.crt.
    Intermediate(IntermediateArgs),
}

/// Arguments of `provision ca root`.
#[derive(Debug, Args)]
pub(crate) struct RootArgs {
    /// The CA's name (its certificate's CN).
    #[arg(long)]
    name: String,
    /// Directory to create the CA in.
    #[arg(long)]
    out: PathBuf,
    /// Validity in days.
    #[arg(long, default_value_t = cert::ROOT_VALIDITY_DAYS)]
    validity_days: u32,
    /// How many intermediate CAs may follow (basicConstraints pathLen).
    #[arg(long, default_value_t = 1)]
    path_len: u8,
    /// Seal the CA key with a passphrase (from MESHOTA_PASSPHRASE, or asked).
    #[arg(long)]
    encrypt: bool,
}

/// Arguments of `provision ca intermediate`.
#[derive(Debug, Args)]
pub(crate) struct IntermediateArgs {
    /// The root CA directory.
    #[arg(long)]
    root: PathBuf,
    /// The CA's name (its certificate's CN).
    #[arg(long)]
    name: String,
    /// Directory to create the CA in.
    #[arg(long)]
    out: PathBuf,
    /// Validity in days (clamped to the root's).
    #[arg(long, default_value_t = cert::INTERMEDIATE_VALIDITY_DAYS)]
    validity_days: u32,
    /// How many CAs may follow it (basicConstraints pathLen).
    #[arg(long, default_value_t = 0)]
    path_len: u8,
    /// Seal the CA key with a passphrase (from MESHOTA_PASSPHRASE, or asked).
    #[arg(long)]
    encrypt: bool,
}

/// Arguments of `provision keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The device id (1-64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    device_id: String,
    /// The hardware class (as in the trust root's scopes).
    #[arg(long)]
    hardware: String,
    /// Directory for the keys and the CSR (created; the private keys never leave it).
    #[arg(long)]
    out: PathBuf,
    /// The hardware id (default: read from the device tree or /proc/cpuinfo).
    #[arg(long, conflicts_with = "hwid_file")]
    hwid: Option<String>,
    /// A file holding the hardware id, or /proc/cpuinfo text.
    #[arg(long)]
    hwid_file: Option<PathBuf>,
    /// Overwrite existing keys.
    #[arg(long)]
    force: bool,
}

/// Arguments of `provision sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The intermediate CA directory.
    #[arg(long)]
    ca: PathBuf,
    /// The device's CSR.
    #[arg(long)]
    csr: PathBuf,
    /// Where to write the certificate (device, then intermediate, PEM).
    #[arg(long)]
    out: PathBuf,
    /// The device's hardware id, if known: must map to the CSR's serial.
    #[arg(long)]
    hwid: Option<String>,
    /// Validity in days (clamped to the CA's).
    #[arg(long, default_value_t = cert::DEVICE_VALIDITY_DAYS)]
    validity_days: u32,
    /// The device's ML-KEM-768 public key (kem.pub), kept for its
    /// provisioning images' encrypted files.
    #[arg(long)]
    kem_pub: Option<PathBuf>,
}

/// Arguments of `provision verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The root certificate (trust anchor).
    #[arg(long)]
    root: PathBuf,
    /// Intermediate certificates (files may hold several).
    #[arg(long = "intermediate")]
    intermediates: Vec<PathBuf>,
    /// The device certificate; certificates after the first are intermediates.
    device: PathBuf,
    /// Verify as of this time (YYYY-MM-DD, RFC 3339, Unix seconds, +N[dhms]).
    #[arg(long)]
    at: Option<String>,
    /// A revocation list of the device's issuer.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `provision revoke`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["serial", "device_id", "cert_serial"])))]
pub(crate) struct RevokeArgs {
    /// The intermediate CA directory.
    #[arg(long)]
    ca: PathBuf,
    /// The device serial (10 hex digits).
    #[arg(long)]
    serial: Option<String>,
    /// The device id.
    #[arg(long)]
    device_id: Option<String>,
    /// A certificate serial (hex).
    #[arg(long)]
    cert_serial: Option<String>,
    /// Days until the revocation list's nextUpdate.
    #[arg(long, default_value_t = 30)]
    crl_days: u32,
}

/// Arguments of `provision crl`.
#[derive(Debug, Args)]
pub(crate) struct CrlArgs {
    /// The intermediate CA directory.
    #[arg(long)]
    ca: PathBuf,
    /// Days until the revocation list's nextUpdate.
    #[arg(long, default_value_t = 30)]
    crl_days: u32,
}

/// Arguments of `provision batch`.
#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// The intermediate CA directory.
    #[arg(long)]
    ca: PathBuf,
    /// CSV: hardware_id,hardware_class[,device_id][,csr] with a header line.
    #[arg(long)]
    devices: PathBuf,
    /// Output directory: one directory per device, and root.crt.
    #[arg(long)]
    out: PathBuf,
    /// Device certificate validity in days.
    #[arg(long, default_value_t = cert::DEVICE_VALIDITY_DAYS)]
    validity_days: u32,
    /// Threads making keys and signing (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Threads writing device directories (they mostly wait for fsync).
    #[arg(long, default_value_t = 16)]
    io_threads: usize,
    /// Devices per chunk (one registry commit each).
    #[arg(long, default_value_t = 64)]
    chunk: usize,
    /// Print the statistics as JSON (no progress bar).
    #[arg(long)]
    json: bool,
}

/// Registry commands.
#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCmd {
    /// Export every device as CSV or JSON.
    Export(ExportArgs),
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// One header line, one line per device.
    Csv,
    /// An array of objects.
    Json,
}

/// Arguments of `provision registry export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The intermediate CA directory holding registry.redb.
    #[arg(long)]
    ca: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(cmd: ProvisionCmd) -> CmdResult {
    match cmd {
        ProvisionCmd::Ca(CaCmd::Root(a)) => ca_root(&a),
        ProvisionCmd::Ca(CaCmd::Intermediate(a)) => ca_intermediate(&a),
        ProvisionCmd::Keygen(a) => keygen(&a),
        ProvisionCmd::Sign(a) => sign(&a),
        ProvisionCmd::Verify(a) => verify(&a),
        ProvisionCmd::Revoke(a) => revoke(&a),
        ProvisionCmd::Crl(a) => crl(&a),
        ProvisionCmd::Batch(a) => batch(&a),
        ProvisionCmd::Registry(RegistryCmd::Export(a)) => export(&a),
        ProvisionCmd::Image(a) => super::provision_image::image(&a),
        ProvisionCmd::Apply(a) => super::provision_image::apply(&a),
        ProvisionCmd::Serve(a) => super::provision_serve::serve(&a),
        ProvisionCmd::Fetch(a) => super::provision_serve::fetch(&a),
        ProvisionCmd::Notify(a) => super::provision_serve::notify(&a),
    }
}

fn random<const N: usize>() -> CmdResult<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| Failure::rejected(format!("the system RNG failed: {e}")))?;
    Ok(out)
}

/// Who signs, for the audit log: user, uid and host.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!("{user} (uid {uid}) @ {host}")
}

pub(crate) fn rejected(e: meshota_provision::Error) -> Failure {
    Failure::rejected(e)
}

/// A new CA key and its secret key file (sealed when `encrypt`).
fn new_ca_key(name: &str, encrypt: bool) -> CmdResult<(SecretKey, Vec<u8>)> {
    let key = SecretKey::from_seed(random::<32>()?, name)
        .map_err(|e| Failure::usage(format!("CA name {name:?}: {e}")))?;
    let pass;
    let protection = if encrypt {
        pass = new_passphrase()?;
        Protection::Passphrase {
            passphrase: &pass,
            kdf: KdfParams::DEFAULT,
            salt: random::<16>()?,
            nonce: random::<24>()?,
        }
    } else {
        Protection::None
    };
    let file = key.secret_key_file(protection).map_err(Failure::rejected)?;
    Ok((key, file))
}

pub(crate) fn open_ca(dir: &Path) -> CmdResult<Ca> {
    Ca::open(dir, &operator(), passphrase_for).map_err(rejected)
}

fn print_ca(kind: &str, ca: &Ca, encrypted: bool) {
    let p = ca.period();
    println!("{kind} CA {:?}", ca.name());
    println!("certificate  {}", ca.dir().join("ca.crt").display());
    println!(
        "key          {}{}",
        ca.dir().join("ca.key").display(),
        if encrypted {
            " (passphrase-protected)"
        } else {
            ""
        }
    );
    println!(
        "valid        {} to {}",
        rfc3339(p.not_before),
        rfc3339(p.not_after)
    );
    println!("serial       {}", cert::serial_hex(ca.certificate()));
}

fn ca_root(a: &RootArgs) -> CmdResult {
    let (key, file) = new_ca_key(&a.name, a.encrypt)?;
    let ca = Ca::create_root(
        &a.out,
        &a.name,
        &NewKey {
            key: &key,
            file: &file,
        },
        a.validity_days,
        a.path_len,
        now(),
        &operator(),
    )
    .map_err(rejected)?;
    print_ca("root", &ca, a.encrypt);
    Ok(())
}

fn ca_intermediate(a: &IntermediateArgs) -> CmdResult {
    let root = open_ca(&a.root)?;
    if root.root().is_some() {
        return Err(Failure::usage(format!(
            "{}: is an intermediate CA; --root must name a root CA directory",
            a.root.display()
        )));
    }
    let (key, file) = new_ca_key(&a.name, a.encrypt)?;
    let ca = root
        .create_intermediate(
            &a.out,
            &a.name,
            &NewKey {
                key: &key,
                file: &file,
            },
            a.validity_days,
            a.path_len,
            now(),
        )
        .map_err(rejected)?;
    print_ca("intermediate", &ca, a.encrypt);
    Ok(())
}

/// The hardware id of this machine: the device tree's serial number, else
/// the `Serial` line of /proc/cpuinfo.
fn system_hwid() -> CmdResult<HardwareId> {
    if let Ok(b) = std::fs::read("/sys/firmware/devicetree/base/serial-number") {
        if let Ok(id) = HardwareId::normalise(&String::from_utf8_lossy(&b)) {
            return Ok(id);
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Ok(id) = HardwareId::from_cpuinfo(&text) {
            return Ok(id);
        }
    }
    Err(Failure::usage(
        "this machine reports no hardware id (no /sys/firmware/devicetree/base/serial-number, \
         no `Serial` line in /proc/cpuinfo): pass --hwid or --hwid-file",
    ))
}

fn hwid_from_file(path: &Path) -> CmdResult<HardwareId> {
    let bytes = read_limited(path, 1 << 20)?;
    let text = String::from_utf8_lossy(&bytes);
    if text
        .lines()
        .any(|l| l.split(':').next().is_some_and(|k| k.trim() == "Serial"))
    {
        HardwareId::from_cpuinfo(&text).at(path)
    } else {
        HardwareId::normalise(&text).at(path)
    }
}

fn keygen(a: &KeygenArgs) -> CmdResult {
    check_name("device id", &a.device_id).map_err(Failure::usage)?;
    check_name("hardware class", &a.hardware).map_err(Failure::usage)?;
    let hwid = match (&a.hwid, &a.hwid_file) {
        (Some(h), _) => HardwareId::normalise(h).map_err(Failure::usage)?,
        (None, Some(f)) => hwid_from_file(f)?,
        (None, None) => system_hwid()?,
    };
    std::fs::create_dir_all(&a.out).at(&a.out)?;
    let key_path = a.out.join("identity.key");
    if key_path.exists() && !a.force {
        return Err(Failure::file(
            &key_path,
            "already exists; refusing to overwrite a device key (use --force)",
        ));
    }
    let keys = DeviceKeys::from_seeds(&a.device_id, random::<32>()?, random::<64>()?)
        .map_err(Failure::usage)?;
    let subject = DeviceSubject {
        device_id: a.device_id.clone(),
        serial: hwid.serial(),
        hardware: a.hardware.clone(),
    };
    let csr = build_csr(&subject, &keys.identity).map_err(rejected)?;
    let secret = keys
        .identity
        .secret_key_file(Protection::None)
        .at(&key_path)?;
    write_atomic(&key_path, &secret, 0o600)?;
    let pub_path = a.out.join("identity.pub");
    write_atomic(
        &pub_path,
        &keys.identity.public_key_file().at(&pub_path)?,
        0o644,
    )?;
    let kem_pem = keys.kem.to_pkcs8_pem().map_err(rejected)?;
    write_atomic(&a.out.join("kem.key"), kem_pem.as_bytes(), 0o600)?;
    let kem_pub = keys.kem.public_key_pem().map_err(rejected)?;
    write_atomic(&a.out.join("kem.pub"), kem_pub.as_bytes(), 0o644)?;
    let csr_path = a.out.join("device.csr");
    write_atomic(
        &csr_path,
        csr_to_pem(&csr).map_err(rejected)?.as_bytes(),
        0o644,
    )?;
    println!("device id  {}", a.device_id);
    println!("hardware   {} (id {hwid})", a.hardware);
    println!("serial     {}", subject.serial);
    println!("node id    {}", keys.identity.id().to_hex());
    println!(
        "keys       {} (0600), {} (0600)",
        key_path.display(),
        a.out.join("kem.key").display()
    );
    println!("request    {}", csr_path.display());
    Ok(())
}

/// The registry of an intermediate CA (a root CA issues no devices).
fn registry_of(ca: &Ca) -> CmdResult<Registry> {
    if ca.root().is_none() {
        return Err(Failure::usage(format!(
            "{}: is a root CA directory; devices are issued and revoked by an intermediate CA (provision ca intermediate)",
            ca.dir().display()
        )));
    }
    Registry::open(&ca.dir().join(REGISTRY_FILE)).map_err(rejected)
}

fn sign(a: &SignArgs) -> CmdResult {
    let bytes = read_limited(&a.csr, MAX_CSR_BYTES)?;
    let csr = verify_csr(&bytes).at(&a.csr)?;
    let hwid = match &a.hwid {
        Some(h) => {
            let id = HardwareId::normalise(h).map_err(Failure::usage)?;
            if id.serial() != csr.subject.serial {
                return Err(Failure::file(
                    &a.csr,
                    format!(
                        "asks for serial {}, but hardware id {id} maps to serial {}",
                        csr.subject.serial,
                        id.serial()
                    ),
                ));
            }
            Some(id)
        }
        None => None,
    };
    let kem_public = match &a.kem_pub {
        Some(p) => {
            let pem = read_limited(p, 64 * 1024)?;
            let text = String::from_utf8(pem).map_err(|_| Failure::file(p, "is not UTF-8 PEM"))?;
            Some(kem_public_key_from_pem(&text).at(p)?)
        }
        None => None,
    };
    let ca = open_ca(&a.ca)?;
    let registry = registry_of(&ca)?;
    let t = now();
    let device_id = registry
        .resolve(
            csr.subject.serial,
            hwid.as_ref(),
            Some(&csr.subject.device_id),
        )
        .map_err(rejected)?;
    let cert = ca
        .issue_device(&csr.subject, &csr.public_key, a.validity_days, t)
        .map_err(rejected)?;
    let chain = format!(
        "{}{}",
        to_pem(&cert).map_err(rejected)?,
        to_pem(ca.certificate()).map_err(rejected)?
    );
    write_atomic(&a.out, chain.as_bytes(), 0o644)?;
    let period = cert::Period::of(&cert);
    registry
        .record(
            &[Issued {
                device_id: device_id.clone(),
                serial: csr.subject.serial,
                hardware_id: hwid,
                hardware_class: csr.subject.hardware.clone(),
                cert_serial: cert::serial_hex(&cert),
                period,
                artifacts: Some(DeviceArtifacts {
                    cert_pem: to_pem(&cert).map_err(rejected)?,
                    kem_public,
                }),
            }],
            t,
        )
        .map_err(rejected)?;
    println!("device       {device_id} (serial {})", csr.subject.serial);
    println!("certificate  {}", a.out.display());
    println!("cert serial  {}", cert::serial_hex(&cert));
    println!(
        "valid        {} to {}",
        rfc3339(period.not_before),
        rfc3339(period.not_after)
    );
    Ok(())
}

fn read_chain(path: &Path) -> CmdResult<Vec<meshota_provision::x509_cert::Certificate>> {
    let bytes = read_limited(path, MAX_CERT_FILE_BYTES)?;
    parse_pem_chain(&bytes).at(path)
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let t = now();
    let at = match &a.at {
        Some(s) => parse_time(s, t)?,
        None => t,
    };
    let root = read_cert(&a.root).map_err(rejected)?;
    let mut device_chain = read_chain(&a.device)?;
    let device = device_chain.remove(0);
    let mut intermediates = device_chain;
    for p in &a.intermediates {
        intermediates.extend(read_chain(p)?);
    }
    let crl = match &a.crl {
        Some(p) => Some(parse_crl(&read_limited(p, 64 << 20)?).at(p)?),
        None => None,
    };
    let v = verify_device(&root, &intermediates, &device, at, crl.as_ref())
        .map_err(|e| Failure::rejected(format!("{}: rejected: {e}", a.device.display())))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "valid": true,
                "device_id": v.subject.device_id,
                "serial": v.subject.serial.to_string(),
                "hardware_class": v.subject.hardware,
                "cert_serial": v.cert_serial,
                "node_id": v.public_key.id().to_hex(),
                "not_before": rfc3339(v.period.not_before),
                "not_after": rfc3339(v.period.not_after),
                "chain": v.chain,
                "checked_at": rfc3339(at),
                "revocation_checked": crl.is_some(),
            })
        );
    } else {
        println!(
            "valid: device {} (serial {})",
            v.subject.device_id, v.subject.serial
        );
        println!("hardware     {}", v.subject.hardware);
        println!("node id      {}", v.public_key.id().to_hex());
        println!("cert serial  {}", v.cert_serial);
        println!(
            "valid        {} to {} (checked at {})",
            rfc3339(v.period.not_before),
            rfc3339(v.period.not_after),
            rfc3339(at)
        );
        println!("chain        {}", v.chain.join(" <- "));
        println!(
            "revocation   {}",
            if crl.is_some() {
                "not revoked"
            } else {
                "not checked (no --crl)"
            }
        );
    }
    Ok(())
}

fn write_crl(ca: &Ca, registry: &Registry, t: UnixTime, days: u32) -> CmdResult<PathBuf> {
    let n = registry.next_crl_number().map_err(rejected)?;
    let revoked = registry.revoked_certs(t).map_err(rejected)?;
    let crl = ca.issue_crl(&revoked, n, t, days).map_err(rejected)?;
    let path = ca.dir().join(CRL_FILE);
    write_atomic(&path, crl_to_pem(&crl).map_err(rejected)?.as_bytes(), 0o644)?;
    println!(
        "revocation list {} (number {n}, {} certificates, next update {})",
        path.display(),
        revoked.len(),
        rfc3339(UnixTime(t.0.saturating_add(u64::from(days) * 86_400)))
    );
    Ok(path)
}

fn revoke(a: &RevokeArgs) -> CmdResult {
    let selector = match (&a.serial, &a.device_id, &a.cert_serial) {
        (Some(s), _, _) => Selector::Serial(s.parse::<DeviceSerial>().map_err(Failure::usage)?),
        (None, Some(d), _) => Selector::DeviceId(d.clone()),
        (None, None, Some(c)) => Selector::CertSerial(c.clone()),
        (None, None, None) => {
            return Err(Failure::usage(
                "name the device: --serial, --device-id or --cert-serial",
            ));
        }
    };
    let ca = open_ca(&a.ca)?;
    let registry = registry_of(&ca)?;
    let t = now();
    let r = registry.revoke(&selector, t).map_err(rejected)?;
    println!(
        "revoked device {} (serial {}, certificate {})",
        r.device_id, r.serial, r.cert_serial
    );
    write_crl(&ca, &registry, t, a.crl_days)?;
    Ok(())
}

fn crl(a: &CrlArgs) -> CmdResult {
    let ca = open_ca(&a.ca)?;
    let registry = registry_of(&ca)?;
    write_crl(&ca, &registry, now(), a.crl_days)?;
    Ok(())
}

fn batch(a: &BatchArgs) -> CmdResult {
    let text = read_limited(&a.devices, meshota_provision::batch::MAX_CSV_BYTES)?;
    let text = String::from_utf8(text).map_err(|_| Failure::file(&a.devices, "is not UTF-8"))?;
    let base = a.devices.parent().unwrap_or(Path::new("."));
    let rows = parse_devices_csv(&text, base).at(&a.devices)?;
    let ca = open_ca(&a.ca)?;
    let registry = registry_of(&ca)?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let bar = if a.json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(rows.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} devices {per_sec} eta {eta}",
        ) {
            b.set_style(style);
        }
        b
    };
    let report = run_batch(
        &ca,
        &registry,
        &rows,
        &a.out,
        BatchOptions {
            days: a.validity_days,
            threads,
            io_threads: a.io_threads,
            chunk: a.chunk,
        },
        now(),
        &|_| bar.inc(1),
    )
    .map_err(rejected)?;
    bar.finish_and_clear();
    let total = report.outcomes.len();
    let ok = report.succeeded();
    let rate = if total == 0 {
        100.0
    } else {
        100.0 * ok as f64 / total as f64
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    if a.json {
        let failures: Vec<_> = report
            .failures()
            .map(|(o, why)| {
                serde_json::json!({"line": o.line, "hardware_id": o.hardware_id, "reason": why})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "devices": total,
                "succeeded": ok,
                "failed": total - ok,
                "seconds": report.elapsed.as_secs_f64(),
                "devices_per_second": report.devices_per_second(),
                "success_rate": rate,
                "p50_ms": ms(report.percentile(50.0)),
                "p99_ms": ms(report.percentile(99.0)),
                "threads": threads,
                "failures": failures,
            })
        );
    } else {
        println!(
            "provisioned {ok} of {total} devices in {:.2} s: {:.1} devices/s, success rate {rate:.1}%",
            report.elapsed.as_secs_f64(),
            report.devices_per_second()
        );
        println!(
            "per device   p50 {:.2} ms, p99 {:.2} ms ({threads} threads)",
            ms(report.percentile(50.0)),
            ms(report.percentile(99.0))
        );
        println!("output       {}", a.out.display());
        for (o, why) in report.failures() {
            println!("failed       line {} ({}): {why}", o.line, o.hardware_id);
        }
    }
    if ok == total {
        Ok(())
    } else {
        Err(Failure::rejected(format!(
            "{} of {total} devices failed (listed above)",
            total - ok
        )))
    }
}

fn export(a: &ExportArgs) -> CmdResult {
    let path = a.ca.join(REGISTRY_FILE);
    if !path.exists() {
        return Err(Failure::file(
            &path,
            "no registry here: name an intermediate CA directory that has provisioned devices",
        ));
    }
    let registry = Registry::open(&path).map_err(rejected)?;
    let records = registry.devices().map_err(rejected)?;
    let text = match a.format {
        Format::Csv => registry::export_csv(&records),
        Format::Json => registry::export_json(&records) + "\n",
    };
    match &a.out {
        Some(p) => write_atomic(p, text.as_bytes(), 0o644)?,
        None => print!("{text}"),
    }
    Ok(())
}
