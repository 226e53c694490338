//! Provisioning images as squashfs: deterministic bytes, read back by our
//! reader and by Debian's `unsquashfs` (squashfs-tools).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use meshota_provision::Error;
use meshota_provision::image::contents::{Identity, ImageInputs, ImageTree, ImmutableField};
use meshota_provision::image::squashfs;

const ISSUED: u32 = 1_795_392_000;

fn inputs() -> ImageInputs {
    ImageInputs {
        identity: Identity {
            device_id: "pump-7".into(),
            serial: "1a2b3c4d5e".parse().unwrap(),
            fleet: "north".into(),
            machine_id: true,
        },
        device_chain_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        root_pem: "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n".into(),
        crl_pem: None,
        config: vec![
            ("mesh.toml".into(), b"listen = \"0.0.0.0:7070\"\n".to_vec()),
            ("wifi.conf".into(), vec![b'x'; 300_000]),
        ],
    }
}

/// `unsquashfs`, which scripts/test.sh installs (Debian squashfs-tools).
fn unsquashfs() -> &'static str {
    for p in [
        "/usr/bin/unsquashfs",
        "/usr/sbin/unsquashfs",
        "/bin/unsquashfs",
    ] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("unsquashfs not found: install squashfs-tools (scripts/test.sh does)");
}

#[test]
fn the_same_tree_and_time_give_byte_identical_images() {
    let tree = ImageTree::build(&inputs()).unwrap();
    let a = squashfs::write(&tree, ISSUED).unwrap();
    let b = squashfs::write(&ImageTree::build(&inputs()).unwrap(), ISSUED).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len() % 4096, 0, "padded to 4 KiB");
    // Inputs in another order: the same bytes.
    let mut i = inputs();
    i.config.reverse();
    assert_eq!(
        a,
        squashfs::write(&ImageTree::build(&i).unwrap(), ISSUED).unwrap()
    );
    // Another time or another value: other bytes.
    assert_ne!(a, squashfs::write(&tree, ISSUED + 1).unwrap());
    let mut i = inputs();
    i.config[0].1.push(b'\n');
    assert_ne!(
        a,
        squashfs::write(&ImageTree::build(&i).unwrap(), ISSUED).unwrap()
    );
}

#[test]
fn an_image_reads_back_to_the_tree_it_was_written_from() {
    let tree = ImageTree::build(&inputs()).unwrap();
    let bytes = squashfs::write(&tree, ISSUED).unwrap();
    let back = squashfs::read(&bytes).unwrap();
    assert_eq!(back, tree);
    back.check_layout().unwrap();
    assert_eq!(
        back.field(ImmutableField::SerialNumber).unwrap().as_deref(),
        Some("1a2b3c4d5e")
    );
}

#[test]
fn bytes_that_are_not_squashfs_are_a_typed_error() {
    for bad in [
        Vec::new(),
        vec![0u8; 4096],
        b"hsqs".iter().copied().chain([0xff; 200]).collect(),
    ] {
        assert!(matches!(squashfs::read(&bad), Err(Error::BadImage { .. })));
    }
    let mut truncated = squashfs::write(&ImageTree::build(&inputs()).unwrap(), ISSUED).unwrap();
    truncated.truncate(300);
    assert!(matches!(
        squashfs::read(&truncated),
        Err(Error::BadImage { .. })
    ));
}

#[test]
fn debian_unsquashfs_lists_and_extracts_the_image_with_its_modes_and_times() {
    let d = tempfile::tempdir().unwrap();
    let tree = ImageTree::build(&inputs()).unwrap();
    let img = d.path().join("image.sqfs");
    std::fs::write(&img, squashfs::write(&tree, ISSUED).unwrap()).unwrap();

    let list = Command::new(unsquashfs())
        .args(["-lls", "-n"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let text = String::from_utf8_lossy(&list.stdout);
    for (path, _) in tree.files() {
        assert!(
            text.contains(&format!("squashfs-root/{path}")),
            "{path} not listed:\n{text}"
        );
    }
    assert!(
        text.contains("-r--r--r-- root/root"),
        "machine-id 0444:\n{text}"
    );

    let out = d.path().join("x");
    let ex = Command::new(unsquashfs())
        .args(["-n", "-no-xattrs", "-d"])
        .arg(&out)
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        ex.status.success(),
        "{}",
        String::from_utf8_lossy(&ex.stderr)
    );
    for (path, file) in tree.files() {
        let p = out.join(path);
        assert_eq!(std::fs::read(&p).unwrap(), file.bytes, "{path}");
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            u32::from(file.mode),
            "{path}"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mtime(), i64::from(ISSUED), "{path}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
        "pump-7\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("etc/mqtt-group-id")).unwrap(),
        "north\n"
    );
}

mod sealing {
    use meshota_manifest::SecretKey;
    use meshota_provision::Error;
    use meshota_provision::alg::KemKeyPair;
    use meshota_provision::image::seal::{Opener, Sealer};

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![(
            "etc/meshota/secret/wifi.conf".into(),
            b"psk = \"s3cret\"\n".to_vec(),
        )]
    }

    #[test]
    fn a_sealed_file_opens_only_with_the_devices_kem_key_and_path() {
        let device = KemKeyPair::from_seed([7; 64]);
        let other = KemKeyPair::from_seed([8; 64]);
        let signer = SecretKey::from_seed([40; 32], "prov").unwrap();
        let f = files();
        let s = Sealer::new(&device.encapsulation_key(), &signer, 100, &f).unwrap();
        let sealed = s.seal(&f[0].0, &f[0].1).unwrap();
        assert_ne!(sealed[..f[0].1.len()], f[0].1[..]);
        let o = Opener::new(&device, s.ciphertext()).unwrap();
        assert_eq!(*o.open(&f[0].0, &sealed).unwrap(), f[0].1);
        // Another device's key, another path, a flipped bit: refused.
        let wrong = Opener::new(&other, s.ciphertext()).unwrap();
        assert!(matches!(
            wrong.open(&f[0].0, &sealed),
            Err(Error::NotForThisDevice { .. })
        ));
        assert!(o.open("etc/meshota/secret/other", &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(o.open(&f[0].0, &flipped).is_err());
    }

    #[test]
    fn sealing_is_deterministic_for_equal_inputs_and_changes_with_any_input() {
        let device = KemKeyPair::from_seed([7; 64]);
        let ek = device.encapsulation_key();
        let signer = SecretKey::from_seed([40; 32], "prov").unwrap();
        let f = files();
        let ct = |issued, files: &[(String, Vec<u8>)], signer: &SecretKey| {
            Sealer::new(&ek, signer, issued, files)
                .unwrap()
                .ciphertext()
                .to_vec()
        };
        assert_eq!(ct(100, &f, &signer), ct(100, &f, &signer));
        assert_ne!(ct(100, &f, &signer), ct(101, &f, &signer));
        let mut g = f.clone();
        g[0].1.push(b'x');
        assert_ne!(ct(100, &f, &signer), ct(100, &g, &signer));
        let other_signer = SecretKey::from_seed([41; 32], "prov2").unwrap();
        assert_ne!(ct(100, &f, &signer), ct(100, &f, &other_signer));
    }

    #[test]
    fn a_kem_key_or_ciphertext_of_the_wrong_size_is_a_typed_error() {
        let signer = SecretKey::from_seed([40; 32], "prov").unwrap();
        assert!(matches!(
            Sealer::new(&[0u8; 100], &signer, 1, &files()),
            Err(Error::Malformed { .. })
        ));
        let device = KemKeyPair::from_seed([7; 64]);
        assert!(matches!(
            Opener::new(&device, &[0u8; 10]),
            Err(Error::BadImage { .. })
        ));
    }
}
