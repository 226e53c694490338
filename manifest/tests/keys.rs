//! Key files: formats, passphrase sealing, permission checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshota_manifest::{
    Error, KdfParams, Protection, SecretKey,
    keys::{decode_public_key_file, encode_public_key_file},
};
use zeroize::Zeroizing;

/// Cheap KDF parameters: the tests exercise the format, not the cost.
const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn sealed(key: &SecretKey, pass: &str) -> Vec<u8> {
    key.secret_key_file(Protection::Passphrase {
        passphrase: pass,
        kdf: TEST_KDF,
        salt: [7; 16],
        nonce: [9; 24],
    })
    .unwrap()
}

#[test]
fn key_id_is_blake3_of_the_encoded_public_key() {
    let k = SecretKey::from_seed([1; 32], "k").unwrap();
    assert_eq!(k.public().as_bytes().len(), 1952);
    assert_eq!(k.id().0, *blake3::hash(k.public().as_bytes()).as_bytes());
    assert_eq!(k.id().short().len(), 16);
}

#[test]
fn public_key_file_round_trips() {
    let k = SecretKey::from_seed([1; 32], "release-1").unwrap();
    let bytes = k.public_key_file().unwrap();
    let (name, pk) = decode_public_key_file(&bytes).unwrap();
    assert_eq!(name, "release-1");
    assert_eq!(&pk, k.public());
    assert_eq!(encode_public_key_file(&name, &pk).unwrap(), bytes);
}

#[test]
fn public_key_file_rejects_wrong_key_length() {
    let k = SecretKey::from_seed([1; 32], "k").unwrap();
    let mut bytes = k.public_key_file().unwrap();
    // The key's length prefix is the two varint bytes before its 1952 bytes.
    let key_start = bytes.len() - 1952;
    assert_eq!(&bytes[key_start - 2..key_start], &[0xa0, 0x0f]);
    bytes[key_start - 2] = 0x9f; // 1951
    bytes.pop();
    assert!(matches!(
        decode_public_key_file(&bytes),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn plain_secret_key_file_round_trips() {
    let k = SecretKey::from_seed([3; 32], "plain").unwrap();
    let bytes = k.secret_key_file(Protection::None).unwrap();
    assert!(!SecretKey::file_is_sealed(&bytes).unwrap());
    let back = SecretKey::from_secret_key_file(&bytes, |_| panic!("no passphrase needed")).unwrap();
    assert_eq!(back.id(), k.id());
    assert_eq!(back.name(), "plain");
}

#[test]
fn sealed_secret_key_opens_with_its_passphrase_only() {
    let k = SecretKey::from_seed([4; 32], "sealed").unwrap();
    let bytes = sealed(&k, "correct horse");
    assert!(SecretKey::file_is_sealed(&bytes).unwrap());
    // The seed does not appear in the file.
    assert!(!bytes.windows(32).any(|w| w == [4; 32]));
    let back =
        SecretKey::from_secret_key_file(&bytes, |_| Some(Zeroizing::new("correct horse".into())))
            .unwrap();
    assert_eq!(back.id(), k.id());
    assert_eq!(
        SecretKey::from_secret_key_file(&bytes, |_| Some(Zeroizing::new("wrong".into())))
            .map(|k| k.id()),
        Err(Error::WrongPassphrase {
            name: "sealed".into()
        })
    );
    assert_eq!(
        SecretKey::from_secret_key_file(&bytes, |_| None).map(|k| k.id()),
        Err(Error::PassphraseRequired {
            name: "sealed".into()
        })
    );
}

#[test]
fn sealed_secret_key_rejects_hostile_kdf_cost() {
    let k = SecretKey::from_seed([4; 32], "sealed").unwrap();
    let err = k
        .secret_key_file(Protection::Passphrase {
            passphrase: "p",
            kdf: KdfParams {
                memory_kib: KdfParams::MAX_MEMORY_KIB + 1,
                iterations: 1,
                parallelism: 1,
            },
            salt: [0; 16],
            nonce: [0; 24],
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidField { .. }));
}

#[test]
fn secret_key_file_with_mismatched_key_id_is_refused() {
    let k = SecretKey::from_seed([5; 32], "k").unwrap();
    let mut bytes = k.secret_key_file(Protection::None).unwrap();
    // Layout: header(6) algorithm(1) name(1+1) key_id(32) ...
    bytes[6 + 1 + 2] ^= 0xff;
    assert!(matches!(
        SecretKey::from_secret_key_file(&bytes, |_| None),
        Err(Error::SecretKeyMismatch { .. })
    ));
}

#[test]
fn secret_key_file_is_not_accepted_as_public_key_file() {
    let k = SecretKey::from_seed([5; 32], "k").unwrap();
    let bytes = k.secret_key_file(Protection::None).unwrap();
    assert!(matches!(
        decode_public_key_file(&bytes),
        Err(Error::WrongKind { .. })
    ));
}

#[test]
fn signatures_are_deterministic_and_context_bound() {
    let k = SecretKey::from_seed([6; 32], "k").unwrap();
    let a = k.sign(b"msg", b"ctx-a").unwrap();
    assert_eq!(a, k.sign(b"msg", b"ctx-a").unwrap());
    assert_eq!(a.len(), 3309);
    assert!(k.public().verify(b"msg", b"ctx-a", &a));
    assert!(!k.public().verify(b"msg", b"ctx-b", &a));
    assert!(!k.public().verify(b"msh", b"ctx-a", &a));
}

mod files {
    use meshota_manifest::fs::{FileError, read_secret, write_atomic};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_key_written_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_atomic(&path, b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&path, 1024).unwrap(), b"secret");
    }

    #[test]
    fn refuses_group_or_world_readable_secret_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        for mode in [0o640, 0o604, 0o660] {
            write_atomic(&path, b"secret", mode).unwrap();
            let err = read_secret(&path, 1024).unwrap_err();
            assert!(
                matches!(err, FileError::InsecurePermissions { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn refuses_file_above_its_size_limit_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        write_atomic(&path, &[0u8; 2048], 0o600).unwrap();
        assert!(matches!(
            read_secret(&path, 1024),
            Err(FileError::TooLarge {
                len: 2048,
                max: 1024,
                ..
            })
        ));
    }

    #[test]
    fn atomic_write_steps_around_temporary_files_a_crashed_writer_left() {
        // A device that crashed mid-write often boots into the same process
        // id: its leftovers must not block every later write.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let pid = std::process::id();
        for n in 0..8 {
            std::fs::write(dir.path().join(format!(".state.tmp-{pid}-{n}")), b"x").unwrap();
        }
        std::fs::write(dir.path().join(format!(".state.tmp-{pid}")), b"x").unwrap();
        write_atomic(&path, b"written", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"written");
    }

    #[test]
    fn atomic_writes_of_one_path_from_many_threads_all_succeed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::sync::Arc::new(dir.path().join("shared"));
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&path, &[t; 4096], 0o644).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let bytes = std::fs::read(&*path).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "one writer's bytes");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old", 0o644).unwrap();
        write_atomic(&path, b"new contents", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
