//! Helpers of lock-torture's own integration tests: running the binary and the LD_PRELOAD
//! shim. The scaffolding every crate shares (mounts, namespaces, spawners, the skip-or-fail
//! rule) is in the `test_support` crate.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use test_support::cmd::try_run;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lock-torture")
}

pub fn cmd() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("LD_PRELOAD").env("RUST_LOG", "warn");
    c
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Build the LD_PRELOAD shim that makes every lock call succeed without locking.
pub fn build_nolock_shim(out_dir: &Path) -> Result<PathBuf, test_support::Error> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shim/nolock.c");
    let so = out_dir.join("libnolock.so");
    try_run(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl"),
    )?;
    Ok(so)
}
