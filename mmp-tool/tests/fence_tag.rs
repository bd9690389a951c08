//! The self-fence tag that mmpd (watchdog fence) writes into the MMP block, against the real
//! kernel and e2fsprogs: a tagged block is an ordinary MMP block to them, our readers shorten
//! their wait only for a valid tag, and a block that kmmpd wrote after taking the device over
//! (keeping the tag's bytes in its padding) never passes as one. Needs root for the loop part;
//! fails instead of skipping when CI=true.

mod support;

use libmmp::fs::MmpFs;
use libmmp::io::device::{Access, Device};
use libmmp::ondisk::fence_tag::{FenceKind, FenceTag, FENCE_TAG_MAGIC};
use libmmp::ondisk::mmp::MmpBlock;
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use test_support::prelude::*;

const TAG: FenceTag = FenceTag {
    bound_ms: 3_000,
    interval_ms: 1_000,
    kind: FenceKind::Watchdog,
};

/// Write a live block as mmpd with the watchdog fence writes it (a holder that then died).
fn write_tagged(img: &Path, seq: u32) -> MmpBlock {
    let fs = MmpFs::open(Device::open(img, Access::ReadWrite).unwrap()).unwrap();
    let mut b = MmpBlock::new(seq, 1_795_000_000, "mmpd-node", "sdb", 6);
    b.set_fence_tag(Some(TAG));
    fs.write_mmp_synced(&b).unwrap();
    b
}

fn read_block(dev: &Path) -> (MmpBlock, Vec<u8>) {
    let fs = MmpFs::open(Device::open(dev, Access::ReadOnly).unwrap()).unwrap();
    let (b, _) = fs.read_mmp_raw().unwrap();
    let raw = b.encode_raw().to_vec();
    (b, raw)
}

fn check_json(args: &[&str], dev: &Path) -> (Option<i32>, Value, Duration) {
    let t0 = Instant::now();
    let out = run(mmp_tool().arg("check").arg("--json").args(args).arg(dev));
    let took = t0.elapsed();
    let j: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), j, took)
}

#[test]
fn tagged_blocks_are_plain_mmp_blocks_to_e2fsprogs_and_shorten_only_our_wait() {
    if !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = mkfs(
        tmp.path(),
        "t.img",
        32,
        &["-O", "mmp,metadata_csum", "-E", "mmp_update_interval=1"],
    );
    write_tagged(&img, 0x1234);

    // e2fsprogs: a valid MMP block (checksum and all), nothing to repair.
    let out = run(Command::new("e2fsck").arg("-fn").arg(&img));
    assert_eq!(
        out.status.code(),
        Some(0),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run_ok(Command::new("debugfs").args(["-R", "dump_mmp"]).arg(&img));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mmpd-node") && text.contains("sequence: 00001234"),
        "{text}"
    );

    // Our check: stale after 3 s + 1 s + 1 % instead of the kernel's 2*6+1 = 13 s.
    let (code, j, took) = check_json(&[], &img);
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(j["verdict"], "safe_stale");
    assert_eq!(j["fence_tag"]["bound_ms"], 3_000);
    assert_eq!(j["fence_tag"]["kind"], "watchdog");
    assert_eq!(j["kernel_wait_seconds"], 13);
    assert!(
        took >= Duration::from_millis(4_030) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // Asked to ignore it: the kernel's wait (undecided at 6 s).
    let (code, j, _) = check_json(&["--ignore-fence-tag", "--timeout", "6"], &img);
    assert_eq!(code, Some(3), "{j}");
    assert_eq!(j["fence_tag"], Value::Null);

    // A claim of the dead fenced holder's block: 4.03 s watch, 3 s verification, refresh.
    let t0 = Instant::now();
    let out = run(mmp_tool()
        .args(["claim", "--json", "--run-dir"])
        .arg(tmp.path().join("run"))
        .arg(&img));
    let took = t0.elapsed();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert_eq!(j["previous_state"], "stale");
    assert!(took < Duration::from_secs(13), "claim took {took:?}");
    let (after, _) = read_block(&img);
    assert_eq!(after.fence_tag(), None, "a claim writes no tag");
    assert_eq!(after.nodename(), j["node_name"].as_str().unwrap());
}

#[test]
fn loop_a_block_kmmpd_took_over_is_never_mistaken_for_a_fenced_holders() {
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
    write_tagged(&img, 0x4321);
    let a = Loop::attach(&img); // host A: the kernel mounts (waits out our live block)
    let b = Loop::attach(&img); // host B
    let m =
        kernel_mount(&a.dev, &tmp.path().join("mnt")).expect("the kernel mounts after its wait");

    // kmmpd kept our padding, tag bytes and all, and writes its own sequence: invalid.
    std::thread::sleep(Duration::from_millis(1_500));
    let (held, raw) = read_block(&b.dev);
    assert_eq!(
        &raw[0x74..0x7c],
        &FENCE_TAG_MAGIC,
        "kmmpd keeps the padding"
    );
    assert_ne!(held.mmp_seq, 0x4321);
    assert_eq!(held.fence_tag(), None);
    let (code, j, took) = check_json(&[], &b.dev);
    assert_eq!(code, Some(1), "{j}");
    assert_eq!(j["verdict"], "in_use");
    assert!(took <= Duration::from_secs(3), "{took:?}");

    // kmmpd "dies" (the node crashes): the block it last wrote stays as it was. We cannot kill
    // a kernel mount, so save the block, unmount (CLEAN) and put it back, as hold-bench does.
    let (last, raw) = read_block(&b.dev);
    drop(m);
    drop(a);
    drop(b);
    let sb = sb_info(&img);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&raw, sb.mmp_block * sb.block_size).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let (back, _) = read_block(&img);
    assert_eq!(back.mmp_seq, last.mmp_seq);
    assert_eq!(back.fence_tag(), None);
    // No shortcut: after 8 s (twice the tag's wait) still undecided; the kernel wait is 11 s.
    let (code, j, took) = check_json(&["--timeout", "8"], &img);
    assert_eq!(code, Some(3), "{j}");
    assert_eq!(j["fence_tag"], Value::Null);
    assert!(took >= Duration::from_secs(8), "{took:?}");
}
