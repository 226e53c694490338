//! A device opened from its configuration, as the `meshota` CLI does.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_boot::config::{BootConfig, DeviceConfig, HealthConfig, SlotConfig};
use meshota_boot::control::BootControl;
use meshota_boot::env::Vars;
use meshota_boot::file::FileSlot;
use meshota_boot::install::{BootOutcome, HealthCheck};
use meshota_boot::lifecycle::ReleaseImage;
use meshota_boot::{Error, SlotId};
use meshota_manifest::Hash;

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn release(bytes: &[u8], sv: u64) -> ReleaseImage {
    ReleaseImage {
        image_hash: Hash::of(bytes),
        size: bytes.len() as u64,
        security_version: sv,
        version: "1.0.0".into(),
    }
}

#[test]
fn device_config_from_json_opens_a_simulated_device_that_installs_and_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(FileSlot::create(&d.join("disk.img"), 2 * 65_536).unwrap());
    let json = serde_json::json!({
        "slot_a": { "path": d.join("disk.img"), "size": 65_536 },
        "slot_b": { "path": d.join("disk.img"), "offset": 65_536, "block_device": true },
        "install_record": d.join("install.rec"),
        "boot": { "kind": "simulated", "records": d.join("boot.rec") },
        "health": { "command": ["true"], "timeout_ms": 5000 },
    });
    let cfg: DeviceConfig = serde_json::from_value(json).unwrap();
    assert_eq!(cfg.trial_boots, 3);
    assert!(matches!(cfg.boot, BootConfig::Simulated { .. }));
    let opts = cfg.install_options();

    let a = image(30_000);
    let mut dev = cfg.open().unwrap();
    assert!(
        matches!(dev.record(), Err(Error::WrongState { .. })),
        "not provisioned yet"
    );
    dev.provision(SlotId::A, &release(&a, 1), &a[..], &opts)
        .unwrap();
    dev.boot_control().simulate_boot().unwrap();

    // A later process (the CLI) opens the same config.
    let mut dev = cfg.open().unwrap();
    let mut health = cfg.health_check().unwrap().unwrap();
    let b = image(40_000);
    let rb = release(&b, 2);
    let mut check = |_: u64| Ok(rb.clone());
    dev.install(&mut check, &b[..], &opts, 0).unwrap();
    let status = serde_json::to_string(&dev.status().unwrap()).unwrap();
    assert!(status.contains("\"Trial\""), "{status}");

    let mut dev = cfg.open().unwrap();
    assert_eq!(dev.boot_control().simulate_boot().unwrap().slot, SlotId::B);
    let out = dev.on_boot(&mut health, &mut check, &opts, 0).unwrap();
    assert_eq!(
        out,
        BootOutcome::Confirmed {
            slot: SlotId::B,
            security_counter: 2
        }
    );
    assert!(health.check().is_ok());
}

#[test]
fn uboot_device_reads_the_booted_slot_from_the_kernel_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fw = d.join("fw_env.config");
    std::fs::write(
        &fw,
        format!(
            "{} 0 0x1000\n{} 0 0x1000\n",
            d.join("e0").display(),
            d.join("e1").display()
        ),
    )
    .unwrap();
    let vars: Vars = [
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    meshota_boot::control::UbootEnv::open_config(&fw)
        .unwrap()
        .initialize(&vars)
        .unwrap();
    std::fs::write(
        d.join("cmdline"),
        "console=ttyS0 rauc.slot=A root=/dev/mmcblk0p2\n",
    )
    .unwrap();
    drop(FileSlot::create(&d.join("a"), 4096).unwrap());
    drop(FileSlot::create(&d.join("b"), 4096).unwrap());
    let cfg = DeviceConfig {
        slot_a: SlotConfig {
            path: d.join("a"),
            offset: 0,
            size: None,
            block_device: false,
        },
        slot_b: SlotConfig {
            path: d.join("b"),
            offset: 0,
            size: None,
            block_device: false,
        },
        install_record: d.join("install.rec"),
        boot: BootConfig::Uboot {
            fw_env_config: fw,
            cmdline: Some(d.join("cmdline")),
        },
        health: Some(HealthConfig {
            command: vec![],
            timeout_ms: 1,
        }),
        trial_boots: 2,
    };
    let mut dev = cfg.open().unwrap();
    assert_eq!(dev.boot_control().booted().unwrap(), Some(SlotId::A));
    assert!(matches!(cfg.health_check(), Err(Error::WrongState { .. })));

    // Adopting the running slot: its contents must match the image.
    let a = image(1000);
    let mut s = FileSlot::open_file(&d.join("a")).unwrap();
    meshota_boot::Slot::write(&mut s, 0, &a).unwrap();
    let wrong = ReleaseImage {
        image_hash: Hash([7; 32]),
        ..release(&a, 1)
    };
    assert!(matches!(
        dev.adopt(SlotId::A, &wrong, &cfg.install_options()),
        Err(Error::ImageHashMismatch { .. })
    ));
    dev.adopt(SlotId::A, &release(&a, 1), &cfg.install_options())
        .unwrap();
    let st = dev.status().unwrap();
    assert_eq!(
        (st.booted, st.record.confirmed, st.boot.primary),
        (Some(SlotId::A), SlotId::A, SlotId::A)
    );
    assert!(!st.boot.slot(SlotId::B).bootable);
}
