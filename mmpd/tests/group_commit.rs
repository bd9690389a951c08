//! Group commit against the real kernel (root): image files on one filesystem share one
//! `syncfs` per batch, and a beat counts only once that sync succeeded.
//!
//! Two filesystems, three images each: the beats of each filesystem are committed together;
//! freezing one filesystem fences its three devices (from the main loop, after
//! `fail_after + interval`) while the other three keep beating.
//!
//! A failing `syncfs` is covered by the unit tests (libmmp `heartbeat`, mmpd `pool`, with an
//! injected error): this kernel has neither device-mapper nor fault injection to make a real
//! disk fail under a mounted filesystem.

use test_support::prelude::*;

use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");
const CLAIM: Duration = Duration::from_secs(25);
/// The daemon's log with the group commits in it.
const LOG: &[(&str, &str)] = &[("RUST_LOG", "debug,mmpd::pool=trace")];

fn images(dir: &Path, prefix: &str, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("{prefix}{i}.img"));
            mkfs_ext4(
                &p,
                4 << 20,
                &["-O", "mmp,^has_journal", "-E", "mmp_update_interval=1"],
            );
            p
        })
        .collect()
}

fn mmpd(run: &Path, marker: &Path, devs: &[PathBuf], log: PathBuf) -> Proc {
    let cmd = format!("echo \"$MMPD_DEVICE\" >> '{}'", marker.display());
    let mut args = vec![
        "--run-dir".to_string(),
        run.display().to_string(),
        "--fence".into(),
        "command".into(),
        "--fence-command".into(),
        cmd,
    ];
    args.extend(devs.iter().map(|d| d.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn(Path::new(MMPD), &args, log, LOG)
}

fn fenced(marker: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn names(devs: &[PathBuf]) -> Vec<String> {
    let mut v: Vec<String> = devs.iter().map(|d| d.display().to_string()).collect();
    v.sort();
    v
}

#[test]
fn loop_a_frozen_filesystems_group_is_fenced_while_the_other_group_keeps_beating() {
    if !(require_loop_devices() && require_tools(&["fsfreeze"])) {
        return;
    }
    let outer_dir = tempfile::tempdir().unwrap();
    let outer = outer_dir.path().join("outer.img");
    mkfs_ext4(&outer, 48 << 20, &[]);
    let lp = Loop::attach(&outer);
    let mnt = outer_dir.path().join("mnt");
    let _mounted = kernel_mount(&lp.dev, &mnt).expect("mount the outer filesystem");
    let a = images(&mnt, "a", 3);
    let other = tempfile::tempdir().unwrap();
    let b = images(other.path(), "b", 3);
    let marker = other.path().join("fenced");
    let devs: Vec<PathBuf> = a.iter().chain(&b).cloned().collect();
    let mut d = mmpd(
        &other.path().join("run"),
        &marker,
        &devs,
        other.path().join("mmpd.log"),
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    std::thread::sleep(Duration::from_millis(2500));
    // Both filesystems' beats were committed in groups of more than one.
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("group commit: syncfs") && !l.contains("beats=1 ")),
        "no group commit:\n{log}"
    );

    let frozen = Frozen::new(&mnt);
    let t = Instant::now();
    let b0: Vec<u32> = b.iter().map(|p| read_block(p).mmp_seq).collect();
    assert!(
        wait_for(Duration::from_secs(12), || fenced(&marker).len() >= 3),
        "A's devices not fenced:\n{}",
        d.log()
    );
    let took = t.elapsed();
    let log = d.log();
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(10),
        "fenced {took:?} after the freeze:\n{log}"
    );
    assert_eq!(fenced(&marker), names(&a), "only A's devices:\n{log}");
    for (p, s0) in b.iter().zip(&b0) {
        let s1 = read_block(p).mmp_seq;
        assert!(
            s1.wrapping_sub(*s0) >= 3,
            "{} wrote {} times in {took:?} while A's filesystem was frozen:\n{log}",
            p.display(),
            s1.wrapping_sub(*s0)
        );
    }
    assert_eq!(d.try_code(), None, "mmpd keeps holding B:\n{log}");

    // Thaw: at most the write that hung lands on each, nothing after it.
    let a0: Vec<u32> = a.iter().map(|p| read_block(p).mmp_seq).collect();
    drop(frozen);
    std::thread::sleep(Duration::from_millis(3000));
    for (p, s0) in a.iter().zip(&a0) {
        let s1 = read_block(p).mmp_seq;
        assert!(
            s1.wrapping_sub(*s0) <= 1,
            "{}: {s0:#x} -> {s1:#x}",
            p.display()
        );
    }
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(1), "{}", d.log());
    for p in &b {
        assert_eq!(
            read_block(p).mmp_seq,
            libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN
        );
    }
}
