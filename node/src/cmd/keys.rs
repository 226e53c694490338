//! `meshota keys …`: generate and show ML-DSA-65 signing key pairs and
//! ML-KEM-768 key pairs (`--kem`, to receive encrypted bundles).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use meshota_manifest::fs::write_atomic;
use meshota_manifest::{KdfParams, Protection, SecretKey};

use crate::failure::{AtPath, CmdResult, Failure};
use crate::keyio::{load_public, new_passphrase};

/// Key management.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCmd {
    /// Generate an ML-DSA-65 key pair: DIR/NAME.pub and DIR/NAME.key (mode 0600);
    /// with --kem an ML-KEM-768 pair: DIR/NAME.kem.pub and DIR/NAME.kem.key (PEM).
    Generate(GenerateArgs),
    /// Show a public key file's name and id.
    Show(ShowArgs),
}

/// Arguments of `keys generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Directory to write the key files into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Key name: the file stem and the name recorded in the files.
    #[arg(long)]
    name: String,
    /// Seal the secret key with a passphrase (from MESHOTA_PASSPHRASE, or asked).
    #[arg(long)]
    encrypt: bool,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
    /// An ML-KEM-768 key pair (RFC 9935 PEM: PKCS#8 seed form, SPKI) for
    /// receiving encrypted bundles, instead of an ML-DSA-65 signing key.
    #[arg(long, conflicts_with = "encrypt")]
    kem: bool,
}

/// Arguments of `keys show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// A public key file.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: KeysCmd) -> CmdResult {
    match cmd {
        KeysCmd::Generate(a) => generate(&a),
        KeysCmd::Show(a) => show(&a),
    }
}

fn random<const N: usize>() -> CmdResult<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| Failure::rejected(format!("the system RNG failed: {e}")))?;
    Ok(out)
}

fn generate(a: &GenerateArgs) -> CmdResult {
    if a.name.is_empty() || a.name.starts_with('.') || a.name.contains(['/', '\\', '\0']) {
        return Err(Failure::usage(format!(
            "key name {:?} must be a plain file name",
            a.name
        )));
    }
    std::fs::create_dir_all(&a.out).at(&a.out)?;
    let stem = if a.kem {
        format!("{}.kem", a.name)
    } else {
        a.name.clone()
    };
    let pub_path = a.out.join(format!("{stem}.pub"));
    let key_path = a.out.join(format!("{stem}.key"));
    for p in [&pub_path, &key_path] {
        if p.exists() && !a.force {
            return Err(Failure::file(
                p,
                "already exists; refusing to overwrite a key (use --force)",
            ));
        }
    }
    if a.kem {
        let kp = meshota_provision::alg::KemKeyPair::from_seed(random::<64>()?);
        let secret = kp.to_pkcs8_pem().at(&key_path)?;
        write_atomic(&key_path, secret.as_bytes(), 0o600)?;
        let public = kp.public_key_pem().at(&pub_path)?;
        write_atomic(&pub_path, public.as_bytes(), 0o644)?;
        let id = meshota_manifest::Hash::of(&kp.encapsulation_key());
        println!("recipient id {}", id.to_hex());
        println!("public       {}", pub_path.display());
        println!("secret       {}", key_path.display());
        return Ok(());
    }
    let key = SecretKey::from_seed(random::<32>()?, &a.name).at(&key_path)?;
    let pass;
    let protection = if a.encrypt {
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
    let secret = key.secret_key_file(protection).at(&key_path)?;
    write_atomic(&key_path, &secret, 0o600)?;
    write_atomic(&pub_path, &key.public_key_file().at(&pub_path)?, 0o644)?;
    println!("key id   {}", key.id().to_hex());
    println!("public   {}", pub_path.display());
    println!(
        "secret   {}{}",
        key_path.display(),
        if a.encrypt {
            " (passphrase-protected)"
        } else {
            ""
        }
    );
    Ok(())
}

fn show(a: &ShowArgs) -> CmdResult {
    let (name, key) = load_public(&a.file)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "name": name,
                "algorithm": "ML-DSA-65",
                "key_id": key.id().to_hex(),
            })
        );
    } else {
        println!("name       {name}");
        println!("algorithm  ML-DSA-65");
        println!("key id     {}", key.id().to_hex());
    }
    Ok(())
}
