//! Helpers of mmp-tool's own integration tests. The scaffolding every crate shares (loop
//! devices, mounts, mkfs, require(), ...) is in the `test_support` crate.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Command;
use test_support::cmd::run_ok;

pub fn mmp_tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmp-tool"))
}

/// `mmp-tool ARGS` with `MMPD_RUN_DIR=run_dir`: exit code, stdout, stderr.
pub fn tool(run_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = mmp_tool()
        .args(args)
        .env("MMPD_RUN_DIR", run_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
