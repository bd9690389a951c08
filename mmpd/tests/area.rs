//! mmpd holding an MMP area (the protection for XFS, btrfs or raw devices) seen through two
//! loop devices of one area file, as two hosts see one small LUN: the second mmpd is refused,
//! and the kernel refuses to mount the area itself. Root only (skips otherwise; fails under
//! CI=true).

use test_support::prelude::*;

use libmmp::ondisk::area::area_image;
use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");

#[test]
fn loop_area_held_by_one_mmpd_refused_to_another_and_to_the_kernel() {
    if !require_loop_devices() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let area = dir.path().join("area.bin");
    // A loop device needs whole 512-byte sectors; the area is 8 KiB.
    std::fs::write(&area, area_image([3; 16], 1, 0, "fmt", "area")).unwrap();
    let a = Loop::attach(&area);
    let b = Loop::attach(&area);
    let spawn = |dev: &Path, run: &str, log: &str| {
        Proc::spawn(
            Path::new(MMPD),
            &[
                "--run-dir",
                dir.path().join(run).to_str().unwrap(),
                dev.to_str().unwrap(),
            ],
            dir.path().join(log),
            &[],
        )
    };
    let mut holder = spawn(&a.dev, "run-a", "a.log");
    assert!(
        holder.wait_log("ready:", Duration::from_secs(25)),
        "{}",
        holder.log()
    );
    let t = Instant::now();
    let mut other = spawn(&b.dev, "run-b", "b.log");
    assert_eq!(
        other.wait_code(Duration::from_secs(20)),
        Some(3),
        "{}",
        other.log()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        other.log().contains("in use on another node"),
        "{}",
        other.log()
    );
    // No kernel mounts an area.
    let mnt = dir.path().join("mnt");
    assert!(
        kernel_mount(&b.dev, &mnt).is_err(),
        "the kernel mounted an area"
    );
    holder.signal(Signal::SIGTERM);
    assert_eq!(
        holder.wait_code(Duration::from_secs(10)),
        Some(0),
        "{}",
        holder.log()
    );
    assert_eq!(read_block(&b.dev).mmp_seq, EXT4_MMP_SEQ_CLEAN);
}
