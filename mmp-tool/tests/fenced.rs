//! `--fenced NODE` on real devices: two loop devices over one image are two hosts sharing a
//! disk (update interval 1 s, so the fence-confirmed watch is 2 s). Needs root; fails instead
//! of skipping when CI=true.
//!
//! - A confirmed fence: the block a crashed kmmpd left, and the block of an mmpd killed with
//!   SIGKILL, are taken over on the fenced path (`mmp-tool mount`, and mmpd's own claim).
//! - A fence that did not fence: a kernel mount through the other loop device, a running
//!   mmpd, and an mmpd paused (SIGSTOP) that resumes (SIGCONT) during the watch are refused
//!   every time (exit 1, "in_use", an error saying the fence failed), nothing is mounted, and
//!   the block stays its owner's, still written by it.
//!
//! Times go in the benchmark (mmpd/bench/hold-bench.sh, PARTS=fenced), not in assertions.

mod support;

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::mmp::MmpBlock;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use test_support::mount::is_mountpoint;
use test_support::prelude::*;

const TOOL: &str = env!("CARGO_BIN_EXE_mmp-tool");

/// mmpd as cargo builds it, beside mmp-tool (`cargo test --workspace` builds both).
fn mmpd() -> Option<PathBuf> {
    let p = Path::new(TOOL).parent()?.join("mmpd");
    p.is_file().then_some(p)
}

fn require_devices() -> bool {
    require_loop_devices() && require_e2fsprogs()
}

fn require_mmpd() -> bool {
    require_devices() && require(mmpd().is_some(), "mmpd is not built (cargo build -p mmpd)")
}

fn hostname() -> String {
    libmmp::host::identity::nodename()
}

/// Unmounts `dir` on drop if something mounted it (a test that fails must not leave a mount).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for _ in 0..20 {
            if !is_mountpoint(&self.0) {
                return;
            }
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
}

/// `mmp-tool SUB --json --fenced NODE [extra] DEV [DIR]` (SUB: mount or claim) as host-b:
/// exit code, JSON, stderr.
fn fenced(sub: &str, img: &Image, node: &str, extra: &[&str], dev: &Path) -> (i32, Value, String) {
    let mnt = img.file("mnt-b");
    std::fs::create_dir_all(&mnt).unwrap();
    let run = img.file("run-b");
    let mut c = mmp_tool();
    c.args([
        sub,
        "--json",
        "--quiet",
        "--node-name",
        "host-b",
        "--fenced",
        node,
    ])
    .args(extra)
    .arg("--run-dir")
    .arg(&run)
    .arg(dev);
    if sub == "mount" {
        c.arg(&mnt);
    }
    let out = run_with_timeout(c, Duration::from_secs(90));
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// mmpd as `node` through `dev` (fence action exit, interval 1 s), ready (holding).
fn mmpd_holder(img: &Image, node: &str, dev: &Path, extra: &[&str]) -> Proc {
    let run = img.file(&format!("run-{node}"));
    let log = img.file(&format!("{node}.log"));
    let mut p = Proc::mmpd(&mmpd().unwrap(), &run, node, dev, extra, log);
    assert!(
        p.wait_log("ready:", Duration::from_secs(60)),
        "mmpd {node} not ready:\n{}",
        p.log()
    );
    p
}

/// The block of a crashed kmmpd: the kernel holds the filesystem through `a`; we keep the
/// block as kmmpd last wrote it, unmount (which writes CLEAN) and put it back (a kernel mount
/// cannot be killed; the same as hold-bench.sh and fence_tag.rs do).
fn crashed_kmmpd(img: &Image, a: &Loop, b: &Loop) -> MmpBlock {
    let m = kernel_mount(&a.dev, &img.file("mnt-a")).expect("the kernel mounts a clean MMP fs");
    std::thread::sleep(Duration::from_millis(1_500));
    let last = read_block(&b.dev);
    drop(m);
    let fs = MmpFs::open(Device::open(&b.dev, Access::ReadWrite).unwrap()).unwrap();
    fs.write_mmp_synced(&last).unwrap();
    assert_eq!(read_block(&b.dev), last);
    last
}

/// Whether the block through `dev` changes within 3 s (its holder still writes it).
fn still_written(dev: &Path) -> bool {
    let first = read_block(dev);
    wait_for(Duration::from_secs(3), || read_block(dev) != first)
}

fn assert_fenced_path(code: i32, j: &Value, err: &str) {
    assert_eq!(code, 0, "{j}\n{err}");
    assert_eq!(j["claim_path"], "fenced", "{j}");
    assert_eq!(j["fenced_watch_seconds"], 2.0, "{j}");
}

/// Refused as a live writer: exit 1, in_use, the loud error, nothing mounted.
fn assert_refused_live(img: &Image, code: i32, j: &Value, err: &str) {
    assert_eq!(code, 1, "{j}\n{err}");
    assert_eq!(j["result"], "in_use", "{j}");
    assert!(
        err.contains("did NOT do what the cluster believes"),
        "{err}"
    );
    assert!(!is_mountpoint(&img.file("mnt-b")), "nothing mounted");
}

#[test]
fn loop_fenced_mount_takes_over_a_crashed_kmmpd_holder() {
    if !require_devices() {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    let last = crashed_kmmpd(&img, &a, &b);
    assert_eq!(last.nodename(), hostname(), "kmmpd writes the host name");
    let _u = Unmount(img.file("mnt-b"));
    let (code, j, err) = fenced("mount", &img, &hostname(), &[], &b.dev);
    assert_fenced_path(code, &j, &err);
    assert_eq!(j["mounted"], true, "{j}");
    assert!(is_mountpoint(&img.file("mnt-b")));
    // The kernel holds it now: kmmpd through B.
    assert_eq!(read_block(&a.dev).bdevname(), b.name());
}

#[test]
fn loop_fenced_mount_takes_over_a_killed_mmpd_holder_with_a_node_map() {
    if !require_mmpd() {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    let mut holder = mmpd_holder(&img, "host-a", &a.dev, &[]);
    holder.signal(Signal::SIGKILL);
    assert!(holder.wait_code(Duration::from_secs(10)).is_some());
    let _u = Unmount(img.file("mnt-b"));
    // The cluster calls it pcmk-a; it wrote host-a.
    let map = ["--node-map", "pcmk-a=host-a"];
    let (code, j, err) = fenced("mount", &img, "pcmk-a", &map, &b.dev);
    assert_fenced_path(code, &j, &err);
    assert_eq!(j["fenced_node"], "pcmk-a");
    assert!(is_mountpoint(&img.file("mnt-b")));
}

/// A block another node wrote: the fence of host-a says nothing about it, the normal wait.
#[test]
fn loop_fenced_claim_of_another_nodes_block_takes_the_normal_path() {
    if !require_devices() {
        return;
    }
    let img = Image::new();
    let b = Loop::attach(&img.path);
    write_foreign(&b.dev, 0x4242, "host-c");
    let (code, j, err) = fenced("claim", &img, "host-a", &[], &b.dev);
    assert_eq!(code, 0, "{j}\n{err}");
    assert_eq!(
        (&j["claim_path"], &j["fallback"]),
        (&"normal".into(), &"other_node".into()),
        "{j}"
    );
    assert!(j["elapsed_seconds"].as_f64().unwrap() >= 20.0, "{j}");
}

#[test]
fn loop_mmpd_fenced_takes_over_a_killed_mmpd_and_heartbeats() {
    if !require_mmpd() {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    let mut holder = mmpd_holder(&img, "host-a", &a.dev, &[]);
    holder.signal(Signal::SIGKILL);
    assert!(holder.wait_code(Duration::from_secs(10)).is_some());
    let mut next = mmpd_holder(&img, "host-b", &b.dev, &["--fenced", "host-a"]);
    let log = next.log();
    assert!(
        log.contains("fence-confirmed claim won") && log.contains("path=\"fenced\""),
        "{log}"
    );
    assert_eq!(read_block(&a.dev).nodename(), "host-b");
    assert!(still_written(&a.dev), "mmpd B heartbeats");
    next.signal(Signal::SIGTERM);
    assert_eq!(
        next.wait_code(Duration::from_secs(20)),
        Some(0),
        "{}",
        next.log()
    );
}

#[test]
fn loop_fenced_claims_refuse_a_live_kernel_holder() {
    if !require_devices() {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    let _m = kernel_mount(&a.dev, &img.file("mnt-a")).expect("kernel mount through A");
    let _u = Unmount(img.file("mnt-b"));
    for sub in ["mount", "claim", "mount"] {
        let (code, j, err) = fenced(sub, &img, &hostname(), &[], &b.dev);
        assert_refused_live(&img, code, &j, &err);
        let blk = read_block(&b.dev);
        assert_eq!(
            (blk.nodename(), blk.bdevname()),
            (hostname(), a.name()),
            "kmmpd's block"
        );
        assert!(still_written(&b.dev), "kmmpd still holds it");
    }
}

#[test]
fn loop_fenced_claims_refuse_a_running_mmpd() {
    if !require_mmpd() {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    let mut holder = mmpd_holder(&img, "host-a", &a.dev, &[]);
    let _u = Unmount(img.file("mnt-b"));
    for sub in ["mount", "claim", "mount"] {
        let (code, j, err) = fenced(sub, &img, "host-a", &[], &b.dev);
        assert_refused_live(&img, code, &j, &err);
        assert_eq!(read_block(&b.dev).nodename(), "host-a");
        assert!(still_written(&b.dev));
        assert_eq!(
            holder.try_code(),
            None,
            "mmpd A still runs:\n{}",
            holder.log()
        );
    }
}

/// The holder is stopped before the claim starts and resumes at several points of the 2 s
/// watch: its first write after SIGCONT is a change the watch sees.
#[test]
fn loop_fenced_mount_refuses_a_paused_holder_that_resumes_during_the_watch() {
    if !require_mmpd() {
        return;
    }
    let img = Image::new();
    let (a, b) = (Loop::attach(&img.path), Loop::attach(&img.path));
    let mut holder = mmpd_holder(&img, "host-a", &a.dev, &[]);
    let _u = Unmount(img.file("mnt-b"));
    for resume_ms in [300u64, 1_000, 1_600] {
        holder.signal(Signal::SIGSTOP);
        let mnt = img.file("mnt-b");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut c = mmp_tool();
        c.args([
            "mount",
            "--json",
            "--quiet",
            "--node-name",
            "host-b",
            "--fenced",
            "host-a",
        ])
        .arg("--run-dir")
        .arg(img.file("run-b"))
        .arg(&b.dev)
        .arg(&mnt)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(resume_ms));
        holder.signal(Signal::SIGCONT);
        let out = wait_output(child, Duration::from_secs(60));
        let j: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_refused_live(&img, out.status.code().unwrap_or(-1), &j, &err);
        assert_eq!(read_block(&b.dev).nodename(), "host-a");
        assert!(still_written(&b.dev));
        assert_eq!(
            holder.try_code(),
            None,
            "mmpd A still runs:\n{}",
            holder.log()
        );
    }
}
