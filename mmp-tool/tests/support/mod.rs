//! Helpers for integration tests against real e2fsprogs and the running kernel.
//!
//! Every test makes its own image files in a temp dir; loop devices and mounts are released by
//! guards on drop, so a failing assertion still cleans up. Tests that need root or loop devices
//! skip with a message, except when `CI=true`, where they fail instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn mmp_tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmp-tool"))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `true` if the test may go on. Without the prerequisite: skip normally, panic in CI.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("CI=true and this test cannot run: {what}");
    }
    eprintln!("SKIPPED: {what}");
    false
}

pub fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    // Avoid a libc dependency in tests: /proc/self/status has "Uid: real effective ...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Root, loop devices and the e2fsprogs/util-linux commands the kernel tests use.
pub fn require_loop() -> bool {
    require(is_root(), "needs root for loop devices and mount")
        && require(
            Path::new("/dev/loop-control").exists(),
            "needs /dev/loop-control",
        )
        && require(
            have("losetup") && have("mount"),
            "needs losetup and mount (util-linux)",
        )
}

pub fn require_e2fsprogs() -> bool {
    require(
        have("mkfs.ext4") && have("e2mmpstatus") && have("debugfs"),
        "needs e2fsprogs (mkfs.ext4, e2mmpstatus, debugfs)",
    )
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sh(script: &str) -> Output {
    run_ok(Command::new("sh").args(["-c", script]))
}

/// Make an ext4 image of `size_mb` MiB with `mkfs.ext4 -q -F <args>`.
pub fn mkfs(dir: &Path, name: &str, size_mb: u64, args: &[&str]) -> PathBuf {
    let img = dir.join(name);
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size_mb << 20).unwrap();
    drop(f);
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(args)
            .arg(&img),
    );
    img
}

pub fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Write `bytes` at `offset` of a file (simulating corruption or another node's write).
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

/// `key: value` lines (debugfs dump_mmp, dumpe2fs -h) into pairs.
pub fn parse_kv(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A loop device attached to an image; detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(img: &Path) -> Loop {
        let out = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(img));
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Loop { dev }
    }

    /// `loop3` for `/dev/loop3`: the name the kernel writes into the MMP block.
    pub fn kernel_name(&self) -> String {
        self.dev.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        // `losetup -d` of a device that is still briefly busy (udev's blkid probe after a
        // umount) only sets autoclear: the detach happens later. Wait for it, so the next step
        // (or test) does not find the image still attached.
        if let Some(name) = self.dev.file_name() {
            let backing = std::path::Path::new("/sys/block")
                .join(name)
                .join("loop/backing_file");
            for _ in 0..100 {
                if !backing.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// A mount; unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(dev: &Path, dir: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = run(Command::new("mount").arg(dev).arg(dir));
        if out.status.success() {
            Ok(Mount {
                dir: dir.to_path_buf(),
            })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Superblock fields needed to find the MMP block in an image.
pub struct SbInfo {
    pub block_size: u64,
    pub mmp_block: u64,
}

pub fn sb_info(img: &Path) -> SbInfo {
    let out = run_ok(Command::new("dumpe2fs").arg("-h").arg(img));
    let kv = parse_kv(&String::from_utf8_lossy(&out.stdout));
    SbInfo {
        block_size: kv["Block size"].parse().unwrap(),
        mmp_block: kv.get("MMP block number").map_or(0, |v| v.parse().unwrap()),
    }
}
