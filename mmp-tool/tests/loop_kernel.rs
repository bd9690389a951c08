//! mmp-tool against the running kernel's ext4 MMP: two loop devices over one image file are two
//! hosts sharing a disk. Needs root; fails instead of skipping when CI=true.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use test_support::prelude::*;

fn hostname() -> String {
    String::from_utf8_lossy(&run_ok(Command::new("uname").arg("-n")).stdout)
        .trim()
        .to_string()
}

#[test]
fn loop_check_sees_kernel_holder_within_3s_and_clean_after_umount() {
    if !require_loop_devices() || !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = mkfs(
        tmp.path(),
        "shared.img",
        64,
        &["-O", "mmp", "-E", "mmp_update_interval=1"],
    );
    let a = Loop::attach(&img); // "host A"
    let b = Loop::attach(&img); // "host B", same disk
    let m = kernel_mount(&a.dev, &tmp.path().join("mnt")).expect("kernel mounts a clean MMP fs");

    let t0 = Instant::now();
    let out = run(mmp_tool().args(["check", "--json"]).arg(&b.dev));
    let took = t0.elapsed();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{j}");
    assert_eq!(j["verdict"], "in_use");
    assert_eq!(j["last_update"]["node_name"], hostname());
    assert_eq!(
        j["last_update"]["device_name"],
        a.name(),
        "kmmpd names its device"
    );
    assert!(
        took <= Duration::from_secs(3),
        "in use reported after {took:?}, want <= 3 s"
    );

    // The text form names the holder too.
    let out = run(mmp_tool().arg("check").arg(&b.dev));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("IN USE") && err.contains(&a.name()) && err.contains(&hostname()),
        "{err}"
    );

    // status through B shows the live sequence written by A's kmmpd.
    let out = run_ok(mmp_tool().args(["status", "--json"]).arg(&b.dev));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["state"], "live", "{s}");
    assert_eq!(s["checksum_status"], "valid", "{s}");

    drop(m); // umount: kmmpd writes SEQ_CLEAN
    let out = run(mmp_tool().args(["check", "--json"]).arg(&b.dev));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert_eq!(j["verdict"], "safe_clean");
    // And e2mmpstatus agrees (a clean block is instant for it too).
    assert_eq!(
        run(Command::new("e2mmpstatus").arg(&b.dev)).status.code(),
        Some(0)
    );
}
