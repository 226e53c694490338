//! Loading key files for commands: permission checks and passphrases.

use std::io::IsTerminal;
use std::path::Path;

use meshota_manifest::fs::{read_limited, read_secret};
use meshota_manifest::keys::decode_public_key_file;
use meshota_manifest::limits::{MAX_PUBLIC_KEY_FILE_BYTES, MAX_SECRET_KEY_FILE_BYTES};
use meshota_manifest::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use crate::failure::{AtPath, CmdResult, Failure};

/// The environment variable that supplies key passphrases non-interactively.
pub(crate) const PASSPHRASE_ENV: &str = "MESHOTA_PASSPHRASE";

/// A passphrase from `MESHOTA_PASSPHRASE`, else from a prompt when standard
/// input is a terminal, else none.
pub(crate) fn passphrase_for(key_name: &str) -> Option<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Some(Zeroizing::new(p));
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Passphrase for key {key_name:?}: "))
            .ok()
            .map(Zeroizing::new);
    }
    None
}

/// A new passphrase: from the environment, or asked twice on a terminal.
pub(crate) fn new_passphrase() -> CmdResult<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        if p.is_empty() {
            return Err(Failure::usage(format!("{PASSPHRASE_ENV} is set but empty")));
        }
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "--encrypt needs a passphrase: set {PASSPHRASE_ENV} or run on a terminal"
        )));
    }
    let a =
        Zeroizing::new(rpassword::prompt_password("New passphrase: ").map_err(Failure::rejected)?);
    let b = Zeroizing::new(
        rpassword::prompt_password("Repeat passphrase: ").map_err(Failure::rejected)?,
    );
    if a != b {
        return Err(Failure::usage("the passphrases do not match"));
    }
    if a.is_empty() {
        return Err(Failure::usage("an empty passphrase protects nothing"));
    }
    Ok(a)
}

/// Loads a public key file.
pub(crate) fn load_public(path: &Path) -> CmdResult<(String, PublicKey)> {
    let bytes = read_limited(path, MAX_PUBLIC_KEY_FILE_BYTES)?;
    decode_public_key_file(&bytes).at(path)
}

/// Loads a secret key file: refuses group/world-accessible files, asks for
/// a passphrase if the key is sealed.
pub(crate) fn load_secret(path: &Path) -> CmdResult<SecretKey> {
    let bytes = read_secret(path, MAX_SECRET_KEY_FILE_BYTES)?;
    SecretKey::from_secret_key_file(&bytes, passphrase_for).at(path)
}
