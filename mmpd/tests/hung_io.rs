//! A device whose I/O hangs (root): its image file lives on a loop-mounted ext4 that the test
//! freezes with `fsfreeze`, so mmpd's write to it blocks in the kernel, as I/O to a dead path
//! does. mmpd must fence that device from its main loop (the heartbeat stuck in the write
//! cannot), keep beating its other device meanwhile (the hung write holds one I/O thread, not
//! the loop), and never write the fenced device again once the filesystem is thawed.

use test_support::prelude::*;

use libmmp::host::run_dir::{self, HolderPhase};
use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");
const CLAIM: Duration = Duration::from_secs(25);

#[test]
fn loop_hung_device_is_fenced_while_the_other_keeps_beating() {
    if !(require_loop_devices() && require_tools(&["fsfreeze"])) {
        return;
    }
    // Device A: an image file on a filesystem we can freeze. Device B: an ordinary image.
    let outer_dir = tempfile::tempdir().unwrap();
    let outer = outer_dir.path().join("outer.img");
    mkfs_ext4(&outer, 32 << 20, &[]);
    let lp = Loop::attach(&outer);
    let mnt = outer_dir.path().join("mnt");
    let _mounted = kernel_mount(&lp.dev, &mnt).expect("mount the outer filesystem");
    let a = mnt.join("a.img");
    mkfs_ext4(
        &a,
        8 << 20,
        &["-O", "mmp,^has_journal", "-E", "mmp_update_interval=1"],
    );
    let b = Image::new();
    let run = b.file("run");
    let marker = b.file("fenced");
    let cmd = format!("echo \"$MMPD_DEVICE\" >> '{}'", marker.display());
    let mut d = Proc::spawn(
        Path::new(MMPD),
        &[
            "--run-dir",
            run.to_str().unwrap(),
            "--fence",
            "command",
            "--fence-command",
            &cmd,
            a.to_str().unwrap(),
            b.path.to_str().unwrap(),
        ],
        b.file("mmpd.log"),
        &[],
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    std::thread::sleep(Duration::from_millis(1500));

    let frozen = Frozen::new(&mnt);
    let t = Instant::now();
    let b0 = read_block(&b.path).mmp_seq;
    // A's last write succeeded at most one interval ago; the main loop fences once none has
    // for fail_after + interval = 6 s.
    assert!(
        wait_for(Duration::from_secs(12), || marker.exists()),
        "A not fenced:\n{}",
        d.log()
    );
    let took = t.elapsed();
    let b1 = read_block(&b.path).mmp_seq;
    let log = d.log();
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(9),
        "fenced {took:?} after the freeze:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        a.to_str().unwrap()
    );
    let fence_line = log
        .lines()
        .find(|l| l.contains("FENCING"))
        .unwrap_or_default();
    assert!(
        fence_line.contains("NO SUCCESSFUL MMP WRITE") && fence_line.contains("has not returned"),
        "{fence_line}"
    );
    assert!(
        log.contains("leaving its I/O thread behind"),
        "the hung write's thread was not replaced:\n{log}"
    );
    // B kept beating all along (about once a second; a loaded host may delay a few).
    assert!(
        b1.wrapping_sub(b0) >= 3,
        "B wrote {} times in {took:?} while A hung:\n{log}",
        b1.wrapping_sub(b0)
    );
    assert_eq!(d.try_code(), None, "mmpd keeps holding B:\n{log}");
    let st = run_dir::local_holder(&run, &a)
        .unwrap()
        .expect("A's state file");
    assert_eq!(st.state, Some(HolderPhase::Fenced));
    assert!(st.reason.contains("has not returned"), "{st:?}");

    // Thaw: the write that hung (issued before the limit) lands, and nothing after it.
    let a0 = read_block(&a).mmp_seq;
    drop(frozen);
    std::thread::sleep(Duration::from_millis(2500));
    let a1 = read_block(&a).mmp_seq;
    assert!(a1.wrapping_sub(a0) <= 1, "{a0:#x} -> {a1:#x}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read_block(&a).mmp_seq, a1, "A written after its fence");
    let b2 = read_block(&b.path).mmp_seq;
    assert_ne!(b2, b1, "B still beats");

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(1), "{}", d.log());
    assert_eq!(read_block(&b.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert_eq!(
        read_block(&a).mmp_seq,
        a1,
        "a fenced device is never released"
    );
}
