//! Interoperability with the real bootloader tools: `fw_printenv`/`fw_setenv`
//! (Debian package `libubootenv-tool`) and `grub-editenv` (Debian package
//! `grub-common`). These tests fail, never skip, when a tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use meshota_boot::SlotId;
use meshota_boot::control::{BootControl, GrubEnv, UbootEnv};
use meshota_boot::env::Vars;

fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        PathBuf::from("/usr/sbin"),
        PathBuf::from("/sbin"),
        PathBuf::from("/usr/bin"),
    ];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: it comes from the Debian package `{package}`. \
                 Run the test command from the README (it apt-get installs it), \
                 or `apt-get install -y {package}`."
            )
        })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn printenv(cfg: &Path) -> Vars {
    let text = run(Command::new(tool("fw_printenv", "libubootenv-tool"))
        .arg("-c")
        .arg(cfg));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn setenv(cfg: &Path, name: &str, value: &str) {
    run(Command::new(tool("fw_setenv", "libubootenv-tool"))
        .arg("-c")
        .arg(cfg)
        .arg(name)
        .arg(value));
}

fn config(dir: &Path, redundant: bool) -> PathBuf {
    let cfg = dir.join("fw_env.config");
    let mut text = format!("{} 0x0 0x4000\n", dir.join("env0").display());
    if redundant {
        // Second copy at an offset inside another file, as on a partition.
        std::fs::write(dir.join("env1"), vec![0u8; 0x8000]).unwrap();
        text.push_str(&format!("{} 0x4000 0x4000\n", dir.join("env1").display()));
    }
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn provisioned(dir: &Path, redundant: bool) -> PathBuf {
    let cfg = config(dir, redundant);
    let vars: Vars = [
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
        ("bootdelay", "2"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    UbootEnv::open_config(&cfg)
        .unwrap()
        .initialize(&vars)
        .unwrap();
    cfg
}

#[test]
fn fw_printenv_reads_what_meshota_writes() {
    for redundant in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = provisioned(dir.path(), redundant);
        let mut ub = UbootEnv::open_config(&cfg).unwrap();
        ub.mark_trial(SlotId::B, 3).unwrap();
        let v = printenv(&cfg);
        assert_eq!(
            v.get("BOOT_ORDER").map(String::as_str),
            Some("B A"),
            "redundant={redundant}"
        );
        assert_eq!(v.get("BOOT_B_LEFT").map(String::as_str), Some("3"));
        assert_eq!(v.get("BOOT_A_LEFT").map(String::as_str), Some("3"));
        assert_eq!(v.get("bootdelay").map(String::as_str), Some("2"));
    }
}

#[test]
fn meshota_reads_what_fw_setenv_writes() {
    for redundant in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = provisioned(dir.path(), redundant);
        setenv(&cfg, "BOOT_ORDER", "B A");
        setenv(&cfg, "BOOT_B_LEFT", "2");
        setenv(&cfg, "BOOT_A_LEFT", "0");
        let mut ub = UbootEnv::open_config(&cfg).unwrap();
        let st = ub.load().unwrap();
        assert_eq!(
            st.order,
            vec![SlotId::B, SlotId::A],
            "redundant={redundant}"
        );
        assert_eq!(st.left, [0, 2]);
        assert_eq!(
            ub.vars().unwrap().get("bootdelay").map(String::as_str),
            Some("2")
        );
    }
}

#[test]
fn meshota_and_fw_setenv_agree_across_flag_counter_wraparound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = provisioned(dir.path(), true);
    let mut ub = UbootEnv::open_config(&cfg).unwrap();
    // 300 alternating writes: the flags byte wraps past 255 at least once.
    for i in 0..150u32 {
        let n = (i % 7).to_string();
        setenv(&cfg, "BOOT_A_LEFT", &n);
        assert_eq!(
            ub.load().unwrap().left[0].to_string(),
            n,
            "write {i} by fw_setenv"
        );
        let tries = u8::try_from(i % 5 + 1).unwrap();
        ub.mark_trial(SlotId::B, tries).unwrap();
        assert_eq!(
            printenv(&cfg).get("BOOT_B_LEFT").cloned(),
            Some(tries.to_string()),
            "write {i} by meshota"
        );
    }
}

fn grub_editenv() -> PathBuf {
    tool("grub-editenv", "grub-common")
}

fn grub_list(path: &Path) -> Vars {
    let text = run(Command::new(grub_editenv()).arg(path).arg("list"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn grub_editenv_reads_what_meshota_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    run(Command::new(grub_editenv()).arg(&path).arg("create"));
    run(Command::new(grub_editenv())
        .arg(&path)
        .arg("set")
        .arg("ORDER=A B")
        .arg("A_OK=1")
        .arg("A_TRY=0"));
    let mut g = GrubEnv::new(&path);
    g.mark_trial(SlotId::B, 3).unwrap();
    let v = grub_list(&path);
    assert_eq!(v.get("ORDER").map(String::as_str), Some("B A"));
    assert_eq!(v.get("B_OK").map(String::as_str), Some("1"));
    assert_eq!(v.get("B_TRY").map(String::as_str), Some("0"));
    assert_eq!(v.get("A_OK").map(String::as_str), Some("1"));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
    // Values with a backslash or newline survive both ways.
    let mut vars = g.vars().unwrap();
    vars.insert("note".to_string(), "a\\b".to_string());
    g.write_vars(&vars).unwrap();
    assert_eq!(
        grub_list(&path).get("note").map(String::as_str),
        Some("a\\b")
    );
}

#[test]
fn meshota_reads_what_grub_editenv_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    run(Command::new(grub_editenv()).arg(&path).arg("create"));
    run(Command::new(grub_editenv()).arg(&path).arg("set").args([
        "ORDER=B A",
        "A_OK=1",
        "A_TRY=0",
        "B_OK=1",
        "B_TRY=1",
        "saved_entry=x\\y",
    ]));
    let mut g = GrubEnv::new(&path);
    let st = g.load().unwrap();
    assert_eq!(st.order, vec![SlotId::B, SlotId::A]);
    assert_eq!((st.ok, st.tried), ([true, true], [false, true]));
    assert!(g.status().unwrap().primary_exhausted());
    assert_eq!(
        g.vars().unwrap().get("saved_entry").map(String::as_str),
        Some("x\\y")
    );
    // And meshota's rollback is what grub-editenv then sees.
    g.mark_bad(SlotId::B).unwrap();
    let v = grub_list(&path);
    assert_eq!(v.get("ORDER").map(String::as_str), Some("A B"));
    assert_eq!(v.get("B_OK").map(String::as_str), Some("0"));
    assert_eq!(v.get("saved_entry").map(String::as_str), Some("x\\y"));
}
