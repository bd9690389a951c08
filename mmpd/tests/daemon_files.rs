//! mmpd on image files (no root needed: mkfs.ext4 on a file, plain I/O): the run-directory
//! lock and state file, the fake watchdog and sysrq fences, SIGHUP, bad input. Another "node"
//! writes the same file directly.

use test_support::prelude::*;

use libmmp::host::run_dir::{self, HolderPhase};
use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

const MMPD: &str = env!("CARGO_BIN_EXE_mmpd");
const CLAIM: Duration = Duration::from_secs(25);

fn mmpd(img: &Image, name: &str, args: &[&str]) -> Proc {
    let run = img.file("run");
    let mut all = vec!["--run-dir", run.to_str().unwrap()];
    all.extend_from_slice(args);
    Proc::spawn(Path::new(MMPD), &all, img.file(&format!("{name}.log")), &[])
}

#[test]
fn file_second_mmpd_refused_state_file_and_release() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let p = img.path.to_str().unwrap();
    let mut d = mmpd(&img, "first", &[p]);
    // The lock is taken before the claim: a second mmpd is refused at once, writing nothing.
    assert!(wait_for(Duration::from_secs(5), || {
        run_dir::lock_holder(&img.file("run"), &img.path)
            .unwrap()
            .is_some()
    }));
    let t = Instant::now();
    let mut second = mmpd(&img, "second", &[p]);
    assert_eq!(
        second.wait_code(Duration::from_secs(5)),
        Some(4),
        "{}",
        second.log()
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(
        second.log().contains("already held by another mmpd"),
        "{}",
        second.log()
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    // What `mmp-tool status` reads on this host.
    let st = run_dir::local_holder(&img.file("run"), &img.path)
        .unwrap()
        .expect("state file");
    assert_eq!(st.state, Some(HolderPhase::Holding));
    assert_eq!(st.pid, d.child.id());
    assert_eq!(st.check_interval, 5);
    let blk = read_block(&img.path);
    assert!(
        blk.mmp_seq.wrapping_sub(st.seq) <= 2,
        "{:#x} vs {:#x}",
        blk.mmp_seq,
        st.seq
    );
    assert_eq!(blk.mmp_check_interval, 5, "publishes its check interval");
    // The sequence moves (about once a second; the exact pace is checked with the injected
    // clock in libmmp's heartbeat tests, as a loaded CI host may delay a beat here).
    let s1 = read_block(&img.path).mmp_seq;
    std::thread::sleep(Duration::from_millis(2100));
    let s2 = read_block(&img.path).mmp_seq;
    assert!((1..=3).contains(&s2.wrapping_sub(s1)), "{s1:#x} -> {s2:#x}");
    // The state file changes with the state, not with every sequence: it still holds the
    // claim's sequence and time (the live sequence is in the block).
    let st2 = run_dir::local_holder(&img.file("run"), &img.path)
        .unwrap()
        .expect("state file");
    assert_eq!((st2.seq, st2.updated), (st.seq, st.updated));
    d.signal(Signal::SIGINT);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(0), "{}", d.log());
    assert_eq!(read_block(&img.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert!(run_dir::local_holder(&img.file("run"), &img.path)
        .unwrap()
        .is_none());
}

#[test]
fn file_watchdog_is_petted_while_healthy_and_not_after_fencing() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let wd = img.file("watchdog");
    std::fs::write(&wd, b"").unwrap();
    let p = img.path.to_str().unwrap();
    let mut d = mmpd(
        &img,
        "mmpd",
        &[
            "--fence",
            "watchdog",
            "--watchdog-device",
            wd.to_str().unwrap(),
            p,
        ],
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    let len = || std::fs::metadata(&wd).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(5), || len() >= 3),
        "not petted"
    );
    write_foreign(&img.path, 0x0BAD_0003, "intruder");
    assert!(d.wait_log("FENCING", Duration::from_secs(5)), "{}", d.log());
    let after = len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(len(), after, "petted after fencing");
    assert_eq!(d.try_code(), None, "stays alive, keeping the watchdog open");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(5)), Some(1), "{}", d.log());
    let content = std::fs::read(&wd).unwrap();
    assert!(!content.contains(&b'V'), "a fenced node must not disarm");
    assert_eq!(read_block(&img.path).mmp_seq, 0x0BAD_0003);
}

#[test]
fn file_watchdog_is_disarmed_on_clean_release() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let wd = img.file("watchdog");
    std::fs::write(&wd, b"").unwrap();
    let p = img.path.to_str().unwrap();
    let mut d = mmpd(
        &img,
        "mmpd",
        &[
            "--fence",
            "watchdog",
            "--watchdog-device",
            wd.to_str().unwrap(),
            p,
        ],
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(5)), Some(0), "{}", d.log());
    assert!(std::fs::read(&wd).unwrap().ends_with(b"V"));
}

#[test]
fn file_sysrq_fence_writes_b() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let trig = img.file("sysrq-trigger");
    std::fs::write(&trig, b"").unwrap();
    let p = img.path.to_str().unwrap();
    let mut d = mmpd(
        &img,
        "mmpd",
        &[
            "--fence",
            "sysrq-reboot",
            "--sysrq-trigger",
            trig.to_str().unwrap(),
            p,
        ],
    );
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    write_foreign(&img.path, 0x0BAD_0004, "intruder");
    assert_eq!(d.wait_code(Duration::from_secs(5)), Some(1), "{}", d.log());
    assert_eq!(std::fs::read(&trig).unwrap(), b"b");
}

#[test]
fn file_sighup_adds_and_removes_devices() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let img2 = Image::new();
    let cfg = img.file("mmpd.toml");
    let write_cfg = |paths: &[&Path]| {
        let mut s = String::from("fence = \"exit\"\n");
        for p in paths {
            s += &format!("[[device]]\npath = \"{}\"\n", p.display());
        }
        std::fs::write(&cfg, s).unwrap();
    };
    write_cfg(&[&img.path]);
    let mut d = mmpd(&img, "mmpd", &["--config", cfg.to_str().unwrap()]);
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    write_cfg(&[&img2.path]);
    d.signal(Signal::SIGHUP);
    // img is released at once; img2 gets claimed.
    assert!(
        wait_for(Duration::from_secs(5), || read_block(&img.path).mmp_seq
            == EXT4_MMP_SEQ_CLEAN),
        "{}",
        d.log()
    );
    assert!(
        wait_for(CLAIM, || read_block(&img2.path).nodename()
            == libmmp::host::identity::nodename()
            && read_block(&img2.path).mmp_seq != EXT4_MMP_SEQ_CLEAN),
        "{}",
        d.log()
    );
    // A broken file keeps the running configuration.
    std::fs::write(&cfg, "this is not toml [").unwrap();
    d.signal(Signal::SIGHUP);
    assert!(
        d.wait_log("keeping the running configuration", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    assert_eq!(d.try_code(), None);
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(15)), Some(0), "{}", d.log());
    assert_eq!(read_block(&img2.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);
}

#[test]
fn file_bad_input_exits_2_and_writes_nothing() {
    if !require_e2fsprogs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    let spawn = |args: &[&str], log: &str| {
        let mut all = vec!["--run-dir", run];
        all.extend_from_slice(args);
        Proc::spawn(Path::new(MMPD), &all, dir.path().join(log), &[])
    };
    // Not ext4.
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0x5Au8; 1 << 20]).unwrap();
    let mut p = spawn(&[junk.to_str().unwrap()], "1.log");
    assert_eq!(p.wait_code(Duration::from_secs(5)), Some(2), "{}", p.log());
    assert!(
        p.log().contains("not an ext2/3/4 filesystem"),
        "{}",
        p.log()
    );
    assert_eq!(std::fs::read(&junk).unwrap(), vec![0x5Au8; 1 << 20]);
    // ext4 without MMP.
    let plain = dir.path().join("plain.img");
    mkfs_ext4(&plain, 16 << 20, &[]);
    let before = std::fs::read(&plain).unwrap();
    let mut p = spawn(&[plain.to_str().unwrap()], "2.log");
    assert_eq!(p.wait_code(Duration::from_secs(5)), Some(2), "{}", p.log());
    assert!(p.log().contains("MMP feature not enabled"), "{}", p.log());
    assert!(std::fs::read(&plain).unwrap() == before, "nothing written");
    // Missing device, bad config, no device.
    let mut p = spawn(&["/nonexistent/dev"], "3.log");
    assert_eq!(p.wait_code(Duration::from_secs(5)), Some(2), "{}", p.log());
    assert!(p.log().contains("/nonexistent/dev"), "{}", p.log());
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[[device]]\npath = \"/x\"\nfence = \"explode\"\n").unwrap();
    let mut p = spawn(&["--config", cfg.to_str().unwrap()], "4.log");
    assert_eq!(p.wait_code(Duration::from_secs(5)), Some(2), "{}", p.log());
    assert!(p.log().contains("bad.toml"), "{}", p.log());
    let mut p = spawn(&[], "5.log");
    assert_eq!(p.wait_code(Duration::from_secs(5)), Some(2), "{}", p.log());
    assert!(p.log().contains("no device to hold"), "{}", p.log());
}

#[test]
fn file_fsck_sequence_is_refused_with_3() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    write_foreign(
        &img.path,
        libmmp::ondisk::mmp::EXT4_MMP_SEQ_FSCK,
        "fsck-node",
    );
    let mut d = mmpd(&img, "mmpd", &[img.path.to_str().unwrap()]);
    assert_eq!(d.wait_code(Duration::from_secs(5)), Some(3), "{}", d.log());
    assert!(d.log().contains("clear_mmp"), "{}", d.log());
    assert_eq!(
        read_block(&img.path).mmp_seq,
        libmmp::ondisk::mmp::EXT4_MMP_SEQ_FSCK
    );
}

#[test]
fn file_two_devices_one_fenced_by_command_the_other_still_held() {
    if !require_e2fsprogs() {
        return;
    }
    let img = Image::new();
    let img2 = Image::new();
    let marker = img.file("fenced");
    let cmd = format!("echo \"$MMPD_DEVICE\" >> '{}'", marker.display());
    let mut d = mmpd(
        &img,
        "mmpd",
        &[
            "--fence",
            "command",
            "--fence-command",
            &cmd,
            img.path.to_str().unwrap(),
            img2.path.to_str().unwrap(),
        ],
    );
    // READY=1 (the "ready:" log line) only once both are claimed.
    assert!(d.wait_log("ready:", CLAIM), "{}", d.log());
    let ready_line = d
        .log()
        .lines()
        .find(|l| l.contains("ready:"))
        .unwrap()
        .to_string();
    assert!(
        ready_line.contains(img.path.to_str().unwrap())
            && ready_line.contains(img2.path.to_str().unwrap()),
        "{ready_line}"
    );
    write_foreign(&img.path, 0x0BAD_0006, "intruder");
    assert!(
        wait_for(Duration::from_secs(5), || marker.exists()),
        "{}",
        d.log()
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        img.path.to_str().unwrap()
    );
    // The other device is still held: its sequence keeps moving, and mmpd keeps running.
    let s1 = read_block(&img2.path).mmp_seq;
    std::thread::sleep(Duration::from_millis(2100));
    assert_ne!(read_block(&img2.path).mmp_seq, s1);
    assert_eq!(d.try_code(), None, "{}", d.log());
    let st = run_dir::local_holder(&img.file("run"), &img.path)
        .unwrap()
        .expect("state of the fenced device");
    assert_eq!(st.state, Some(HolderPhase::Fenced));
    assert!(st.reason.contains("ANOTHER WRITER"), "{st:?}");
    // Release: the held one becomes CLEAN, the fenced one keeps the intruder's block; the
    // exit status says a device was lost.
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_code(Duration::from_secs(10)), Some(1), "{}", d.log());
    assert_eq!(read_block(&img2.path).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    assert_eq!(read_block(&img.path).mmp_seq, 0x0BAD_0006);
}
