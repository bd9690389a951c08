//! mmpd against real peers: the kernel's ext4 MMP (mount, kmmpd), a second mmpd, and a
//! foreign writer, each through its own loop device of one image file: two loop devices of one
//! file behave like two hosts seeing one LUN. Root only (skips otherwise; fails under CI=true).
//!
//! Each test takes 10-35 s of real waiting (update interval 1: check interval 5, waits of 10 and
//! 11 s); they run in parallel.

use test_support::prelude::*;

use libmmp::ondisk::mmp::{SeqClass, EXT4_MMP_SEQ_CLEAN};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");

fn mmpd(img: &Image, name: &str, args: &[&str]) -> Proc {
    let run = img.file("run");
    let mut all = vec!["--run-dir", run.to_str().unwrap()];
    all.extend_from_slice(args);
    Proc::spawn(Path::new(MMPD), &all, img.file(&format!("{name}.log")), &[])
}

/// A claim of a clean block takes 9 s; allow for a loaded machine.
const CLAIM: Duration = Duration::from_secs(25);

#[test]
fn loop_mmpd_holds_against_kernel_mount_and_releases_clean() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    let mut d = mmpd(&img, "mmpd", &[a.dev.to_str().unwrap()]);
    assert!(
        d.wait_log("ready:", CLAIM),
        "mmpd did not get ready:\n{}",
        d.log()
    );
    assert_eq!(
        read_block(&b.dev).nodename(),
        libmmp::host::identity::nodename()
    );

    // A kernel mount through the other loop device (the other "host") must be refused.
    let mnt = img.file("mnt");
    let r = kernel_mount(&b.dev, &mnt);
    let (err, took) = match r {
        Ok(_) => panic!("the kernel mounted a filesystem mmpd holds:\n{}", d.log()),
        Err(e) => (e.stderr, e.elapsed),
    };
    assert!(
        kernel_log_has("Device is already active on another node", &b.name()),
        "no MMP refusal in dmesg for {} (mount said: {err}, after {took:?})",
        b.name()
    );
    assert!(took >= Duration::from_secs(10), "kernel waited {took:?}");
    assert_eq!(d.try_code(), None, "mmpd must keep holding:\n{}", d.log());

    // Release: CLEAN, exit 0, and the kernel mounts at once.
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(0), "{}", d.log());
    assert_eq!(read_block(&b.dev).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    let t = Instant::now();
    let m = kernel_mount(&b.dev, &mnt).expect("mount after release");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop(m);
}

#[test]
fn loop_mmpd_refuses_a_kernel_mounted_filesystem() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    let _m = kernel_mount(&a.dev, &img.file("mnt")).expect("kernel mount");
    let t = Instant::now();
    let mut d = mmpd(&img, "mmpd", &[b.dev.to_str().unwrap()]);
    let code = d.wait_code(Duration::from_secs(30));
    assert_eq!(code, Some(3), "{}", d.log());
    assert!(d.log().contains("in use on another node"), "{}", d.log());
    // kmmpd writes every second: the change is seen long before the 11 s wait.
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // mmpd wrote nothing: the block is kmmpd's live sequence (a small counter), not CLEAN.
    assert!(matches!(read_block(&b.dev).seq_class(), SeqClass::Live(_)));
}

#[test]
fn loop_two_mmpd_racing_on_a_clean_block_exactly_one_wins() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    assert_eq!(read_block(&a.dev).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    // Different run dirs: two "hosts".
    let run_b = img.file("run-b");
    let mut da = mmpd(
        &img,
        "a",
        &["--node-name", "node-a", a.dev.to_str().unwrap()],
    );
    let mut db = Proc::spawn(
        Path::new(MMPD),
        &[
            "--run-dir",
            run_b.to_str().unwrap(),
            "--node-name",
            "node-b",
            b.dev.to_str().unwrap(),
        ],
        img.file("b.log"),
        &[],
    );
    // The loser exits 3 (lost the claim, or saw the winner's write while watching); the
    // winner holds. Allow for the loser watching a live sequence (11 s) first.
    let end = Instant::now() + Duration::from_secs(40);
    let (mut codes, mut ready) = ((None, None), (false, false));
    while Instant::now() < end {
        codes = (da.try_code(), db.try_code());
        ready = (da.log().contains("ready:"), db.log().contains("ready:"));
        if codes.0.is_some() != codes.1.is_some() && ready.0 != ready.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = format!("--- a:\n{}\n--- b:\n{}", da.log(), db.log());
    assert!(
        ready.0 != ready.1,
        "exactly one must hold: {ready:?}\n{logs}"
    );
    let (winner, loser, name) = if ready.0 {
        (&mut da, codes.1, "node-a")
    } else {
        (&mut db, codes.0, "node-b")
    };
    assert_eq!(loser, Some(3), "{logs}");
    // The winner keeps holding while we look.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(winner.try_code(), None, "{logs}");
    assert_eq!(read_block(&a.dev).nodename(), name);
    winner.signal(Signal::SIGTERM);
    assert_eq!(winner.wait_code(Duration::from_secs(10)), Some(0), "{logs}");
    assert_eq!(read_block(&a.dev).mmp_seq, EXT4_MMP_SEQ_CLEAN);
}

#[test]
fn loop_foreign_writer_fences_with_exit() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    let mut d = mmpd(&img, "mmpd", &["--fence", "exit", a.dev.to_str().unwrap()]);
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    let t = Instant::now();
    write_foreign(&b.dev, 0x0BAD_0001, "intruder");
    assert_eq!(d.wait_code(Duration::from_secs(5)), Some(1), "{}", d.log());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let log = d.log();
    assert!(
        log.contains("FENCING") && log.contains("ANOTHER WRITER"),
        "{log}"
    );
    assert!(log.contains("intruder"), "{log}");
    // Fenced: nothing more written, in particular no CLEAN over the other node's block.
    std::thread::sleep(Duration::from_millis(1500));
    let blk = read_block(&b.dev);
    assert_eq!(blk.mmp_seq, 0x0BAD_0001);
    assert_eq!(blk.nodename(), "intruder");
}

#[test]
fn loop_foreign_writer_fences_with_command() {
    if !require_loop_devices() {
        return;
    }
    let img = Image::new();
    let a = Loop::attach(&img.path);
    let b = Loop::attach(&img.path);
    let marker = img.file("fenced");
    let cmd = format!(
        "printf '%s|%s|%s' \"$MMPD_DEVICE\" \"$MMPD_NODE\" \"$MMPD_REASON\" > '{}'",
        marker.display()
    );
    let mut d = mmpd(
        &img,
        "mmpd",
        &[
            "--fence",
            "command",
            "--fence-command",
            &cmd,
            "--node-name",
            "holder",
            a.dev.to_str().unwrap(),
        ],
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    write_foreign(&b.dev, 0x0BAD_0002, "intruder");
    // The command runs; with no device left, mmpd exits 1 once it finished.
    assert_eq!(d.wait_code(Duration::from_secs(5)), Some(1), "{}", d.log());
    let got = std::fs::read_to_string(&marker).expect("fence command ran");
    let parts: Vec<&str> = got.splitn(3, '|').collect();
    assert_eq!(parts[0], a.dev.to_str().unwrap());
    assert_eq!(parts[1], "holder");
    assert!(parts[2].contains("ANOTHER WRITER"), "{got}");
    assert_eq!(read_block(&b.dev).mmp_seq, 0x0BAD_0002);
}

#[test]
fn loop_1k_blocks_on_4k_sectors_are_refused_without_writing() {
    if !require_loop_devices() {
        return;
    }
    // A 1 KiB-block filesystem seen through a 4 KiB-sector device: the MMP block shares its
    // sector with other filesystem blocks, so an O_DIRECT write would rewrite them. Refused.
    let img = Image::with_options(&["-b", "1024"]);
    let l = Loop::attach_with(&img.path, &["--sector-size", "4096"]);
    let before = std::fs::read(&img.path).unwrap();
    let mut d = mmpd(&img, "mmpd", &[l.dev.to_str().unwrap()]);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(2), "{}", d.log());
    assert!(
        d.log()
            .contains("smaller than the device's 4096-byte sector"),
        "{}",
        d.log()
    );
    assert!(
        std::fs::read(&img.path).unwrap() == before,
        "nothing written"
    );
}
