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
